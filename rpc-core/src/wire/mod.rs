//! The wire format: the handshake messages, the frame headers and the
//! encoding of frames. Crate-private; `docs/wire.md` is the description for
//! other implementations, and the golden-byte tests below pin every byte of
//! it. Changing what they pin means bumping [`VERSION`] on purpose.
//!
//! Owns: byte layouts. Never does I/O and never decides anything about a
//! connection.
//!
//! A connection starts with a 6-byte preamble from each side: the magic bytes
//! `RPC\x7f` and the protocol version (u16, big-endian). Then each side sends a
//! [`Handshake::Hello`], carrying its SPAKE2 message when it has a shared
//! secret; with a secret the dialer then sends a [`Handshake::Confirm`]; the
//! accepting side ends the handshake with a [`Handshake::Verdict`], whose
//! acceptance carries the acceptor's confirmation. `docs/wire.md` gives the
//! key schedule.
//!
//! After the handshake every frame is a little-endian `u32` length followed by
//! that many bytes: a postcard-encoded [`Header`] and then, for calls,
//! notifications and replies, the postcard-encoded payload up to the end of
//! the frame. Putting the payload after the header (instead of inside it as a
//! byte string) lets a sender encode arguments straight into the frame.

use serde::{Deserialize, Serialize};

use crate::error::{RemoteError, RpcError};

/// The magic bytes that open every connection.
///
/// Each side sends them first, followed by [`VERSION`] (big-endian).
pub const MAGIC: [u8; 4] = *b"RPC\x7f";

/// The protocol version this build speaks.
///
/// A peer that announces another version is refused with
/// [`RpcError::VersionMismatch`].
pub const VERSION: u16 = 5;

/// Bytes of the length prefix in front of every frame.
///
/// The prefix is a little-endian `u32`: the length of the rest of the frame.
pub const LEN_PREFIX: usize = 4;

/// The largest handshake frame accepted before authentication.
///
/// A larger one ends the handshake with [`RpcError::Protocol`]. A frame
/// limit announced by the remote is never taken as smaller than this.
pub const HANDSHAKE_MAX_FRAME: u32 = 1024;

/// Length of a key confirmation (an HMAC-SHA256 tag).
pub const CONFIRM_LEN: usize = 32;

/// Length of a SPAKE2 message: a side byte and a compressed Ed25519 point.
pub const PAKE_MESSAGE_LEN: usize = 33;

/// A handshake message.
///
/// Each is sent postcard-encoded, in one length-prefixed frame of at most
/// [`HANDSHAKE_MAX_FRAME`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    /// Sent by both sides first.
    Hello(Hello),
    /// The dialer's key confirmation: HMAC-SHA256 under the SPAKE2 key over
    /// the transcript of both hellos. Sent only with a shared secret.
    Confirm([u8; CONFIRM_LEN]),
    /// The accepting side's decision; ends the handshake.
    Verdict(Verdict),
}

/// What each side announces about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The largest frame this side accepts.
    pub max_frame: u32,
    /// How many of the other side's calls this side runs at once.
    pub max_in_flight: u32,
    /// This side's SPAKE2 message ([`PAKE_MESSAGE_LEN`] bytes) when it has
    /// a shared secret, and so requires the other side to prove it.
    pub pake: Option<Vec<u8>>,
    /// An optional identifier chosen by the application.
    pub name: Option<String>,
}

/// The accepting side's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The connection is open, with this id.
    Accepted {
        /// The connection id assigned by the accepting side.
        connection_id: u64,
        /// With a shared secret, the acceptor's key confirmation: HMAC-SHA256
        /// under the SPAKE2 key over the transcript and `connection_id`.
        confirm: Option<[u8; CONFIRM_LEN]>,
    },
    /// The connection is refused.
    Rejected(Rejection),
}

/// Why the accepting side refused a connection, in its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// Shared-secret authentication failed; the text says how.
    AuthFailed(String),
    /// The server refused the connection (for example: too many connections).
    Refused(String),
    /// The dialer broke the handshake protocol; the text says how.
    Protocol(String),
}

impl Rejection {
    /// What the refused dialer reports.
    pub(crate) fn into_error(self) -> RpcError {
        match self {
            Rejection::AuthFailed(m) => RpcError::AuthFailed(m),
            Rejection::Refused(m) => RpcError::Refused(m),
            Rejection::Protocol(m) => RpcError::Protocol(format!("the server says: {m}")),
        }
    }

    /// How the accepting side tells the dialer about `error`.
    pub(crate) fn from_error(error: &RpcError) -> Rejection {
        match error {
            RpcError::AuthFailed(m) => Rejection::AuthFailed(m.clone()),
            RpcError::Refused(m) => Rejection::Refused(m.clone()),
            RpcError::Protocol(m) => Rejection::Protocol(m.clone()),
            other => Rejection::Refused(other.to_string()),
        }
    }
}

/// The header of a frame after the handshake.
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
    /// A failed reply; an encoded [`RemoteError`] follows.
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
    /// One item of a stream of call `id`; the encoded item follows. Sent
    /// only within the credit the receiver granted.
    Item {
        /// The call the stream belongs to (an id chosen by the caller).
        id: u64,
        /// Which of the call's streams.
        way: Way,
    },
    /// The end of a stream of call `id`; an encoded
    /// `Option<RemoteError>` follows: `None` for a clean end, or why the
    /// sender gave up.
    End {
        /// The call the stream belongs to.
        id: u64,
        /// Which of the call's streams.
        way: Way,
    },
    /// The receiver of a stream grants `bytes` more of credit: the sender
    /// may send items while its credit is above zero, and each item's frame
    /// (length prefix included) takes its size off.
    Credit {
        /// The call the stream belongs to.
        id: u64,
        /// Which of the call's streams.
        way: Way,
        /// More bytes the sender may send.
        bytes: u32,
    },
    /// The callee no longer reads the caller's input stream of call `id`
    /// (the call itself goes on).
    Stop {
        /// The call whose input stream is no longer read.
        id: u64,
    },
    /// The object handles that the sender's next frame (a call, a
    /// notification or a reply) carries; a postcard `Vec<&str>` of their
    /// names follows. The receiver holds each until it is done with that
    /// frame, and releases at once any the frame's payload did not claim.
    Handles,
    /// The sender holds none of these handles any more: the owner may drop
    /// the objects; a postcard `Vec<&str>` of names follows.
    Release,
}

/// Which of a call's two streams a stream frame is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Way {
    /// From the callee to the caller: the stream the call returns.
    Down,
    /// From the caller to the callee: the stream the call takes.
    Up,
}

/// The credit every stream from callee to caller ([`Way::Down`]) starts
/// with, before any `Credit` frame: the callee may send this many bytes as
/// soon as it opens the stream. Input streams ([`Way::Up`]) start with none
/// and wait for the callee's first grant.
pub const INITIAL_CREDIT: u32 = 64 * 1024;

/// The number of [`Header`] kinds; a first byte at or above it is an unknown kind.
const HEADER_KINDS: u32 = 15;

/// Splits a frame body into its header and payload.
///
/// # Errors
///
/// A sentence naming what is wrong, for a protocol error, when the bytes do
/// not start with a valid header.
pub fn decode_header(body: &[u8]) -> Result<(Header<'_>, &[u8]), String> {
    postcard::take_from_bytes::<Header<'_>>(body).map_err(|e| {
        let why = match postcard::take_from_bytes::<u32>(body) {
            Ok((kind, _)) if kind >= HEADER_KINDS => format!("unknown frame kind {kind}"),
            _ => e.to_string(),
        };
        format!("frame of {} bytes could not be decoded: {why}", body.len())
    })
}

/// A postcard error, for a message: what an object handle's encoding or
/// decoding said (postcard keeps no text of its own for such errors), or
/// the error and its most likely cause.
pub(crate) fn describe(e: &postcard::Error) -> String {
    if matches!(
        e,
        postcard::Error::SerdeSerCustom | postcard::Error::SerdeDeCustom
    ) {
        if let Some(why) = crate::conn::handles::take_error() {
            return why;
        }
    }
    format!("{e}{}", postcard_hint(e))
}

/// What most likely caused a postcard error, for the message: postcard is
/// not self-describing, so serde attributes that need a format naming its
/// fields fail, and only at run time.
fn postcard_hint(e: &postcard::Error) -> &'static str {
    use postcard::Error as E;
    match e {
        E::WontImplement | E::SerializeSeqLengthUnknown => {
            " (postcard does not name fields: `#[serde(flatten)]`, untagged enums and \
             other attributes that need a self-describing format cannot be used in \
             exposed signatures)"
        }
        E::DeserializeBadOption
        | E::DeserializeBadBool
        | E::DeserializeBadEnum
        | E::DeserializeBadChar
        | E::DeserializeBadUtf8
        | E::DeserializeBadVarint
        | E::DeserializeUnexpectedEnd => {
            " (if both sides use the same types, the likely cause is a serde attribute \
             that needs a self-describing format, such as `skip_serializing_if`, \
             `flatten` or an untagged enum)"
        }
        _ => "",
    }
}

/// Decodes the payload of an `Error` frame.
pub(crate) fn decode_remote_error(payload: &[u8]) -> RpcError {
    match postcard::from_bytes::<RemoteError>(payload) {
        Ok(e) => RpcError::Remote(e),
        Err(e) => RpcError::Protocol(format!(
            "error reply of {} bytes could not be decoded: {e}",
            payload.len()
        )),
    }
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
pub(crate) fn encode_frame_within<P: Payload + ?Sized>(
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
        .and_then(|_| payload.encode(VecTail::new(buf, end, &over)));
    if let Err(e) = res {
        buf.truncate(start);
        return Err(if over.get() > 0 {
            RpcError::TooLarge {
                size: (over.get() - start - LEN_PREFIX) as u64,
                limit: limit as u64,
            }
        } else {
            RpcError::Encode(describe(&e))
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

/// Bytes that are already postcard-encoded, written as they are (a tuple of
/// bytes: postcard puts no length in front of a tuple).
pub(crate) struct Raw<'a>(pub(crate) &'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(self.0.len())?;
        for b in self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

/// A value that can be a frame's payload. Object-safe, so that an answer can
/// pass through the `dyn Respond` seam between dispatch and the connection
/// and still be encoded in place.
pub(crate) trait Payload {
    /// Appends the value's postcard encoding.
    fn encode(&self, out: VecTail<'_>) -> postcard::Result<()>;
}

impl<T: Serialize + ?Sized> Payload for T {
    #[inline]
    fn encode(&self, out: VecTail<'_>) -> postcard::Result<()> {
        postcard::serialize_with_flavor(self, out)
    }
}

/// A postcard flavor that appends to a borrowed `Vec` (so a frame is encoded
/// in place, behind the bytes already queued), up to a limit.
pub(crate) struct VecTail<'a> {
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

#[cfg(test)]
mod golden;
