//! [`PeerConfig`]: limits, timeouts, heartbeats and the shared secret of one
//! side of a connection.

use std::sync::Arc;

use crate::budget::BufferBudget;
use std::time::Duration;

/// Settings of one side of a connection.
///
/// Both sides announce their limits in the handshake and each respects the
/// other's.
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
    pub(crate) max_streams: usize,
    pub(crate) max_handles: usize,
    pub(crate) stream_window: u32,
    pub(crate) max_send_queue: usize,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) frame_timeout: Option<Duration>,
    pub(crate) budget: Option<BufferBudget>,
    pub(crate) secret: Option<Arc<[u8]>>,
    pub(crate) name: Option<String>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            max_frame: 16 * 1024 * 1024,
            max_in_flight: 1024,
            max_streams: 256,
            max_handles: 4096,
            stream_window: 256 * 1024,
            max_send_queue: 64 * 1024 * 1024,
            call_timeout: None,
            heartbeat_interval: Some(Duration::from_secs(10)),
            heartbeat_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Some(Duration::from_secs(30)),
            budget: None,
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
            .field("max_streams", &self.max_streams)
            .field("max_handles", &self.max_handles)
            .field("stream_window", &self.stream_window)
            .field("max_send_queue", &self.max_send_queue)
            .field("call_timeout", &self.call_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("frame_timeout", &self.frame_timeout)
            .field("budget", &self.budget.as_ref().map(BufferBudget::limit))
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("name", &self.name)
            .finish()
    }
}

impl PeerConfig {
    /// The largest frame this side accepts (default 16 MiB, at least 1024).
    ///
    /// A larger frame from the remote is refused before it is allocated and
    /// closes the connection. The remote learns the limit in the handshake
    /// and refuses to send a larger message: its call fails with
    /// [`RpcError::TooLarge`](crate::RpcError::TooLarge) and the connection
    /// stays open.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, RpcError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (_server, client) = tokio::try_join!(
    ///     Peer::accept(a, Registry::new(), PeerConfig::default().max_frame(4096), 1),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// )?;
    /// let err = client.notify("Log.write", &vec![0u8; 10_000]).await.unwrap_err();
    /// assert!(matches!(err, RpcError::TooLarge { limit: 4096, .. }));
    /// assert!(client.is_connected());
    /// assert_eq!(PeerConfig::default().max_frame(10).max_frame_len(), 1024);
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes.max(1024);
        self
    }

    /// How many of the remote's calls this side runs at once (default 1024,
    /// at least 1).
    ///
    /// The remote learns the limit in the handshake and limits itself to
    /// it: its calls beyond the limit wait on its side for a free slot. A
    /// call that arrives beyond the limit anyway gets
    /// [`RemoteError::Busy`](crate::RemoteError::Busy) instead of being queued.
    /// Notifications are counted apart, against the same limit; one beyond
    /// it is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    /// use rpc_core::{expose, Peer, PeerConfig, Registry, RpcError};
    ///
    /// #[derive(Default)]
    /// pub struct Worker { running: AtomicU32 }
    ///
    /// #[expose]
    /// impl Worker {
    ///     /// Returns how many calls were running when this one started.
    ///     pub async fn work(&self) -> u32 {
    ///         let n = self.running.fetch_add(1, SeqCst) + 1;
    ///         tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    ///         self.running.fetch_sub(1, SeqCst);
    ///         n
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let served = Registry::new();
    /// served.expose(Worker::default());
    /// let one_at_a_time = PeerConfig::default().max_in_flight(1);
    /// let (_server, client) = tokio::try_join!(
    ///     Peer::accept(a, served, one_at_a_time, 1),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// )?;
    /// let w = WorkerClient::new(&client);
    /// let (x, y) = tokio::join!(w.work(), w.work());
    /// // Both succeed, one after the other: the second waited for a slot.
    /// assert_eq!((x?, y?), (1, 1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_in_flight(mut self, calls: u32) -> Self {
        self.max_in_flight = calls.max(1);
        self
    }

    /// How many streams the remote's calls may have open on this side at
    /// once (default 256): streams this side returns to them, and streams
    /// of theirs this side's handlers read.
    ///
    /// A handler that opens one more fails its call with
    /// [`RemoteError::TooManyStreams`](crate::RemoteError::TooManyStreams).
    /// Each open stream this side reads may hold up to its window
    /// ([`stream_window`](PeerConfig::stream_window)) plus one item.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::Stream;
    /// use rpc_core::{expose, Peer, PeerConfig, Registry, RemoteError, RpcError};
    ///
    /// pub struct Ticker;
    /// #[expose]
    /// impl Ticker {
    ///     pub fn forever(&self) -> impl Stream<Item = u8> + Send + 'static {
    ///         futures::stream::pending()
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Ticker);
    /// let (_server, client) = tokio::try_join!(
    ///     Peer::accept(a, served, PeerConfig::default().max_streams(1), 1),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// )?;
    /// let ticker = TickerClient::new(&client);
    /// let _first = ticker.forever().await?;
    /// let second = ticker.forever().await.unwrap_err();
    /// assert_eq!(second, RpcError::Remote(RemoteError::TooManyStreams { limit: 1 }));
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.max_streams = streams;
        self
    }

    /// How many object handles ([`Remote`](crate::Remote)) may be live on
    /// one connection in each direction (default 4096): objects of this
    /// side the remote holds handles to, and handles to the remote's
    /// objects this side holds.
    ///
    /// Sending one handle more fails the call with
    /// [`RpcError::Encode`](crate::RpcError::Encode) saying so; receiving
    /// one more fails the decoding of the message (the remote's call gets
    /// [`RemoteError::BadArguments`](crate::RemoteError::BadArguments)),
    /// and the handles it carried are released.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Peer, PeerConfig, Registry, Remote, RpcError};
    ///
    /// pub struct Token;
    /// #[expose]
    /// impl Token {
    ///     pub fn id(&self) -> u8 { 7 }
    /// }
    ///
    /// pub struct Vault;
    /// #[expose]
    /// impl Vault {
    ///     pub fn issue(&self) -> Remote<Token> { Remote::new(Token) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Vault);
    /// let (_server, client) = tokio::try_join!(
    ///     Peer::accept(a, served, PeerConfig::default().max_handles(1), 1),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// )?;
    /// let vault = VaultClient::new(&client);
    /// let first = vault.issue().await?;
    /// assert_eq!(first.id().await?, 7);
    /// let err = vault.issue().await.unwrap_err();
    /// assert!(err.to_string().contains("max_handles"), "{err}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_handles(mut self, handles: usize) -> Self {
        self.max_handles = handles;
        self
    }

    /// How many bytes of a stream's items this side lets the sender have in
    /// flight before it has read them (default 256 KiB, at least 1).
    ///
    /// The sender waits when it has sent this much that this side has not
    /// consumed, so a slow reader holds up the producer instead of
    /// buffering: each stream this side reads holds at most this plus one
    /// item. Larger windows help a single stream over a long round trip.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::PeerConfig;
    ///
    /// let bulk = PeerConfig::default().stream_window(1 << 20);
    /// # let _ = bulk;
    /// ```
    pub fn stream_window(mut self, bytes: u32) -> Self {
        self.stream_window = bytes.max(1);
        self
    }

    /// How long a frame may take to arrive whole once its first bytes have
    /// (default 30 s; `None`: no limit).
    ///
    /// A remote that starts a frame and then sends the rest slowly, or not
    /// at all, holds a buffer here; bytes trickling in do not extend the
    /// limit. When it passes, the connection ends with
    /// [`DisconnectReason::FrameTimeout`](crate::DisconnectReason::FrameTimeout).
    /// Raise it for large frames over slow links.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::PeerConfig;
    ///
    /// let config = PeerConfig::default().frame_timeout(Some(Duration::from_secs(120)));
    /// assert!(format!("{config:?}").contains("frame_timeout: Some(120s)"));
    /// ```
    pub fn frame_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.frame_timeout = timeout;
        self
    }

    /// Shares `budget` with every connection made with this configuration
    /// (default: none): what each holds in a partial frame, and in its send
    /// queue, beyond [`BufferBudget::FREE_PER_CONNECTION`] is taken from
    /// it. A connection that needs more than is left is closed with
    /// [`DisconnectReason::BufferBudget`](crate::DisconnectReason::BufferBudget).
    ///
    /// A server sets one for all its connections
    /// (`ServerBuilder::max_buffered_bytes`).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{BufferBudget, PeerConfig};
    ///
    /// let config = PeerConfig::default().buffer_budget(BufferBudget::new(256 << 20));
    /// assert!(format!("{config:?}").contains("budget: Some(268435456)"));
    /// ```
    pub fn buffer_budget(mut self, budget: BufferBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The shared buffer budget, if one was set.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{BufferBudget, PeerConfig};
    ///
    /// assert!(PeerConfig::default().shared_budget().is_none());
    /// let config = PeerConfig::default().buffer_budget(BufferBudget::new(1 << 20));
    /// assert_eq!(config.shared_budget().map(BufferBudget::limit), Some(1 << 20));
    /// ```
    pub fn shared_budget(&self) -> Option<&BufferBudget> {
        self.budget.as_ref()
    }

    /// How many bytes may wait to be sent to the remote (default 64 MiB).
    ///
    /// A remote that stops reading while more than this piles up, for
    /// example one that keeps sending calls but never reads the replies, is
    /// disconnected with
    /// [`DisconnectReason::Stalled`](crate::DisconnectReason::Stalled)
    /// instead of growing the queue without bound. One frame alone is
    /// always queued, however large; raise the limit when several large
    /// messages are routinely in flight at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::PeerConfig;
    ///
    /// let config = PeerConfig::default().max_send_queue(256 * 1024 * 1024);
    /// assert!(format!("{config:?}").contains("max_send_queue: 268435456"));
    /// ```
    pub fn max_send_queue(mut self, bytes: usize) -> Self {
        self.max_send_queue = bytes;
        self
    }

    /// The default timeout of calls made through this side (default: none).
    ///
    /// It applies to [`Peer::call`](crate::Peer::call) and to the stubs
    /// that `#[expose]` generates; the handler on the other side sees the
    /// deadline too.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::{expose, Peer, PeerConfig, Registry, RpcError};
    ///
    /// pub struct Sleepy;
    /// #[expose]
    /// impl Sleepy {
    ///     pub async fn nap(&self, ms: u64) {
    ///         tokio::time::sleep(Duration::from_millis(ms)).await;
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let served = Registry::new();
    /// served.expose(Sleepy);
    /// let impatient = PeerConfig::default().call_timeout(Some(Duration::from_millis(20)));
    /// let (_server, client) = tokio::try_join!(
    ///     Peer::accept(a, served, PeerConfig::default(), 1),
    ///     Peer::connect(b, Registry::new(), impatient),
    /// )?;
    /// assert_eq!(SleepyClient::new(&client).nap(0).await, Ok(()));
    /// assert_eq!(SleepyClient::new(&client).nap(5_000).await, Err(RpcError::Timeout));
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Pings the remote after `interval` without a frame from it and drops
    /// the connection after `timeout` without one.
    ///
    /// The defaults are 10 s and 30 s; a ping goes out after half of
    /// `timeout` at the latest. `None` turns heartbeats off altogether: no
    /// pings, and no dead-peer detection on this side (this side still
    /// answers the remote's pings).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::PeerConfig;
    ///
    /// let quiet = PeerConfig::default().heartbeat(None, Duration::from_secs(30));
    /// assert!(format!("{quiet:?}").contains("heartbeat_interval: None"));
    /// let (interval, timeout) = (Duration::from_secs(1), Duration::from_secs(3));
    /// let eager = PeerConfig::default().heartbeat(Some(interval), timeout);
    /// assert!(format!("{eager:?}").contains("heartbeat_timeout: 3s"));
    /// ```
    pub fn heartbeat(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        self
    }

    /// How long the handshake may take (default 10 s).
    ///
    /// A socket that connects and says nothing is dropped after this; the
    /// handshake fails with [`RpcError::HandshakeTimeout`](crate::RpcError::HandshakeTimeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::{Peer, PeerConfig, Registry, RpcError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let (a, _silent) = tokio::io::duplex(1024); // nobody answers on `_silent`
    /// let config = PeerConfig::default().handshake_timeout(Duration::from_millis(20));
    /// let err = Peer::connect(a, Registry::new(), config).await.unwrap_err();
    /// assert_eq!(err, RpcError::HandshakeTimeout(Duration::from_millis(20)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Requires mutual authentication with this shared secret.
    ///
    /// Both sides must be configured with the same secret; otherwise the
    /// handshake fails with [`RpcError::AuthFailed`](crate::RpcError::AuthFailed).
    /// The secret itself never crosses the wire, and `Debug` does not show it.
    /// The handshake is a SPAKE2 key exchange: someone who records it, or a
    /// fake server the client dials, gets one guess at the secret, checked
    /// online, and nothing to test further guesses against offline. It
    /// authenticates the ends; it does not encrypt (see `docs/security.md`).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, RpcError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (server, client) = tokio::join!(
    ///     Peer::accept(a, Registry::new(), PeerConfig::default().secret("right"), 1),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default().secret("wrong")),
    /// );
    /// assert!(matches!(server, Err(RpcError::AuthFailed(_))));
    /// assert!(matches!(client, Err(RpcError::AuthFailed(_))));
    /// assert!(!format!("{:?}", PeerConfig::default().secret("right")).contains("right"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(Arc::from(secret.as_ref()));
        self
    }

    /// An identifier announced to the remote in the handshake.
    ///
    /// The remote sees it as
    /// [`CallContext::remote_name`](crate::CallContext::remote_name) and
    /// [`Peer::remote_name`](crate::Peer::remote_name).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, RpcError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (server, client) = tokio::try_join!(
    ///     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default().name("worker-7")),
    /// )?;
    /// assert_eq!(server.remote_name().as_deref(), Some("worker-7"));
    /// assert_eq!(client.remote_name(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The configured frame limit in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::PeerConfig;
    ///
    /// assert_eq!(PeerConfig::default().max_frame_len(), 16 * 1024 * 1024);
    /// assert_eq!(PeerConfig::default().max_frame(1 << 20).max_frame_len(), 1 << 20);
    /// ```
    pub fn max_frame_len(&self) -> u32 {
        self.max_frame
    }

    /// The configured default call timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::PeerConfig;
    ///
    /// assert_eq!(PeerConfig::default().default_call_timeout(), None);
    /// let config = PeerConfig::default().call_timeout(Some(Duration::from_secs(5)));
    /// assert_eq!(config.default_call_timeout(), Some(Duration::from_secs(5)));
    /// ```
    pub fn default_call_timeout(&self) -> Option<Duration> {
        self.call_timeout
    }

    /// The configured handshake timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::PeerConfig;
    ///
    /// assert_eq!(PeerConfig::default().handshake_time_limit(), Duration::from_secs(10));
    /// let config = PeerConfig::default().handshake_timeout(Duration::from_secs(2));
    /// assert_eq!(config.handshake_time_limit(), Duration::from_secs(2));
    /// ```
    pub fn handshake_time_limit(&self) -> Duration {
        self.handshake_timeout
    }

    /// Whether a shared secret is configured.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::PeerConfig;
    ///
    /// assert!(!PeerConfig::default().has_secret());
    /// assert!(PeerConfig::default().secret("s3cret").has_secret());
    /// ```
    pub fn has_secret(&self) -> bool {
        self.secret.is_some()
    }
}
