//! [`Peer`]: one end of one connection, the same type on both sides.
//!
//! Each connection runs four tasks:
//! - the **reader** decodes frames, routes replies to the pending-call table
//!   and hands incoming calls to the dispatcher. It never runs user code, so
//!   replies keep flowing while handlers run, and a handler that calls back
//!   into its caller cannot deadlock the connection;
//! - the **dispatcher** runs each incoming call's handler: synchronous methods
//!   to completion; asynchronous ones are polled once, and those that must
//!   wait (for example on a call back into their caller) move to a task of
//!   their own, so they hold up nothing else;
//! - the **writer** owns the write half and writes everything queued since its
//!   last wake-up in one `write` (coalescing);
//! - the **heartbeat** pings an idle connection and drops a silent one.
//!
//! Synchronisation lives in a few places, each a short `std` mutex that is
//! never held across an `.await`: the outbox (bytes queued for the writer),
//! the pending-call table, the table of running handlers (for
//! cancellation), and the list of the connection's tasks; none of these is
//! taken while another is held. Above them sits the peer's `transition`
//! lock, held while a connection is installed or the peer is closed; the
//! connection's locks may be taken under it, never the other way round.
//! With that one order, no two threads can wait on each other. The
//! caller-side limit of calls in flight is lock-free (`slots`).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::{Buf, Bytes};
use futures::future::{AbortHandle, Abortable};
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{debug, trace, warn, Instrument};

use crate::codec::FrameReader;
use crate::config::PeerConfig;
use crate::dispatch::{Handled, HandlerFuture, Incoming, LookupCache, Registry, Service, Target};
use crate::error::{DisconnectReason, RpcError};
use crate::handshake::{handshake, Negotiated, Role};
use crate::slots::Slots;
use crate::wire::{decode_header, encode_bare, encode_frame_within, Header, HANDSHAKE_MAX_FRAME};

/// Queued output above this makes [`Peer::notify`] wait for the writer.
const OUTBOX_HIGH_WATER: usize = 4 * 1024 * 1024;
/// Pipelining of a large batch of calls on a current-thread runtime (where
/// the writer cannot run until the dispatcher yields): every
/// `PIPELINE_STEP` calls of a batch larger than `PIPELINE_MIN_BATCH`, the
/// dispatcher lets the writer send the replies so far, as long as they are
/// small (under `PIPELINE_MAX_BYTES` queued). The remote then works on those replies
/// while this side works on the rest, instead of both taking turns on whole
/// batches. Large replies are not split: more writes would cost more than
/// the overlap gains. (Tuned with `rpc-bench` on a 2-core machine: par-add
/// went from level with the hand-written floor to 1.3-2x it; echo-1k and
/// conns-16, whose batches are not split, did not move.)
const PIPELINE_STEP: usize = 8;
const PIPELINE_MIN_BATCH: usize = 16;
const PIPELINE_MAX_BYTES: usize = 2048;

/// How long the writer may go on flushing after the connection closed.
const FLUSH_GRACE: Duration = Duration::from_secs(2);

/// Finishes a write within [`FLUSH_GRACE`].
async fn flush_within(
    write: std::pin::Pin<&mut impl Future<Output = std::io::Result<()>>>,
) -> std::io::Result<()> {
    match tokio::time::timeout(FLUSH_GRACE, write).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the peer did not read what was left to send",
        )),
    }
}

/// A write buffer larger than this is released after use.
const KEEP_WRITE_CAPACITY: usize = 256 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave its data
    // half-updated (every critical section is a single insert/remove/append
    // that is rolled back on failure), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a connection is in its life.
///
/// Watch it with [`Peer::status`].
///
/// # Examples
///
/// ```
/// use rpc_core::{Peer, PeerConfig, Registry, Status};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let waiting = Peer::detached(Registry::new(), PeerConfig::default());
/// assert_eq!(*waiting.status().borrow(), Status::Connecting);
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let (server, client) = tokio::try_join!(
/// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// assert_eq!(*client.status().borrow(), Status::Connected);
/// client.close().await;
/// assert_eq!(*client.status().borrow(), Status::Closed);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// The first connection is being set up.
    Connecting,
    /// Connected; calls go through.
    Connected,
    /// The connection was lost and a new one is being dialed; calls fail
    /// fast with [`RpcError::NotConnected`].
    Reconnecting,
    /// Closed for good.
    Closed,
}

/// Which end of a new connection this side is, for [`Peer::establish`].
///
/// # Examples
///
/// ```
/// use rpc_core::{Peer, PeerConfig, Registry, Side};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let (a, b) = tokio::io::duplex(64 * 1024);
/// let ((ar, aw), (br, bw)) = (tokio::io::split(a), tokio::io::split(b));
/// let accepting = Side::Accept { connection_id: 5 };
/// let (server, client) = tokio::try_join!(
///     Peer::establish(ar, aw, Registry::new(), PeerConfig::default(), accepting),
///     Peer::establish(br, bw, Registry::new(), PeerConfig::default(), Side::Connect),
/// )?;
/// assert_eq!((server.connection_id(), client.connection_id()), (5, 5));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This side dialed.
    Connect,
    /// This side accepted the connection and gives it this id.
    Accept {
        /// The id of the new connection.
        connection_id: u64,
    },
}

struct Lifecycle {
    status: watch::Sender<Status>,
    reconnect: AtomicBool,
    /// Held while a connection is installed or the peer is closed, so that
    /// a handshake finishing during a close cannot bring the peer back.
    /// Never held across an `.await`; see the module docs for the order.
    transition: Mutex<()>,
}

/// A handle to one end of a connection.
///
/// Both ends are `Peer`s: each can call objects the other exposed, and
/// serve calls to its own. Cheap to clone. The connection closes on
/// [`close`](Peer::close), when the other side goes away, or when the last
/// handle is dropped.
///
/// # Examples
///
/// Two peers over an in-memory pipe (any `AsyncRead + AsyncWrite` works):
///
/// ```
/// use rpc_core::{expose, Peer, PeerConfig, Registry};
///
/// pub struct Calc;
/// #[expose]
/// impl Calc {
///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let (a, b) = tokio::io::duplex(64 * 1024);
/// let served = Registry::new();
/// served.expose(Calc);
/// let (server, client) = tokio::try_join!(
///     Peer::accept(a, served, PeerConfig::default(), 1),
///     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// )?;
/// assert_eq!(CalcClient::new(&client).add(2, 3).await?, 5);
/// let n: i64 = client.call("Calc.add", &(40i64, 2i64)).await?;
/// assert_eq!(n, 42);
/// # drop(server);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Peer {
    shared: Arc<Shared>,
}

/// A handle that does not keep the connection open; see [`Peer::downgrade`].
///
/// # Examples
///
/// ```
/// use rpc_core::{DisconnectReason, Peer, PeerConfig, Registry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let (server, client) = tokio::try_join!(
/// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// let weak = client.downgrade();
/// drop(client); // the last handle: the connection closes
/// assert!(weak.upgrade().is_none());
/// assert_eq!(server.closed().await, DisconnectReason::ClosedByPeer);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct WeakPeer {
    shared: Weak<Shared>,
}

struct Shared {
    registry: Registry,
    config: Arc<PeerConfig>,
    conn: ArcSwap<Conn>,
    life: Arc<Lifecycle>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.life.reconnect.store(false, Ordering::SeqCst);
        self.conn.load().close(DisconnectReason::Closed, true);
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let conn = self.shared.conn.load();
        f.debug_struct("Peer")
            .field("connection_id", &conn.info.connection_id)
            .field("remote_name", &conn.info.remote_name)
            .field("status", &*self.shared.life.status.borrow())
            .finish()
    }
}

impl WeakPeer {
    /// The peer, if any handle to it is still alive.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry};
    ///
    /// let peer = Peer::detached(Registry::new(), PeerConfig::default());
    /// let weak = peer.downgrade();
    /// assert!(weak.upgrade().is_some());
    /// drop(peer);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn upgrade(&self) -> Option<Peer> {
        self.shared.upgrade().map(|shared| Peer { shared })
    }

    /// For a handler's context: the peer, or a handle made afresh around the
    /// connection when every other handle has gone.
    pub(crate) fn upgrade_or_detached(&self, conn: &Arc<Conn>) -> Peer {
        self.upgrade().unwrap_or_else(|| Peer {
            shared: Arc::new(Shared {
                registry: Registry::new(),
                config: Arc::new(PeerConfig::default()),
                conn: ArcSwap::new(conn.clone()),
                life: conn.life.clone(),
            }),
        })
    }
}

impl Peer {
    /// Dials over `io` (any byte stream) and runs the handshake as the
    /// connecting side.
    ///
    /// `registry` holds the objects this side serves.
    ///
    /// # Errors
    ///
    /// The handshake's errors: [`RpcError::VersionMismatch`],
    /// [`RpcError::AuthFailed`], [`RpcError::Refused`],
    /// [`RpcError::Protocol`], [`RpcError::Timeout`], [`RpcError::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::io::AsyncWriteExt;
    /// use rpc_core::{Peer, PeerConfig, Registry, RpcError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (server, client) = tokio::try_join!(
    ///     Peer::accept(a, Registry::new(), PeerConfig::default(), 3),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// )?;
    /// assert_eq!(client.connection_id(), 3);
    ///
    /// // Something that does not speak the protocol:
    /// let (a, mut b) = tokio::io::duplex(1024);
    /// b.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await?;
    /// let err = Peer::connect(a, Registry::new(), PeerConfig::default()).await.unwrap_err();
    /// assert!(matches!(err, RpcError::Protocol(_)));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect<IO>(
        io: IO,
        registry: Registry,
        config: PeerConfig,
    ) -> Result<Peer, RpcError>
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        Peer::establish(rd, wr, registry, config, Side::Connect).await
    }

    /// Runs the handshake as the accepting side over `io`, giving the
    /// connection the id `connection_id`.
    ///
    /// `registry` holds the objects this side serves.
    ///
    /// # Errors
    ///
    /// As [`Peer::connect`].
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry};
    /// # use rpc_core::expose;
    /// # pub struct Calc;
    /// # #[expose]
    /// # impl Calc {
    /// #     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let served = Registry::new();
    /// served.expose(Calc);
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (server, client) = tokio::try_join!(
    ///     Peer::accept(a, served, PeerConfig::default(), 42),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// )?;
    /// assert_eq!(server.connection_id(), 42);
    /// assert_eq!(client.call::<i64, _>("Calc.add", &(2i64, 3i64)).await?, 5);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn accept<IO>(
        io: IO,
        registry: Registry,
        config: PeerConfig,
        connection_id: u64,
    ) -> Result<Peer, RpcError>
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        Peer::establish(rd, wr, registry, config, Side::Accept { connection_id }).await
    }

    /// Runs the handshake over separate read and write halves and starts the
    /// connection's tasks.
    ///
    /// Transports use this with their socket's halves.
    ///
    /// # Errors
    ///
    /// As [`Peer::connect`].
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, Side};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (rd, wr) = tokio::io::split(a);
    /// let config = PeerConfig::default();
    /// let (server, client) = tokio::try_join!(
    ///     Peer::establish(rd, wr, Registry::new(), config, Side::Accept { connection_id: 8 }),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// )?;
    /// assert_eq!(client.connection_id(), 8);
    /// assert!(server.is_connected());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn establish<R, W>(
        rd: R,
        wr: W,
        registry: Registry,
        config: PeerConfig,
        side: Side,
    ) -> Result<Peer, RpcError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let peer = Peer::detached(registry, config);
        peer.attach(rd, wr, side).await?;
        Ok(peer)
    }

    /// A peer with no connection yet (status [`Status::Connecting`]).
    ///
    /// Calls fail with [`RpcError::NotConnected`] until
    /// [`attach`](Peer::attach) succeeds. Used by reconnecting clients.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, RpcError, Status};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let peer = Peer::detached(Registry::new(), PeerConfig::default());
    /// assert_eq!(*peer.status().borrow(), Status::Connecting);
    /// assert_eq!(peer.connection_id(), 0);
    /// let err = peer.call::<i64, _>("Calc.add", &(1i64, 2i64)).await.unwrap_err();
    /// assert_eq!(err, RpcError::NotConnected);
    /// # Ok(())
    /// # }
    /// ```
    pub fn detached(registry: Registry, config: PeerConfig) -> Peer {
        let life = Arc::new(Lifecycle {
            status: watch::Sender::new(Status::Connecting),
            reconnect: AtomicBool::new(false),
            transition: Mutex::new(()),
        });
        let conn = Conn::dead(life.clone(), 0, DisconnectReason::Closed);
        Peer {
            shared: Arc::new(Shared {
                registry,
                config: Arc::new(config),
                conn: ArcSwap::new(conn),
                life,
            }),
        }
    }

    /// Runs the handshake on a new stream and makes it this peer's
    /// connection.
    ///
    /// The previous connection, if any, must have closed. On success the
    /// status becomes [`Status::Connected`].
    ///
    /// # Errors
    ///
    /// As [`Peer::connect`].
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, Side, Status};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let client = Peer::detached(Registry::new(), PeerConfig::default());
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (rd, wr) = tokio::io::split(b);
    /// let (server, ()) = tokio::try_join!(
    ///     Peer::accept(a, Registry::new(), PeerConfig::default(), 4),
    ///     client.attach(rd, wr, Side::Connect),
    /// )?;
    /// assert_eq!(*client.status().borrow(), Status::Connected);
    /// assert_eq!(client.connection_id(), server.connection_id());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn attach<R, W>(&self, rd: R, mut wr: W, side: Side) -> Result<(), RpcError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let config = &self.shared.config;
        let mut reader = FrameReader::new(rd, HANDSHAKE_MAX_FRAME);
        let role = match side {
            Side::Connect => Role::Connector,
            Side::Accept { connection_id } => Role::Acceptor {
                connection_id,
                refuse: None,
            },
        };
        let negotiated = handshake(&mut reader, &mut wr, config, role).await?;
        let conn = Conn::new(
            negotiated,
            config,
            self.shared.life.clone(),
            self.downgrade(),
        );
        {
            let _transition = lock(&self.shared.life.transition);
            if *self.shared.life.status.borrow() == Status::Closed {
                // Closed while shaking hands (a server shutting down, say):
                // the new stream is dropped, which the remote sees as the
                // connection ending.
                return Err(self.shared.conn.load().closed_error());
            }
            self.shared.conn.store(conn.clone());
            self.shared.life.status.send_replace(Status::Connected);
        }
        conn.start(reader, wr, self.shared.registry.clone(), config);
        Ok(())
    }

    /// Answers a connection attempt with a refusal (for example: too many
    /// connections).
    ///
    /// The dialer gets `error` from its connect call. Returns the error the
    /// handshake ended with, as below.
    ///
    /// # Errors
    ///
    /// The handshake's own errors; `error` itself when the refusal was sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, RpcError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (rd, wr) = tokio::io::split(a);
    /// let config = PeerConfig::default();
    /// let full = RpcError::Refused("too many connections".into());
    /// let (refused, dialed) = tokio::join!(
    ///     Peer::refuse(rd, wr, &config, full.clone()),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// );
    /// assert_eq!(refused, full);
    /// assert_eq!(dialed.unwrap_err(), full);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn refuse<R, W>(rd: R, mut wr: W, config: &PeerConfig, error: RpcError) -> RpcError
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut reader = FrameReader::new(rd, HANDSHAKE_MAX_FRAME);
        let role = Role::Acceptor {
            connection_id: 0,
            refuse: Some(error),
        };
        match handshake(&mut reader, &mut wr, config, role).await {
            Ok(_) => RpcError::Protocol("refusal was accepted".into()),
            Err(e) => e,
        }
    }

    /// Turns reconnect mode on or off.
    ///
    /// In reconnect mode, when the connection is lost the status goes to
    /// [`Status::Reconnecting`] instead of [`Status::Closed`], and whoever
    /// dials (the transport) may [`attach`](Peer::attach) a new stream.
    /// [`close`](Peer::close) turns it off.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, RpcError, Status};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// client.set_reconnecting(true);
    /// server.close().await; // the connection is lost
    /// let mut status = client.status();
    /// let now = *status.wait_for(|s| *s != Status::Connected).await.unwrap();
    /// assert_eq!(now, Status::Reconnecting);
    /// assert_eq!(client.call::<(), _>("Any.thing", &()).await, Err(RpcError::NotConnected));
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_reconnecting(&self, on: bool) {
        self.shared.life.reconnect.store(on, Ordering::SeqCst);
    }

    /// A handle that does not keep the connection open.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let weak = client.downgrade();
    /// assert_eq!(weak.upgrade().unwrap().connection_id(), client.connection_id());
    /// drop(client);
    /// assert!(weak.upgrade().is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn downgrade(&self) -> WeakPeer {
        WeakPeer {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Calls `target` (`"Object.method"`) with `args` and waits for the reply.
    ///
    /// `args` is a tuple of the method's parameters; a single parameter may
    /// be passed bare. The peer's default timeout applies
    /// ([`PeerConfig::call_timeout`]). Dropping the returned future cancels
    /// the call: the remote handler is told to stop.
    ///
    /// # Errors
    ///
    /// Any [`RpcError`]: the remote's (unknown object or method, bad
    /// arguments, panic, busy), the connection's (closed, not connected), a
    /// timeout, or [`RpcError::BadReply`] when the reply is not an `R`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Peer, PeerConfig, Registry, RpcError};
    ///
    /// pub struct Calculator;
    /// #[expose]
    /// impl Calculator {
    ///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Calculator);
    /// # let (_server, peer) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let sum: i64 = peer.call("Calculator.add", &(2i64, 3i64)).await?;
    /// assert_eq!(sum, 5);
    /// let wrong = peer.call::<String, _>("Calculator.add", &(2i64, 3i64)).await;
    /// assert!(matches!(wrong, Err(RpcError::BadReply(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call<R, A>(&self, target: &str, args: &A) -> Result<R, RpcError>
    where
        R: DeserializeOwned,
        A: Serialize + ?Sized,
    {
        self.call_inner(target, args, self.shared.config.call_timeout)
            .await
    }

    /// Like [`call`](Peer::call) with an explicit timeout, which the callee
    /// also sees ([`CallContext::remaining`](crate::CallContext::remaining)).
    ///
    /// # Errors
    ///
    /// As [`call`](Peer::call); [`RpcError::Timeout`] after `timeout`.
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
    ///     pub async fn nap(&self, ms: u64) -> u64 {
    ///         tokio::time::sleep(Duration::from_millis(ms)).await;
    ///         ms
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let served = Registry::new();
    /// # served.expose(Sleepy);
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let limit = Duration::from_millis(20);
    /// let slept: u64 = client.call_timeout("Sleepy.nap", &(1u64,), limit).await?;
    /// assert_eq!(slept, 1);
    /// let late = client.call_timeout::<u64, _>("Sleepy.nap", &(5_000u64,), limit).await;
    /// assert_eq!(late, Err(RpcError::Timeout));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_timeout<R, A>(
        &self,
        target: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<R, RpcError>
    where
        R: DeserializeOwned,
        A: Serialize + ?Sized,
    {
        self.call_inner(target, args, Some(timeout)).await
    }

    pub(crate) async fn call_inner<R, A>(
        &self,
        target: &str,
        args: &A,
        timeout: Option<Duration>,
    ) -> Result<R, RpcError>
    where
        R: DeserializeOwned,
        A: Serialize + ?Sized,
    {
        let conn = self.current()?;
        // No span at all unless DEBUG is enabled somewhere: a call costs
        // nothing in tracing when nobody listens.
        let span = tracing::level_enabled!(tracing::Level::DEBUG).then(|| {
            let (service, method) = target.rsplit_once('.').unwrap_or((target, ""));
            tracing::debug_span!(
                "rpc.call",
                otel.kind = "client",
                rpc.service = service,
                rpc.method = method,
                rpc.request_id = tracing::field::Empty,
            )
        });
        let work = async {
            let payload = conn.call_raw(target, args, timeout, span.as_ref()).await?;
            trace!(bytes = payload.len(), "reply received");
            postcard::from_bytes::<R>(&payload)
                .map_err(|e| RpcError::BadReply(format!("reply of `{target}`: {e}")))
        };
        match span.clone() {
            Some(span) => work.instrument(span).await,
            None => work.await,
        }
    }

    /// Sends a one-way call: no reply, no error from the remote handler.
    ///
    /// Returns once the message is queued for sending (waiting first if a
    /// large backlog is queued). A notification the remote cannot serve
    /// (unknown target, bad arguments) is dropped there.
    ///
    /// # Errors
    ///
    /// [`RpcError::ConnectionClosed`] / [`RpcError::NotConnected`],
    /// [`RpcError::Encode`], [`RpcError::TooLarge`].
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
    /// use rpc_core::{expose, Peer, PeerConfig, Registry};
    ///
    /// pub struct Log(UnboundedSender<String>);
    /// #[expose]
    /// impl Log {
    ///     pub fn write(&self, line: String) { let _ = self.0.send(line); }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let (tx, mut lines) = unbounded_channel();
    /// # let served = Registry::new();
    /// # served.expose(Log(tx));
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// client.notify("Log.write", &("hello",)).await?;
    /// assert_eq!(lines.recv().await.as_deref(), Some("hello"));
    /// client.notify("Nobody.here", &()).await?; // no error comes back
    /// # Ok(())
    /// # }
    /// ```
    pub async fn notify<A>(&self, target: &str, args: &A) -> Result<(), RpcError>
    where
        A: Serialize + ?Sized,
    {
        let conn = self.current()?;
        conn.out.wait_space().await;
        conn.push_frame(&Header::Notify { target }, args)
    }

    /// Sends a ping and waits for the pong; returns the round-trip time.
    ///
    /// A cheap way to check that the remote is alive and responsive.
    ///
    /// # Errors
    ///
    /// As [`call`](Peer::call).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{DisconnectReason, Peer, PeerConfig, Registry, RpcError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let rtt = client.ping().await?;
    /// println!("round trip: {rtt:?}");
    /// client.close().await;
    /// let err = client.ping().await.unwrap_err();
    /// assert_eq!(err, RpcError::ConnectionClosed(DisconnectReason::Closed));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn ping(&self) -> Result<Duration, RpcError> {
        let conn = self.current()?;
        let start = Instant::now();
        let (id, rx) = conn.register()?;
        let mut guard = PendingGuard {
            conn: &conn,
            id,
            armed: true,
            sent: false,
        };
        let mut buf = Vec::new();
        encode_bare(&mut buf, &Header::Ping { id });
        conn.push_raw(&buf)?;
        guard.sent = true;
        let r = rx.await;
        guard.armed = false;
        match r {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(conn.closed_error()),
        }
    }

    /// Exposes `object` on this side under its default name, for the remote
    /// to call.
    ///
    /// An object already exposed under that name is replaced. On a peer
    /// that a `Server` accepted, the object belongs to this connection only:
    /// other clients do not see it. (The server's own objects are shared by
    /// every connection; see [`Registry::layered`].)
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Peer, PeerConfig, Registry};
    ///
    /// pub struct Me;
    /// #[expose]
    /// impl Me {
    ///     pub fn name(&self) -> String { "Ada".into() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// client.expose(Me);
    /// let name: String = server.call("Me.name", &()).await?;
    /// assert_eq!(name, "Ada");
    /// # Ok(())
    /// # }
    /// ```
    pub fn expose<S: Service>(&self, object: S) {
        self.shared.registry.expose(object);
    }

    /// Exposes `object` on this side under `name`.
    ///
    /// An object already exposed under that name is replaced.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry};
    /// # use rpc_core::expose;
    /// # pub struct Calc;
    /// # #[expose]
    /// # impl Calc {
    /// #     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// server.expose_as("admin", Calc);
    /// assert_eq!(client.call::<i64, _>("admin.add", &(2i64, 3i64)).await?, 5);
    /// # Ok(())
    /// # }
    /// ```
    pub fn expose_as<S: Service>(&self, name: &str, object: S) {
        self.shared.registry.expose_as(name, object);
    }

    /// The registry of objects this side serves.
    ///
    /// It is the registry the peer was made with, not a copy: objects
    /// exposed through either handle are served.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry};
    /// # use rpc_core::expose;
    /// # pub struct Calc;
    /// # #[expose]
    /// # impl Calc {
    /// #     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// # }
    ///
    /// let registry = Registry::new();
    /// let peer = Peer::detached(registry.clone(), PeerConfig::default());
    /// registry.expose(Calc);
    /// assert_eq!(peer.registry().names(), ["Calc"]);
    /// ```
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// The configuration this side was made with.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::{Peer, PeerConfig, Registry};
    ///
    /// let config = PeerConfig::default().call_timeout(Some(Duration::from_secs(5)));
    /// let peer = Peer::detached(Registry::new(), config);
    /// assert_eq!(peer.config().default_call_timeout(), Some(Duration::from_secs(5)));
    /// ```
    pub fn config(&self) -> &PeerConfig {
        &self.shared.config
    }

    /// The connection id assigned by the accepting side (0 before the first
    /// connection).
    ///
    /// Both ends see the same id.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (server, client) = tokio::try_join!(
    ///     Peer::accept(a, Registry::new(), PeerConfig::default(), 7),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// )?;
    /// assert_eq!((server.connection_id(), client.connection_id()), (7, 7));
    /// let unconnected = Peer::detached(Registry::new(), PeerConfig::default());
    /// assert_eq!(unconnected.connection_id(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn connection_id(&self) -> u64 {
        self.shared.conn.load().info.connection_id
    }

    /// The identifier the remote announced in the handshake, if any
    /// (see [`PeerConfig::name`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
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
    pub fn remote_name(&self) -> Option<String> {
        self.shared
            .conn
            .load()
            .info
            .remote_name
            .as_deref()
            .map(str::to_owned)
    }

    /// A watch of the connection's [`Status`].
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, Status};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let mut status = client.status();
    /// assert_eq!(*status.borrow(), Status::Connected);
    /// server.close().await;
    /// status.wait_for(|s| *s == Status::Closed).await.unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn status(&self) -> watch::Receiver<Status> {
        self.shared.life.status.subscribe()
    }

    /// Whether calls can go through right now.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// assert!(client.is_connected());
    /// server.close().await;
    /// client.closed().await;
    /// assert!(!client.is_connected());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_connected(&self) -> bool {
        !self.shared.conn.load().is_closed()
    }

    /// How many calls and notifications from the remote are being served
    /// right now.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tokio::sync::Notify;
    /// use rpc_core::{expose, Peer, PeerConfig, Registry};
    ///
    /// pub struct Gate(Arc<Notify>);
    /// #[expose]
    /// impl Gate {
    ///     pub async fn pass(&self) { self.0.notified().await }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let open = Arc::new(Notify::new());
    /// # let served = Registry::new();
    /// # served.expose(Gate(open.clone()));
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let waiting = tokio::spawn(async move { GateClient::new(&client).pass().await });
    /// while server.serving() == 0 {
    ///     tokio::task::yield_now().await;
    /// }
    /// assert_eq!(server.serving(), 1);
    /// open.notify_one();
    /// waiting.await.unwrap()?;
    /// assert_eq!(server.serving(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn serving(&self) -> usize {
        let conn = self.shared.conn.load();
        (conn.inflight.load(Ordering::Acquire) + conn.notifying.load(Ordering::Acquire)) as usize
    }

    /// Stops taking new calls on the current connection.
    ///
    /// From now on the remote's calls fail with [`RpcError::ShuttingDown`]
    /// (and its notifications are dropped), while the calls already running
    /// finish. This side can still make calls. Used by a server's graceful
    /// shutdown.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, RpcError};
    /// # use rpc_core::expose;
    /// # pub struct Calc;
    /// # #[expose]
    /// # impl Calc {
    /// #     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (served, mine) = (Registry::new(), Registry::new());
    /// # served.expose(Calc);
    /// # mine.expose(Calc);
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, mine, PeerConfig::default()),
    /// # )?;
    /// server.drain();
    /// let refused = client.call::<i64, _>("Calc.add", &(1i64, 2i64)).await;
    /// assert_eq!(refused, Err(RpcError::ShuttingDown));
    /// // The draining side still calls out.
    /// assert_eq!(server.call::<i64, _>("Calc.add", &(1i64, 2i64)).await?, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn drain(&self) {
        self.shared
            .conn
            .load()
            .draining
            .store(true, Ordering::Release);
    }

    /// Waits until the current connection has closed and tells why.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{DisconnectReason, Peer, PeerConfig, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// server.close().await;
    /// assert_eq!(server.closed().await, DisconnectReason::Closed);
    /// assert_eq!(client.closed().await, DisconnectReason::ClosedByPeer);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn closed(&self) -> DisconnectReason {
        let conn = self.shared.conn.load_full();
        conn.wait_closed().await
    }

    /// Closes the connection.
    ///
    /// Says goodbye to the remote, fails this side's calls in flight with
    /// [`RpcError::ConnectionClosed`], and stops reconnecting. Waits
    /// (briefly) until the goodbye is written.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{DisconnectReason, Peer, PeerConfig, Registry, RpcError, Status};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// client.close().await;
    /// assert_eq!(*client.status().borrow(), Status::Closed);
    /// let err = client.call::<(), _>("Any.thing", &()).await.unwrap_err();
    /// assert_eq!(err, RpcError::ConnectionClosed(DisconnectReason::Closed));
    /// assert_eq!(server.closed().await, DisconnectReason::ClosedByPeer);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(&self) {
        self.shared.life.reconnect.store(false, Ordering::SeqCst);
        let conn = {
            let _transition = lock(&self.shared.life.transition);
            let conn = self.shared.conn.load_full();
            conn.close(DisconnectReason::Closed, true);
            self.shared.life.status.send_replace(Status::Closed);
            conn
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.writer_done.notified()).await;
    }

    /// Closes the connection with a given reason (the server uses
    /// [`DisconnectReason::Shutdown`]).
    ///
    /// Unlike [`close`](Peer::close) it does not wait for the goodbye to be
    /// written. The remote sees [`DisconnectReason::Shutdown`] when that is
    /// the reason, and [`DisconnectReason::ClosedByPeer`] otherwise.
    ///
    /// When the connection had already ended (a reconnecting client between
    /// connections), `reason` becomes the reason reported from now on by
    /// [`closed`](Peer::closed) and by calls.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{DisconnectReason, Peer, PeerConfig, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// server.close_with(DisconnectReason::Shutdown);
    /// assert_eq!(server.closed().await, DisconnectReason::Shutdown);
    /// assert_eq!(client.closed().await, DisconnectReason::Shutdown);
    ///
    /// let never = Peer::detached(Registry::new(), PeerConfig::default());
    /// never.close_with(DisconnectReason::AuthFailed);
    /// assert_eq!(never.closed().await, DisconnectReason::AuthFailed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn close_with(&self, reason: DisconnectReason) {
        self.shared.life.reconnect.store(false, Ordering::SeqCst);
        let _transition = lock(&self.shared.life.transition);
        let conn = self.shared.conn.load_full();
        if conn.is_closed() {
            let id = conn.info.connection_id;
            let dead = Conn::dead(self.shared.life.clone(), id, reason);
            self.shared.conn.store(dead);
        } else {
            conn.close(reason, true);
        }
        self.shared.life.status.send_replace(Status::Closed);
    }

    /// A future that resolves when the current connection closes, without
    /// keeping the peer alive (for supervisors holding a [`WeakPeer`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{DisconnectReason, Peer, PeerConfig, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (server, client) = tokio::try_join!(
    /// #     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let closed = tokio::spawn(client.closed_owned());
    /// drop(client); // the future does not keep the connection open
    /// assert_eq!(closed.await.unwrap(), DisconnectReason::Closed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn closed_owned(&self) -> impl Future<Output = DisconnectReason> + Send + 'static {
        let conn = self.shared.conn.load_full();
        async move { conn.wait_closed().await }
    }

    fn current(&self) -> Result<Arc<Conn>, RpcError> {
        let conn = self.shared.conn.load_full();
        if conn.is_closed() {
            return Err(match *self.shared.life.status.borrow() {
                Status::Connecting | Status::Reconnecting => RpcError::NotConnected,
                _ => conn.closed_error(),
            });
        }
        Ok(conn)
    }
}

// ---------------------------------------------------------------------------
// One connection.

pub(crate) struct ConnInfo {
    pub(crate) connection_id: u64,
    pub(crate) remote_name: Option<Arc<str>>,
}

type ReplyTx = oneshot::Sender<Result<Bytes, RpcError>>;

/// Hashes a call id with one multiplication (Fibonacci hashing spreads
/// sequential ids over the high bits the table probes with). Only for the
/// pending table, whose keys this side picks, never the remote.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

struct Pending {
    calls: IdMap<ReplyTx>,
    closed: Option<DisconnectReason>,
}

pub(crate) struct Conn {
    pub(crate) info: ConnInfo,
    out: Outbox,
    pending: Mutex<Pending>,
    running: Mutex<HashMap<u64, AbortHandle>>,
    /// Calls from the remote being served now.
    pub(crate) inflight: AtomicU32,
    /// Notifications from the remote being handled now.
    notifying: AtomicU32,
    /// The limit of each of the two counters above.
    max_in_flight: u32,
    /// Set by [`Peer::drain`]: new calls are refused with
    /// [`RpcError::ShuttingDown`].
    draining: AtomicBool,
    /// Whether a dropped notification was already logged at WARN.
    dropped_notice: AtomicBool,
    next_id: AtomicU64,
    slots: Slots,
    remote_max_frame: usize,
    /// Bytes queued for the remote beyond which it counts as stalled.
    max_send_queue: usize,
    closed: watch::Sender<Option<DisconnectReason>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    writer_done: Notify,
    epoch: Instant,
    last_rx_ms: AtomicU64,
    life: Arc<Lifecycle>,
    /// The peer this connection belongs to, for the context of the calls it
    /// serves (weak: the connection must not keep its peer alive).
    pub(crate) peer: WeakPeer,
}

struct Outbox {
    state: Mutex<OutState>,
    wake: Notify,
    space: Notify,
}

struct OutState {
    buf: Vec<u8>,
    /// No more frames are accepted; the writer flushes and shuts down.
    closing: bool,
}

impl Outbox {
    /// Bytes waiting for the writer.
    fn queued(&self) -> usize {
        lock(&self.state).buf.len()
    }

    async fn wait_space(&self) {
        loop {
            let notified = self.space.notified();
            {
                let st = lock(&self.state);
                if st.buf.len() < OUTBOX_HIGH_WATER || st.closing {
                    return;
                }
            }
            notified.await;
        }
    }
}

/// What one read of the socket produced, handled after the frames of the
/// read are decoded.
#[derive(Default)]
struct ReadBatch {
    /// Admitted calls and notifications, for the dispatcher.
    calls: Vec<Incoming>,
    /// Replies (and pongs) to this side's calls, by id.
    replies: Vec<(u64, Result<Bytes, RpcError>)>,
}

/// Removes a call from the pending table if its future is dropped early, and
/// tells the remote to cancel it.
struct PendingGuard<'a> {
    conn: &'a Conn,
    id: u64,
    armed: bool,
    sent: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let was_pending = lock(&self.conn.pending).calls.remove(&self.id).is_some();
        if was_pending && self.sent {
            let mut buf = Vec::with_capacity(16);
            encode_bare(&mut buf, &Header::Cancel { id: self.id });
            let _ = self.conn.push_raw(&buf);
            trace!(id = self.id, "call abandoned; cancel sent");
        }
    }
}

impl Conn {
    fn new(n: Negotiated, config: &PeerConfig, life: Arc<Lifecycle>, peer: WeakPeer) -> Arc<Conn> {
        Arc::new(Conn {
            info: ConnInfo {
                connection_id: n.connection_id,
                remote_name: n.remote_name.map(Arc::from),
            },
            out: Outbox {
                state: Mutex::new(OutState {
                    buf: Vec::new(),
                    closing: false,
                }),
                wake: Notify::new(),
                space: Notify::new(),
            },
            pending: Mutex::new(Pending {
                calls: IdMap::default(),
                closed: None,
            }),
            running: Mutex::new(HashMap::new()),
            inflight: AtomicU32::new(0),
            notifying: AtomicU32::new(0),
            max_in_flight: config.max_in_flight,
            draining: AtomicBool::new(false),
            dropped_notice: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            slots: Slots::new(n.remote_max_in_flight),
            remote_max_frame: n.remote_max_frame as usize,
            max_send_queue: config.max_send_queue,
            closed: watch::Sender::new(None),
            tasks: Mutex::new(Vec::new()),
            writer_done: Notify::new(),
            epoch: Instant::now(),
            last_rx_ms: AtomicU64::new(0),
            life,
            peer,
        })
    }

    /// A connection that is already closed, for peers not yet connected.
    fn dead(life: Arc<Lifecycle>, connection_id: u64, reason: DisconnectReason) -> Arc<Conn> {
        let n = Negotiated {
            connection_id,
            remote_name: None,
            remote_max_frame: HANDSHAKE_MAX_FRAME,
            remote_max_in_flight: 1,
        };
        let nobody = WeakPeer {
            shared: Weak::new(),
        };
        let conn = Conn::new(n, &PeerConfig::default(), life, nobody);
        conn.closed.send_replace(Some(reason.clone()));
        lock(&conn.pending).closed = Some(reason);
        lock(&conn.out.state).closing = true;
        conn.slots.close();
        conn
    }

    fn start<R, W>(
        self: &Arc<Self>,
        reader: FrameReader<R>,
        writer: W,
        registry: Registry,
        config: &PeerConfig,
    ) where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::with_capacity(3);
        tokio::spawn(self.clone().write_loop(writer));
        tasks.push(spawn_abortable(self.clone().dispatch_loop(rx)));
        tasks.push(spawn_abortable(
            self.clone().read_loop(reader, registry, tx),
        ));
        if let Some(interval) = config.heartbeat_interval {
            tasks.push(spawn_abortable(
                self.clone()
                    .heartbeat_loop(interval, config.heartbeat_timeout),
            ));
        }
        lock(&self.tasks).extend(tasks);
        // A close that raced with start (e.g. the remote vanished at once)
        // must still stop the tasks.
        if self.is_closed() {
            for t in lock(&self.tasks).drain(..) {
                t.abort();
            }
        }
        debug!(connection_id = self.info.connection_id, "connection open");
    }

    fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    fn closed_error(&self) -> RpcError {
        RpcError::ConnectionClosed(
            self.closed
                .borrow()
                .clone()
                .unwrap_or(DisconnectReason::Closed),
        )
    }

    async fn wait_closed(&self) -> DisconnectReason {
        let mut rx = self.closed.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return DisconnectReason::Closed;
            }
        }
    }

    /// Ends the connection (first reason wins): fails this side's pending
    /// calls, aborts running handlers, stops the reader, and lets the writer
    /// flush what is queued (plus a goodbye when `goodbye`) and shut down.
    pub(crate) fn close(&self, reason: DisconnectReason, goodbye: bool) {
        let first = self.closed.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason.clone());
                true
            } else {
                false
            }
        });
        if !first {
            return;
        }
        match &reason {
            DisconnectReason::Closed
            | DisconnectReason::ClosedByPeer
            | DisconnectReason::Shutdown => {
                debug!(connection_id = self.info.connection_id, %reason, "connection closed")
            }
            _ => warn!(connection_id = self.info.connection_id, %reason, "connection lost"),
        }
        {
            let mut st = lock(&self.out.state);
            if matches!(reason, DisconnectReason::Stalled { .. }) {
                // The remote does not read: what is queued would never leave.
                st.buf = Vec::new();
            }
            if goodbye && !st.closing {
                let bye = match reason {
                    DisconnectReason::Shutdown => Header::Shutdown,
                    _ => Header::Goodbye,
                };
                encode_bare(&mut st.buf, &bye);
            }
            st.closing = true;
        }
        self.out.wake.notify_one();
        self.out.space.notify_waiters();
        self.slots.close();
        let calls = {
            let mut p = lock(&self.pending);
            p.closed = Some(reason.clone());
            std::mem::take(&mut p.calls)
        };
        for (_, tx) in calls {
            let _ = tx.send(Err(RpcError::ConnectionClosed(reason.clone())));
        }
        for (_, h) in lock(&self.running).drain() {
            h.abort();
        }
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        let next = if self.life.reconnect.load(Ordering::SeqCst) {
            Status::Reconnecting
        } else {
            Status::Closed
        };
        self.life.status.send_if_modified(|s| {
            // Only the current connection's end moves the status.
            if *s == Status::Connected {
                *s = next;
                true
            } else {
                false
            }
        });
    }

    // --- output -----------------------------------------------------------

    /// Encodes a frame straight into the outbox.
    fn push_frame<P: Serialize + ?Sized>(
        &self,
        header: &Header<'_>,
        payload: &P,
    ) -> Result<(), RpcError> {
        let mut st = lock(&self.out.state);
        if st.closing {
            drop(st);
            return Err(self.closed_error());
        }
        let start = st.buf.len();
        let was_empty = start == 0;
        // A panicking `Serialize` impl must not leave half a frame behind.
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| {
            encode_frame_within(&mut st.buf, header, payload, self.remote_max_frame)
        }));
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(panic) => {
                st.buf.truncate(start);
                drop(st);
                std::panic::resume_unwind(panic);
            }
        }
        let queued = st.buf.len();
        drop(st);
        self.queued(queued, was_empty)
    }

    /// After bytes were queued: wakes the writer when the queue was empty,
    /// and ends the connection when the remote lets more pile up than the
    /// send-queue limit (it stopped reading but may still be sending). One
    /// frame alone never counts, however large.
    fn queued(&self, queued: usize, was_empty: bool) -> Result<(), RpcError> {
        if was_empty {
            self.out.wake.notify_one();
        } else if queued > self.max_send_queue {
            self.close(
                DisconnectReason::Stalled {
                    queued: queued as u64,
                },
                false,
            );
            return Err(self.closed_error());
        }
        Ok(())
    }

    fn push_raw(&self, frame: &[u8]) -> Result<(), RpcError> {
        let mut st = lock(&self.out.state);
        if st.closing {
            drop(st);
            return Err(self.closed_error());
        }
        let was_empty = st.buf.is_empty();
        st.buf.extend_from_slice(frame);
        let queued = st.buf.len();
        drop(st);
        self.queued(queued, was_empty)
    }

    pub(crate) fn send_reply<R: Serialize + ?Sized>(&self, id: u64, value: &R) {
        match self.push_frame(&Header::Reply { id }, value) {
            Ok(()) => {}
            Err(e @ (RpcError::TooLarge { .. } | RpcError::Encode(_))) => self.send_error(id, &e),
            Err(_) => {} // closed: nobody to answer
        }
    }

    pub(crate) fn send_error(&self, id: u64, error: &RpcError) {
        if let Err(e) = self.push_frame(&Header::Error { id }, error) {
            if !matches!(e, RpcError::ConnectionClosed(_)) {
                // An error message too large for the remote: send a short one.
                let short = RpcError::Remote(format!("error reply could not be sent: {e}"));
                let _ = self.push_frame(&Header::Error { id }, &short);
            }
        }
    }

    async fn write_loop<W: AsyncWrite + Unpin>(self: Arc<Self>, mut wr: W) {
        let mut spare: Vec<u8> = Vec::new();
        let mut closed = self.closed.subscribe();
        loop {
            let closing = {
                let mut st = lock(&self.out.state);
                if st.buf.is_empty() {
                    if st.closing {
                        break;
                    }
                    None
                } else {
                    std::mem::swap(&mut st.buf, &mut spare);
                    Some(st.closing)
                }
            };
            if closing.is_none() {
                self.out.wake.notified().await;
                continue;
            }
            self.out.space.notify_waiters();
            let write = async {
                wr.write_all(&spare).await?;
                wr.flush().await
            };
            tokio::pin!(write);
            // A write may wait as long as the remote takes to read while the
            // connection is open; once it has closed, only `FLUSH_GRACE`
            // more (a remote that stopped reading must not pin this task
            // and its buffer forever).
            let res = if closed.borrow().is_some() {
                flush_within(write).await
            } else {
                tokio::select! {
                    r = &mut write => r,
                    _ = closed.changed() => flush_within(write).await,
                }
            };
            if let Err(e) = res {
                self.close(DisconnectReason::from_io(&e), false);
                break;
            }
            spare.clear();
            if spare.capacity() > KEEP_WRITE_CAPACITY {
                spare = Vec::new();
            }
        }
        let _ = tokio::time::timeout(FLUSH_GRACE, wr.shutdown()).await;
        self.writer_done.notify_waiters();
        self.writer_done.notify_one();
    }

    // --- input ------------------------------------------------------------

    async fn read_loop<R: AsyncRead + Unpin>(
        self: Arc<Self>,
        mut reader: FrameReader<R>,
        registry: Registry,
        jobs: mpsc::UnboundedSender<Vec<Incoming>>,
    ) {
        let mut cache = LookupCache::default();
        // The calls of one read go to the dispatcher together (one message
        // and one wake-up per read rather than per call), and its replies
        // leave the pending table under one lock.
        let mut batch = ReadBatch::default();
        let reason = 'outer: loop {
            loop {
                match reader.buffered_frame() {
                    Ok(Some(frame)) => {
                        if let Err(reason) = self.on_frame(frame, &registry, &mut cache, &mut batch)
                        {
                            break 'outer reason;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => break 'outer DisconnectReason::Protocol(e.to_string()),
                }
            }
            self.complete_all(&mut batch.replies);
            if !batch.calls.is_empty() {
                // If the dispatcher is gone the calls are dropped, which
                // releases them.
                let _ = jobs.send(std::mem::take(&mut batch.calls));
            }
            match reader.fill().await {
                Ok(true) => self.touch(),
                Ok(false) => break DisconnectReason::ClosedByPeer,
                Err(RpcError::Io(m)) => break DisconnectReason::Io(m),
                Err(RpcError::ConnectionClosed(r)) => break r,
                Err(e) => break DisconnectReason::Protocol(e.to_string()),
            }
        };
        // Replies that arrived just before the end (a reply followed by a
        // goodbye in one read) still reach their callers.
        self.complete_all(&mut batch.replies);
        self.close(reason, false);
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_rx_ms.store(ms, Ordering::Relaxed);
    }

    fn on_frame(
        self: &Arc<Self>,
        frame: Bytes,
        registry: &Registry,
        cache: &mut LookupCache,
        batch: &mut ReadBatch,
    ) -> Result<(), DisconnectReason> {
        let (header, payload) =
            decode_header(&frame).map_err(|e| DisconnectReason::Protocol(e.to_string()))?;
        let header_len = frame.len() - payload.len();
        // The payload is the frame itself, advanced past the header: no
        // second reference to count.
        fn skip(mut frame: Bytes, n: usize) -> Bytes {
            frame.advance(n);
            frame
        }
        match header {
            Header::Call {
                id,
                target,
                timeout_ms,
            } => {
                if let Some(target) = self.admit(Some(id), target, registry, cache) {
                    self.dispatch(
                        Some(id),
                        target,
                        timeout_ms,
                        skip(frame, header_len),
                        &mut batch.calls,
                    );
                }
            }
            Header::Notify { target } => {
                if let Some(target) = self.admit(None, target, registry, cache) {
                    self.dispatch(None, target, 0, skip(frame, header_len), &mut batch.calls);
                }
            }
            Header::Reply { id } => batch.replies.push((id, Ok(skip(frame, header_len)))),
            Header::Error { id } => {
                let err = postcard::from_bytes::<RpcError>(payload).unwrap_or_else(|e| {
                    RpcError::Protocol(format!("undecodable error reply: {e}"))
                });
                batch.replies.push((id, Err(err)));
            }
            Header::Cancel { id } => {
                if let Some(h) = lock(&self.running).remove(&id) {
                    trace!(id, "cancelled by caller");
                    h.abort();
                }
            }
            Header::Ping { id } => {
                let mut buf = Vec::with_capacity(16);
                encode_bare(&mut buf, &Header::Pong { id });
                let _ = self.push_raw(&buf);
            }
            Header::Pong { id } => {
                if id != 0 {
                    batch.replies.push((id, Ok(Bytes::new())));
                }
            }
            Header::Goodbye => return Err(DisconnectReason::ClosedByPeer),
            Header::Shutdown => return Err(DisconnectReason::Shutdown),
        }
        Ok(())
    }

    /// Hands each reply to its waiting caller; the table is locked once for
    /// all of them, and no caller is woken while it is held.
    fn complete_all(&self, replies: &mut Vec<(u64, Result<Bytes, RpcError>)>) {
        if replies.is_empty() {
            return;
        }
        let mut waiting = Vec::with_capacity(replies.len());
        {
            let mut p = lock(&self.pending);
            for (id, result) in replies.drain(..) {
                match p.calls.remove(&id) {
                    Some(tx) => waiting.push((tx, result)),
                    None => trace!(id, "reply for a call no longer waiting"),
                }
            }
        }
        for (tx, result) in waiting {
            let _ = tx.send(result);
        }
    }

    /// Counts an incoming call (`id`) or notification (`None`) in flight and
    /// finds what it calls; or answers it with the reason it is refused.
    fn admit(
        &self,
        id: Option<u64>,
        name: &str,
        registry: &Registry,
        cache: &mut LookupCache,
    ) -> Option<Arc<Target>> {
        // Calls and notifications are counted apart, so that one-way traffic
        // never makes a call fail with `Busy`.
        let busy = self.counter(id.is_none()).fetch_add(1, Ordering::AcqRel) >= self.max_in_flight;
        let target = if self.draining.load(Ordering::Acquire) {
            Err(RpcError::ShuttingDown)
        } else if busy {
            Err(RpcError::Busy {
                limit: self.max_in_flight,
            })
        } else {
            registry.lookup_cached(cache, name)
        };
        match target {
            Ok(t) => Some(t),
            Err(e) => {
                self.finish_call(id.is_none());
                match id {
                    Some(id) => {
                        debug!(id, %e, "call refused");
                        self.send_error(id, &e);
                    }
                    // Nobody to tell: say it where the operator sees it, once
                    // per connection (a remote could send these in a flood).
                    None if !self.dropped_notice.swap(true, Ordering::Relaxed) => {
                        warn!(target = name, %e, "notification dropped (further drops on this connection are logged at DEBUG)")
                    }
                    None => debug!(target = name, %e, "notification dropped"),
                }
                None
            }
        }
    }

    /// Adds an admitted call to the batch for the dispatcher.
    fn dispatch(
        self: &Arc<Self>,
        id: Option<u64>,
        target: Arc<Target>,
        timeout_ms: u64,
        args: Bytes,
        batch: &mut Vec<Incoming>,
    ) {
        // A deadline too far to represent is no deadline.
        let deadline = (timeout_ms > 0)
            .then(|| Instant::now().checked_add(Duration::from_millis(timeout_ms)))
            .flatten();
        let incoming = Incoming {
            conn: self.clone(),
            id,
            args,
            target,
            deadline,
            counted: true,
        };
        batch.push(incoming);
    }

    fn counter(&self, notification: bool) -> &AtomicU32 {
        if notification {
            &self.notifying
        } else {
            &self.inflight
        }
    }

    pub(crate) fn finish_call(&self, notification: bool) {
        self.counter(notification).fetch_sub(1, Ordering::AcqRel);
    }

    // --- dispatch ---------------------------------------------------------

    async fn dispatch_loop(self: Arc<Self>, mut jobs: mpsc::UnboundedReceiver<Vec<Incoming>>) {
        // On a multi-threaded runtime the writer already runs beside the
        // dispatcher, and yielding there only adds cross-thread wake-ups.
        let pipeline = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread;
        while let Some(batch) = jobs.recv().await {
            let split = pipeline && batch.len() > PIPELINE_MIN_BATCH;
            for (i, call) in batch.into_iter().enumerate() {
                if split
                    && i > 0
                    && i % PIPELINE_STEP == 0
                    && self.out.queued() < PIPELINE_MAX_BYTES
                {
                    tokio::task::yield_now().await;
                }
                self.run(call);
            }
        }
    }

    fn run(self: &Arc<Self>, incoming: Incoming) {
        let service = incoming.target.service.clone();
        let index = incoming.target.index;
        let id = incoming.id;
        let deadline = incoming.deadline;
        let span = tracing::level_enabled!(tracing::Level::DEBUG).then(|| {
            tracing::debug_span!(
                "rpc.serve",
                otel.kind = "server",
                rpc.service = &*incoming.target.object,
                rpc.method = incoming.target.method,
                rpc.request_id = id,
            )
        });
        let dispatch = AssertUnwindSafe(|| match service.dispatch(index, incoming) {
            // Many `async` handlers finish without waiting for anything:
            // poll once here and give the handler a task of its own only if
            // it must wait. (The task polls it again at once, with its own
            // waker, as the `Future` contract allows.)
            Handled::Pending(mut fut) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match fut.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(replied) => Handled::Done(replied),
                    std::task::Poll::Pending => Handled::Pending(fut),
                }
            }
            done => done,
        });
        let res = match &span {
            Some(span) => span.in_scope(|| {
                trace!("call dispatched");
                std::panic::catch_unwind(dispatch)
            }),
            None => std::panic::catch_unwind(dispatch),
        };
        match res {
            Ok(Handled::Done(_)) => {}
            Ok(Handled::Pending(fut)) => self.spawn_handler(id, deadline, fut, span),
            Err(panic) => {
                let msg = panic_message(&panic);
                warn!(?id, %msg, "handler panicked");
                if let Some(id) = id {
                    self.send_error(id, &RpcError::RemotePanic(msg));
                }
            }
        }
    }

    fn spawn_handler(
        self: &Arc<Self>,
        id: Option<u64>,
        deadline: Option<Instant>,
        fut: HandlerFuture,
        span: Option<tracing::Span>,
    ) {
        let (abort, registration) = AbortHandle::new_pair();
        if let Some(id) = id {
            lock(&self.running).insert(id, abort);
        }
        let conn = self.clone();
        let task = async move {
            let guarded = Abortable::new(AssertUnwindSafe(fut).catch_unwind(), registration);
            let outcome = match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), guarded).await.ok(),
                None => Some(guarded.await),
            };
            match (outcome, id) {
                (None, Some(id)) => conn.send_error(id, &RpcError::Timeout),
                (Some(Ok(Err(panic))), id) => {
                    let msg = panic_message(&panic);
                    warn!(?id, %msg, "handler panicked");
                    if let Some(id) = id {
                        conn.send_error(id, &RpcError::RemotePanic(msg));
                    }
                }
                _ => {}
            }
            if let Some(id) = id {
                lock(&conn.running).remove(&id);
            }
        };
        match span {
            Some(span) => tokio::spawn(task.instrument(span)),
            None => tokio::spawn(task),
        };
    }

    // --- calls out ----------------------------------------------------------

    fn register(&self) -> Result<(u64, oneshot::Receiver<Result<Bytes, RpcError>>), RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut p = lock(&self.pending);
        if let Some(r) = &p.closed {
            return Err(RpcError::ConnectionClosed(r.clone()));
        }
        p.calls.insert(id, tx);
        Ok((id, rx))
    }

    async fn call_raw<A: Serialize + ?Sized>(
        &self,
        target: &str,
        args: &A,
        timeout: Option<Duration>,
        span: Option<&tracing::Span>,
    ) -> Result<Bytes, RpcError> {
        // The timeout covers the whole call, waiting for a free slot included.
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let slot = match deadline {
            Some(d) => tokio::time::timeout_at(d, self.slots.acquire())
                .await
                .map_err(|_| RpcError::Timeout)?,
            None => self.slots.acquire().await,
        };
        let _slot = slot.ok_or_else(|| self.closed_error())?;
        let (id, rx) = self.register()?;
        if let Some(span) = span {
            span.record("rpc.request_id", id);
        }
        let mut guard = PendingGuard {
            conn: self,
            id,
            armed: true,
            sent: false,
        };
        let timeout_ms = deadline.map_or(0, |d| {
            let left = d.saturating_duration_since(tokio::time::Instant::now());
            (left.as_millis() as u64).max(1)
        });
        self.push_frame(
            &Header::Call {
                id,
                target,
                timeout_ms,
            },
            args,
        )?;
        guard.sent = true;
        let reply = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx).await {
                Ok(r) => r,
                Err(_) => return Err(RpcError::Timeout), // guard sends the cancel
            },
            None => rx.await,
        };
        guard.armed = false;
        match reply {
            Ok(r) => r,
            Err(_) => Err(self.closed_error()),
        }
    }

    // --- heartbeat ----------------------------------------------------------

    async fn heartbeat_loop(self: Arc<Self>, interval: Duration, timeout: Duration) {
        self.touch();
        let mut ping = Vec::with_capacity(16);
        encode_bare(&mut ping, &Header::Ping { id: 0 });
        let tick = interval.min(timeout / 2).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            let now = self.epoch.elapsed().as_millis() as u64;
            let idle =
                Duration::from_millis(now.saturating_sub(self.last_rx_ms.load(Ordering::Relaxed)));
            if idle >= timeout {
                self.close(DisconnectReason::HeartbeatTimeout, false);
                return;
            }
            if idle >= interval.min(timeout / 2) && self.push_raw(&ping).is_err() {
                return;
            }
        }
    }
}

fn spawn_abortable<F>(fut: F) -> tokio::task::AbortHandle
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(fut).abort_handle()
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "handler panicked".to_string()
    }
}
