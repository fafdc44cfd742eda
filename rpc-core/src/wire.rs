//! The wire format: the handshake messages and the frame headers.
//!
//! A connection starts with a 6-byte preamble from each side: the magic bytes
//! `RPC\x7f` and the protocol version (u16, big-endian). Then each side sends a
//! [`Handshake::Hello`]; with a shared secret both send a [`Handshake::Proof`];
//! the accepting side ends the handshake with a [`Handshake::Verdict`].
//!
//! After the handshake every frame is a little-endian `u32` length followed by
//! that many bytes: a postcard-encoded [`Header`] and then, for calls,
//! notifications and replies, the postcard-encoded payload up to the end of
//! the frame. Putting the payload after the header (instead of inside it as a
//! byte string) lets a sender encode arguments straight into the frame.

use serde::{Deserialize, Serialize};

use crate::error::RpcError;

/// The magic bytes that open every connection.
///
/// Each side sends them first, followed by [`VERSION`] (big-endian).
///
/// # Examples
///
/// ```
/// use tokio::io::AsyncReadExt;
/// use rpc_core::wire::{MAGIC, VERSION};
/// use rpc_core::{Peer, PeerConfig, Registry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let (a, mut b) = tokio::io::duplex(1024);
/// let _dialing = tokio::spawn(Peer::connect(a, Registry::new(), PeerConfig::default()));
/// let mut preamble = [0u8; 6];
/// b.read_exact(&mut preamble).await?;
/// assert_eq!(preamble[..4], MAGIC);
/// assert_eq!(preamble[4..], VERSION.to_be_bytes());
/// # Ok(())
/// # }
/// ```
pub const MAGIC: [u8; 4] = *b"RPC\x7f";

/// The protocol version this build speaks.
///
/// A peer that announces another version is refused with
/// [`RpcError::VersionMismatch`].
///
/// # Examples
///
/// ```
/// use tokio::io::AsyncWriteExt;
/// use rpc_core::wire::{MAGIC, VERSION};
/// use rpc_core::{Peer, PeerConfig, Registry, RpcError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let (a, mut b) = tokio::io::duplex(1024);
/// let mut preamble = MAGIC.to_vec();
/// preamble.extend_from_slice(&(VERSION + 1).to_be_bytes());
/// b.write_all(&preamble).await?;
/// let err = Peer::connect(a, Registry::new(), PeerConfig::default()).await.unwrap_err();
/// assert_eq!(err, RpcError::VersionMismatch { ours: VERSION, theirs: VERSION + 1 });
/// # Ok(())
/// # }
/// ```
pub const VERSION: u16 = 1;

/// Bytes of the length prefix in front of every frame.
///
/// The prefix is a little-endian `u32`: the length of the rest of the frame.
///
/// # Examples
///
/// ```
/// use rpc_core::wire::{encode_frame, Header, LEN_PREFIX};
///
/// let mut buf = Vec::new();
/// encode_frame(&mut buf, &Header::Ping { id: 7 }, &()).unwrap();
/// let len = u32::from_le_bytes(buf[..LEN_PREFIX].try_into().unwrap());
/// assert_eq!(len as usize, buf.len() - LEN_PREFIX);
/// ```
pub const LEN_PREFIX: usize = 4;

/// The largest handshake frame accepted before authentication.
///
/// A larger one ends the handshake with [`RpcError::Protocol`]. A frame
/// limit announced by the remote is never taken as smaller than this.
///
/// # Examples
///
/// ```
/// use tokio::io::AsyncWriteExt;
/// use rpc_core::wire::{HANDSHAKE_MAX_FRAME, MAGIC, VERSION};
/// use rpc_core::{Peer, PeerConfig, Registry, RpcError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let (a, mut b) = tokio::io::duplex(1024);
/// let mut bytes = MAGIC.to_vec();
/// bytes.extend_from_slice(&VERSION.to_be_bytes());
/// bytes.extend_from_slice(&(HANDSHAKE_MAX_FRAME + 1).to_le_bytes()); // a huge hello
/// b.write_all(&bytes).await?;
/// let err = Peer::connect(a, Registry::new(), PeerConfig::default()).await.unwrap_err();
/// assert!(matches!(err, RpcError::Protocol(_)));
/// # Ok(())
/// # }
/// ```
pub const HANDSHAKE_MAX_FRAME: u32 = 1024;

/// Length of the random nonces and of the HMAC-SHA256 proofs.
///
/// # Examples
///
/// ```
/// use rpc_core::wire::{Handshake, NONCE_LEN};
///
/// assert_eq!(NONCE_LEN, 256 / 8); // the size of one SHA-256 output
/// let proof = Handshake::Proof([0u8; NONCE_LEN]);
/// assert!(matches!(proof, Handshake::Proof(p) if p.len() == 32));
/// ```
pub const NONCE_LEN: usize = 32;

/// A handshake message.
///
/// Each is sent postcard-encoded, in one length-prefixed frame of at most
/// [`HANDSHAKE_MAX_FRAME`] bytes.
///
/// # Examples
///
/// ```
/// use rpc_core::wire::{Handshake, Verdict};
///
/// let msg = Handshake::Verdict(Verdict::Accepted { connection_id: 7 });
/// let bytes = postcard::to_stdvec(&msg).unwrap();
/// assert_eq!(postcard::from_bytes::<Handshake>(&bytes).unwrap(), msg);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    /// Sent by both sides first.
    Hello(Hello),
    /// HMAC-SHA256 over both nonces, proving knowledge of the shared secret.
    Proof([u8; NONCE_LEN]),
    /// The accepting side's decision; ends the handshake.
    Verdict(Verdict),
}

/// What each side announces about itself.
///
/// # Examples
///
/// ```
/// use rpc_core::wire::{Handshake, Hello, HANDSHAKE_MAX_FRAME, NONCE_LEN};
///
/// let hello = Hello {
///     max_frame: 1 << 20,
///     max_in_flight: 64,
///     auth: false,
///     nonce: [7; NONCE_LEN],
///     name: Some("worker-7".into()),
/// };
/// let bytes = postcard::to_stdvec(&Handshake::Hello(hello)).unwrap();
/// assert!(bytes.len() <= HANDSHAKE_MAX_FRAME as usize);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The largest frame this side accepts.
    pub max_frame: u32,
    /// How many of the other side's calls this side runs at once.
    pub max_in_flight: u32,
    /// Whether this side requires shared-secret authentication.
    pub auth: bool,
    /// A fresh random nonce for the challenge-response.
    pub nonce: [u8; NONCE_LEN],
    /// An optional identifier chosen by the application.
    pub name: Option<String>,
}

/// The accepting side's answer.
///
/// # Examples
///
/// ```
/// use rpc_core::wire::{Handshake, Verdict};
/// use rpc_core::RpcError;
///
/// let no = Handshake::Verdict(Verdict::Rejected(RpcError::Refused("full".into())));
/// let bytes = postcard::to_stdvec(&no).unwrap();
/// let back: Handshake = postcard::from_bytes(&bytes).unwrap();
/// let Handshake::Verdict(Verdict::Rejected(err)) = back else { unreachable!() };
/// assert_eq!(err, RpcError::Refused("full".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The connection is open, with this id.
    Accepted {
        /// The connection id assigned by the accepting side.
        connection_id: u64,
    },
    /// The connection is refused.
    Rejected(RpcError),
}

/// The header of a frame after the handshake.
///
/// # Examples
///
/// ```
/// use rpc_core::wire::{decode_header, encode_frame, Header, LEN_PREFIX};
///
/// let call = Header::Call { id: 1, target: "Calc.add", timeout_ms: 0 };
/// let mut buf = Vec::new();
/// encode_frame(&mut buf, &call, &(2i64, 3i64)).unwrap();
/// let (header, args) = decode_header(&buf[LEN_PREFIX..]).unwrap();
/// assert_eq!(header, call);
/// assert_eq!(postcard::from_bytes::<(i64, i64)>(args).unwrap(), (2, 3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Header<'a> {
    /// A call that wants a reply; the arguments follow.
    Call {
        /// The caller's id for the call, unique among its calls in flight.
        id: u64,
        /// `Object.method`.
        #[serde(borrow)]
        target: &'a str,
        /// Milliseconds the caller will wait; 0 for no timeout.
        timeout_ms: u64,
    },
    /// A one-way call; the arguments follow.
    Notify {
        /// `Object.method`.
        #[serde(borrow)]
        target: &'a str,
    },
    /// A successful reply; the encoded value follows.
    Reply {
        /// The id of the call being answered (an id chosen by the receiver).
        id: u64,
    },
    /// A failed reply; an encoded [`RpcError`] follows.
    Error {
        /// The id of the call being answered.
        id: u64,
    },
    /// The caller gave up on call `id`; the handler should stop.
    Cancel {
        /// The id of the abandoned call.
        id: u64,
    },
    /// A liveness probe; answered by a pong with the same id.
    Ping {
        /// Chosen by the sender.
        id: u64,
    },
    /// The answer to a ping.
    Pong {
        /// The ping's id.
        id: u64,
    },
    /// The sender is closing the connection.
    Goodbye,
    /// The sender is closing the connection because it is shutting down
    /// (the receiver reports [`DisconnectReason::Shutdown`](crate::DisconnectReason::Shutdown)).
    Shutdown,
}

/// Splits a frame body into its header and payload.
///
/// # Errors
///
/// [`RpcError::Protocol`] when the bytes do not start with a valid header.
///
/// # Examples
///
/// ```
/// use rpc_core::wire::{decode_header, encode_frame, Header, LEN_PREFIX};
///
/// let mut buf = Vec::new();
/// encode_frame(&mut buf, &Header::Notify { target: "Log.write" }, &("hi",)).unwrap();
/// let (h, payload) = decode_header(&buf[LEN_PREFIX..]).unwrap();
/// assert_eq!(h, Header::Notify { target: "Log.write" });
/// assert_eq!(postcard::from_bytes::<(String,)>(payload).unwrap().0, "hi");
/// ```
pub fn decode_header(body: &[u8]) -> Result<(Header<'_>, &[u8]), RpcError> {
    postcard::take_from_bytes::<Header<'_>>(body)
        .map_err(|e| RpcError::Protocol(format!("malformed frame header: {e}")))
}

/// Appends one complete frame (length prefix, header, payload) to `buf`.
///
/// On error `buf` is left as it was.
///
/// # Errors
///
/// [`RpcError::Encode`] when the payload cannot be encoded,
/// [`RpcError::TooLarge`] when the frame would exceed the 4 GiB a length
/// prefix can announce.
///
/// # Examples
///
/// ```
/// use rpc_core::wire::{encode_frame, Header};
/// use rpc_core::RpcError;
///
/// struct Unencodable;
/// impl serde::Serialize for Unencodable {
///     fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
///         Err(serde::ser::Error::custom("not today"))
///     }
/// }
///
/// let mut buf = Vec::new();
/// encode_frame(&mut buf, &Header::Notify { target: "Log.write" }, &("hi",)).unwrap();
/// let before = buf.clone();
/// let err = encode_frame(&mut buf, &Header::Notify { target: "Log.write" }, &Unencodable);
/// assert!(matches!(err, Err(RpcError::Encode(_))));
/// assert_eq!(buf, before);
/// ```
pub fn encode_frame<P: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    header: &Header<'_>,
    payload: &P,
) -> Result<(), RpcError> {
    encode_frame_within(buf, header, payload, u32::MAX as usize)
}

/// [`encode_frame`] for a frame of at most `limit` bytes (length prefix not
/// counted). Encoding stops as soon as the limit is passed, so an oversized
/// message is refused without first being encoded whole.
pub(crate) fn encode_frame_within<P: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    header: &Header<'_>,
    payload: &P,
    limit: usize,
) -> Result<(), RpcError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; LEN_PREFIX]);
    let end = (start + LEN_PREFIX).saturating_add(limit);
    // Where the frame would have ended when encoding hit the limit (0: it
    // did not), for an honest size in the error.
    let over = std::cell::Cell::new(0usize);
    let res = postcard::serialize_with_flavor(header, VecTail::new(buf, end, &over))
        .and_then(|_| postcard::serialize_with_flavor(payload, VecTail::new(buf, end, &over)));
    if let Err(e) = res {
        buf.truncate(start);
        return Err(if over.get() > 0 {
            RpcError::TooLarge {
                size: (over.get() - start - LEN_PREFIX) as u64,
                limit: limit as u64,
            }
        } else {
            RpcError::Encode(e.to_string())
        });
    }
    let len = buf.len() - start - LEN_PREFIX;
    // `limit` is at most `u32::MAX`, so this cannot fail.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    buf[start..start + LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Appends a frame with a header and no payload.
pub(crate) fn encode_bare(buf: &mut Vec<u8>, header: &Header<'_>) {
    // A header alone always encodes: no user types are involved.
    let _ = encode_frame(buf, header, &());
}

/// A postcard flavor that appends to a borrowed `Vec` (so a frame is encoded
/// in place, behind the bytes already queued), up to a limit.
struct VecTail<'a> {
    buf: &'a mut Vec<u8>,
    end: usize,
    over: &'a std::cell::Cell<usize>,
}

impl<'a> VecTail<'a> {
    fn new(buf: &'a mut Vec<u8>, end: usize, over: &'a std::cell::Cell<usize>) -> Self {
        VecTail { buf, end, over }
    }

    /// Refuses `more` bytes that would pass the limit.
    #[cold]
    fn full(&self, more: usize) -> postcard::Result<()> {
        self.over.set(self.buf.len() + more);
        Err(postcard::Error::SerializeBufferFull)
    }
}

impl postcard::ser_flavors::Flavor for VecTail<'_> {
    type Output = ();

    // Inlined so that encoding a `Vec<u8>`, which serde does byte by byte,
    // compiles to plain pushes in the caller's crate instead of a call per byte.
    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        if self.buf.len() >= self.end {
            return self.full(1);
        }
        self.buf.push(data);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() > self.end - self.buf.len() {
            return self.full(data.len());
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}
