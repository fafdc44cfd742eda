//! Errors, one type per trust boundary.
//!
//! - [`RpcError`] is what a local caller sees: its own conclusions (the
//!   connection closed, its deadline passed, an address did not parse, ...)
//!   and, wrapped in [`RpcError::Remote`], what the callee said.
//! - [`RemoteError`] is everything an `Error` frame may carry: the callee's
//!   verdicts on one call, and nothing else. A remote can therefore never make
//!   a live connection look closed, or this side's deadline look passed.
//! - [`DisconnectReason`] says why a connection ended.
//!
//! Application errors are not here on purpose: a handler that returns
//! `Result<T, E>` sends `E` to the caller as a value, and the caller gets it
//! back as `E` inside the `Ok` of the outer `Result<_, RpcError>`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A failure of the RPC machinery, as this side sees it; as opposed to an
/// application error, which arrives as a value.
///
/// Every remote call returns `Result<R, RpcError>`. What the remote side
/// decided about the call (unknown method, bad arguments, a panic in the
/// handler, ...) arrives as [`RpcError::Remote`]; every other variant is a
/// conclusion this side drew itself.
///
/// # Examples
///
/// ```
/// use rpc_core::{RemoteError, RpcError};
///
/// let e = RpcError::Remote(RemoteError::UnknownMethod { object: "Calc".into(), method: "mul".into() });
/// assert_eq!(e.to_string(), "unknown method `mul` on object `Calc`");
/// assert!(!e.is_connection_error());
/// assert!(matches!(e.remote(), Some(RemoteError::UnknownMethod { .. })));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RpcError {
    /// The connection closed before the reply arrived, or was already closed.
    ConnectionClosed(DisconnectReason),
    /// The peer is not connected right now (a reconnecting client between
    /// connections). Calls fail fast instead of waiting; nothing is retried.
    NotConnected,
    /// This side's deadline for the call passed (the caller gave up). When
    /// the callee gave up at the deadline it was sent, the error is
    /// [`RemoteError::DeadlineExceeded`] instead.
    Timeout,
    /// Dialing or the handshake took longer than
    /// [`PeerConfig::handshake_timeout`](crate::PeerConfig::handshake_timeout).
    HandshakeTimeout(Duration),
    /// The remote side's verdict on this call.
    Remote(RemoteError),
    /// The reply could not be decoded as the type the caller expected.
    BadReply(String),
    /// A message exceeded the frame limit and was not sent (or not read).
    TooLarge {
        /// Size of the frame in bytes, as far as it is known: a message
        /// refused before sending is not encoded whole, so for it this is
        /// only a lower bound.
        size: u64,
        /// The limit it exceeded.
        limit: u64,
    },
    /// Shared-secret authentication failed (wrong or missing secret), as
    /// found by this side or as the remote's verdict said.
    AuthFailed(String),
    /// The server refused the connection (for example: too many connections).
    Refused(String),
    /// The two peers speak different protocol versions.
    VersionMismatch {
        /// Our protocol version.
        ours: u16,
        /// The version the remote announced.
        theirs: u16,
    },
    /// The peer broke the protocol (malformed frame, bad handshake, ...).
    Protocol(String),
    /// An argument could not be encoded.
    Encode(String),
    /// An I/O error on the underlying stream or address.
    Io(IoError),
    /// An address could not be parsed or resolved; the text names the
    /// accepted forms.
    BadAddress(String),
    /// The connection to the backend a call was sent to was lost before
    /// the reply came: the call may or may not have run there. A balanced
    /// caller reports this instead of repeating a call that is not marked
    /// `#[expose(idempotent)]`.
    Interrupted(DisconnectReason),
}

impl RpcError {
    /// True when the error means the connection is gone (closed, not
    /// connected, I/O), rather than this one call failing.
    ///
    /// Nothing the remote sends in reply to a call can make this true.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{DisconnectReason, RemoteError, RpcError};
    /// assert!(RpcError::ConnectionClosed(DisconnectReason::ClosedByPeer).is_connection_error());
    /// assert!(!RpcError::Timeout.is_connection_error());
    /// assert!(!RpcError::Remote(RemoteError::ShuttingDown).is_connection_error());
    /// ```
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            RpcError::ConnectionClosed(_)
                | RpcError::NotConnected
                | RpcError::Io(_)
                | RpcError::Interrupted(_)
        )
    }

    /// The remote's verdict, when this error is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{RemoteError, RpcError};
    /// let e = RpcError::Remote(RemoteError::Busy { limit: 8 });
    /// assert_eq!(e.remote(), Some(&RemoteError::Busy { limit: 8 }));
    /// assert_eq!(RpcError::Timeout.remote(), None);
    /// ```
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            RpcError::Remote(e) => Some(e),
            _ => None,
        }
    }

    /// An I/O failure while doing `context` (for example "connecting to
    /// tcp://127.0.0.1:9"). A reset or broken pipe is reported as the remote
    /// closing the connection.
    pub(crate) fn io_while(context: impl Into<String>, e: std::io::Error) -> Self {
        match DisconnectReason::from_io(&e) {
            DisconnectReason::ClosedByPeer => {
                RpcError::ConnectionClosed(DisconnectReason::ClosedByPeer)
            }
            _ => RpcError::Io(IoError::new(context, e)),
        }
    }
}

impl PartialEq for RpcError {
    fn eq(&self, other: &Self) -> bool {
        use RpcError::*;
        match (self, other) {
            (ConnectionClosed(a), ConnectionClosed(b)) | (Interrupted(a), Interrupted(b)) => a == b,
            (NotConnected, NotConnected) | (Timeout, Timeout) => true,
            (HandshakeTimeout(a), HandshakeTimeout(b)) => a == b,
            (Remote(a), Remote(b)) => a == b,
            (BadReply(a), BadReply(b))
            | (AuthFailed(a), AuthFailed(b))
            | (Refused(a), Refused(b))
            | (Protocol(a), Protocol(b))
            | (Encode(a), Encode(b))
            | (BadAddress(a), BadAddress(b)) => a == b,
            (
                TooLarge {
                    size: s1,
                    limit: l1,
                },
                TooLarge {
                    size: s2,
                    limit: l2,
                },
            ) => (s1, l1) == (s2, l2),
            (
                VersionMismatch {
                    ours: o1,
                    theirs: t1,
                },
                VersionMismatch {
                    ours: o2,
                    theirs: t2,
                },
            ) => (o1, t1) == (o2, t2),
            (Io(a), Io(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for RpcError {}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::ConnectionClosed(r) => write!(f, "connection closed: {r}"),
            RpcError::NotConnected => f.write_str("not connected"),
            RpcError::Timeout => f.write_str("call timed out"),
            RpcError::HandshakeTimeout(d) => {
                write!(f, "the handshake did not finish within {d:?}")
            }
            RpcError::Remote(e) => fmt::Display::fmt(e, f),
            RpcError::BadReply(m) => write!(f, "bad reply: {m}"),
            RpcError::TooLarge { size, limit } => {
                write!(
                    f,
                    "message of {size} bytes exceeds the limit of {limit} bytes"
                )
            }
            RpcError::AuthFailed(m) => write!(f, "authentication failed: {m}"),
            RpcError::Refused(m) => write!(f, "connection refused by server: {m}"),
            RpcError::VersionMismatch { ours, theirs } => write!(
                f,
                "protocol version mismatch: we speak {ours}, the peer speaks {theirs}"
            ),
            RpcError::Protocol(m) => write!(f, "protocol error: {m}"),
            RpcError::Encode(m) => write!(f, "encoding failed: {m}"),
            RpcError::Io(e) => fmt::Display::fmt(e, f),
            RpcError::BadAddress(m) => write!(f, "bad address: {m}"),
            RpcError::Interrupted(r) => write!(
                f,
                "the connection was lost after the call was sent ({r}): it may or may not \
                 have run; mark the method #[expose(idempotent)] to have it repeated on \
                 another backend"
            ),
        }
    }
}

impl std::error::Error for RpcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent: the text is the remote error's own.
            RpcError::Remote(e) => e.source(),
            RpcError::Io(e) => Some(&*e.source),
            _ => None,
        }
    }
}

impl From<RemoteError> for RpcError {
    fn from(e: RemoteError) -> Self {
        RpcError::Remote(e)
    }
}

impl From<std::io::Error> for RpcError {
    fn from(e: std::io::Error) -> Self {
        RpcError::io_while("i/o on the connection", e)
    }
}

/// An I/O failure: what was being done, and the `std::io::Error` behind it
/// (its [`source`](std::error::Error::source)).
///
/// Travels as text when an [`RpcError`] is sent as an application value;
/// the receiving side sees its message with the kind `Other`.
///
/// # Examples
///
/// ```
/// use std::error::Error;
/// use rpc_core::{IoError, RpcError};
///
/// let e = IoError::new("connecting to tcp://127.0.0.1:9", std::io::ErrorKind::ConnectionRefused.into());
/// assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
/// let e = RpcError::Io(e);
/// assert!(e.to_string().starts_with("connecting to tcp://127.0.0.1:9: "));
/// assert!(e.source().is_some());
/// ```
#[derive(Debug, Clone)]
pub struct IoError {
    context: String,
    source: Arc<std::io::Error>,
}

impl IoError {
    /// An I/O failure while doing `context`.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = rpc_core::IoError::new("reading", std::io::ErrorKind::TimedOut.into());
    /// assert_eq!(e.context(), "reading");
    /// ```
    pub fn new(context: impl Into<String>, source: std::io::Error) -> Self {
        IoError {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// The kind of the underlying `std::io::Error`.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = rpc_core::IoError::new("binding", std::io::ErrorKind::AddrInUse.into());
    /// assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    /// ```
    pub fn kind(&self) -> std::io::ErrorKind {
        self.source.kind()
    }

    /// What was being done when it failed.
    ///
    /// # Examples
    ///
    /// ```
    /// let e = rpc_core::IoError::new("writing", std::io::ErrorKind::Other.into());
    /// assert_eq!(e.context(), "writing");
    /// ```
    pub fn context(&self) -> &str {
        &self.context
    }
}

impl PartialEq for IoError {
    fn eq(&self, other: &Self) -> bool {
        self.context == other.context
            && self.kind() == other.kind()
            && self.source.to_string() == other.source.to_string()
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl Serialize for IoError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.context, self.source.to_string()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for IoError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (context, message) = <(String, String)>::deserialize(d)?;
        Ok(IoError::new(context, std::io::Error::other(message)))
    }
}

/// What the remote side said about one call: everything an `Error` frame may
/// carry, and nothing more.
///
/// It reaches the caller as [`RpcError::Remote`]. Its encoding is part of the
/// wire protocol (see `docs/wire.md`): variants are only ever added at the
/// end.
///
/// # Examples
///
/// ```
/// use rpc_core::{expose, Peer, PeerConfig, Registry, RemoteError, RpcError};
///
/// pub struct Calc;
/// #[expose]
/// impl Calc {
///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let served = Registry::new();
/// # served.expose(Calc);
/// # let (_server, client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// let err = client.call::<i64, _>("Calc.mul", &(2i64, 3i64)).await.unwrap_err();
/// assert_eq!(
///     err,
///     RpcError::Remote(RemoteError::UnknownMethod { object: "Calc".into(), method: "mul".into() })
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteError {
    /// No object is exposed under this name on the remote peer.
    UnknownObject(String),
    /// The object exists but has no exposed method of this name.
    UnknownMethod {
        /// The object's exposed name.
        object: String,
        /// The method name that was asked for.
        method: String,
    },
    /// The arguments could not be decoded as the types the method takes.
    BadArguments(String),
    /// The handler panicked; the message is the panic's payload.
    Panicked(String),
    /// The remote already runs its maximum number of calls for this
    /// connection; the call was refused without being queued.
    Busy {
        /// The remote's limit of calls in flight.
        limit: u32,
    },
    /// The remote is shutting down gracefully and takes no new calls.
    ShuttingDown,
    /// The callee stopped the handler at the deadline the call carried.
    DeadlineExceeded,
    /// The handler's reply exceeded this side's frame limit and was not sent.
    ReplyTooLarge {
        /// Size of the reply in bytes, as far as the callee encoded it.
        size: u64,
        /// This side's frame limit.
        limit: u64,
    },
    /// The handler failed with a free-form message (a hand-written handler,
    /// or a reply the callee could not encode).
    Failed(String),
    /// The call would have opened one stream more than the remote allows
    /// its peer at once on one connection.
    TooManyStreams {
        /// The remote's limit of open streams.
        limit: u64,
    },
    /// The call went through an object handle ([`Remote`](crate::Remote))
    /// that is not live on this connection: its holder released it, or it
    /// was handed out on an earlier connection (handles do not survive a
    /// reconnect), or it was never handed out at all.
    DeadHandle(String),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::UnknownObject(o) => write!(f, "unknown object `{o}`"),
            RemoteError::UnknownMethod { object, method } => {
                write!(f, "unknown method `{method}` on object `{object}`")
            }
            RemoteError::BadArguments(m) => write!(f, "bad arguments: {m}"),
            RemoteError::Panicked(m) => write!(f, "remote handler panicked: {m}"),
            RemoteError::Busy { limit } => {
                write!(f, "remote peer is busy: {limit} calls already in flight")
            }
            RemoteError::ShuttingDown => f.write_str("the remote is shutting down"),
            RemoteError::DeadlineExceeded => {
                f.write_str("the remote stopped the handler at the call's deadline")
            }
            RemoteError::ReplyTooLarge { size, limit } => write!(
                f,
                "the remote's reply of {size} bytes exceeds our frame limit of {limit} bytes"
            ),
            RemoteError::Failed(m) => write!(f, "remote error: {m}"),
            RemoteError::TooManyStreams { limit } => {
                write!(
                    f,
                    "the remote already has {limit} streams open on this connection"
                )
            }
            RemoteError::DeadHandle(name) => write!(
                f,
                "object handle `{name}` is not live on this connection: it was released, \
                 or handed out on an earlier connection, or never handed out"
            ),
        }
    }
}

impl std::error::Error for RemoteError {}

/// Why a connection ended.
///
/// Reported in [`RpcError::ConnectionClosed`], by `Peer::closed`, and in the
/// server's disconnect events.
///
/// # Examples
///
/// ```
/// use rpc_core::DisconnectReason;
/// assert_eq!(DisconnectReason::HeartbeatTimeout.to_string(), "peer stopped answering heartbeats");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// This side closed the connection (`Peer::close`, or the last handle dropped).
    Closed,
    /// The remote side said goodbye or closed its end of the stream.
    ClosedByPeer,
    /// The remote stopped answering heartbeats.
    HeartbeatTimeout,
    /// The remote broke the protocol; the text says how.
    Protocol(String),
    /// The handshake failed authentication.
    AuthFailed,
    /// The server is shutting down.
    Shutdown,
    /// The server refused the connection; the text says why (for example:
    /// too many connections).
    Refused(String),
    /// The remote stopped reading: more than the send-queue limit
    /// ([`PeerConfig::max_send_queue`](crate::PeerConfig::max_send_queue))
    /// piled up for it.
    Stalled {
        /// Bytes queued for the remote when the connection was dropped.
        queued: u64,
    },
    /// The stream failed with an I/O error.
    Io(String),
    /// The remote speaks another protocol version (found when a
    /// reconnecting client dialed again).
    VersionMismatch {
        /// Our protocol version.
        ours: u16,
        /// The version the remote announced.
        theirs: u16,
    },
    /// A frame did not arrive whole within
    /// [`PeerConfig::frame_timeout`](crate::PeerConfig::frame_timeout) of
    /// its first bytes.
    FrameTimeout(Duration),
    /// This connection needed more buffer than the shared
    /// [`BufferBudget`](crate::BufferBudget) had left (a peer sending large
    /// frames it does not finish, or not reading, while others do too).
    BufferBudget {
        /// The budget's limit, in bytes.
        limit: u64,
    },
}

impl DisconnectReason {
    /// The reason an I/O error ends a connection: a reset or broken pipe
    /// means the remote closed its end; anything else is an I/O failure.
    pub(crate) fn from_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        match e.kind() {
            BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof => {
                DisconnectReason::ClosedByPeer
            }
            _ => DisconnectReason::Io(e.to_string()),
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Closed => f.write_str("closed locally"),
            DisconnectReason::ClosedByPeer => f.write_str("closed by peer"),
            DisconnectReason::HeartbeatTimeout => f.write_str("peer stopped answering heartbeats"),
            DisconnectReason::Protocol(m) => write!(f, "protocol error: {m}"),
            DisconnectReason::AuthFailed => f.write_str("authentication failed"),
            DisconnectReason::Shutdown => f.write_str("server shutting down"),
            DisconnectReason::Refused(m) => write!(f, "refused: {m}"),
            DisconnectReason::Stalled { queued } => {
                write!(f, "peer stopped reading ({queued} bytes queued for it)")
            }
            DisconnectReason::Io(m) => write!(f, "i/o error: {m}"),
            DisconnectReason::VersionMismatch { ours, theirs } => write!(
                f,
                "protocol version mismatch: we speak {ours}, the peer speaks {theirs}"
            ),
            DisconnectReason::FrameTimeout(limit) => {
                write!(f, "a frame did not arrive whole within {limit:?}")
            }
            DisconnectReason::BufferBudget { limit } => {
                write!(f, "the shared budget of {limit} buffered bytes is used up")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_name_what_failed_once() {
        let e = RpcError::Protocol("frame header of 9 bytes could not be decoded".into());
        assert_eq!(
            e.to_string(),
            "protocol error: frame header of 9 bytes could not be decoded"
        );
        let closed = RpcError::ConnectionClosed(DisconnectReason::Protocol("x".into()));
        assert_eq!(closed.to_string(), "connection closed: protocol error: x");
        let remote = RpcError::Remote(RemoteError::Panicked("boom".into()));
        assert_eq!(remote.to_string(), "remote handler panicked: boom");
    }

    #[test]
    fn io_errors_keep_their_kind_and_source() {
        use std::error::Error;
        let e = RpcError::io_while(
            "binding tcp://127.0.0.1:1",
            std::io::ErrorKind::AddrInUse.into(),
        );
        let RpcError::Io(io) = &e else {
            panic!("not an i/o error: {e:?}")
        };
        assert_eq!(io.kind(), std::io::ErrorKind::AddrInUse);
        assert!(e.source().is_some());
        let reset = RpcError::io_while("reading", std::io::ErrorKind::ConnectionReset.into());
        assert_eq!(
            reset,
            RpcError::ConnectionClosed(DisconnectReason::ClosedByPeer)
        );
    }

    #[test]
    fn an_rpc_error_sent_as_a_value_comes_back_equal() {
        for e in [
            RpcError::Timeout,
            RpcError::HandshakeTimeout(Duration::from_millis(1500)),
            RpcError::Remote(RemoteError::Busy { limit: 3 }),
            RpcError::ConnectionClosed(DisconnectReason::Stalled { queued: 9 }),
        ] {
            let bytes = postcard::to_stdvec(&e).unwrap();
            assert_eq!(postcard::from_bytes::<RpcError>(&bytes).unwrap(), e);
        }
        let io = RpcError::Io(IoError::new("reading", std::io::Error::other("gone")));
        let bytes = postcard::to_stdvec(&io).unwrap();
        assert_eq!(postcard::from_bytes::<RpcError>(&bytes).unwrap(), io);
    }
}
