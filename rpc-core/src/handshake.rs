//! The handshake: preamble, hello, an optional SPAKE2 key exchange with
//! mutual key confirmation, verdict. Nothing but handshake frames, each
//! capped at [`HANDSHAKE_MAX_FRAME`] bytes, is read before it succeeds.
//!
//! With a shared secret each hello carries a SPAKE2 message. Both sides
//! derive a key from the secret and the two messages; the dialer proves it
//! first, over the transcript of both hellos, and the acceptor answers with
//! its own proof, over the transcript and the connection id, inside its
//! verdict. SPAKE2 is why a captured or relayed handshake allows one online
//! guess at the secret and no offline guessing: `docs/security.md` gives the
//! argument, `docs/wire.md` the key schedule.
//!
//! Owns: the order of the handshake messages and the proofs. Never reads a
//! frame that is not a handshake message, and never decides who may connect
//! (the `admit` hook and the `refuse` verdict come from the caller).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::codec::{FrameReader, ReadError};
use crate::config::PeerConfig;
use crate::error::RpcError;
use crate::wire::{
    Handshake, Hello, Rejection, Verdict, CONFIRM_LEN, HANDSHAKE_MAX_FRAME, MAGIC, VERSION,
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

/// SPAKE2's identities for the two roles; fixed, since the hellos (names and
/// all) are bound in by the key confirmation instead.
const ID_CONNECTOR: &[u8] = b"rpc-core connector";
const ID_ACCEPTOR: &[u8] = b"rpc-core acceptor";
const CONFIRM_CONNECTOR: &[u8] = b"rpc-core v3 confirm connector";
const CONFIRM_ACCEPTOR: &[u8] = b"rpc-core v3 confirm acceptor";

/// This side's half of the password-authenticated key exchange.
struct Pake {
    state: Spake2<Ed25519Group>,
    message: Vec<u8>,
}

impl Pake {
    fn start(secret: &[u8], role: &Role) -> Pake {
        let (password, a, b) = (
            Password::new(secret),
            Identity::new(ID_CONNECTOR),
            Identity::new(ID_ACCEPTOR),
        );
        let (state, message) = match role {
            Role::Connector => Spake2::start_a(&password, &a, &b),
            Role::Acceptor { .. } => Spake2::start_b(&password, &a, &b),
        };
        Pake { state, message }
    }

    /// The shared key, from the other side's message. A wrong secret on
    /// either side gives unrelated keys; only the confirmations tell.
    fn finish(self, theirs: &[u8]) -> Result<Vec<u8>, RpcError> {
        self.state.finish(theirs).map_err(|e| {
            RpcError::Protocol(format!("malformed key-exchange message in the hello: {e}"))
        })
    }
}

/// The bytes both sides hash into the key confirmations: each side's
/// preamble and hello frame exactly as sent, the dialer's first.
struct Transcript {
    connector_hello: Vec<u8>,
    acceptor_hello: Vec<u8>,
}

impl Transcript {
    fn new(role: &Role, mine: Vec<u8>, theirs: Vec<u8>) -> Transcript {
        let (connector_hello, acceptor_hello) = match role {
            Role::Connector => (mine, theirs),
            Role::Acceptor { .. } => (theirs, mine),
        };
        Transcript {
            connector_hello,
            acceptor_hello,
        }
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for hello in [&self.connector_hello, &self.acceptor_hello] {
            h.update(MAGIC);
            h.update(VERSION.to_be_bytes());
            h.update(hello);
        }
        h.finalize().into()
    }

    /// The confirmation one role sends: HMAC-SHA256 keyed with the SPAKE2
    /// key, over a label naming the role, the transcript digest and (for the
    /// acceptor) the connection id its verdict assigns.
    fn confirm(&self, key: &[u8], label: &[u8], connection_id: Option<u64>) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("hmac takes any key length");
        m.update(label);
        m.update(&self.digest());
        if let Some(id) = connection_id {
            m.update(&id.to_le_bytes());
        }
        m
    }

    fn prove(&self, key: &[u8], label: &[u8], id: Option<u64>) -> [u8; CONFIRM_LEN] {
        self.confirm(key, label, id).finalize().into_bytes().into()
    }

    /// Checks a confirmation in constant time.
    fn verify(&self, key: &[u8], label: &[u8], id: Option<u64>, tag: &[u8]) -> bool {
        self.confirm(key, label, id).verify_slice(tag).is_ok()
    }
}

/// Encodes a handshake message as one length-prefixed frame.
fn frame(msg: &Handshake) -> Result<Vec<u8>, RpcError> {
    let body = postcard::to_stdvec(msg).map_err(|e| RpcError::Encode(e.to_string()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

async fn send<W: AsyncWrite + Unpin>(wr: &mut W, msg: &Handshake) -> Result<(), RpcError> {
    write_handshake(wr, &frame(msg)?).await
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
    Ok(recv_framed(rd).await?.0)
}

/// The next handshake message, with its frame as sent (length prefix and
/// all) for the transcript.
async fn recv_framed<R: AsyncRead + Unpin>(
    rd: &mut FrameReader<R>,
) -> Result<(Handshake, Vec<u8>), RpcError> {
    let body = match rd.next_frame().await {
        Ok(Some(f)) => f,
        Ok(None) => {
            return Err(RpcError::Protocol(
                "the peer closed the connection during the handshake".into(),
            ))
        }
        Err(e) => return Err(read_failed(e)),
    };
    let msg = postcard::from_bytes(&body)
        .map_err(|e| RpcError::Protocol(format!("malformed handshake message: {e}")))?;
    let mut framed = Vec::with_capacity(4 + body.len());
    framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
    framed.extend_from_slice(&body);
    Ok((msg, framed))
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
    let pake = config.secret.as_deref().map(|s| Pake::start(s, &role));
    let my_hello = frame(&Handshake::Hello(hello(config, pake.as_ref())))?;
    let mut opening = preamble().to_vec();
    opening.extend_from_slice(&my_hello);
    write_handshake(wr, &opening).await?;

    let (their_hello, their_frame) = match their_opening(rd).await {
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
    let transcript = Transcript::new(&role, my_hello, their_frame);
    let negotiated = |connection_id| Negotiated {
        connection_id,
        remote_name: their_hello.name.clone(),
        remote_max_frame: their_hello.max_frame.max(HANDSHAKE_MAX_FRAME),
        remote_max_in_flight: their_hello.max_in_flight.max(1),
    };
    let their_pake = their_hello.pake.as_deref();

    let result = match role {
        Role::Acceptor {
            connection_id,
            refuse,
        } => {
            let key = match refuse {
                Some(e) => Err(e),
                None => acceptor_auth(rd, pake, their_pake, &transcript).await,
            };
            match key.and_then(|key| admit().map(|()| key)) {
                Ok(key) => {
                    let confirm =
                        key.map(|k| transcript.prove(&k, CONFIRM_ACCEPTOR, Some(connection_id)));
                    let verdict = Verdict::Accepted {
                        connection_id,
                        confirm,
                    };
                    send(wr, &Handshake::Verdict(verdict)).await?;
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
            let key = match (pake, their_pake) {
                (Some(pake), Some(theirs)) => {
                    let key = pake.finish(theirs)?;
                    let confirm = transcript.prove(&key, CONFIRM_CONNECTOR, None);
                    send(wr, &Handshake::Confirm(confirm)).await?;
                    Some(key)
                }
                (None, Some(_)) => {
                    return Err(RpcError::AuthFailed(
                        "the server requires a shared secret and none is configured".into(),
                    ))
                }
                (Some(_), None) => {
                    return Err(RpcError::AuthFailed(
                        "a shared secret is configured but the server does not authenticate".into(),
                    ))
                }
                (None, None) => None,
            };
            match (recv(rd).await?, key) {
                (
                    Handshake::Verdict(Verdict::Accepted {
                        connection_id,
                        confirm,
                    }),
                    key,
                ) => match (key, confirm) {
                    (None, _) => Ok(negotiated(connection_id)),
                    (Some(k), Some(tag))
                        if transcript.verify(&k, CONFIRM_ACCEPTOR, Some(connection_id), &tag) =>
                    {
                        Ok(negotiated(connection_id))
                    }
                    (Some(_), Some(_)) => Err(RpcError::AuthFailed(
                        "the server proved a different shared secret, or the handshake was \
                             altered on the way"
                            .into(),
                    )),
                    (Some(_), None) => Err(RpcError::AuthFailed(
                        "the server accepted without proving the shared secret".into(),
                    )),
                },
                (Handshake::Verdict(Verdict::Rejected(r)), _) => Err(r.into_error()),
                (other, _) => Err(RpcError::Protocol(format!(
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

fn preamble() -> [u8; 6] {
    let mut p = [0u8; 6];
    p[..4].copy_from_slice(&MAGIC);
    p[4..].copy_from_slice(&VERSION.to_be_bytes());
    p
}

fn hello(config: &PeerConfig, pake: Option<&Pake>) -> Hello {
    Hello {
        max_frame: config.max_frame,
        max_in_flight: config.max_in_flight,
        pake: pake.map(|p| p.message.clone()),
        name: config.name.clone(),
    }
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
    // With a secret the hello carries a key-exchange message as usual, so a
    // dialer with the secret goes on to read the verdict.
    let role = Role::Acceptor {
        connection_id: 0,
        refuse: None,
    };
    let pake = config.secret.as_deref().map(|s| Pake::start(s, &role));
    let verdict = Handshake::Verdict(Verdict::Rejected(Rejection::from_error(error)));
    let mut out = preamble().to_vec();
    out.extend_from_slice(&frame(&Handshake::Hello(hello(config, pake.as_ref())))?);
    out.extend_from_slice(&frame(&verdict)?);
    write_handshake(wr, &out).await
}

/// Reads the other side's preamble and hello; gives the hello's frame too.
async fn their_opening<R: AsyncRead + Unpin>(
    rd: &mut FrameReader<R>,
) -> Result<(Hello, Vec<u8>), RpcError> {
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
    match recv_framed(rd).await? {
        (Handshake::Hello(h), framed) => Ok((h, framed)),
        (other, _) => Err(RpcError::Protocol(format!("expected hello, got {other:?}"))),
    }
}

/// The accepting side's check of the dialer: its key exchange and its
/// confirmation. Gives the shared key when there is a secret.
async fn acceptor_auth<R: AsyncRead + Unpin>(
    rd: &mut FrameReader<R>,
    pake: Option<Pake>,
    their_pake: Option<&[u8]>,
    transcript: &Transcript,
) -> Result<Option<Vec<u8>>, RpcError> {
    let (pake, theirs) = match (pake, their_pake) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(RpcError::AuthFailed(
                "this server requires a shared secret and the client has none".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(RpcError::AuthFailed(
                "the client has a shared secret but this server has none".into(),
            ))
        }
        (Some(p), Some(t)) => (p, t),
    };
    let key = pake.finish(theirs)?;
    let tag = match recv(rd).await? {
        Handshake::Confirm(tag) => tag,
        other => {
            return Err(RpcError::Protocol(format!(
                "expected the key confirmation, got {other:?}"
            )))
        }
    };
    if !transcript.verify(&key, CONFIRM_CONNECTOR, None, &tag) {
        return Err(RpcError::AuthFailed(
            "wrong shared secret, or the handshake was altered on the way".into(),
        ));
    }
    Ok(Some(key))
}
