//! [`CallContext`]: what a handler can learn about the call it is serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::identity::PeerIdentity;
use crate::peer::Peer;

/// The context of one incoming call.
///
/// Any exposed method that takes a `CallContext` parameter gets one (it is
/// not sent over the wire). Through [`peer`](CallContext::peer) a handler can call back into its
/// caller while the call is still in flight.
///
/// # Examples
///
/// ```
/// use rpc_core::{expose, CallContext, RpcError};
///
/// pub struct Jobs;
///
/// #[expose]
/// impl Jobs {
///     /// Tells the caller who it is and how long it has.
///     pub fn whoami(&self, cx: CallContext) -> String {
///         format!("connection {} calling {}", cx.connection_id(), cx.method())
///     }
///
///     /// Calls back into the caller's `Progress` object once per step.
///     pub async fn run(&self, cx: CallContext, steps: u32) -> Result<u32, RpcError> {
///         for i in 0..steps {
///             cx.peer().notify("Progress.step", &(i,)).await?;
///         }
///         Ok(steps)
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct CallContext {
    pub(crate) peer: Peer,
    pub(crate) connection_id: u64,
    pub(crate) remote_name: Option<Arc<str>>,
    pub(crate) peer_identity: Option<PeerIdentity>,
    pub(crate) object: Arc<str>,
    pub(crate) method: Arc<str>,
    pub(crate) request_id: Option<u64>,
    pub(crate) deadline: Option<Instant>,
}

impl CallContext {
    /// The peer that made the call; calls through it go back to the caller.
    ///
    /// Such a call may be made while the caller still waits for this one.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, CallContext, Peer, PeerConfig, Registry, RpcError};
    ///
    /// pub struct Greeter;
    /// #[expose]
    /// impl Greeter {
    ///     pub async fn greet(&self, cx: CallContext) -> Result<String, RpcError> {
    ///         let name: String = cx.peer().call("Me.name", &()).await?;
    ///         Ok(format!("hello, {name}"))
    ///     }
    /// }
    ///
    /// pub struct Me;
    /// #[expose]
    /// impl Me {
    ///     pub fn name(&self) -> String { "Ada".into() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let mine = Registry::new();
    /// mine.expose(Me);
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Greeter);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, mine, PeerConfig::default()),
    /// # )?;
    /// assert_eq!(GreeterClient::new(&client).greet().await??, "hello, Ada");
    /// # Ok(())
    /// # }
    /// ```
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The id of the connection the call arrived on, assigned by the
    /// accepting side (a server).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, CallContext, Peer, PeerConfig, Registry};
    ///
    /// pub struct Session;
    /// #[expose]
    /// impl Session {
    ///     pub fn id(&self, cx: CallContext) -> u64 { cx.connection_id() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let served = Registry::new();
    /// served.expose(Session);
    /// let (_server, client) = tokio::try_join!(
    ///     Peer::accept(a, served, PeerConfig::default(), 7),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// )?;
    /// assert_eq!(SessionClient::new(&client).id().await?, 7);
    /// assert_eq!(client.connection_id(), 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// The identifier the remote side announced in the handshake, if any
    /// (see [`PeerConfig::name`](crate::PeerConfig::name)).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, CallContext, Peer, PeerConfig, Registry};
    ///
    /// pub struct Session;
    /// #[expose]
    /// impl Session {
    ///     pub fn caller(&self, cx: CallContext) -> Option<String> {
    ///         cx.remote_name().map(str::to_owned)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let served = Registry::new();
    /// served.expose(Session);
    /// let (_server, client) = tokio::try_join!(
    ///     Peer::accept(a, served, PeerConfig::default(), 1),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default().name("worker-7")),
    /// )?;
    /// let caller = SessionClient::new(&client).caller().await?;
    /// assert_eq!(caller.as_deref(), Some("worker-7"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn remote_name(&self) -> Option<&str> {
        self.remote_name.as_deref()
    }

    /// The certificate chain the caller proved it holds, when the
    /// transport verified one (mutual TLS); `None` otherwise.
    ///
    /// It is the connection's: every call on it sees the same. With
    /// `rpc-transport`'s `tls` feature, `rpc_transport::tls::CertificateInfo`
    /// reads the subject and the names out of it. Unlike
    /// [`remote_name`](Self::remote_name), which the caller merely
    /// announces, it was checked against the server's trust roots.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, AttachOptions, CallContext, Peer, PeerConfig, PeerIdentity, Registry, Side};
    ///
    /// pub struct Vault;
    /// #[expose]
    /// impl Vault {
    ///     /// Only callers with a verified certificate get in.
    ///     pub fn open(&self, cx: CallContext) -> Result<usize, String> {
    ///         match cx.peer_identity() {
    ///             Some(id) => Ok(id.certificate().len()),
    ///             None => Err("a client certificate is required".into()),
    ///         }
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let served = Registry::new();
    /// served.expose(Vault);
    /// let server = Peer::detached(served, PeerConfig::default());
    /// // What a TLS transport would have verified (here: made-up bytes).
    /// let verified = PeerIdentity::from_chain([vec![0x30u8, 0x03, 0x02, 0x01, 0x07]]);
    /// let options = AttachOptions::new().peer_identity(verified);
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (rd, wr) = tokio::io::split(a);
    /// let side = Side::Accept { connection_id: 1 };
    /// let (attached, client) = tokio::join!(
    ///     server.attach_with(rd, wr, side, options, || Ok(())),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// );
    /// attached?;
    /// assert_eq!(VaultClient::new(&client?).open().await?, Ok(5));
    /// # Ok(())
    /// # }
    /// ```
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.peer_identity.as_ref()
    }

    /// The name the called object is exposed under.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, CallContext, Peer, PeerConfig, Registry};
    ///
    /// pub struct Shard;
    /// #[expose]
    /// impl Shard {
    ///     pub fn which(&self, cx: CallContext) -> String { cx.object().to_string() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let served = Registry::new();
    /// served.expose_as("shard-2", Shard);
    /// let (_server, client) = tokio::try_join!(
    ///     Peer::accept(a, served, PeerConfig::default(), 1),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// )?;
    /// let name = ShardClient::with_name(&client, "shard-2").which().await?;
    /// assert_eq!(name, "shard-2");
    /// # Ok(())
    /// # }
    /// ```
    pub fn object(&self) -> &str {
        &self.object
    }

    /// The exposed name of the called method.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, CallContext, Peer, PeerConfig, Registry};
    ///
    /// pub struct Probe;
    /// #[expose]
    /// impl Probe {
    ///     #[expose(name = "whoami")]
    ///     pub fn me(&self, cx: CallContext) -> String { cx.method().to_string() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Probe);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// assert_eq!(ProbeClient::new(&client).me().await?, "whoami");
    /// # Ok(())
    /// # }
    /// ```
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The caller's id for this call; `None` for a one-way notification.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
    /// use rpc_core::{expose, CallContext, Peer, PeerConfig, Registry};
    ///
    /// pub struct Probe(UnboundedSender<Option<u64>>);
    /// #[expose]
    /// impl Probe {
    ///     pub fn hit(&self, cx: CallContext) { let _ = self.0.send(cx.request_id()); }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let (tx, mut seen) = unbounded_channel();
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Probe(tx));
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// client.call::<(), _>("Probe.hit", &()).await?;
    /// client.notify("Probe.hit", &()).await?;
    /// assert!(seen.recv().await.unwrap().is_some()); // the call
    /// assert_eq!(seen.recv().await.unwrap(), None); // the notification
    /// # Ok(())
    /// # }
    /// ```
    pub fn request_id(&self) -> Option<u64> {
        self.request_id
    }

    /// When the caller stops waiting, if the call carries a timeout.
    ///
    /// When it passes, an `async` handler still running is stopped and the
    /// caller gets [`RpcError::Timeout`](crate::RpcError::Timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::{expose, CallContext, Peer, PeerConfig, Registry};
    ///
    /// pub struct Probe;
    /// #[expose]
    /// impl Probe {
    ///     pub fn has_deadline(&self, cx: CallContext) -> bool { cx.deadline().is_some() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Probe);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let probe = ProbeClient::new(&client);
    /// assert!(!probe.has_deadline().await?);
    /// let patient = probe.with_timeout(Duration::from_secs(30));
    /// assert!(patient.has_deadline().await?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the caller's deadline (zero once it has passed);
    /// `None` when the call has no timeout.
    ///
    /// The caller sends its budget rounded up to the millisecond, plus one,
    /// so that its own timer fires first; this can exceed the budget by up
    /// to 2 ms.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::{expose, CallContext, Peer, PeerConfig, Registry};
    ///
    /// pub struct Probe;
    /// #[expose]
    /// impl Probe {
    ///     pub fn left(&self, cx: CallContext) -> Option<Duration> { cx.remaining() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Probe);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let limit = Duration::from_secs(30);
    /// let left: Option<Duration> = client.call_timeout("Probe.left", &(), limit).await?;
    /// assert!(left.is_some_and(|d| d <= limit + Duration::from_millis(2)));
    /// assert_eq!(ProbeClient::new(&client).left().await?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}
