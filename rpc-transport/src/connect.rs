//! [`connect`]: dial an address and get a [`Peer`], optionally one that
//! reconnects by itself.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rpc_core::{
    DisconnectReason, Peer, PeerConfig, Registry, RpcError, Service, Side, Status, WeakPeer,
};
use tracing::{debug, info, warn};

use crate::address::{Address, ToAddress};
use crate::names::Names;
use crate::stream::{dial, ClientLayer, Stream};

/// Dials `addr` (`tcp://host:port`, `unix:///path`, or `name://name`) and
/// returns the connected [`Peer`] once awaited.
///
/// Options are set on the returned [`Connect`] before awaiting it. A
/// `name://` address is looked up in a name service when dialed (see
/// [`Connect::names`]).
///
/// # Errors
///
/// Awaiting the [`Connect`] fails with [`RpcError::BadAddress`] for an
/// address that does not parse, or a `name://` that no name service
/// knows (or with no name service to ask), [`RpcError::Io`] when nothing listens
/// there (or, with `tls` (the `tls` feature), when the TLS handshake fails),
/// [`RpcError::HandshakeTimeout`] when dialing (TLS included) or the
/// handshake takes longer than the handshake timeout
/// ([`PeerConfig::handshake_timeout`]), and the handshake's errors:
/// [`RpcError::AuthFailed`], [`RpcError::Refused`],
/// [`RpcError::VersionMismatch`], [`RpcError::Protocol`].
///
/// # Examples
///
/// ```no_run
/// # async fn f() -> Result<(), rpc_core::RpcError> {
/// let peer = rpc_transport::connect("tcp://127.0.0.1:9099")
///     .secret("s3cret")
///     .name("worker-7")
///     .await?;
/// let n: i64 = peer.call("Calculator.add", &(2i64, 3i64)).await?;
/// # Ok(()) }
/// ```
pub fn connect(addr: impl ToAddress) -> Connect {
    Connect {
        addr: addr.to_address(),
        registry: Registry::new(),
        config: PeerConfig::default(),
        set: Settings::default(),
        reconnect: None,
        names: None,
        #[cfg(feature = "tls")]
        tls: None,
        running: None,
    }
}

/// Settings made one by one on a [`Connect`], applied over its
/// configuration when it is awaited, so the order of the calls does not
/// matter.
#[derive(Debug, Default)]
struct Settings {
    secret: Option<Vec<u8>>,
    name: Option<String>,
    call_timeout: Option<Duration>,
}

impl Settings {
    fn apply(self, mut config: PeerConfig) -> PeerConfig {
        if let Some(secret) = self.secret {
            config = config.secret(secret);
        }
        if let Some(name) = self.name {
            config = config.name(name);
        }
        if let Some(timeout) = self.call_timeout {
            config = config.call_timeout(Some(timeout));
        }
        config
    }
}

/// A connection being set up; await it to get the [`Peer`].
///
/// Made by [`connect`]; its methods set options, and awaiting it dials. It
/// is a [`Future`] itself, so it goes straight into `join_all`,
/// `buffer_unordered`, `tokio::spawn` or any function taking
/// `impl Future` (options set after it was first polled have no effect).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
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
/// let pending = connect(server.local_addr())
///     .name("worker-7")
///     .call_timeout(Duration::from_secs(5));
/// let peer = pending.await?;
/// assert_eq!(CalcClient::new(&peer).add(2, 3).await?, 5);
/// # Ok(())
/// # }
/// ```
#[must_use = "a Connect does nothing until awaited"]
#[derive(Debug)]
pub struct Connect {
    addr: Result<Address, RpcError>,
    registry: Registry,
    config: PeerConfig,
    set: Settings,
    reconnect: Option<Backoff>,
    /// Set by [`names`](Connect::names): where `name://` addresses are
    /// looked up.
    names: Option<Names>,
    /// Set by [`tls`](Connect::tls): the configuration and the server name.
    #[cfg(feature = "tls")]
    tls: Option<(std::sync::Arc<rustls::ClientConfig>, String)>,
    /// The dialing, once polled.
    running: Option<Running>,
}

/// The dialing and handshake of a [`Connect`] that was polled.
struct Running(Pin<Box<dyn Future<Output = Result<Peer, RpcError>> + Send>>);

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Running")
    }
}

impl Connect {
    /// Exposes `object` to the server under its default name (for callbacks).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, CallContext, RpcError};
    /// use rpc_transport::{connect, Server};
    ///
    /// pub struct Greeter;
    /// #[expose]
    /// impl Greeter {
    ///     pub async fn greet(&self, cx: CallContext, to: String) -> Result<String, RpcError> {
    ///         let me: String = cx.peer().call(&format!("{to}.name"), &()).await?;
    ///         Ok(format!("hello, {me}"))
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
    /// let server = Server::builder().expose(Greeter).bind("tcp://127.0.0.1:0").await?;
    /// let peer = connect(server.local_addr()).expose(Me).await?;
    /// let greeting = GreeterClient::new(&peer).greet("Me".into()).await??;
    /// assert_eq!(greeting, "hello, Ada");
    /// # Ok(())
    /// # }
    /// ```
    pub fn expose<S: Service>(self, object: S) -> Self {
        self.registry.expose(object);
        self
    }

    /// Exposes `object` to the server under `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, CallContext, RpcError};
    /// use rpc_transport::{connect, Server};
    ///
    /// pub struct Greeter;
    /// #[expose]
    /// impl Greeter {
    ///     pub async fn greet(&self, cx: CallContext, to: String) -> Result<String, RpcError> {
    ///         let me: String = cx.peer().call(&format!("{to}.name"), &()).await?;
    ///         Ok(format!("hello, {me}"))
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
    /// let server = Server::builder().expose(Greeter).bind("tcp://127.0.0.1:0").await?;
    /// let peer = connect(server.local_addr()).expose_as("ada", Me).await?;
    /// let greeting = GreeterClient::new(&peer).greet("ada".into()).await??;
    /// assert_eq!(greeting, "hello, Ada");
    /// # Ok(())
    /// # }
    /// ```
    pub fn expose_as<S: Service>(self, name: &str, object: S) -> Self {
        self.registry.expose_as(name, object);
        self
    }

    /// Serves the objects of an existing registry.
    ///
    /// The peer serves that registry itself, not a copy: objects exposed in
    /// it later are served too. Objects exposed on this `Connect` before are
    /// dropped with the registry they were in.
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
    /// # let server = Server::builder().bind("tcp://127.0.0.1:0").await?;
    /// let registry = Registry::new();
    /// let peer = connect(server.local_addr()).registry(registry.clone()).await?;
    /// registry.expose(Calc);
    /// assert_eq!(peer.registry().names(), ["Calc"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Replaces the configuration.
    ///
    /// Settings made by [`secret`](Self::secret), [`name`](Self::name) and
    /// [`call_timeout`](Self::call_timeout) apply over it, whichever order
    /// the calls come in.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::PeerConfig;
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let server = Server::builder().bind("tcp://127.0.0.1:0").await?;
    /// let config = PeerConfig::default().max_frame(1 << 20);
    /// let peer = connect(server.local_addr()).config(config).name("worker-7").await?;
    /// assert_eq!(peer.config().max_frame_len(), 1 << 20);
    /// # Ok(())
    /// # }
    /// ```
    pub fn config(mut self, config: PeerConfig) -> Self {
        self.config = config;
        self
    }

    /// Authenticates with a shared secret (the server must have the same).
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
    /// let peer = connect(server.local_addr()).secret("s3cret").await?;
    /// assert!(peer.ping().await.is_ok());
    /// let wrong = connect(server.local_addr()).secret("guess").await;
    /// assert!(matches!(wrong, Err(RpcError::AuthFailed(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.set.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Announces an identifier to the server.
    ///
    /// Its handlers see it as
    /// [`CallContext::remote_name`](rpc_core::CallContext::remote_name).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, CallContext};
    /// use rpc_transport::{connect, Server};
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
    /// let server = Server::builder().expose(Session).bind("tcp://127.0.0.1:0").await?;
    /// let peer = connect(server.local_addr()).name("worker-7").await?;
    /// let caller = SessionClient::new(&peer).caller().await?;
    /// assert_eq!(caller.as_deref(), Some("worker-7"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.set.name = Some(name.into());
        self
    }

    /// The default timeout of calls made through the peer.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::{expose, RpcError};
    /// use rpc_transport::{connect, Server};
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
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().expose(Sleepy).bind("tcp://127.0.0.1:0").await?;
    /// let limit = Duration::from_millis(50);
    /// let peer = connect(server.local_addr()).call_timeout(limit).await?;
    /// assert_eq!(peer.config().default_call_timeout(), Some(limit));
    /// assert_eq!(SleepyClient::new(&peer).nap(5_000).await, Err(RpcError::Timeout));
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.set.call_timeout = Some(timeout);
        self
    }

    /// Reconnects with exponential backoff when the connection is lost.
    ///
    /// The first connection must succeed (its error is returned as is).
    /// While reconnecting, [`Peer::status`] shows [`Status::Reconnecting`]
    /// and calls fail at once with [`RpcError::NotConnected`]; no call is
    /// retried. Objects exposed through this `Connect` are served on every
    /// new connection. Reconnecting stops for good on [`Peer::close`] or
    /// [`Peer::close_with`], when every handle is dropped, or when a new
    /// connection fails authentication or speaks another protocol version
    /// (the status then becomes [`Status::Closed`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::{RpcError, Status};
    /// use rpc_transport::{connect, Backoff, Server};
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
    /// let addr = server.local_addr().clone();
    /// let backoff = Backoff::default().initial(Duration::from_millis(10));
    /// let peer = connect(&addr).reconnect(backoff).await?;
    /// let mut status = peer.status();
    /// drop(server); // the connection is lost...
    /// status.wait_for(|s| *s == Status::Reconnecting).await.unwrap();
    /// assert_eq!(CalcClient::new(&peer).add(1, 2).await, Err(RpcError::NotConnected));
    /// let _server = Server::builder().expose(Calc).bind(&addr).await?; // ...and back
    /// status.wait_for(|s| *s == Status::Connected).await.unwrap();
    /// assert_eq!(CalcClient::new(&peer).add(1, 2).await?, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.reconnect = Some(backoff);
        self
    }

    /// Runs the connection inside TLS, with `config`, expecting the
    /// server's certificate to be valid for `server_name` (a DNS name or an
    /// IP address, whatever the address dialed).
    ///
    /// The TLS handshake comes first, then the protocol's handshake inside
    /// it; both count against the handshake timeout (the dial and the TLS
    /// handshake together, then the protocol's handshake). A reconnecting
    /// client does the TLS handshake again on every connection. With a
    /// client certificate in `config` (mutual TLS) the server's handlers see
    /// it as [`CallContext::peer_identity`](rpc_core::CallContext::peer_identity);
    /// this side sees the server's as [`Peer::peer_identity`].
    ///
    /// Over Unix sockets too. See [`tls`](crate::tls) for the crypto
    /// provider and a whole example with client certificates.
    ///
    /// # Errors
    ///
    /// Awaiting fails with [`RpcError::BadAddress`] when `server_name` is
    /// neither a DNS name nor an IP address, and with [`RpcError::Io`] when
    /// the TLS handshake fails; its message starts with `TLS handshake with
    /// tcp://…` and names the TLS error (an unknown CA, a certificate not
    /// valid for `server_name`, a server that rejected this side's
    /// certificate or wanted one, a server that does not speak TLS). A
    /// server that requires TLS answers a client without it with
    /// [`RpcError::Refused`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::RpcError;
    /// use rpc_transport::tls::rustls::{self, pki_types::PrivateKeyDer};
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A self-signed server certificate for "localhost" (made here with rcgen).
    /// let key = rcgen::KeyPair::generate()?;
    /// let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&key)?;
    /// let server_key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    /// let server_config = rustls::ServerConfig::builder()
    ///     .with_no_client_auth()
    ///     .with_single_cert(vec![cert.der().clone()], server_key)?;
    /// let server = Server::builder().tls(server_config).bind("tcp://127.0.0.1:0").await?;
    ///
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.add(cert.der().clone())?;
    /// let client_config = Arc::new(
    ///     rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth(),
    /// );
    /// let peer = connect(server.local_addr()).tls(client_config.clone(), "localhost").await?;
    /// peer.ping().await?;
    /// assert!(peer.peer_identity().is_some()); // the server's certificate
    ///
    /// let wrong = connect(server.local_addr()).tls(client_config, "example.com").await;
    /// assert!(matches!(wrong, Err(RpcError::Io(e)) if e.to_string().starts_with("TLS handshake with tcp://")));
    /// let plain = connect(server.local_addr()).await;
    /// assert!(matches!(plain, Err(RpcError::Refused(m)) if m.contains("requires TLS")));
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(
        mut self,
        config: impl Into<std::sync::Arc<rustls::ClientConfig>>,
        server_name: impl Into<String>,
    ) -> Self {
        self.tls = Some((config.into(), server_name.into()));
        self
    }

    /// Looks `name://` addresses up in this name service (a `tcp://` or
    /// `unix://` address, a [`Names`] with the secret or TLS it requires,
    /// or a [`Peer`] already connected to it).
    ///
    /// The lookup happens when dialing: the first time, and again before
    /// every reconnection (see [`reconnect`](Connect::reconnect)), so a
    /// server that registered again at a new address is found there.
    /// Without this setting, a `name://` address is looked up in the name
    /// service named by the environment variable `RPC_NAMES`
    /// ([`names::ENV`](crate::names::ENV)), reached with this connection's
    /// shared secret, if any. Other addresses ignore it.
    ///
    /// # Errors
    ///
    /// Awaiting fails with [`RpcError::BadAddress`] when no server is
    /// registered under the name, or when no name service was given and
    /// `RPC_NAMES` is not set; with the name service's own errors when it
    /// cannot be reached.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use rpc_core::RpcError;
    /// use rpc_transport::names::{NameService, Names};
    /// use rpc_transport::{connect, Server};
    /// # use rpc_core::expose;
    /// # pub struct Calc;
    /// # #[expose]
    /// # impl Calc {
    /// #     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let ns = Server::builder().expose(NameService::new()).bind("tcp://127.0.0.1:0").await?;
    /// let calc = Server::builder().expose(Calc).bind("tcp://127.0.0.1:0").await?;
    /// let _registered = Names::at(ns.local_addr())
    ///     .register("calc", calc.local_addr(), BTreeMap::new())
    ///     .await?
    ///     .unwrap();
    ///
    /// let peer = connect("name://calc").names(ns.local_addr()).await?;
    /// assert_eq!(CalcClient::new(&peer).add(2, 3).await?, 5);
    ///
    /// let unknown = connect("name://nobody").names(ns.local_addr()).await.unwrap_err();
    /// assert!(matches!(unknown, RpcError::BadAddress(m) if m.contains("no server is registered as `nobody`")));
    /// # Ok(())
    /// # }
    /// ```
    pub fn names(mut self, names: impl Into<Names>) -> Self {
        self.names = Some(names.into());
        self
    }

    /// How dialed sockets become streams, from the options set so far.
    fn layer(&mut self) -> Result<ClientLayer, RpcError> {
        #[cfg(feature = "tls")]
        if let Some((config, name)) = self.tls.take() {
            return Ok(ClientLayer {
                tls: Some(crate::tls::ClientTls::new(config, name)?),
            });
        }
        Ok(ClientLayer::default())
    }

    /// Starts the dialing with the options set so far.
    fn start(&mut self) -> Running {
        let gone = || RpcError::BadAddress("this Connect was already awaited".into());
        let addr = std::mem::replace(&mut self.addr, Err(gone()));
        let layer = self.layer();
        let registry = std::mem::take(&mut self.registry);
        let config = std::mem::take(&mut self.config);
        let set = std::mem::take(&mut self.set);
        let reconnect = self.reconnect.take();
        let lookup = Lookup {
            names: self.names.take(),
            secret: set.secret.clone(),
        };
        Running(Box::pin(run(
            addr,
            layer,
            registry,
            set.apply(config),
            reconnect,
            lookup,
        )))
    }
}

impl Future for Connect {
    type Output = Result<Peer, RpcError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let running = match &mut this.running {
            Some(running) => running,
            None => {
                let running = this.start();
                this.running.insert(running)
            }
        };
        running.0.as_mut().poll(cx)
    }
}

/// Where `name://` addresses are looked up, for one [`Connect`].
struct Lookup {
    names: Option<Names>,
    /// The connection's secret, for a name service found in the
    /// environment.
    secret: Option<Vec<u8>>,
}

impl Lookup {
    /// The address to dial for `addr` now.
    async fn resolve(&self, addr: &Address) -> Result<Address, RpcError> {
        crate::names::resolve(addr, self.names.as_ref(), self.secret.as_deref()).await
    }
}

/// Dials, shakes hands, and supervises reconnection when asked to.
async fn run(
    addr: Result<Address, RpcError>,
    layer: Result<ClientLayer, RpcError>,
    registry: Registry,
    config: PeerConfig,
    reconnect: Option<Backoff>,
    lookup: Lookup,
) -> Result<Peer, RpcError> {
    let addr = addr?;
    let layer = layer?;
    let limit = config.handshake_time_limit();
    let target = lookup.resolve(&addr).await?;
    let stream = open_within(&target, &layer, limit).await?;
    let peer = Peer::detached(registry, config);
    // Before the connection starts: one that ends at once must leave the
    // peer reconnecting, not closed.
    peer.set_reconnecting(reconnect.is_some());
    attach(&peer, stream).await?;
    if let Some(backoff) = reconnect {
        tokio::spawn(supervise(
            peer.downgrade(),
            addr,
            layer,
            backoff,
            limit,
            lookup,
        ));
    }
    Ok(peer)
}

/// Runs the protocol's handshake over `stream` and makes it `peer`'s
/// connection, with what the transport verified (a TLS identity).
async fn attach(peer: &Peer, stream: Stream) -> Result<(), RpcError> {
    let Stream {
        rd,
        wr,
        options,
        explain,
    } = stream;
    peer.attach_with(rd, wr, Side::Connect, options, || Ok(()))
        .await
        .map_err(|e| explain.explain(e))
}

/// Exponential backoff with jitter, for [`Connect::reconnect`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rpc_transport::Backoff;
///
/// let b = Backoff::default().initial(Duration::from_millis(50)).max(Duration::from_secs(2));
/// assert!(b.delay(0) <= Duration::from_millis(60));
/// assert!(b.delay(30) <= Duration::from_millis(2400));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: f64,
    jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            factor: 2.0,
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The first delay (default 100 ms).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_transport::Backoff;
    ///
    /// let b = Backoff::default().jitter(0.0);
    /// assert_eq!(b.delay(0), Duration::from_millis(100));
    /// let b = b.initial(Duration::from_secs(1));
    /// assert_eq!(b.delay(0), Duration::from_secs(1));
    /// ```
    pub fn initial(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }

    /// The largest delay (default 10 s), before jitter.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_transport::Backoff;
    ///
    /// let b = Backoff::default().jitter(0.0);
    /// assert_eq!(b.delay(30), Duration::from_secs(10));
    /// let b = b.max(Duration::from_secs(1));
    /// assert_eq!(b.delay(30), Duration::from_secs(1));
    /// ```
    pub fn max(mut self, d: Duration) -> Self {
        self.max = d;
        self
    }

    /// The growth factor between attempts (default 2; at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_transport::Backoff;
    ///
    /// let b = Backoff::default().jitter(0.0).factor(3.0);
    /// assert_eq!(b.delay(2), Duration::from_millis(900)); // 100 ms × 3²
    /// let flat = Backoff::default().jitter(0.0).factor(0.5);
    /// assert_eq!(flat.delay(5), Duration::from_millis(100));
    /// ```
    pub fn factor(mut self, f: f64) -> Self {
        self.factor = f.max(1.0);
        self
    }

    /// The random spread, as a fraction of the delay (default 0.2: ±20 %).
    ///
    /// Values outside 0 to 1 are clamped into that range.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_transport::Backoff;
    ///
    /// let b = Backoff::default().jitter(0.5);
    /// let d = b.delay(0);
    /// assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(150));
    /// assert_eq!(b.jitter(0.0).delay(0), Duration::from_millis(100));
    /// ```
    pub fn jitter(mut self, j: f64) -> Self {
        self.jitter = j.clamp(0.0, 1.0);
        self
    }

    /// The delay before attempt number `attempt` (0-based), jitter included.
    ///
    /// Without jitter it is `initial × factor^attempt`, at most `max`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_transport::Backoff;
    ///
    /// let b = Backoff::default().jitter(0.0);
    /// let ms: Vec<u128> = (0..4).map(|n| b.delay(n).as_millis()).collect();
    /// assert_eq!(ms, [100, 200, 400, 800]);
    /// assert_eq!(b.delay(1_000), Duration::from_secs(10));
    /// ```
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.initial.as_secs_f64() * self.factor.powi(attempt.min(64) as i32);
        let base = base.min(self.max.as_secs_f64());
        let spread = (random_unit() * 2.0 - 1.0) * self.jitter;
        Duration::from_secs_f64((base * (1.0 + spread)).max(0.0))
    }
}

/// A number in [0, 1) from the standard library's randomly keyed hasher:
/// good enough to spread reconnect attempts, and no extra dependency.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Dials `addr` and sets up the stream (the TLS handshake, when asked
/// for), giving up after `limit` (a host that drops the packets would
/// otherwise keep a TCP connect waiting for minutes).
async fn open_within(
    addr: &Address,
    layer: &ClientLayer,
    limit: Duration,
) -> Result<Stream, RpcError> {
    let open = async { layer.open(dial(addr).await?, addr).await };
    match tokio::time::timeout(limit, open).await {
        Ok(r) => r,
        Err(_) => Err(RpcError::HandshakeTimeout(limit)),
    }
}

async fn supervise(
    weak: WeakPeer,
    addr: Address,
    layer: ClientLayer,
    backoff: Backoff,
    limit: Duration,
    lookup: Lookup,
) {
    loop {
        let closed = match weak.upgrade() {
            Some(p) => p.closed_owned(),
            None => return,
        };
        let reason = closed.await;
        let mut attempt = 0u32;
        loop {
            let Some(peer) = weak.upgrade() else { return };
            if *peer.status().borrow() == Status::Closed {
                return;
            }
            drop(peer);
            let delay = backoff.delay(attempt);
            debug!(%addr, %reason, ?delay, attempt, "reconnecting");
            tokio::time::sleep(delay).await;
            attempt = attempt.saturating_add(1);
            let Some(peer) = weak.upgrade() else { return };
            if *peer.status().borrow() == Status::Closed {
                return;
            }
            // A name is looked up again: its server may have moved.
            let opened = match lookup.resolve(&addr).await {
                Ok(target) => open_within(&target, &layer, limit).await,
                Err(e) => Err(e),
            };
            let result = match opened {
                Ok(stream) => attach(&peer, stream).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    info!(%addr, attempt, "reconnected");
                    break;
                }
                Err(RpcError::AuthFailed(e)) => {
                    warn!(%addr, error = %e, "giving up reconnecting: authentication failed");
                    peer.close_with(DisconnectReason::AuthFailed);
                    return;
                }
                Err(RpcError::VersionMismatch { ours, theirs }) => {
                    warn!(%addr, ours, theirs, "giving up reconnecting: protocol version mismatch");
                    peer.close_with(DisconnectReason::VersionMismatch { ours, theirs });
                    return;
                }
                Err(e) => debug!(%addr, error = %e, "reconnect attempt failed"),
            }
        }
    }
}

/// Whether a server answers at `addr` within `timeout`: dials, shakes
/// hands, pings and closes (Kodi's `server_available()`).
///
/// A server that requires a shared secret counts as available even though
/// this probe does not know it: it answered in the protocol.
///
/// # Examples
///
/// ```no_run
/// # async fn f() {
/// use std::time::Duration;
/// if !rpc_transport::server_available("tcp://127.0.0.1:9099", Duration::from_secs(1)).await {
///     eprintln!("server is down");
/// }
/// # }
/// ```
pub async fn server_available(addr: impl ToAddress, timeout: Duration) -> bool {
    let probe = async {
        let config = PeerConfig::default()
            .handshake_timeout(timeout)
            .heartbeat(None, timeout);
        match connect(addr).config(config).await {
            Ok(peer) => {
                let ok = peer.ping().await.is_ok();
                peer.close().await;
                ok
            }
            Err(RpcError::AuthFailed(_)) | Err(RpcError::Refused(_)) => true,
            Err(_) => false,
        }
    };
    tokio::time::timeout(timeout, probe).await.unwrap_or(false)
}
