//! [`NameService`]: the exposed object, its one lock, and the watch on each
//! registering connection that removes its names when it closes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use futures::{Stream, StreamExt};
use rpc_core::{expose, CallContext};
use tokio::sync::broadcast;
use tracing::debug;

use super::table::Table;
use super::{Change, Entry, NameError, NameLimits, Removal};

/// Changes buffered for watchers that are slow to read; beyond that the
/// oldest are dropped and the watcher is told with [`Change::Missed`].
const CHANGES_BUFFERED: usize = 1024;

/// A name service: an object to expose on a [`Server`](crate::Server).
///
/// Servers register a name with their address
/// ([`register`](NameService::register), or [`Names::register`](super::Names::register));
/// clients look names up ([`lookup`](NameService::lookup),
/// [`list`](NameService::list)), follow changes
/// ([`watch`](NameService::watch)) or dial `name://` addresses. See the
/// [module](super) for the rules: a registration lives as long as its
/// connection, a name held by a live connection is refused to the others,
/// and [`NameLimits`] bounds what a peer can make the service hold.
///
/// Exposed under its type's name, `"NameService"`; callers use the
/// generated [`NameServiceClient`]. Cloning gives another handle to the
/// same table (to expose it and still [`watch`](NameService::watch) it
/// locally). Connections are told apart by their connection id, so expose
/// one `NameService` on one [`Server`](crate::Server) (a server assigns
/// each connection its own id).
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use rpc_transport::names::{NameError, NameService, NameServiceClient};
/// use rpc_transport::{connect, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let server = Server::builder().expose(NameService::new()).bind("tcp://127.0.0.1:0").await?;
/// let a = connect(server.local_addr()).await?;
/// let b = connect(server.local_addr()).await?;
/// let (ns_a, ns_b) = (NameServiceClient::new(&a), NameServiceClient::new(&b));
///
/// let meta = BTreeMap::from([("version".to_string(), "2".to_string())]);
/// ns_a.register("echo".into(), "tcp://10.0.0.7:9099".into(), meta).await?.unwrap();
/// let taken = ns_b.register("echo".into(), "tcp://10.0.0.8:9099".into(), BTreeMap::new()).await?;
/// assert_eq!(taken, Err(NameError::Taken("echo".into())));
///
/// let entry = ns_b.lookup("echo".into()).await?.unwrap();
/// assert_eq!(entry.address, "tcp://10.0.0.7:9099");
/// assert_eq!(entry.metadata["version"], "2");
/// assert_eq!(ns_b.list("ec".into()).await?.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct NameService {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The one lock. Taken for a verb on the table and released before any
    /// `.await`; changes are sent while it is held, so every watcher sees
    /// them in the table's order, and a watch subscribes under it, so it
    /// misses nothing that happens after it started.
    table: Mutex<Table>,
    changes: broadcast::Sender<Change>,
    limits: NameLimits,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the names of a connection that closed, and tells watchers.
    fn connection_closed(&self, connection_id: u64) {
        let mut table = self.lock();
        let removed = table.connection_closed(connection_id);
        if !removed.is_empty() {
            debug!(connection_id, names = ?removed, "names removed with their connection");
        }
        for name in removed {
            let _ = self.changes.send(Change::Removed {
                name,
                why: Removal::Disconnected,
            });
        }
    }
}

impl Default for NameService {
    fn default() -> Self {
        NameService::new()
    }
}

impl NameService {
    /// A name service with the default [`NameLimits`].
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::names::{NameLimits, NameService};
    /// assert_eq!(NameService::new().limits(), &NameLimits::default());
    /// ```
    pub fn new() -> Self {
        NameService::with_limits(NameLimits::default())
    }

    /// A name service with these limits.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::names::{NameLimits, NameService};
    ///
    /// let mut limits = NameLimits::default();
    /// limits.max_names = 100;
    /// assert_eq!(NameService::with_limits(limits).limits().max_names, 100);
    /// ```
    pub fn with_limits(limits: NameLimits) -> Self {
        NameService {
            shared: Arc::new(Shared {
                table: Mutex::new(Table::default()),
                changes: broadcast::channel(CHANGES_BUFFERED).0,
                limits,
            }),
        }
    }

    /// The limits this service enforces.
    ///
    /// # Examples
    ///
    /// See [`with_limits`](NameService::with_limits).
    pub fn limits(&self) -> &NameLimits {
        &self.shared.limits
    }

    /// Watches the connection of `cx` and removes its names when it closes.
    ///
    /// Started once per connection, at its first registration. A call that
    /// arrives on a connection already closed (its handler ran late) starts
    /// a watch that fires at once, so no name outlives its connection.
    fn watch_connection(&self, cx: &CallContext) {
        let closed = cx.peer().closed_owned();
        let connection_id = cx.connection_id();
        let shared: Weak<Shared> = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            closed.await;
            if let Some(shared) = shared.upgrade() {
                shared.connection_closed(connection_id);
            }
        });
    }
}

#[expose]
impl NameService {
    /// Registers `name` at `address` (a `tcp://` or `unix://` address) with
    /// `metadata`, for as long as the calling connection lives.
    ///
    /// The same connection may register a name again, which replaces its
    /// address and metadata.
    ///
    /// # Errors
    ///
    /// [`NameError::Taken`] when another connection holds the name;
    /// [`NameError::InvalidName`], [`NameError::InvalidAddress`],
    /// [`NameError::InvalidMetadata`] for what does not pass the
    /// [`NameLimits`] or the syntax; [`NameError::TooManyNames`] and
    /// [`NameError::Full`] at the limits on names.
    ///
    /// # Examples
    ///
    /// See [`NameService`].
    pub fn register(
        &self,
        cx: CallContext,
        name: String,
        address: String,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), NameError> {
        let entry = Entry {
            name,
            address,
            metadata,
        };
        let shared = &self.shared;
        let mut table = shared.lock();
        let registered = table.register(cx.connection_id(), entry.clone(), &shared.limits)?;
        debug!(name = %entry.name, address = %entry.address, connection_id = cx.connection_id(), "name registered");
        let _ = shared.changes.send(Change::Registered(entry));
        drop(table);
        if registered.first_for_connection {
            self.watch_connection(&cx);
        }
        Ok(())
    }

    /// Unregisters `name`: whether it was registered.
    ///
    /// # Errors
    ///
    /// [`NameError::NotOwner`] when another connection holds it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use rpc_transport::names::{NameService, NameServiceClient};
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().expose(NameService::new()).bind("tcp://127.0.0.1:0").await?;
    /// let ns = NameServiceClient::new(&connect(server.local_addr()).await?);
    /// ns.register("db".into(), "unix:///run/db.sock".into(), BTreeMap::new()).await?.unwrap();
    /// assert_eq!(ns.unregister("db".into()).await?, Ok(true));
    /// assert_eq!(ns.unregister("db".into()).await?, Ok(false));
    /// assert_eq!(ns.lookup("db".into()).await?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn unregister(&self, cx: CallContext, name: String) -> Result<bool, NameError> {
        let shared = &self.shared;
        let mut table = shared.lock();
        let removed = table.unregister(cx.connection_id(), &name)?;
        if removed {
            debug!(%name, "name unregistered");
            let _ = shared.changes.send(Change::Removed {
                name,
                why: Removal::Unregistered,
            });
        }
        Ok(removed)
    }

    /// The entry registered under `name`, if any.
    ///
    /// # Examples
    ///
    /// See [`NameService`].
    pub fn lookup(&self, name: String) -> Option<Entry> {
        self.shared.lock().lookup(&name).cloned()
    }

    /// The entries whose names start with `prefix` (all of them for `""`),
    /// in name order.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use rpc_transport::names::{NameService, NameServiceClient};
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().expose(NameService::new()).bind("tcp://127.0.0.1:0").await?;
    /// let ns = NameServiceClient::new(&connect(server.local_addr()).await?);
    /// for name in ["shop.cart", "shop.billing", "mail"] {
    ///     ns.register(name.into(), "tcp://127.0.0.1:1".into(), BTreeMap::new()).await?.unwrap();
    /// }
    /// let shop: Vec<String> = ns.list("shop.".into()).await?.into_iter().map(|e| e.name).collect();
    /// assert_eq!(shop, ["shop.billing", "shop.cart"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn list(&self, prefix: String) -> Vec<Entry> {
        self.shared.lock().list(&prefix).cloned().collect()
    }

    /// The changes to names starting with `prefix`, as a stream: first a
    /// [`Change::Registered`] for each name registered now, then every
    /// change from the moment of the call on.
    ///
    /// Once the call has returned, no later change is missed (unless the
    /// watcher falls more than 1024 changes behind, which it is told with
    /// [`Change::Missed`]). A name registered or removed while the first
    /// entries are still being read may show both in them and as a change;
    /// applied in order, the changes always end at the service's state.
    /// The stream lasts until it is dropped or the connection closes (it
    /// does not keep the connection open: keep the client or its peer while
    /// reading); give it no call timeout. A prefix longer than any name may be gives an
    /// empty stream that ends at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use futures::StreamExt;
    /// use rpc_transport::names::{Change, NameService, NameServiceClient, Removal};
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().expose(NameService::new()).bind("tcp://127.0.0.1:0").await?;
    /// let ns = NameServiceClient::new(&connect(server.local_addr()).await?);
    /// let mut changes = ns.watch("".into()).await?;
    ///
    /// let worker = connect(server.local_addr()).await?;
    /// NameServiceClient::new(&worker)
    ///     .register("worker".into(), "tcp://127.0.0.1:7000".into(), BTreeMap::new())
    ///     .await?.unwrap();
    /// let Some(Ok(Change::Registered(entry))) = changes.next().await else { panic!() };
    /// assert_eq!(entry.name, "worker");
    ///
    /// worker.close().await; // its names go with its connection
    /// let removed = changes.next().await;
    /// assert_eq!(removed, Some(Ok(Change::Removed { name: "worker".into(), why: Removal::Disconnected })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch(&self, prefix: String) -> impl Stream<Item = Change> + Send + 'static {
        let shared = &self.shared;
        let live = if prefix.len() > shared.limits.max_name_len {
            None
        } else {
            // Under the lock: no change after this point is missed.
            let _table = shared.lock();
            Some(shared.changes.subscribe())
        };
        let Some(live) = live else {
            return futures::stream::empty().left_stream();
        };
        let prefix: Arc<str> = prefix.into();
        let snapshot = futures::stream::unfold(
            (Arc::downgrade(shared), prefix.clone(), None::<String>),
            |(shared, prefix, after)| async move {
                let next = {
                    let shared = shared.upgrade()?;
                    let table = shared.lock();
                    table.next_after(&prefix, after.as_deref()).cloned()
                }?;
                let after = Some(next.name.clone());
                Some((Change::Registered(next), (shared, prefix, after)))
            },
        );
        let changes = futures::stream::unfold((live, prefix), |(mut live, prefix)| async move {
            loop {
                match live.recv().await {
                    Ok(change) => {
                        if change.name().is_none_or(|n| n.starts_with(&*prefix)) {
                            return Some((change, (live, prefix)));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        return Some((Change::Missed(n), (live, prefix)))
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        snapshot.chain(changes).right_stream()
    }
}
