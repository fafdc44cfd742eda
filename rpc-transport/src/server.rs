//! [`Server`]: binds an address, accepts connections, serves the exposed
//! objects on each, and reports connects and disconnects as [`Event`]s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rpc_core::{
    BufferBudget, DisconnectReason, Peer, PeerConfig, Registry, RemoteChange, RpcError, Service,
    Side,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tracing::{debug, info, warn, Instrument};

use crate::address::{Address, ToAddress};
use crate::stream::{Listener, SharedListener, Socket, Stream};

/// Events buffered per subscriber before the oldest are dropped.
const EVENT_BUFFER: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Something that happened to one of the server's connections.
///
/// # Examples
///
/// ```
/// use rpc_core::DisconnectReason;
/// use rpc_transport::{connect, Event, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let server = Server::builder().bind("tcp://127.0.0.1:0").await?;
/// let mut events = server.events();
/// let client = connect(server.local_addr()).name("worker-7").await?;
/// let Some(Event::Connected(peer)) = events.recv().await else { unreachable!() };
/// assert_eq!(peer.remote_name().as_deref(), Some("worker-7"));
/// client.close().await;
/// let Some(Event::Disconnected { id, reason, .. }) = events.recv().await else { unreachable!() };
/// assert_eq!((id, reason), (client.connection_id(), DisconnectReason::ClosedByPeer));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A client connected and passed the handshake; the [`Peer`] calls it
    /// (and, over mutual TLS, shows its verified certificate as
    /// [`Peer::peer_identity`]).
    Connected(Peer),
    /// A connection ended. Connections that failed the handshake (wrong
    /// secret, version mismatch, silence, a failed TLS handshake) or were
    /// refused (too many connections, no TLS on a TLS server) are reported
    /// here too, without a `Connected` before.
    Disconnected {
        /// The connection's id.
        id: u64,
        /// Why it ended.
        reason: DisconnectReason,
        /// Where the connection came from: `ip:port` for TCP, `unix peer`
        /// for a Unix socket.
        remote: String,
    },
    /// A client exposed or removed one of its objects during its
    /// connection (the same as its server-side [`Peer::remote_changes`]).
    RemoteChanged {
        /// The connection's id.
        id: u64,
        /// What changed.
        change: RemoteChange,
    },
}

/// A subscription to a server's [`Event`]s.
///
/// Made by [`Server::events`]. Every subscription gets every event sent
/// after it was made.
///
/// # Examples
///
/// ```
/// use rpc_transport::{connect, Event, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let server = Server::builder().bind("tcp://127.0.0.1:0").await?;
/// let (mut log, mut metrics) = (server.events(), server.events());
/// let _client = connect(server.local_addr()).await?;
/// assert!(matches!(log.recv().await, Some(Event::Connected(_))));
/// assert!(matches!(metrics.recv().await, Some(Event::Connected(_))));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the server is gone.
    ///
    /// The server is gone once it was dropped or shut down and its last
    /// connection has been reported closed. A subscriber that falls more
    /// than 1024 events behind skips the oldest (with a warning).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::DisconnectReason;
    /// use rpc_transport::{connect, Event, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().bind("tcp://127.0.0.1:0").await?;
    /// let mut events = server.events();
    /// let _client = connect(server.local_addr()).await?;
    /// assert!(matches!(events.recv().await, Some(Event::Connected(_))));
    /// drop(server);
    /// let Some(Event::Disconnected { reason, .. }) = events.recv().await else { unreachable!() };
    /// assert_eq!(reason, DisconnectReason::Shutdown);
    /// assert!(events.recv().await.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(skipped = n, "event subscriber fell behind")
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Builds a [`Server`]; see [`Server::builder`].
///
/// # Examples
///
/// ```
/// use rpc_transport::{connect, Server};
/// # use rpc_core::expose;
/// # pub struct Calc;
/// # #[expose]
/// # impl Calc {
/// #     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let server = Server::builder()
///     .expose(Calc)
///     .secret("s3cret")
///     .max_connections(100)
///     .bind("tcp://127.0.0.1:0")
///     .await?;
/// let peer = connect(server.local_addr()).secret("s3cret").await?;
/// assert_eq!(CalcClient::new(&peer).add(2, 3).await?, 5);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use]
pub struct ServerBuilder {
    registry: Registry,
    config: PeerConfig,
    max_connections: Option<usize>,
    max_handshaking: usize,
    max_buffered: usize,
    /// Set by [`secret`](ServerBuilder::secret); applied over `config` at
    /// bind, so the order of the calls does not matter.
    secret: Option<Vec<u8>>,
    /// Set by [`introspection`](ServerBuilder::introspection); applied to
    /// the registry at bind.
    introspection: Option<bool>,
    /// Set by [`tls`](ServerBuilder::tls).
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// The bytes a server's connections may hold together in partial frames and
/// send queues, by default (see [`ServerBuilder::max_buffered_bytes`]): 1 GiB.
///
/// # Examples
///
/// ```
/// assert_eq!(rpc_transport::DEFAULT_MAX_BUFFERED_BYTES, 1 << 30);
/// ```
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 1 << 30;

/// How many connections may be in their handshake at once, by default (see
/// [`ServerBuilder::max_handshaking`]).
///
/// # Examples
///
/// ```
/// assert_eq!(rpc_transport::DEFAULT_MAX_HANDSHAKING, 256);
/// ```
pub const DEFAULT_MAX_HANDSHAKING: usize = 256;

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            registry: Registry::default(),
            config: PeerConfig::default(),
            max_connections: None,
            max_handshaking: DEFAULT_MAX_HANDSHAKING,
            max_buffered: DEFAULT_MAX_BUFFERED_BYTES,
            secret: None,
            introspection: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ServerBuilder {
    /// Exposes `object` under its default name.
    ///
    /// The object is shared by every connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::{connect, Server};
    /// # use rpc_core::expose;
    /// # pub struct Calc;
    /// # #[expose]
    /// # impl Calc {
    /// #     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().expose(Calc).bind("tcp://127.0.0.1:0").await?;
    /// let (a, b) = (connect(server.local_addr()).await?, connect(server.local_addr()).await?);
    /// assert_eq!(CalcClient::new(&a).add(2, 3).await?, 5);
    /// assert_eq!(CalcClient::new(&b).add(4, 5).await?, 9);
    /// # Ok(())
    /// # }
    /// ```
    pub fn expose<S: Service>(self, object: S) -> Self {
        self.registry.expose(object);
        self
    }

    /// Exposes `object` under `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::{connect, Server};
    /// # use rpc_core::expose;
    /// # pub struct Calc;
    /// # #[expose]
    /// # impl Calc {
    /// #     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder()
    ///     .expose_as("calc-v2", Calc)
    ///     .bind("tcp://127.0.0.1:0")
    ///     .await?;
    /// let peer = connect(server.local_addr()).await?;
    /// assert_eq!(CalcClient::with_name(&peer, "calc-v2").add(2, 3).await?, 5);
    /// assert!(CalcClient::new(&peer).add(2, 3).await.is_err()); // not under "Calc"
    /// # Ok(())
    /// # }
    /// ```
    pub fn expose_as<S: Service>(self, name: &str, object: S) -> Self {
        self.registry.expose_as(name, object);
        self
    }

    /// Serves the objects of an existing registry.
    ///
    /// The server serves that registry itself, not a copy: objects exposed
    /// in it later are served too. Objects exposed on this builder before
    /// are dropped with the registry they were in.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::Registry;
    /// use rpc_transport::{connect, Server};
    /// # use rpc_core::expose;
    /// # pub struct Calc;
    /// # #[expose]
    /// # impl Calc {
    /// #     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let registry = Registry::new();
    /// let server = Server::builder().registry(registry.clone()).bind("tcp://127.0.0.1:0").await?;
    /// registry.expose(Calc);
    /// let peer = connect(server.local_addr()).await?;
    /// assert_eq!(CalcClient::new(&peer).add(2, 3).await?, 5);
    /// # Ok(())
    /// # }
    /// ```
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Whether clients may list the server's objects and their methods
    /// (`Peer::remote_objects`); on by default. Switch it off for
    /// deployments that should not tell callers what they could call.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{RemoteError, RpcError};
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let server = Server::builder().introspection(false).bind("tcp://127.0.0.1:0").await?;
    /// let peer = connect(server.local_addr()).await?;
    /// let e = peer.remote_objects().await.unwrap_err();
    /// assert_eq!(e, RpcError::Remote(RemoteError::UnknownObject("rpc".into())));
    /// # Ok(())
    /// # }
    /// ```
    pub fn introspection(mut self, on: bool) -> Self {
        self.introspection = Some(on);
        self
    }

    /// Replaces the per-connection configuration.
    ///
    /// A secret set by [`secret`](Self::secret) applies over it, whichever
    /// order the calls come in.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{PeerConfig, RpcError};
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let config = PeerConfig::default().max_frame(4096);
    /// let server = Server::builder().config(config).bind("tcp://127.0.0.1:0").await?;
    /// let peer = connect(server.local_addr()).await?;
    /// let err = peer.notify("Log.write", &vec![0u8; 10_000]).await.unwrap_err();
    /// assert!(matches!(err, RpcError::TooLarge { limit: 4096, .. }));
    /// # Ok(())
    /// # }
    /// ```
    pub fn config(mut self, config: PeerConfig) -> Self {
        self.config = config;
        self
    }

    /// Requires every client to authenticate with this shared secret.
    ///
    /// A client without it, or with another, gets [`RpcError::AuthFailed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::RpcError;
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().secret("s3cret").bind("tcp://127.0.0.1:0").await?;
    /// let anonymous = connect(server.local_addr()).await;
    /// assert!(matches!(anonymous, Err(RpcError::AuthFailed(_))));
    /// assert!(connect(server.local_addr()).secret("s3cret").await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Serves every connection inside TLS, with `config`.
    ///
    /// Each accepted connection does the TLS handshake first, then the
    /// protocol's handshake inside it. The TLS handshake counts against
    /// [`max_handshaking`](ServerBuilder::max_handshaking) and is bounded
    /// by the handshake timeout
    /// ([`PeerConfig::handshake_timeout`](rpc_core::PeerConfig::handshake_timeout)),
    /// as the protocol's handshake after it is. When `config` verifies
    /// client certificates (mutual TLS, with
    /// [`WebPkiClientVerifier`](rustls::server::WebPkiClientVerifier)),
    /// each connection's verified certificate chain is its
    /// [`Peer::peer_identity`] and its handlers'
    /// [`CallContext::peer_identity`](rpc_core::CallContext::peer_identity).
    ///
    /// A failed TLS handshake (an unknown CA, a missing or rejected client
    /// certificate, a timeout) ends only that connection and shows in the
    /// [`events`](Server::events) as [`Event::Disconnected`] with the
    /// remote address and a reason naming the TLS error; a client that does
    /// not start TLS at all is refused in the protocol it speaks
    /// ([`RpcError::Refused`] on its side). Works over Unix sockets too.
    /// See [`tls`](crate::tls) for the crypto provider and a whole example
    /// with client certificates.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{DisconnectReason, RpcError};
    /// use rpc_transport::tls::rustls::{self, pki_types::PrivateKeyDer};
    /// use rpc_transport::{connect, Event, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A self-signed certificate for "localhost" (made here with rcgen).
    /// let key = rcgen::KeyPair::generate()?;
    /// let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&key)?;
    /// let config = rustls::ServerConfig::builder()
    ///     .with_no_client_auth()
    ///     .with_single_cert(vec![cert.der().clone()], PrivateKeyDer::Pkcs8(key.serialize_der().into()))?;
    /// let server = Server::builder().tls(config).bind("tcp://127.0.0.1:0").await?;
    /// let mut events = server.events();
    ///
    /// // A client that trusts another CA (here: the system's none) fails...
    /// let roots = rustls::RootCertStore::empty();
    /// let stranger = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    /// let err = connect(server.local_addr()).tls(stranger, "localhost").await.unwrap_err();
    /// assert!(err.to_string().contains("UnknownIssuer"));
    /// // ...and the server says so, with where it came from.
    /// let Some(Event::Disconnected { reason, remote, .. }) = events.recv().await else { panic!() };
    /// assert!(matches!(reason, DisconnectReason::Io(m) if m.starts_with("TLS handshake failed")));
    /// assert!(remote.starts_with("127.0.0.1:"));
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: impl Into<Arc<rustls::ServerConfig>>) -> Self {
        self.tls = Some(config.into());
        self
    }

    /// Refuses authenticated connections beyond `n` at once (default: no
    /// limit).
    ///
    /// Only connections that passed the handshake count: sockets that
    /// connect and say nothing count against
    /// [`max_handshaking`](ServerBuilder::max_handshaking) instead, so they
    /// cannot lock clients out. A refused client gets [`RpcError::Refused`]
    /// with the reason, at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::RpcError;
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().max_connections(1).bind("tcp://127.0.0.1:0").await?;
    /// let _first = connect(server.local_addr()).await?;
    /// let second = connect(server.local_addr()).await;
    /// assert!(matches!(second, Err(RpcError::Refused(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Refuses new connections while `n` are still in their handshake
    /// (default [`DEFAULT_MAX_HANDSHAKING`], 256).
    ///
    /// Each handshake is bounded by
    /// [`PeerConfig::handshake_timeout`](rpc_core::PeerConfig::handshake_timeout);
    /// this bounds how many silent or slow sockets can be held at once. A
    /// client refused for it gets [`RpcError::Refused`] at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().max_handshaking(16).bind("tcp://127.0.0.1:0").await?;
    /// assert!(connect(server.local_addr()).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_handshaking(mut self, n: usize) -> Self {
        self.max_handshaking = n.max(1);
        self
    }

    /// Caps the bytes all connections together may hold in partial frames
    /// and send queues (default [`DEFAULT_MAX_BUFFERED_BYTES`], 1 GiB).
    ///
    /// Each connection buffers up to
    /// [`BufferBudget::FREE_PER_CONNECTION`](rpc_core::BufferBudget::FREE_PER_CONNECTION)
    /// for reading and as much for sending on its own; beyond that it takes
    /// from this budget, and a connection that needs more than is left is
    /// closed with
    /// [`DisconnectReason::BufferBudget`](rpc_core::DisconnectReason::BufferBudget),
    /// never the process. A budget set in the server's
    /// [`PeerConfig`](rpc_core::PeerConfig::buffer_budget) takes precedence.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().max_buffered_bytes(256 << 20).bind("tcp://127.0.0.1:0").await?;
    /// assert!(connect(server.local_addr()).await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.max_buffered = bytes;
        self
    }

    /// Binds `addr` and starts accepting.
    ///
    /// # Errors
    ///
    /// [`RpcError::BadAddress`] for an invalid address; [`RpcError::Io`]
    /// when binding fails, including a Unix socket with a live server
    /// behind it ("address in use"). A stale socket file is removed.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::RpcError;
    /// use rpc_transport::Server;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let dir = tempfile::tempdir()?;
    /// let addr = format!("unix://{}", dir.path().join("app.sock").display());
    /// let server = Server::builder().bind(&addr).await?;
    /// let again = Server::builder().bind(&addr).await;
    /// assert!(matches!(again, Err(RpcError::Io(_)))); // in use
    /// let typo = Server::builder().bind("tcp:/127.0.0.1:0").await;
    /// assert!(matches!(typo, Err(RpcError::BadAddress(_))));
    /// # drop(server);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn bind(self, addr: impl ToAddress) -> Result<Server, RpcError> {
        let addr = addr.to_address()?;
        let (listener, local) = Listener::bind(&addr).await?;
        let listener = Arc::new(SharedListener::new(listener));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let mut config = match self.secret {
            Some(secret) => self.config.secret(secret),
            None => self.config,
        };
        if config.shared_budget().is_none() {
            config = config.buffer_budget(BufferBudget::new(self.max_buffered));
        }
        if let Some(on) = self.introspection {
            self.registry.introspection(on);
        }
        let inner = Arc::new(Inner {
            addr: local,
            registry: self.registry,
            config,
            max_connections: self.max_connections,
            max_handshaking: self.max_handshaking,
            peers: Mutex::new(HashMap::new()),
            events,
            next_id: AtomicU64::new(1),
            active: AtomicUsize::new(0),
            handshaking: AtomicUsize::new(0),
            listener: listener.clone(),
            #[cfg(feature = "tls")]
            tls: self.tls.map(crate::tls::ServerTls::new),
        });
        let accept = tokio::spawn(accept_loop(inner.clone(), listener));
        info!(addr = %inner.addr, "listening");
        Ok(Server {
            inner,
            accept: accept.abort_handle(),
        })
    }
}

struct Inner {
    addr: Address,
    /// Closed first thing on shutdown or drop, which frees the address.
    listener: Arc<SharedListener>,
    registry: Registry,
    config: PeerConfig,
    max_connections: Option<usize>,
    max_handshaking: usize,
    peers: Mutex<HashMap<u64, Peer>>,
    events: broadcast::Sender<Event>,
    next_id: AtomicU64,
    /// Authenticated connections, against `max_connections`.
    active: AtomicUsize,
    /// Connections in their handshake, against `max_handshaking`.
    handshaking: AtomicUsize,
    /// TLS for every connection, when configured.
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::ServerTls>,
}

/// A listening server.
///
/// Dropping it stops accepting, frees the address before `drop` returns (it
/// can be bound again at once) and closes every connection;
/// [`shutdown`](Server::shutdown) does the same gracefully.
///
/// # Examples
///
/// ```no_run
/// use rpc_core::expose;
///
/// pub struct Echo;
/// #[expose]
/// impl Echo {
///     pub fn echo(&self, s: String) -> String { s }
/// }
///
/// # async fn f() -> Result<(), rpc_core::RpcError> {
/// let server = rpc_transport::Server::builder()
///     .expose(Echo)
///     .bind("tcp://127.0.0.1:0")
///     .await?;
/// println!("listening on {}", server.local_addr());
/// let mut events = server.events();
/// while let Some(event) = events.recv().await {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    inner: Arc<Inner>,
    accept: tokio::task::AbortHandle,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("connections", &lock(&self.peers).len())
            .finish()
    }
}

impl Server {
    /// Starts building a server.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().bind("tcp://127.0.0.1:0").await?;
    /// let peer = connect(server.local_addr()).await?;
    /// assert!(peer.ping().await.is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The address actually bound (with the real port when port 0 was given).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::{Address, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().bind("tcp://127.0.0.1:0").await?;
    /// let Address::Tcp(host_port) = server.local_addr() else { unreachable!() };
    /// assert!(host_port.starts_with("127.0.0.1:"));
    /// assert!(!host_port.ends_with(":0"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn local_addr(&self) -> &Address {
        &self.inner.addr
    }

    /// Subscribes to connect and disconnect events from now on.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::{connect, Event, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().bind("tcp://127.0.0.1:0").await?;
    /// let mut events = server.events();
    /// let client = connect(server.local_addr()).await?;
    /// let Some(Event::Connected(peer)) = events.recv().await else { unreachable!() };
    /// assert_eq!(peer.connection_id(), client.connection_id());
    /// # Ok(())
    /// # }
    /// ```
    pub fn events(&self) -> Events {
        Events {
            rx: self.inner.events.subscribe(),
        }
    }

    /// The objects this server exposes.
    ///
    /// Objects added here are served to every connection, current and
    /// future.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::{connect, Server};
    /// # use rpc_core::expose;
    /// # pub struct Calc;
    /// # #[expose]
    /// # impl Calc {
    /// #     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().bind("tcp://127.0.0.1:0").await?;
    /// let peer = connect(server.local_addr()).await?; // connected before...
    /// server.registry().expose(Calc); // ...Calc is exposed
    /// assert_eq!(CalcClient::new(&peer).add(2, 3).await?, 5);
    /// # Ok(())
    /// # }
    /// ```
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The peer with this connection id: connected, or in its handshake.
    ///
    /// Calls through it reach that client.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::expose;
    /// use rpc_transport::{connect, Event, Server};
    ///
    /// pub struct Me;
    /// #[expose]
    /// impl Me {
    ///     pub fn name(&self) -> String { "Ada".into() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().bind("tcp://127.0.0.1:0").await?;
    /// let mut events = server.events();
    /// let client = connect(server.local_addr()).expose(Me).await?;
    /// # let Some(Event::Connected(_)) = events.recv().await else { unreachable!() };
    /// let remote = server.peer(client.connection_id()).unwrap();
    /// let name: String = remote.call("Me.name", &()).await?;
    /// assert_eq!(name, "Ada");
    /// assert!(server.peer(client.connection_id() + 1).is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn peer(&self, connection_id: u64) -> Option<Peer> {
        lock(&self.inner.peers).get(&connection_id).cloned()
    }

    /// All connected peers (not those still in their handshake), by
    /// connection id.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::Peer;
    /// use rpc_transport::{connect, Event, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().bind("tcp://127.0.0.1:0").await?;
    /// let mut events = server.events();
    /// let a = connect(server.local_addr()).await?;
    /// let b = connect(server.local_addr()).await?;
    /// # for _ in 0..2 {
    /// #     let Some(Event::Connected(_)) = events.recv().await else { unreachable!() };
    /// # }
    /// let ids: Vec<u64> = server.peers().iter().map(Peer::connection_id).collect();
    /// assert_eq!(ids, [a.connection_id(), b.connection_id()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn peers(&self) -> Vec<Peer> {
        let mut v: Vec<Peer> = lock(&self.inner.peers)
            .values()
            .filter(|p| p.is_connected())
            .cloned()
            .collect();
        v.sort_by_key(Peer::connection_id);
        v
    }

    /// Shuts the server down gracefully.
    ///
    /// Stops accepting, refuses new calls with [`RemoteError::ShuttingDown`](rpc_core::RemoteError::ShuttingDown),
    /// lets calls in flight finish for up to `grace` (their replies are
    /// sent), says goodbye to every client (which sees
    /// [`DisconnectReason::Shutdown`]) and waits until each goodbye is
    /// written, then runs the close hooks ([`Service::close`]) of the
    /// objects in [`registry`](Server::registry).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use rpc_core::{expose, DisconnectReason};
    /// use rpc_transport::{connect, Server};
    ///
    /// #[derive(Default)]
    /// pub struct Db { flushed: AtomicBool }
    /// #[expose]
    /// impl Db {
    ///     pub fn get(&self) -> u32 { 1 }
    ///     #[expose(close)]
    ///     pub fn flush(&self) { self.flushed.store(true, SeqCst); }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let db = Arc::new(Db::default());
    /// let server = Server::builder().bind("tcp://127.0.0.1:0").await?;
    /// server.registry().expose_arc("Db", db.clone());
    /// let client = connect(server.local_addr()).await?;
    /// assert_eq!(DbClient::new(&client).get().await?, 1);
    /// server.shutdown(Duration::from_secs(1)).await;
    /// assert_eq!(client.closed().await, DisconnectReason::Shutdown);
    /// assert!(db.flushed.load(SeqCst));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(self, grace: Duration) {
        self.inner.listener.close();
        self.accept.abort();
        for p in self.peers() {
            p.drain();
        }
        let deadline = Instant::now() + grace;
        loop {
            let busy = self.peers().iter().any(|p| p.serving() > 0);
            if !busy || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Every peer, those still in their handshake included. Each says
        // goodbye; shutdown returns once every goodbye is written (each
        // writer gives up on a remote that does not read after 2 s), so a
        // process that exits right after still told every client.
        let peers: Vec<Peer> = lock(&self.inner.peers).values().cloned().collect();
        for p in &peers {
            p.close_with(DisconnectReason::Shutdown);
        }
        futures::future::join_all(peers.iter().map(Peer::flushed)).await;
        self.inner.registry.close_all().await;
        info!(addr = %self.inner.addr, "server shut down");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.inner.listener.close();
        self.accept.abort();
        for p in lock(&self.inner.peers).drain().map(|(_, p)| p) {
            p.close_with(DisconnectReason::Shutdown);
        }
        #[cfg(all(unix, feature = "unix"))]
        if let Address::Unix(path) = &self.inner.addr {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: Arc<SharedListener>) {
    // A descriptor kept in reserve: when the process runs out, it is given
    // up to accept the waiting dialer, refuse it at once and close it, so
    // dialers hear why instead of waiting in the kernel's queue.
    let mut spare = open_spare();
    let mut warnings = RateLimited::default();
    loop {
        match listener.accept().await {
            Ok(None) => return,
            Ok(Some((socket, remote))) => {
                let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
                let span = tracing::debug_span!("rpc.connection", connection_id = id, %remote);
                tokio::spawn(serve(inner.clone(), id, socket, remote).instrument(span));
            }
            Err(e) if out_of_descriptors(&e) => {
                let shed = match spare.take() {
                    Some(reserve) => {
                        drop(reserve);
                        let shed = turn_away_one(&inner, &listener).await;
                        spare = open_spare();
                        shed
                    }
                    None => None,
                };
                if let Some(remote) = &shed {
                    let why = DisconnectReason::Refused(OUT_OF_DESCRIPTORS.into());
                    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
                    let _ = inner.events.send(Event::Disconnected {
                        id,
                        reason: why,
                        remote: remote.clone(),
                    });
                }
                if let Some(n) = warnings.hit() {
                    let latest = shed.as_deref().unwrap_or("(none accepted)");
                    warn!(error = %e, refused = n, latest = %latest, "out of file descriptors: refusing new connections, serving the open ones");
                }
                if shed.is_none() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(e) => {
                if let Some(n) = warnings.hit() {
                    warn!(error = %e, failures = n, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What a dialer refused for want of descriptors is told.
const OUT_OF_DESCRIPTORS: &str = "the server is out of file descriptors";

fn out_of_descriptors(e: &std::io::Error) -> bool {
    // EMFILE (this process) and ENFILE (the whole system).
    matches!(e.raw_os_error(), Some(24) | Some(23))
}

/// The reserve descriptor.
fn open_spare() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// Accepts the waiting dialer with the descriptor just freed, refuses it
/// and closes it; where it came from, if one was accepted.
async fn turn_away_one(inner: &Inner, listener: &SharedListener) -> Option<String> {
    let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
    let Ok(Ok(Some((socket, remote)))) = accepted else {
        return None;
    };
    // A TLS dialer could not read a refusal without a TLS handshake, which
    // is more than a server out of descriptors should spend: it is closed.
    #[cfg(feature = "tls")]
    if inner.tls.is_some() {
        return Some(remote);
    }
    let (mut rd, mut wr) = socket.into_halves();
    let refusal = RpcError::Refused(OUT_OF_DESCRIPTORS.into());
    let told = async {
        let _ = Peer::turn_away(&mut wr, &inner.config, &refusal).await;
        let _ = wr.shutdown().await;
        // Read what the dialer sent until it hangs up: a socket closed with
        // unread bytes is reset, and a reset can overtake the refusal.
        let mut sink = [0u8; 1024];
        while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(Duration::from_millis(300), told).await;
    Some(remote)
}

/// Counts events and says when to log them: at most once a second.
#[derive(Default)]
struct RateLimited {
    last: Option<Instant>,
    since: u64,
}

impl RateLimited {
    /// One more event; the count since the last log line when it is time
    /// for another.
    fn hit(&mut self) -> Option<u64> {
        self.since += 1;
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if !due {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }
}

/// One place in a counter, given back on drop.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a refusal may take: the dialer's hello is read, the verdict
/// sent. A dialer that says nothing is dropped after this.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Why a new connection is refused before its handshake, if it is.
fn full(inner: &Inner, handshaking: usize) -> Option<String> {
    if handshaking > inner.max_handshaking {
        return Some(format!(
            "too many connections in their handshake (limit {})",
            inner.max_handshaking
        ));
    }
    match inner.max_connections {
        Some(max) if inner.active.load(Ordering::Acquire) >= max => {
            Some(format!("too many connections (limit {max})"))
        }
        _ => None,
    }
}

/// What an accepted socket became once the server's layer (TLS, when
/// configured) had its say.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
enum Opened {
    /// Ready for the protocol's handshake.
    Ready(Stream),
    /// A client that did not start TLS on a TLS server, as it came.
    NotTls(Stream),
    /// The TLS handshake failed; why.
    Failed(DisconnectReason),
}

/// What a client that does not start TLS on a TLS server is told.
#[cfg(feature = "tls")]
const TLS_REQUIRED: &str = "this server requires TLS and the client did not start a TLS handshake";

/// Sets up the stream over an accepted socket: the TLS handshake first when
/// the server has TLS, within the handshake timeout.
async fn open(inner: &Inner, socket: Socket) -> Opened {
    #[cfg(feature = "tls")]
    if let Some(tls) = &inner.tls {
        use crate::tls::Accepted;
        let limit = inner.config.handshake_time_limit();
        return match tokio::time::timeout(limit, tls.accept(socket)).await {
            Ok(Ok(Accepted::Tls(stream))) => Opened::Ready(stream),
            Ok(Ok(Accepted::Plain(stream))) => Opened::NotTls(stream),
            Ok(Err(reason)) => Opened::Failed(reason),
            Err(_) => Opened::Failed(DisconnectReason::Protocol(format!(
                "the TLS handshake did not finish within {limit:?}"
            ))),
        };
    }
    #[cfg(not(feature = "tls"))]
    let _ = inner;
    Opened::Ready(Stream::plain(socket))
}

async fn serve(inner: Arc<Inner>, id: u64, socket: Socket, remote: String) {
    let disconnected = |reason| Event::Disconnected {
        id,
        reason,
        remote: remote.clone(),
    };
    let handshaking = Counted(&inner.handshaking);
    let shaking = inner.handshaking.fetch_add(1, Ordering::AcqRel) + 1;
    if let Some(why) = full(&inner, shaking) {
        // Over TLS the refusal goes inside TLS, so the client can read it;
        // all within the time a refusal may take.
        let refusal = async {
            let stream = match open(&inner, socket).await {
                Opened::Ready(stream) | Opened::NotTls(stream) => stream,
                Opened::Failed(reason) => return RpcError::Protocol(reason.to_string()),
            };
            let refused = RpcError::Refused(why.clone());
            Peer::refuse(stream.rd, stream.wr, &inner.config, refused).await
        };
        let e = tokio::time::timeout(REFUSAL_TIME, refusal).await;
        warn!(%remote, reason = %why, outcome = ?e, "connection refused");
        let _ = inner
            .events
            .send(disconnected(DisconnectReason::Refused(why)));
        return;
    }
    let stream = match open(&inner, socket).await {
        Opened::Ready(stream) => stream,
        Opened::NotTls(stream) => {
            #[cfg(feature = "tls")]
            {
                // Told in the protocol it speaks: a plain client of this
                // protocol reads a clear refusal.
                let why = TLS_REQUIRED.to_string();
                let refusal = Peer::refuse(
                    stream.rd,
                    stream.wr,
                    &inner.config,
                    RpcError::Refused(why.clone()),
                );
                let e = tokio::time::timeout(REFUSAL_TIME, refusal).await;
                warn!(%remote, outcome = ?e, "connection refused: the client did not start TLS");
                let _ = inner
                    .events
                    .send(disconnected(DisconnectReason::Refused(why)));
            }
            #[cfg(not(feature = "tls"))]
            drop(stream);
            return;
        }
        Opened::Failed(reason) => {
            warn!(%remote, %reason, "TLS handshake failed");
            let _ = inner.events.send(disconnected(reason));
            return;
        }
    };
    // The peer is listed before its connection starts serving, so that a
    // handler of the client's very first call finds it with `server.peer(id)`.
    let peer = Peer::detached(inner.registry.layered(), inner.config.clone());
    lock(&inner.peers).insert(id, peer.clone());
    let side = Side::Accept { connection_id: id };
    // An authenticated connection takes its place among `max_connections`
    // just before the verdict; the place is given back when it ends.
    let mut counted = None;
    let admit = || {
        let now = inner.active.fetch_add(1, Ordering::AcqRel) + 1;
        counted = Some(Counted(&inner.active));
        match inner.max_connections {
            Some(max) if now > max => {
                counted = None;
                Err(RpcError::Refused(format!(
                    "too many connections (limit {max})"
                )))
            }
            _ => Ok(()),
        }
    };
    let attached = peer
        .attach_with(stream.rd, stream.wr, side, stream.options, admit)
        .await;
    drop(handshaking);
    if let Err(e) = attached {
        drop(counted);
        lock(&inner.peers).remove(&id);
        let reason = match &e {
            RpcError::AuthFailed(_) => DisconnectReason::AuthFailed,
            RpcError::Refused(why) => DisconnectReason::Refused(why.clone()),
            RpcError::VersionMismatch { ours, theirs } => DisconnectReason::VersionMismatch {
                ours: *ours,
                theirs: *theirs,
            },
            RpcError::Io(e) => DisconnectReason::Io(e.to_string()),
            RpcError::Protocol(m) => DisconnectReason::Protocol(m.clone()),
            // Closed while shaking hands: by a shutdown, say.
            RpcError::ConnectionClosed(reason) => reason.clone(),
            other => DisconnectReason::Protocol(other.to_string()),
        };
        warn!(%remote, error = %e, "handshake failed");
        let _ = inner.events.send(disconnected(reason));
        return;
    }
    debug!(remote_name = ?peer.remote_name(), "client connected");
    let closed = peer.closed_owned();
    let mut changes = peer.remote_changes();
    let _ = inner.events.send(Event::Connected(peer));
    // The client's objects coming and going are events too.
    tokio::pin!(closed);
    let reason = loop {
        tokio::select! {
            reason = &mut closed => break reason,
            change = changes.recv() => match change {
                Ok(change) => {
                    let _ = inner.events.send(Event::RemoteChanged { id, change });
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break (&mut closed).await,
            },
        }
    };
    lock(&inner.peers).remove(&id);
    drop(counted);
    debug!(%reason, "client disconnected");
    let _ = inner.events.send(disconnected(reason));
}
