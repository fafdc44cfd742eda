//! [`Peer`]: one end of one connection, the same type on both sides.
//!
//! A `Peer` is a handle: the registry of objects it serves, its
//! configuration, and its lifecycle (the current connection, which a
//! reconnecting client replaces, and the status; see `lifecycle`, the only
//! place where the status changes). This module is the user's API; the
//! connection's tasks, queues and tables, and the order of its locks, are
//! described in `conn`.

mod lifecycle;
mod streams;

pub(crate) use streams::input_pump;

pub use lifecycle::Status;

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{trace, Instrument};

use crate::codec::FrameReader;
use crate::config::PeerConfig;
use crate::dispatch::{Registry, Service};
use crate::error::{DisconnectReason, RpcError};
use crate::handshake::{handshake, handshake_admitting, Role};
use crate::identity::{AttachOptions, PeerIdentity};
use crate::wire::{describe, encode_bare, Header, HANDSHAKE_MAX_FRAME};

use self::lifecycle::Lifecycle;
use crate::conn::handles::decode_answer;
use crate::conn::Conn;

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
    life: Arc<Lifecycle>,
    /// What the other side says it exposed or removed.
    changes: tokio::sync::broadcast::Sender<crate::dispatch::RemoteChange>,
}

/// Changes of the other side's objects buffered for a subscriber to
/// [`Peer::remote_changes`] that is slow to read them.
const CHANGES_HEARD: usize = 64;

impl Drop for Shared {
    fn drop(&mut self) {
        self.life.dropped();
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let conn = self.shared.life.conn();
        f.debug_struct("Peer")
            .field("connection_id", &conn.info.connection_id)
            .field("remote_name", &conn.info.remote_name)
            .field("status", &self.shared.life.status())
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

    /// A handle to no peer at all (for a connection that never had one).
    pub(crate) fn none() -> WeakPeer {
        WeakPeer {
            shared: Weak::new(),
        }
    }
}

impl Peer {
    /// For a handler's context when every other handle has gone: a handle
    /// made afresh around the connection, serving nothing.
    pub(crate) fn around(conn: Arc<Conn>) -> Peer {
        Peer {
            shared: Arc::new(Shared {
                registry: Registry::new(),
                config: Arc::new(PeerConfig::default()),
                life: Lifecycle::around(conn),
                changes: tokio::sync::broadcast::channel(CHANGES_HEARD).0,
            }),
        }
    }

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
        Peer {
            shared: Arc::new(Shared {
                registry,
                config: Arc::new(config),
                life: Lifecycle::new(Status::Connecting),
                changes: tokio::sync::broadcast::channel(CHANGES_HEARD).0,
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
    pub async fn attach<R, W>(&self, rd: R, wr: W, side: Side) -> Result<(), RpcError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        self.attach_checked(rd, wr, side, || Ok(())).await
    }

    /// [`attach`](Peer::attach), with a last check on the accepting side:
    /// `admit` runs once the dialer has authenticated, just before the
    /// verdict, and an error from it is the refusal the dialer gets.
    ///
    /// A server uses it to count only authenticated connections against its
    /// limit, deciding at the last moment. On the connecting side `admit`
    /// is not called.
    ///
    /// # Errors
    ///
    /// As [`Peer::connect`]; the error `admit` returned.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, RpcError, Side};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Peer::detached(Registry::new(), PeerConfig::default());
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (rd, wr) = tokio::io::split(a);
    /// let full = || Err(RpcError::Refused("full".into()));
    /// let side = Side::Accept { connection_id: 1 };
    /// let (served, dialed) = tokio::join!(
    ///     server.attach_checked(rd, wr, side, full),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// );
    /// assert_eq!(served, Err(RpcError::Refused("full".into())));
    /// assert_eq!(dialed.unwrap_err(), RpcError::Refused("full".into()));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn attach_checked<R, W, F>(
        &self,
        rd: R,
        wr: W,
        side: Side,
        admit: F,
    ) -> Result<(), RpcError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
        F: FnMut() -> Result<(), RpcError> + Send,
    {
        self.attach_with(rd, wr, side, AttachOptions::new(), admit)
            .await
    }

    /// [`attach_checked`](Peer::attach_checked), with what the transport
    /// knows about the stream that the protocol does not: the identity it
    /// verified for the other end (a TLS certificate chain), which this
    /// connection then reports through [`peer_identity`](Peer::peer_identity)
    /// and [`CallContext::peer_identity`](crate::CallContext::peer_identity).
    ///
    /// The options belong to this one connection; a reconnection attaches
    /// with its own. Nothing in them is sent to the remote.
    ///
    /// # Errors
    ///
    /// As [`attach_checked`](Peer::attach_checked).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{AttachOptions, Peer, PeerConfig, PeerIdentity, Registry, Side};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Peer::detached(Registry::new(), PeerConfig::default());
    /// // The client's certificate chain, as the TLS layer verified it.
    /// let verified = PeerIdentity::from_chain([vec![0x30u8, 0x03, 0x02, 0x01, 0x07]]);
    /// let options = AttachOptions::new().peer_identity(verified.clone());
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (rd, wr) = tokio::io::split(a);
    /// let side = Side::Accept { connection_id: 1 };
    /// let (attached, client) = tokio::join!(
    ///     server.attach_with(rd, wr, side, options, || Ok(())),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// );
    /// attached?;
    /// assert_eq!(server.peer_identity(), verified);
    /// assert_eq!(client?.peer_identity(), None); // nobody vouched for the server
    /// # Ok(())
    /// # }
    /// ```
    pub async fn attach_with<R, W, F>(
        &self,
        rd: R,
        mut wr: W,
        side: Side,
        options: AttachOptions,
        mut admit: F,
    ) -> Result<(), RpcError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
        F: FnMut() -> Result<(), RpcError> + Send,
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
        let negotiated =
            handshake_admitting(&mut reader, &mut wr, config, role, &mut admit).await?;
        reader.set_budget(config.budget.clone());
        let owner = self.shared.life.owner(self.downgrade());
        let conn = Conn::new(negotiated, options.into_identity(), config, owner);
        // Closed while shaking hands (a server shutting down, say): the
        // remote has its verdict already, so it hears the goodbye that
        // closing sends (that it is a shutdown, say) before the stream goes.
        if let Err(e) = self.shared.life.install(conn.clone()) {
            let bye = match &e {
                RpcError::ConnectionClosed(DisconnectReason::Shutdown) => Header::Shutdown,
                _ => Header::Goodbye,
            };
            let mut frame = Vec::new();
            encode_bare(&mut frame, &bye);
            let said = async {
                wr.write_all(&frame).await?;
                wr.shutdown().await
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), said).await;
            return Err(e);
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

    /// Refuses a dialer at once, without reading from it: writes this
    /// side's opening and a rejected verdict carrying `error`, which the
    /// dialer's connect call returns.
    ///
    /// For a server that cannot afford the wait of [`refuse`](Peer::refuse)
    /// (one out of file descriptors, say). Close the stream soon after: the
    /// dialer reads the refusal before it sees the stream end.
    ///
    /// # Errors
    ///
    /// [`RpcError::Io`] (or `ConnectionClosed`) when the bytes cannot be
    /// written.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, RpcError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (_rd, mut wr) = tokio::io::split(a);
    /// let full = RpcError::Refused("out of file descriptors".into());
    /// Peer::turn_away(&mut wr, &PeerConfig::default(), &full).await?;
    /// let dialed = Peer::connect(b, Registry::new(), PeerConfig::default()).await;
    /// assert_eq!(dialed.unwrap_err(), full);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn turn_away<W>(
        wr: &mut W,
        config: &PeerConfig,
        error: &RpcError,
    ) -> Result<(), RpcError>
    where
        W: AsyncWrite + Unpin,
    {
        crate::handshake::turn_away(wr, config, error).await
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
        self.shared.life.set_reconnecting(on);
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
        self.call_inner(target, args, None).await
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

    /// The one place a call's timeout is settled: `timeout` (explicit, or a
    /// stub's), else the peer's default; the connection turns it into one
    /// deadline for the whole call.
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
        self.call_reaching(target, args, timeout, &mut false).await
    }

    /// [`call_inner`](Self::call_inner), telling through `sent` whether
    /// the call was queued for the remote before it failed.
    pub(crate) async fn call_reaching<R, A>(
        &self,
        target: &str,
        args: &A,
        timeout: Option<Duration>,
        sent: &mut bool,
    ) -> Result<R, RpcError>
    where
        R: DeserializeOwned,
        A: Serialize + ?Sized,
    {
        let conn = self.current()?;
        let deadline = self.deadline(timeout);
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
            let answer = conn
                .call(target, args, deadline, span.as_ref(), sent)
                .await?;
            trace!(bytes = answer.payload.len(), "reply received");
            decode_answer::<R>(&conn, &answer)
                .map_err(|e| RpcError::BadReply(format!("reply of `{target}`: {}", describe(&e))))
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
        self.current()?.notify(target, args).await
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
        conn.ping().await?;
        Ok(start.elapsed())
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

    /// This side's calls in flight on the current connection: sent (or
    /// waiting for a slot among the remote's limit) and not yet answered.
    /// A balancer's measure of load.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry};
    ///
    /// let peer = Peer::detached(Registry::new(), PeerConfig::default());
    /// assert_eq!(peer.in_flight(), 0);
    /// ```
    pub fn in_flight(&self) -> usize {
        self.shared.life.conn().calls_in_flight()
    }

    /// [`in_flight`](Self::in_flight), or `None` when the connection is
    /// closing or closed.
    pub(crate) fn load_if_open(&self) -> Option<usize> {
        self.shared.life.conn().load()
    }

    /// How many object handles ([`Remote`](crate::Remote)) the current
    /// connection has out (this side's objects the remote holds) and in
    /// (the remote's objects this side holds); zeros between connections.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Peer, PeerConfig, Registry, Remote, RpcError};
    ///
    /// pub struct Session;
    /// #[expose]
    /// impl Session {
    ///     pub fn user(&self) -> String { "ada".into() }
    /// }
    ///
    /// pub struct Login;
    /// #[expose]
    /// impl Login {
    ///     pub fn open(&self) -> Remote<Session> { Remote::new(Session) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Login);
    /// let (server, client) = tokio::try_join!(
    ///     Peer::accept(a, served, PeerConfig::default(), 1),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// )?;
    /// let session = LoginClient::new(&client).open().await?;
    /// assert_eq!(session.user().await?, "ada");
    /// assert_eq!(server.handle_counts().exported, 1);
    /// assert_eq!(client.handle_counts().imported, 1);
    /// drop(session);
    /// client.ping().await?; // the release went out before the ping
    /// assert_eq!(server.handle_counts().exported, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn handle_counts(&self) -> crate::HandleCounts {
        self.shared.life.conn().handle_counts()
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
        self.shared.life.conn().info.connection_id
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
            .life
            .conn()
            .info
            .remote_name
            .as_deref()
            .map(str::to_owned)
    }

    /// The certificate chain the other end proved it holds on the current
    /// connection, when the transport verified one; `None` otherwise
    /// (no TLS, no client certificate, or no connection).
    ///
    /// On a server with mutual TLS it is the client's certificate; on a TLS
    /// client, the server's. Each connection has its own: after a
    /// reconnection it is the new connection's. See
    /// [`PeerIdentity`] and [`attach_with`](Peer::attach_with).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// // A plain stream: no transport vouched for anyone.
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (server, client) = tokio::try_join!(
    ///     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    ///     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// )?;
    /// assert_eq!(server.peer_identity(), None);
    /// assert_eq!(client.peer_identity(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn peer_identity(&self) -> Option<PeerIdentity> {
        self.shared.life.conn().info.peer_identity.clone()
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
        self.shared.life.watch()
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
        !self.shared.life.conn().is_closed()
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
        self.shared.life.conn().serving()
    }

    /// Stops taking new calls on the current connection.
    ///
    /// From now on the remote's calls fail with [`RemoteError::ShuttingDown`](crate::RemoteError::ShuttingDown)
    /// (and its notifications are dropped), while the calls already running
    /// finish. This side can still make calls. Used by a server's graceful
    /// shutdown.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, RemoteError, RpcError};
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
    /// assert_eq!(refused, Err(RpcError::Remote(RemoteError::ShuttingDown)));
    /// // The draining side still calls out.
    /// assert_eq!(server.call::<i64, _>("Calc.add", &(1i64, 2i64)).await?, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn drain(&self) {
        self.shared.life.conn().drain();
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
        self.shared.life.conn_full().wait_closed().await
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
        let conn = self.shared.life.close(DisconnectReason::Closed);
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.wait_flushed()).await;
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
        self.shared.life.close(reason);
    }

    /// Waits until the current connection has closed and everything that
    /// was queued for the remote, its goodbye included, has been written and
    /// the stream shut down (or given up on, 2 s after the close, for a
    /// remote that does not read).
    ///
    /// [`close_with`](Peer::close_with) does not wait; a server that wants
    /// every client to hear its goodbye before the process exits waits on
    /// this.
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
    /// server.flushed().await; // the goodbye is on its way
    /// assert_eq!(client.closed().await, DisconnectReason::Shutdown);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn flushed(&self) {
        self.shared.life.conn_full().wait_flushed().await;
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
        self.shared.life.conn_full().wait_closed()
    }

    fn current(&self) -> Result<Arc<Conn>, RpcError> {
        // The status first: a connection that has begun to close already
        // shows in it (the owner hears before the connection is marked).
        if self.shared.life.between() {
            return Err(RpcError::NotConnected);
        }
        let conn = self.shared.life.conn_full();
        if conn.is_closed() {
            return Err(match self.shared.life.status() {
                Status::Connecting | Status::Reconnecting => RpcError::NotConnected,
                _ => conn.closed_error(),
            });
        }
        Ok(conn)
    }
}
