//! The peer's lifecycle: its current connection and its [`Status`].
//!
//! Owns: every change of status, and the swap of one connection for the
//! next. Nothing else writes the status: a connection that ends tells its
//! owner (the [`Link`] here) through the `conn::Owner` seam, and the peer's
//! API calls the transitions below.
//!
//! Lock: `transition` is held while a connection is installed or the peer
//! is closed, so that a handshake finishing during a close cannot bring the
//! peer back. It is the outermost lock (see `conn` for the order) and is
//! never held across an `.await`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::WeakPeer;
use crate::conn::{lock, Conn, Owner};
use crate::error::{DisconnectReason, RpcError};
use crate::peer::Peer;

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

/// The current connection and the status of one peer.
pub(crate) struct Lifecycle {
    status: watch::Sender<Status>,
    /// The status is `Connecting` or `Reconnecting`: calls fail at once with
    /// `NotConnected`. A mirror of `status` for the call path, which reads
    /// it on every call; written after every change of `status`, and before
    /// the connection that ended is marked closed (see `conn::Conn::close`).
    between: AtomicBool,
    reconnect: AtomicBool,
    conn: ArcSwap<Conn>,
    transition: Mutex<()>,
}

/// What a connection knows of its owner: the lifecycle (weakly: the
/// connection must not keep its peer alive) and the peer handle for the
/// contexts of the calls it serves.
struct Link {
    life: Weak<Lifecycle>,
    peer: WeakPeer,
}

impl Owner for Link {
    fn ended(&self, reason: &DisconnectReason) {
        if let Some(life) = self.life.upgrade() {
            life.ended(reason);
        }
    }

    fn peer(&self, conn: &Arc<Conn>) -> Peer {
        self.peer
            .upgrade()
            .unwrap_or_else(|| Peer::around(conn.clone()))
    }
}

impl Lifecycle {
    /// A lifecycle with no connection yet.
    pub(crate) fn new(status: Status) -> Arc<Lifecycle> {
        Arc::new_cyclic(|me: &Weak<Lifecycle>| Lifecycle {
            status: watch::Sender::new(status),
            between: AtomicBool::new(is_between(status)),
            reconnect: AtomicBool::new(false),
            conn: ArcSwap::new(Conn::dead(
                Arc::new(Link {
                    life: me.clone(),
                    peer: WeakPeer::none(),
                }),
                0,
                DisconnectReason::Closed,
            )),
            transition: Mutex::new(()),
        })
    }

    /// A lifecycle around a connection that already runs.
    pub(crate) fn around(conn: Arc<Conn>) -> Arc<Lifecycle> {
        let status = if conn.is_closed() {
            Status::Closed
        } else {
            Status::Connected
        };
        Arc::new(Lifecycle {
            status: watch::Sender::new(status),
            between: AtomicBool::new(is_between(status)),
            reconnect: AtomicBool::new(false),
            conn: ArcSwap::new(conn),
            transition: Mutex::new(()),
        })
    }

    /// The owner a new connection of `peer` reports to.
    pub(crate) fn owner(self: &Arc<Self>, peer: WeakPeer) -> Arc<dyn Owner> {
        Arc::new(Link {
            life: Arc::downgrade(self),
            peer,
        })
    }

    pub(crate) fn conn(&self) -> arc_swap::Guard<Arc<Conn>> {
        self.conn.load()
    }

    pub(crate) fn conn_full(&self) -> Arc<Conn> {
        self.conn.load_full()
    }

    pub(crate) fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// Whether calls fail at once with `NotConnected` (see `between`).
    pub(crate) fn between(&self) -> bool {
        self.between.load(Ordering::Acquire)
    }

    /// Moves the status to `new`; the mirror first, so that whoever sees
    /// the new status also sees calls fail accordingly.
    fn set(&self, new: Status) {
        self.between.store(is_between(new), Ordering::Release);
        self.status.send_replace(new);
    }

    pub(crate) fn watch(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    pub(crate) fn set_reconnecting(&self, on: bool) {
        self.reconnect.store(on, Ordering::SeqCst);
    }

    /// Makes `conn` the current connection; refused once the peer closed
    /// (a server shutting down while this handshake ran, say).
    pub(crate) fn install(&self, conn: Arc<Conn>) -> Result<(), RpcError> {
        let _transition = lock(&self.transition);
        if self.status() == Status::Closed {
            return Err(self.conn.load().closed_error());
        }
        self.conn.store(conn);
        self.set(Status::Connected);
        Ok(())
    }

    /// The current connection ended on its own: reconnecting, or closed.
    fn ended(&self, _reason: &DisconnectReason) {
        let next = if self.reconnect.load(Ordering::SeqCst) {
            Status::Reconnecting
        } else {
            Status::Closed
        };
        self.status.send_if_modified(|s| {
            // Only the end of a connection that is current moves the status.
            if *s == Status::Connected {
                self.between.store(is_between(next), Ordering::Release);
                *s = next;
                true
            } else {
                false
            }
        });
    }

    /// Closes for good with `reason` (a goodbye is sent); returns the
    /// connection that was current. When it had already ended, `reason`
    /// becomes the one reported from now on.
    pub(crate) fn close(self: &Arc<Self>, reason: DisconnectReason) -> Arc<Conn> {
        self.reconnect.store(false, Ordering::SeqCst);
        let _transition = lock(&self.transition);
        let conn = self.conn.load_full();
        if conn.is_closed() && reason != DisconnectReason::Closed {
            let id = conn.info.connection_id;
            let owner = self.owner(WeakPeer::none());
            self.conn.store(Conn::dead(owner, id, reason));
        } else {
            conn.close(reason, true);
        }
        self.set(Status::Closed);
        conn
    }

    /// The peer's last handle is gone.
    pub(crate) fn dropped(&self) {
        self.reconnect.store(false, Ordering::SeqCst);
        self.conn.load().close(DisconnectReason::Closed, true);
    }
}

fn is_between(status: Status) -> bool {
    matches!(status, Status::Connecting | Status::Reconnecting)
}
