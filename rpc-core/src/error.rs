//! Errors: [`RpcError`] for everything the framework can report, and
//! [`DisconnectReason`] for why a connection ended.
//!
//! Application errors are not here on purpose: a handler that returns
//! `Result<T, E>` sends `E` to the caller as a value, and the caller gets it
//! back as `E` inside the `Ok` of the outer `Result<_, RpcError>`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A failure of the RPC machinery, as opposed to an application error.
///
/// Every remote call returns `Result<R, RpcError>`. Errors raised on the
/// remote side (unknown method, bad arguments, a panic in the handler, ...)
/// travel over the wire and are re-raised here with the same variant.
///
/// # Examples
///
/// ```
/// use rpc_core::RpcError;
///
/// let e = RpcError::UnknownMethod { object: "Calc".into(), method: "mul".into() };
/// assert_eq!(e.to_string(), "unknown method `mul` on object `Calc`");
/// assert!(!e.is_connection_error());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RpcError {
    /// The connection closed before the reply arrived, or was already closed.
    ConnectionClosed(DisconnectReason),
    /// The peer is not connected right now (a reconnecting client between
    /// connections). Calls fail fast instead of waiting; nothing is retried.
    NotConnected,
    /// The call's deadline passed (on either side), or the handshake took
    /// longer than [`PeerConfig::handshake_timeout`](crate::PeerConfig::handshake_timeout).
    Timeout,
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
    /// The reply could not be decoded as the type the caller expected.
    BadReply(String),
    /// The remote handler panicked; the message is the panic's payload.
    RemotePanic(String),
    /// A message exceeded the frame limit and was not sent (or, from a
    /// [`FrameReader`](crate::codec::FrameReader), not read).
    TooLarge {
        /// Size of the frame in bytes, as far as it is known: a message
        /// refused before sending is not encoded whole, so for it this is
        /// only a lower bound.
        size: u64,
        /// The limit it exceeded.
        limit: u64,
    },
    /// The remote peer already runs its maximum number of calls for this
    /// connection; the call was refused without being queued.
    Busy {
        /// The remote's limit of calls in flight.
        limit: u32,
    },
    /// The remote is shutting down gracefully and takes no new calls.
    ShuttingDown,
    /// Shared-secret authentication failed (wrong or missing secret).
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
    /// An argument or reply could not be encoded.
    Encode(String),
    /// An I/O error on the underlying stream or address.
    Io(String),
    /// An address could not be parsed or resolved; the text names the
    /// accepted forms.
    BadAddress(String),
    /// An error reported by a hand-written handler with a free-form message.
    Remote(String),
}

impl RpcError {
    /// True when the error means the connection is gone (closed, not
    /// connected, timed-out heartbeats, I/O), rather than this one call failing.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{DisconnectReason, RpcError};
    /// assert!(RpcError::ConnectionClosed(DisconnectReason::ClosedByPeer).is_connection_error());
    /// assert!(!RpcError::Timeout.is_connection_error());
    /// ```
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            RpcError::ConnectionClosed(_) | RpcError::NotConnected | RpcError::Io(_)
        )
    }

    pub(crate) fn io(e: &std::io::Error) -> Self {
        match DisconnectReason::from_io(e) {
            DisconnectReason::ClosedByPeer => {
                RpcError::ConnectionClosed(DisconnectReason::ClosedByPeer)
            }
            _ => RpcError::Io(e.to_string()),
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::ConnectionClosed(r) => write!(f, "connection closed: {r}"),
            RpcError::NotConnected => f.write_str("not connected"),
            RpcError::Timeout => f.write_str("call timed out"),
            RpcError::UnknownObject(o) => write!(f, "unknown object `{o}`"),
            RpcError::UnknownMethod { object, method } => {
                write!(f, "unknown method `{method}` on object `{object}`")
            }
            RpcError::BadArguments(m) => write!(f, "bad arguments: {m}"),
            RpcError::BadReply(m) => write!(f, "bad reply: {m}"),
            RpcError::RemotePanic(m) => write!(f, "remote handler panicked: {m}"),
            RpcError::TooLarge { size, limit } => {
                write!(
                    f,
                    "message of {size} bytes exceeds the limit of {limit} bytes"
                )
            }
            RpcError::Busy { limit } => {
                write!(f, "remote peer is busy: {limit} calls already in flight")
            }
            RpcError::ShuttingDown => f.write_str("the remote is shutting down"),
            RpcError::AuthFailed(m) => write!(f, "authentication failed: {m}"),
            RpcError::Refused(m) => write!(f, "connection refused by server: {m}"),
            RpcError::VersionMismatch { ours, theirs } => write!(
                f,
                "protocol version mismatch: we speak {ours}, the peer speaks {theirs}"
            ),
            RpcError::Protocol(m) => write!(f, "protocol error: {m}"),
            RpcError::Encode(m) => write!(f, "encoding failed: {m}"),
            RpcError::Io(m) => write!(f, "i/o error: {m}"),
            RpcError::BadAddress(m) => write!(f, "bad address: {m}"),
            RpcError::Remote(m) => write!(f, "remote error: {m}"),
        }
    }
}

impl std::error::Error for RpcError {}

impl From<std::io::Error> for RpcError {
    fn from(e: std::io::Error) -> Self {
        RpcError::io(&e)
    }
}

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
        }
    }
}
