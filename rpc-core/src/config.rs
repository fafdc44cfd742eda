//! [`PeerConfig`]: limits, timeouts, heartbeats and the shared secret of one
//! side of a connection.

use std::sync::Arc;
use std::time::Duration;

/// Settings of one side of a connection. Both sides announce their limits in
/// the handshake and each respects the other's.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rpc_core::PeerConfig;
///
/// let config = PeerConfig::default()
///     .secret("correct horse battery staple")
///     .call_timeout(Some(Duration::from_secs(5)))
///     .heartbeat(Some(Duration::from_secs(2)), Duration::from_secs(6))
///     .max_frame(1 << 20);
/// assert_eq!(config.max_frame_len(), 1 << 20);
/// ```
#[derive(Clone)]
pub struct PeerConfig {
    pub(crate) max_frame: u32,
    pub(crate) max_in_flight: u32,
    pub(crate) max_send_queue: usize,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) secret: Option<Arc<[u8]>>,
    pub(crate) name: Option<String>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            max_frame: 16 * 1024 * 1024,
            max_in_flight: 1024,
            max_send_queue: 64 * 1024 * 1024,
            call_timeout: None,
            heartbeat_interval: Some(Duration::from_secs(10)),
            heartbeat_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            secret: None,
            name: None,
        }
    }
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("max_frame", &self.max_frame)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_send_queue", &self.max_send_queue)
            .field("call_timeout", &self.call_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("name", &self.name)
            .finish()
    }
}

impl PeerConfig {
    /// The largest frame this side accepts (default 16 MiB). Larger frames
    /// are refused before they are allocated and close the connection.
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes.max(1024);
        self
    }

    /// How many of the remote's calls this side runs at once (default 1024).
    /// The remote limits itself to this; a call beyond it gets
    /// [`RpcError::Busy`](crate::RpcError::Busy) instead of being queued.
    pub fn max_in_flight(mut self, calls: u32) -> Self {
        self.max_in_flight = calls.max(1);
        self
    }

    /// How many bytes may wait to be sent to the remote (default 64 MiB).
    /// A remote that stops reading while more than this piles up, for
    /// example one that keeps sending calls but never reads the replies, is
    /// disconnected with
    /// [`DisconnectReason::Stalled`](crate::DisconnectReason::Stalled)
    /// instead of growing the queue without bound. One frame alone is
    /// always queued, however large; raise the limit when several large
    /// messages are routinely in flight at once.
    pub fn max_send_queue(mut self, bytes: usize) -> Self {
        self.max_send_queue = bytes;
        self
    }

    /// The default timeout of calls made through this side (default: none).
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Ping the remote after `interval` without traffic (default 10 s) and
    /// drop the connection after `timeout` without any frame from it
    /// (default 30 s). `None` turns heartbeats off altogether: no pings, and
    /// no dead-peer detection on this side (the remote's own heartbeats
    /// still answer).
    pub fn heartbeat(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        self
    }

    /// How long the handshake may take (default 10 s). A socket that
    /// connects and says nothing is dropped after this.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Requires mutual authentication with this shared secret. Both sides
    /// must be configured with the same secret.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(Arc::from(secret.as_ref()));
        self
    }

    /// An identifier announced to the remote in the handshake (visible there
    /// as [`CallContext::remote_name`](crate::CallContext::remote_name)).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The configured frame limit in bytes.
    pub fn max_frame_len(&self) -> u32 {
        self.max_frame
    }

    /// The configured default call timeout.
    pub fn default_call_timeout(&self) -> Option<Duration> {
        self.call_timeout
    }

    /// The configured handshake timeout.
    pub fn handshake_time_limit(&self) -> Duration {
        self.handshake_timeout
    }

    /// Whether a shared secret is configured.
    pub fn has_secret(&self) -> bool {
        self.secret.is_some()
    }
}
