//! [`Server`]: binds an address, accepts connections, serves the exposed
//! objects on each, and reports connects and disconnects as [`Event`]s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rpc_core::{DisconnectReason, Peer, PeerConfig, Registry, RpcError, Service, Side};
use tokio::sync::broadcast;
use tracing::{debug, info, warn, Instrument};

use crate::address::{Address, ToAddress};
use crate::stream::{Listener, ReadHalf, SharedListener, WriteHalf};

/// Events buffered per subscriber before the oldest are dropped.
const EVENT_BUFFER: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Something that happened to one of the server's connections.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A client connected and passed the handshake; the [`Peer`] calls it.
    Connected(Peer),
    /// A connection ended. Connections that failed the handshake (wrong
    /// secret, version mismatch, silence) or were refused (too many
    /// connections) are reported here too, without a `Connected` before.
    Disconnected {
        /// The connection's id.
        id: u64,
        /// Why it ended.
        reason: DisconnectReason,
    },
}

/// A subscription to a server's [`Event`]s.
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the server is gone. A subscriber that
    /// falls more than 1024 events behind skips the oldest (with a warning).
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
#[derive(Debug, Default)]
#[must_use]
pub struct ServerBuilder {
    registry: Registry,
    config: PeerConfig,
    max_connections: Option<usize>,
}

impl ServerBuilder {
    /// Exposes `object` under its default name.
    pub fn expose<S: Service>(self, object: S) -> Self {
        self.registry.expose(object);
        self
    }

    /// Exposes `object` under `name`.
    pub fn expose_as<S: Service>(self, name: &str, object: S) -> Self {
        self.registry.expose_as(name, object);
        self
    }

    /// Serves the objects of an existing registry.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Replaces the whole per-connection configuration.
    pub fn config(mut self, config: PeerConfig) -> Self {
        self.config = config;
        self
    }

    /// Requires every client to authenticate with this shared secret.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.config = self.config.secret(secret);
        self
    }

    /// Refuses connections beyond `n` at once; the refused client gets
    /// [`RpcError::Refused`] with the reason.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Binds `addr` and starts accepting.
    ///
    /// # Errors
    ///
    /// [`RpcError::BadAddress`] for an invalid address; [`RpcError::Io`]
    /// when binding fails, including a Unix socket with a live server
    /// behind it ("address in use"). A stale socket file is removed.
    pub async fn bind(self, addr: impl ToAddress) -> Result<Server, RpcError> {
        let addr = addr.to_address()?;
        let (listener, local) = Listener::bind(&addr).await?;
        let listener = Arc::new(SharedListener::new(listener));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let inner = Arc::new(Inner {
            addr: local,
            registry: self.registry,
            config: self.config,
            max_connections: self.max_connections,
            peers: Mutex::new(HashMap::new()),
            events,
            next_id: AtomicU64::new(1),
            active: AtomicUsize::new(0),
            listener: listener.clone(),
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
    peers: Mutex<HashMap<u64, Peer>>,
    events: broadcast::Sender<Event>,
    next_id: AtomicU64,
    active: AtomicUsize,
}

/// A listening server. Dropping it stops accepting, frees the address
/// before `drop` returns (it can be bound again at once) and closes every
/// connection; [`shutdown`](Server::shutdown) does the same gracefully.
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
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The address actually bound (with the real port when port 0 was given).
    pub fn local_addr(&self) -> &Address {
        &self.inner.addr
    }

    /// Subscribes to connect and disconnect events from now on.
    pub fn events(&self) -> Events {
        Events {
            rx: self.inner.events.subscribe(),
        }
    }

    /// The objects this server exposes; objects added here are served to
    /// every connection, current and future.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The peer with this connection id: connected, or in its handshake.
    pub fn peer(&self, connection_id: u64) -> Option<Peer> {
        lock(&self.inner.peers).get(&connection_id).cloned()
    }

    /// All connected peers (not those still in their handshake).
    pub fn peers(&self) -> Vec<Peer> {
        let mut v: Vec<Peer> = lock(&self.inner.peers)
            .values()
            .filter(|p| p.is_connected())
            .cloned()
            .collect();
        v.sort_by_key(Peer::connection_id);
        v
    }

    /// Stops accepting, refuses new calls with [`RpcError::ShuttingDown`],
    /// lets calls in flight finish for up to `grace`, says goodbye to every
    /// client, then runs the exposed objects' close hooks
    /// ([`Service::close`]).
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
        // Every peer, those still in their handshake included.
        let peers: Vec<Peer> = lock(&self.inner.peers).values().cloned().collect();
        for p in &peers {
            p.close_with(DisconnectReason::Shutdown);
        }
        for p in &peers {
            let _ = tokio::time::timeout(Duration::from_millis(500), p.closed()).await;
        }
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
        if let Address::Unix(path) = &self.inner.addr {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: Arc<SharedListener>) {
    loop {
        match listener.accept().await {
            Ok(None) => return,
            Ok(Some((rd, wr, remote))) => {
                let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
                let span = tracing::debug_span!("rpc.connection", connection_id = id, %remote);
                tokio::spawn(serve(inner.clone(), id, rd, wr).instrument(span));
            }
            Err(e) => {
                // Out of file descriptors and similar: back off, keep serving.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve(inner: Arc<Inner>, id: u64, rd: ReadHalf, wr: WriteHalf) {
    let active = inner.active.fetch_add(1, Ordering::AcqRel) + 1;
    let _guard = ActiveGuard(&inner.active);
    if let Some(max) = inner.max_connections {
        if active > max {
            let why = format!("too many connections (limit {max})");
            let e = Peer::refuse(rd, wr, &inner.config, RpcError::Refused(why.clone())).await;
            warn!(error = %e, "connection refused");
            let reason = DisconnectReason::Refused(why);
            let _ = inner.events.send(Event::Disconnected { id, reason });
            return;
        }
    }
    // The peer is listed before its connection starts serving, so that a
    // handler of the client's very first call finds it with `server.peer(id)`.
    let peer = Peer::detached(inner.registry.layered(), inner.config.clone());
    lock(&inner.peers).insert(id, peer.clone());
    let side = Side::Accept { connection_id: id };
    if let Err(e) = peer.attach(rd, wr, side).await {
        lock(&inner.peers).remove(&id);
        let reason = match &e {
            RpcError::AuthFailed(_) => DisconnectReason::AuthFailed,
            RpcError::Timeout => DisconnectReason::Protocol("handshake timed out".into()),
            RpcError::Io(m) => DisconnectReason::Io(m.clone()),
            other => DisconnectReason::Protocol(other.to_string()),
        };
        warn!(error = %e, "handshake failed");
        let _ = inner.events.send(Event::Disconnected { id, reason });
        return;
    }
    debug!(remote_name = ?peer.remote_name(), "client connected");
    let closed = peer.closed_owned();
    let _ = inner.events.send(Event::Connected(peer));
    let reason = closed.await;
    lock(&inner.peers).remove(&id);
    debug!(%reason, "client disconnected");
    let _ = inner.events.send(Event::Disconnected { id, reason });
}
