//! The [`Registry`] of named objects, and the lookup of a call's target.
//!
//! A call arrives as a target string `Object.method`. The registry maps each
//! full target to the object and the method's index, so a call costs one hash
//! lookup and an integer `match`, with no string building on either side.
//!
//! Lock: each layer's table sits behind one `RwLock`, taken only for a
//! lookup, an insert or a removal, never across an `.await` and never while
//! another lock is held (see `conn` for the whole order).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;

use super::builtin::{Changed, Fallback, FallbackService, Listing, RemoteChange, RemoteObject};
use super::builtin::{CHANGED, INTROSPECTION};
use super::service::{CloseFuture, Service};
use crate::error::RemoteError;

/// Hashes a call's target name with FNV-1a: a fraction of SipHash's cost on
/// these short keys. Safe from flooding because the remote only looks keys
/// up; it never inserts any.
struct TargetHasher(u64);

impl Default for TargetHasher {
    fn default() -> Self {
        // The FNV-1a offset basis.
        TargetHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for TargetHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[derive(Default)]
struct Table {
    targets: HashMap<Box<str>, Arc<Target>, std::hash::BuildHasherDefault<TargetHasher>>,
    objects: HashMap<Arc<str>, ObjectEntry>,
    /// Answers calls to objects nobody exposed (and unknown methods of
    /// objects without a fallback of their own).
    fallback: Option<Arc<dyn Service>>,
    /// Answers calls to unknown methods of one object.
    object_fallbacks: HashMap<Arc<str>, Arc<dyn Service>>,
}

struct ObjectEntry {
    service: Arc<dyn Service>,
    methods: &'static [&'static str],
}

/// The named objects one side exposes.
///
/// A registry is shared by every connection that serves it. Cloning gives
/// another handle to the same registry.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use rpc_core::{Handled, Incoming, Service, Registry};
/// # struct Greeter;
/// # impl Service for Greeter {
/// #     fn name() -> &'static str { "Greeter" }
/// #     fn methods() -> &'static [&'static str] { &["hello"] }
/// #     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
/// #         Handled::Done(call.reply(&()))
/// #     }
/// # }
/// let registry = Registry::new();
/// registry.expose(Greeter);
/// registry.expose_as("greeter2", Greeter);
/// assert_eq!(registry.names(), vec!["Greeter".to_string(), "greeter2".to_string()]);
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    table: Arc<Layer>,
    /// The registry this one falls back to (see [`Registry::layered`]).
    parent: Option<Arc<Layer>>,
}

/// One table of objects, and a counter bumped on every change to it, which
/// lets each connection cache its lookups without taking the lock.
struct Layer {
    table: RwLock<Table>,
    version: AtomicU64,
    /// The built-in `rpc.objects` is switched off, and changes are not
    /// told to the other side.
    hidden: AtomicBool,
    /// Objects exposed and removed, for the connections that tell their
    /// other side.
    changes: broadcast::Sender<RemoteChange>,
}

impl Default for Layer {
    fn default() -> Self {
        Layer {
            table: RwLock::default(),
            version: AtomicU64::new(0),
            hidden: AtomicBool::new(false),
            changes: broadcast::channel(CHANGES_BUFFERED).0,
        }
    }
}

/// Changes of a registry buffered for a connection that is slow to tell
/// them; beyond that the oldest are dropped (the other side can still list
/// the objects).
const CHANGES_BUFFERED: usize = 64;

impl Layer {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        let t = self.table.write().unwrap_or_else(|e| e.into_inner());
        // Bumped while the lock is held: a reader that sees the new version
        // and then looks up finds the new table.
        self.version.fetch_add(1, Ordering::AcqRel);
        t
    }
}

/// A connection's cache of [`Registry`] lookups, owned by its reader task
/// (so it needs no lock). It holds only targets that exist, so it is no
/// larger than the registry, and it is emptied whenever the registry
/// changes.
#[derive(Default)]
pub(crate) struct LookupCache {
    targets: HashMap<Box<str>, Arc<Target>, std::hash::BuildHasherDefault<TargetHasher>>,
    versions: (u64, u64),
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("objects", &self.names())
            .finish()
    }
}

/// One callable method of one exposed object.
pub(crate) struct Target {
    pub(crate) service: Arc<dyn Service>,
    pub(crate) index: usize,
    pub(crate) object: Arc<str>,
    pub(crate) method: Arc<str>,
}

impl Registry {
    /// An empty registry.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::Registry;
    ///
    /// let registry = Registry::new();
    /// assert!(registry.names().is_empty());
    /// assert_eq!(registry.methods_of("Calc"), None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A new, empty registry layered over this one.
    ///
    /// Objects exposed in it are its own, and names it does not have are looked up in `self`
    /// (including objects added to `self` later). A server gives each
    /// connection such a layer, so that an object exposed through one
    /// accepted [`Peer`](crate::Peer) is reachable by that client only.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rpc_core::{Handled, Incoming, Service, Registry};
    /// # struct Greeter;
    /// # impl Service for Greeter {
    /// #     fn name() -> &'static str { "Greeter" }
    /// #     fn methods() -> &'static [&'static str] { &["hello"] }
    /// #     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    /// #         Handled::Done(call.reply(&()))
    /// #     }
    /// # }
    /// let shared = Registry::new();
    /// shared.expose(Greeter);
    /// let mine = shared.layered();
    /// mine.expose_as("private", Greeter);
    /// assert_eq!(mine.names(), vec!["Greeter".to_string(), "private".to_string()]);
    /// assert_eq!(shared.names(), vec!["Greeter".to_string()]);
    /// ```
    pub fn layered(&self) -> Registry {
        Registry {
            table: Arc::default(),
            parent: Some(self.table.clone()),
        }
    }

    /// Exposes `object` under its default name ([`Service::name`]).
    ///
    /// An object already exposed under that name is replaced.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Registry};
    ///
    /// pub struct Calc;
    /// #[expose]
    /// impl Calc {
    ///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// }
    ///
    /// let registry = Registry::new();
    /// registry.expose(Calc);
    /// registry.expose(Calc); // replaces the first
    /// assert_eq!(registry.names(), ["Calc"]);
    /// assert_eq!(registry.methods_of("Calc"), Some(&["add"][..]));
    /// ```
    pub fn expose<S: Service>(&self, object: S) {
        self.expose_arc(S::name(), Arc::new(object));
    }

    /// Exposes `object` under `name`.
    ///
    /// An object already exposed under that name is replaced. Calls reach
    /// it as `name.method`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Registry};
    ///
    /// pub struct Calc;
    /// #[expose]
    /// impl Calc {
    ///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// }
    ///
    /// let registry = Registry::new();
    /// registry.expose_as("calc-a", Calc);
    /// registry.expose_as("calc-b", Calc);
    /// assert_eq!(registry.names(), ["calc-a", "calc-b"]);
    /// assert_eq!(registry.methods_of("Calc"), None);
    /// ```
    pub fn expose_as<S: Service>(&self, name: &str, object: S) {
        self.expose_arc(name, Arc::new(object));
    }

    /// Exposes an object that is already shared, under `name`.
    ///
    /// An object already exposed under that name is replaced. The caller
    /// keeps its handle, and can expose the same object under several names.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    /// use std::sync::Arc;
    /// use rpc_core::{expose, Peer, PeerConfig, Registry};
    ///
    /// #[derive(Default)]
    /// pub struct Hits(AtomicU32);
    /// #[expose]
    /// impl Hits {
    ///     pub fn hit(&self) { self.0.fetch_add(1, SeqCst); }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let hits = Arc::new(Hits::default());
    /// let served = Registry::new();
    /// served.expose_arc("a", hits.clone());
    /// served.expose_arc("b", hits.clone());
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// client.call::<(), _>("a.hit", &()).await?;
    /// client.call::<(), _>("b.hit", &()).await?;
    /// assert_eq!(hits.0.load(SeqCst), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn expose_arc<S: Service>(&self, name: &str, object: Arc<S>) {
        let name: Arc<str> = Arc::from(name);
        let service: Arc<dyn Service> = object;
        let mut t = self.table.write();
        remove_object(&mut t, &name);
        for (index, method) in S::methods().iter().enumerate() {
            t.targets.insert(
                format!("{name}.{method}").into_boxed_str(),
                Arc::new(Target {
                    service: service.clone(),
                    index,
                    object: name.clone(),
                    method: Arc::from(*method),
                }),
            );
        }
        t.objects.insert(
            name.clone(),
            ObjectEntry {
                service,
                methods: S::methods(),
            },
        );
        drop(t);
        let _ = self
            .table
            .changes
            .send(RemoteChange::Exposed(name.to_string()));
    }

    /// Removes the object exposed under `name`; returns whether there was one.
    ///
    /// Only this registry's own objects are removed: a
    /// [`layered`](Self::layered) registry leaves the ones it inherits alone.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rpc_core::{expose, Registry};
    /// # pub struct Calc;
    /// # #[expose]
    /// # impl Calc {
    /// #     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// # }
    /// let registry = Registry::new();
    /// registry.expose(Calc);
    /// assert!(registry.remove("Calc"));
    /// assert!(!registry.remove("Calc"));
    /// assert!(registry.names().is_empty());
    /// ```
    pub fn remove(&self, name: &str) -> bool {
        let removed = remove_object(&mut self.table.write(), name);
        if removed {
            let _ = self
                .table
                .changes
                .send(RemoteChange::Removed(name.to_string()));
        }
        removed
    }

    /// The changes of every layer, for a connection that tells its other
    /// side; none when introspection is off.
    pub(crate) fn changes(&self) -> Vec<broadcast::Receiver<RemoteChange>> {
        if !self.introspects() {
            return Vec::new();
        }
        self.tables().map(|t| t.changes.subscribe()).collect()
    }

    /// Whether the other side may list this registry's objects and their
    /// methods ([`Peer::remote_objects`](crate::Peer::remote_objects)); on
    /// by default. Off, the built-in `rpc.objects` is an unknown target like
    /// any other (a [`fallback`](Self::fallback) may answer it).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Peer, PeerConfig, Registry, RemoteError, RpcError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let served = Registry::new();
    /// served.introspection(false);
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let e = client.remote_objects().await.unwrap_err();
    /// assert_eq!(e, RpcError::Remote(RemoteError::UnknownObject("rpc".into())));
    /// # Ok(())
    /// # }
    /// ```
    pub fn introspection(&self, on: bool) {
        self.table.hidden.store(!on, Ordering::Release);
        // Connections cache their lookups by version.
        drop(self.table.write());
    }

    fn introspects(&self) -> bool {
        !self.tables().any(|t| t.hidden.load(Ordering::Acquire))
    }

    /// Every object of this registry (its own and the ones it inherits),
    /// with its methods, sorted by name.
    fn listing(&self) -> Vec<RemoteObject> {
        self.names()
            .into_iter()
            .map(|name| {
                let methods = self
                    .methods_of(&name)
                    .unwrap_or(&[])
                    .iter()
                    .map(|m| m.to_string())
                    .collect();
                RemoteObject { name, methods }
            })
            .collect()
    }

    /// Answers every call that no exposed object can: calls to objects
    /// nobody exposed, and to unknown methods of objects without a
    /// fallback of their own ([`fallback_for`](Self::fallback_for)).
    /// Replaces an earlier one. Without a fallback those calls fail with
    /// [`RemoteError::UnknownObject`] or [`RemoteError::UnknownMethod`], as
    /// always.
    ///
    /// The handler gets the call as an [`Incoming`](crate::Incoming): its
    /// [`object`](crate::Incoming::object) and
    /// [`method`](crate::Incoming::method) names, its arguments (decoded
    /// with [`args`](crate::Incoming::args), or raw with
    /// [`raw_args`](crate::Incoming::raw_args)), its context, and the
    /// usual ways to answer, at once or from a future.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Handled, Incoming, Peer, PeerConfig, Registry, RemoteError, RpcError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let served = Registry::new();
    /// served.fallback(|call: Incoming| {
    ///     let said = format!("{}.{} is not here", call.object(), call.method());
    ///     Handled::Done(call.reply(&said))
    /// });
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let answer: String = client.call("Ghost.boo", &()).await?;
    /// assert_eq!(answer, "Ghost.boo is not here");
    /// # Ok(())
    /// # }
    /// ```
    pub fn fallback(&self, handler: impl Fallback) {
        self.table.write().fallback = Some(Arc::new(FallbackService(Box::new(handler))));
    }

    /// Answers the calls to unknown methods of the object `name` (whether
    /// or not an object is exposed under that name): its methods are
    /// answered as usual, every other `name.method` goes to `handler`.
    /// Replaces an earlier one for that name.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Handled, Incoming, Peer, PeerConfig, Registry, RpcError};
    ///
    /// pub struct Config;
    /// #[expose]
    /// impl Config {
    ///     pub fn version(&self) -> u32 { 3 }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let served = Registry::new();
    /// served.expose(Config);
    /// // Any other method of `Config` is a setting, read by name.
    /// served.fallback_for("Config", |call: Incoming| {
    ///     let value = format!("<{}>", call.method());
    ///     Handled::Done(call.reply(&value))
    /// });
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// assert_eq!(ConfigClient::new(&client).version().await?, 3);
    /// assert_eq!(client.call::<String, _>("Config.colour", &()).await?, "<colour>");
    /// # Ok(())
    /// # }
    /// ```
    pub fn fallback_for(&self, name: &str, handler: impl Fallback) {
        let service: Arc<dyn Service> = Arc::new(FallbackService(Box::new(handler)));
        self.table
            .write()
            .object_fallbacks
            .insert(Arc::from(name), service);
    }

    /// Removes this registry's fallbacks (the registry's and every
    /// object's): unknown calls fail as they do without them again.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Handled, Incoming, Registry};
    ///
    /// let registry = Registry::new();
    /// registry.fallback(|call: Incoming| Handled::Done(call.unknown_method()));
    /// registry.remove_fallbacks();
    /// ```
    pub fn remove_fallbacks(&self) {
        let mut t = self.table.write();
        t.fallback = None;
        t.object_fallbacks.clear();
    }

    /// The tables to search, own first.
    fn tables(&self) -> impl Iterator<Item = &Layer> {
        std::iter::once(&*self.table).chain(self.parent.as_deref())
    }

    /// The names of the exposed objects, sorted.
    ///
    /// A [`layered`](Self::layered) registry lists its own objects and the
    /// ones it inherits.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rpc_core::{expose, Registry};
    /// # pub struct Calc;
    /// # #[expose]
    /// # impl Calc {
    /// #     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// # }
    /// let registry = Registry::new();
    /// registry.expose_as("zeta", Calc);
    /// registry.expose_as("alpha", Calc);
    /// assert_eq!(registry.names(), ["alpha", "zeta"]);
    /// ```
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for t in self.tables() {
            v.extend(t.read().objects.keys().map(|k| k.to_string()));
        }
        v.sort();
        v.dedup();
        v
    }

    /// The exposed method names of the object under `name`.
    ///
    /// `None` when no object is exposed under `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Registry};
    ///
    /// pub struct Calc;
    /// #[expose]
    /// impl Calc {
    ///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    ///     #[expose(name = "divide")]
    ///     pub fn div(&self, a: i64, b: i64) -> Option<i64> { a.checked_div(b) }
    /// }
    ///
    /// let registry = Registry::new();
    /// registry.expose(Calc);
    /// assert_eq!(registry.methods_of("Calc"), Some(&["add", "divide"][..]));
    /// assert_eq!(registry.methods_of("Nope"), None);
    /// ```
    pub fn methods_of(&self, name: &str) -> Option<&'static [&'static str]> {
        self.tables()
            .find_map(|t| t.read().objects.get(name).map(|o| o.methods))
    }

    /// [`lookup`](Self::lookup) through a connection's cache: a hit costs
    /// one hash of the name and no lock.
    pub(crate) fn lookup_cached(
        &self,
        cache: &mut LookupCache,
        target: &str,
    ) -> Result<Arc<Target>, RemoteError> {
        let versions = (
            self.table.version.load(Ordering::Acquire),
            self.parent
                .as_ref()
                .map_or(0, |p| p.version.load(Ordering::Acquire)),
        );
        if versions != cache.versions {
            cache.targets.clear();
            cache.versions = versions;
        }
        if let Some(found) = cache.targets.get(target) {
            return Ok(found.clone());
        }
        let (found, cacheable) = self.find(target)?;
        if cacheable {
            cache.targets.insert(target.into(), found.clone());
        }
        Ok(found)
    }

    /// Finds a call's target: an exposed method, else the most specific
    /// fallback (the object's, then the registry's). Whether the answer
    /// may be cached (a fallback's may not: the remote picks its names).
    fn find(&self, target: &str) -> Result<(Arc<Target>, bool), RemoteError> {
        for t in self.tables() {
            let t = t.read();
            if t.objects.is_empty() {
                continue;
            }
            if let Some(found) = t.targets.get(target) {
                return Ok((found.clone(), true));
            }
        }
        if target == CHANGED {
            let target = Target {
                service: Arc::new(Changed),
                index: 0,
                object: Arc::from("rpc"),
                method: Arc::from("changed"),
            };
            return Ok((Arc::new(target), true));
        }
        if target == INTROSPECTION && self.introspects() {
            let listing = Arc::new(Listing(self.listing()));
            let target = Target {
                service: listing,
                index: 0,
                object: Arc::from("rpc"),
                method: Arc::from("objects"),
            };
            return Ok((Arc::new(target), false));
        }
        let (object, method) = target.rsplit_once('.').unwrap_or((target, ""));
        let fallback = self
            .tables()
            .find_map(|t| t.read().object_fallbacks.get(object).cloned())
            .or_else(|| self.tables().find_map(|t| t.read().fallback.clone()));
        if let Some(service) = fallback {
            let target = Target {
                service,
                index: 0,
                object: Arc::from(object),
                method: Arc::from(method),
            };
            return Ok((Arc::new(target), false));
        }
        if self.tables().any(|t| t.read().objects.contains_key(object)) {
            Err(RemoteError::UnknownMethod {
                object: object.to_string(),
                method: method.to_string(),
            })
        } else {
            Err(RemoteError::UnknownObject(object.to_string()))
        }
    }

    /// Runs the close hook ([`Service::close`]) of every object exposed in
    /// this registry's own table.
    ///
    /// Each object's hook runs once, even when the object is exposed under
    /// several names. Objects a [`layered`](Self::layered) registry inherits
    /// are not closed by it. The objects stay exposed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    /// use std::sync::Arc;
    /// use rpc_core::{expose, Registry};
    ///
    /// #[derive(Default)]
    /// pub struct Db { closes: AtomicU32 }
    /// #[expose]
    /// impl Db {
    ///     #[expose(close)]
    ///     pub fn flush(&self) { self.closes.fetch_add(1, SeqCst); }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let db = Arc::new(Db::default());
    /// let registry = Registry::new();
    /// registry.expose_arc("main", db.clone());
    /// registry.expose_arc("replica", db.clone());
    /// registry.close_all().await;
    /// assert_eq!(db.closes.load(SeqCst), 1);
    /// # }
    /// ```
    pub async fn close_all(&self) {
        let hooks: Vec<CloseFuture> = {
            let t = self.table.read();
            let mut seen = HashSet::new();
            t.objects
                .values()
                .filter(|o| seen.insert(Arc::as_ptr(&o.service) as *const () as usize))
                .map(|o| o.service.clone().close())
                .collect()
        };
        futures::future::join_all(hooks).await;
    }
}

fn remove_object(t: &mut Table, name: &str) -> bool {
    match t.objects.remove(name) {
        Some(o) => {
            for m in o.methods {
                t.targets.remove(format!("{name}.{m}").as_str());
            }
            true
        }
        None => false,
    }
}
