//! The handshake: preamble, hello, optional mutual HMAC-SHA256
//! challenge-response, verdict. Nothing but handshake frames, each capped at
//! [`HANDSHAKE_MAX_FRAME`] bytes, is read before it succeeds.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::codec::{FrameReader, ReadError};
use crate::config::PeerConfig;
use crate::error::RpcError;
use crate::wire::{
    Handshake, Hello, Rejection, Verdict, HANDSHAKE_MAX_FRAME, MAGIC, NONCE_LEN, VERSION,
};

/// Which end of the connection this side is.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// The side that dialed.
    Connector,
    /// The side that accepted; gives the connection its id, or refuses it.
    Acceptor {
        connection_id: u64,
        refuse: Option<RpcError>,
    },
}

/// What the handshake settled.
#[derive(Debug, Clone)]
pub(crate) struct Negotiated {
    pub(crate) connection_id: u64,
    pub(crate) remote_name: Option<String>,
    pub(crate) remote_max_frame: u32,
    pub(crate) remote_max_in_flight: u32,
}

type HmacSha256 = Hmac<Sha256>;

const AUTH_LABEL: &[u8] = b"rpc-core auth v1";

fn mac(secret: &[u8], role: u8, connector_nonce: &[u8], acceptor_nonce: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret).expect("hmac takes any key length");
    m.update(AUTH_LABEL);
    m.update(&[role]);
    m.update(connector_nonce);
    m.update(acceptor_nonce);
    m
}

fn prove(secret: &[u8], role: u8, c: &[u8], a: &[u8]) -> [u8; NONCE_LEN] {
    mac(secret, role, c, a).finalize().into_bytes().into()
}

fn verify(secret: &[u8], role: u8, c: &[u8], a: &[u8], proof: &[u8]) -> bool {
    // `verify_slice` compares in constant time.
    mac(secret, role, c, a).verify_slice(proof).is_ok()
}

async fn send<W: AsyncWrite + Unpin>(wr: &mut W, msg: &Handshake) -> Result<(), RpcError> {
    let body = postcard::to_stdvec(msg).map_err(|e| RpcError::Encode(e.to_string()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    write_handshake(wr, &frame).await
}

/// Writes handshake bytes; the remote closing its end reads as that.
async fn write_handshake<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8]) -> Result<(), RpcError> {
    let res = async {
        wr.write_all(bytes).await?;
        wr.flush().await
    }
    .await;
    res.map_err(|e| RpcError::io_while("writing the handshake", e))
}

/// What a failed handshake read means.
fn read_failed(e: ReadError) -> RpcError {
    match e {
        ReadError::TooLarge { size, limit } => RpcError::Protocol(format!(
            "a handshake frame of {size} bytes was announced, over the limit of {limit} bytes"
        )),
        ReadError::Truncated { .. } => {
            RpcError::Protocol("the peer closed the connection during the handshake".into())
        }
        ReadError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            RpcError::Protocol("the peer closed the connection during the handshake".into())
        }
        ReadError::Io(e) => RpcError::io_while("reading the handshake", e),
        // No budget is set before the handshake ends.
        ReadError::OverBudget { .. } => RpcError::Protocol(e.to_string()),
    }
}

async fn recv<R: AsyncRead + Unpin>(rd: &mut FrameReader<R>) -> Result<Handshake, RpcError> {
    let frame = match rd.next_frame().await {
        Ok(Some(f)) => f,
        Ok(None) => {
            return Err(RpcError::Protocol(
                "the peer closed the connection during the handshake".into(),
            ))
        }
        Err(e) => return Err(read_failed(e)),
    };
    postcard::from_bytes(&frame)
        .map_err(|e| RpcError::Protocol(format!("malformed handshake message: {e}")))
}

fn nonce() -> Result<[u8; NONCE_LEN], RpcError> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| {
        RpcError::io_while(
            "taking randomness from the OS",
            std::io::Error::other(e.to_string()),
        )
    })?;
    Ok(n)
}

/// Runs the handshake on a fresh stream. On success the reader's frame limit
/// is raised to the configured one.
pub(crate) async fn handshake<R, W>(
    rd: &mut FrameReader<R>,
    wr: &mut W,
    config: &PeerConfig,
    role: Role,
) -> Result<Negotiated, RpcError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    handshake_admitting(rd, wr, config, role, &mut || Ok(())).await
}

/// [`handshake`], with a last check for the accepting side: `admit` runs
/// once the dialer has authenticated, just before the verdict; its error is
/// the refusal the dialer gets.
pub(crate) async fn handshake_admitting<R, W>(
    rd: &mut FrameReader<R>,
    wr: &mut W,
    config: &PeerConfig,
    role: Role,
    admit: &mut (dyn FnMut() -> Result<(), RpcError> + Send),
) -> Result<Negotiated, RpcError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let run = run(rd, wr, config, role, admit);
    match tokio::time::timeout(config.handshake_timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(RpcError::HandshakeTimeout(config.handshake_timeout)),
    }
}

async fn run<R, W>(
    rd: &mut FrameReader<R>,
    wr: &mut W,
    config: &PeerConfig,
    role: Role,
    admit: &mut (dyn FnMut() -> Result<(), RpcError> + Send),
) -> Result<Negotiated, RpcError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    rd.set_max_frame(HANDSHAKE_MAX_FRAME);
    let my_nonce = nonce()?;
    let hello = Hello {
        max_frame: config.max_frame,
        max_in_flight: config.max_in_flight,
        auth: config.secret.is_some(),
        nonce: my_nonce,
        name: config.name.clone(),
    };
    let mut preamble = [0u8; 6];
    preamble[..4].copy_from_slice(&MAGIC);
    preamble[4..].copy_from_slice(&VERSION.to_be_bytes());
    write_handshake(wr, &preamble).await?;
    send(wr, &Handshake::Hello(hello)).await?;

    let their_hello = match their_opening(rd).await {
        Ok(hello) => hello,
        Err(e) => {
            // A dialer that got the opening wrong hears why, where it can
            // still read a verdict (it has our preamble and hello already).
            let said = matches!(e, RpcError::Protocol(_) | RpcError::VersionMismatch { .. });
            if said && matches!(role, Role::Acceptor { .. }) {
                let why = match &e {
                    RpcError::VersionMismatch { theirs, .. } => format!(
                        "protocol version {theirs} not supported (this server speaks {VERSION})"
                    ),
                    RpcError::Protocol(m) => m.clone(),
                    other => other.to_string(),
                };
                let verdict = Verdict::Rejected(Rejection::Protocol(why));
                let _ = send(wr, &Handshake::Verdict(verdict)).await;
            }
            return Err(e);
        }
    };

    let secret = config.secret.as_deref();
    let negotiated = |connection_id| Negotiated {
        connection_id,
        remote_name: their_hello.name.clone(),
        remote_max_frame: their_hello.max_frame.max(HANDSHAKE_MAX_FRAME),
        remote_max_in_flight: their_hello.max_in_flight.max(1),
    };

    let result = match role {
        Role::Acceptor {
            connection_id,
            refuse,
        } => {
            let verdict = acceptor_auth(rd, wr, secret, &their_hello, &my_nonce, refuse)
                .await
                .and_then(|()| admit());
            match verdict {
                Ok(()) => {
                    send(wr, &Handshake::Verdict(Verdict::Accepted { connection_id })).await?;
                    Ok(negotiated(connection_id))
                }
                Err(e) => {
                    // Tell the connector why; it may already be gone.
                    let rejection = Rejection::from_error(&e);
                    let _ = send(wr, &Handshake::Verdict(Verdict::Rejected(rejection))).await;
                    Err(e)
                }
            }
        }
        Role::Connector => {
            match (secret, their_hello.auth) {
                (Some(s), true) => {
                    let proof = prove(s, b'C', &my_nonce, &their_hello.nonce);
                    send(wr, &Handshake::Proof(proof)).await?;
                }
                (None, true) => {
                    return Err(RpcError::AuthFailed(
                        "the server requires a shared secret and none is configured".into(),
                    ))
                }
                (Some(_), false) => {
                    return Err(RpcError::AuthFailed(
                        "a shared secret is configured but the server does not authenticate".into(),
                    ))
                }
                (None, false) => {}
            }
            let mut msg = recv(rd).await?;
            let mut proven = false;
            if let (Some(s), Handshake::Proof(p)) = (secret, &msg) {
                if !verify(s, b'S', &my_nonce, &their_hello.nonce, p) {
                    return Err(RpcError::AuthFailed(
                        "the server proved a different shared secret".into(),
                    ));
                }
                proven = true;
                msg = recv(rd).await?;
            }
            match msg {
                Handshake::Verdict(Verdict::Accepted { .. }) if secret.is_some() && !proven => {
                    Err(RpcError::AuthFailed(
                        "the server accepted without proving the shared secret".into(),
                    ))
                }
                Handshake::Verdict(Verdict::Accepted { connection_id }) => {
                    Ok(negotiated(connection_id))
                }
                Handshake::Verdict(Verdict::Rejected(r)) => Err(r.into_error()),
                other => Err(RpcError::Protocol(format!(
                    "expected the server's verdict, got {other:?}"
                ))),
            }
        }
    };
    if result.is_ok() {
        rd.set_max_frame(config.max_frame);
    }
    result
}

/// Refuses a dialer without reading from it: our preamble, hello and a
/// rejected verdict, written in one go. The dialer reads them in order and
/// reports the rejection. For a server that cannot afford to wait (it is out
/// of file descriptors, say).
pub(crate) async fn turn_away<W: AsyncWrite + Unpin>(
    wr: &mut W,
    config: &PeerConfig,
    error: &RpcError,
) -> Result<(), RpcError> {
    let hello = Handshake::Hello(Hello {
        max_frame: config.max_frame,
        max_in_flight: config.max_in_flight,
        auth: config.secret.is_some(),
        nonce: nonce()?,
        name: config.name.clone(),
    });
    let verdict = Handshake::Verdict(Verdict::Rejected(Rejection::from_error(error)));
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_be_bytes());
    for msg in [&hello, &verdict] {
        let body = postcard::to_stdvec(msg).map_err(|e| RpcError::Encode(e.to_string()))?;
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
    }
    write_handshake(wr, &out).await
}

/// Reads the other side's preamble and hello.
async fn their_opening<R: AsyncRead + Unpin>(rd: &mut FrameReader<R>) -> Result<Hello, RpcError> {
    let mut theirs = [0u8; 6];
    rd.read_raw(&mut theirs)
        .await
        .map_err(|e| RpcError::Protocol(format!("no handshake from the peer: {e}")))?;
    if theirs[..4] != MAGIC {
        return Err(RpcError::Protocol(
            "the peer does not speak this protocol (bad magic bytes)".into(),
        ));
    }
    let their_version = u16::from_be_bytes([theirs[4], theirs[5]]);
    if their_version != VERSION {
        return Err(RpcError::VersionMismatch {
            ours: VERSION,
            theirs: their_version,
        });
    }
    match recv(rd).await? {
        Handshake::Hello(h) => Ok(h),
        other => Err(RpcError::Protocol(format!("expected hello, got {other:?}"))),
    }
}

async fn acceptor_auth<R, W>(
    rd: &mut FrameReader<R>,
    wr: &mut W,
    secret: Option<&[u8]>,
    their_hello: &Hello,
    my_nonce: &[u8; NONCE_LEN],
    refuse: Option<RpcError>,
) -> Result<(), RpcError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if let Some(e) = refuse {
        return Err(e);
    }
    match (secret, their_hello.auth) {
        (None, false) => Ok(()),
        (Some(_), false) => Err(RpcError::AuthFailed(
            "this server requires a shared secret and the client has none".into(),
        )),
        (None, true) => Err(RpcError::AuthFailed(
            "the client has a shared secret but this server has none".into(),
        )),
        (Some(s), true) => {
            let proof = match recv(rd).await? {
                Handshake::Proof(p) => p,
                other => {
                    return Err(RpcError::Protocol(format!(
                        "expected an authentication proof, got {other:?}"
                    )))
                }
            };
            if !verify(s, b'C', &their_hello.nonce, my_nonce, &proof) {
                return Err(RpcError::AuthFailed("wrong shared secret".into()));
            }
            let mine = prove(s, b'S', &their_hello.nonce, my_nonce);
            send(wr, &Handshake::Proof(mine)).await
        }
    }
}
