//! Dispatch: the [`Service`] trait that `#[expose]` implements, the
//! [`Incoming`] call a handler answers, and the [`Registry`] of named objects.
//!
//! A call arrives as a target string `Object.method`. The registry maps each
//! full target to the object and the method's index, so a call costs one hash
//! lookup and an integer `match`, with no string building on either side.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::CallContext;
use crate::error::RpcError;
use crate::peer::Conn;

/// A boxed handler future, as returned in [`Handled::Pending`].
pub type HandlerFuture = Pin<Box<dyn Future<Output = Replied> + Send + 'static>>;

/// A boxed future with no output, as returned by [`Service::close`].
pub type CloseFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// An object whose methods can be called remotely.
///
/// `#[expose]` implements this for you. Writing it by hand takes a few lines:
///
/// ```
/// use std::sync::Arc;
/// use rpc_core::{Handled, Incoming, Service};
///
/// struct Greeter;
///
/// impl Service for Greeter {
///     fn name() -> &'static str { "Greeter" }
///     fn methods() -> &'static [&'static str] { &["hello"] }
///     fn dispatch(self: Arc<Self>, method: usize, call: Incoming) -> Handled {
///         match method {
///             0 => match call.args::<(String,)>() {
///                 Ok((who,)) => Handled::Done(call.reply(&format!("hello, {who}"))),
///                 Err(e) => Handled::Done(call.fail(e)),
///             },
///             _ => Handled::Done(call.unknown_method()),
///         }
///     }
/// }
/// ```
pub trait Service: Send + Sync + 'static {
    /// The name the object is exposed under unless another is given.
    fn name() -> &'static str
    where
        Self: Sized;

    /// The exposed method names; `dispatch` receives an index into this list.
    fn methods() -> &'static [&'static str]
    where
        Self: Sized;

    /// Runs method number `method` (an index into [`Service::methods`]).
    ///
    /// Return [`Handled::Done`] when the call was answered synchronously, or
    /// [`Handled::Pending`] with a future that answers it. The runtime never
    /// waits on the future from its reader: a pending handler runs in its own
    /// task, so it may call back into the caller.
    fn dispatch(self: Arc<Self>, method: usize, call: Incoming) -> Handled;

    /// Called once when the server that exposes the object shuts down
    /// gracefully, after calls in flight have finished. Does nothing by default.
    fn close(self: Arc<Self>) -> CloseFuture {
        Box::pin(async {})
    }
}

/// Proof that a call was answered; only [`Incoming::reply`] and friends make one.
#[derive(Debug)]
#[must_use = "return the token from the handler"]
pub struct Replied(());

/// What [`Service::dispatch`] did with a call.
#[must_use]
pub enum Handled {
    /// The call has been answered.
    Done(Replied),
    /// The call will be answered when this future completes.
    Pending(HandlerFuture),
}

impl std::fmt::Debug for Handled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handled::Done(_) => f.write_str("Handled::Done"),
            Handled::Pending(_) => f.write_str("Handled::Pending"),
        }
    }
}

/// One call (or notification) received from the remote peer, to be answered
/// exactly once by [`reply`](Incoming::reply) or [`fail`](Incoming::fail).
pub struct Incoming {
    pub(crate) conn: Arc<Conn>,
    /// `None` for a notification: the answer is dropped.
    pub(crate) id: Option<u64>,
    pub(crate) args: Bytes,
    /// What is called: the object, the method's index and name.
    pub(crate) target: Arc<Target>,
    pub(crate) deadline: Option<Instant>,
    /// Still counted in the connection's calls in flight.
    pub(crate) counted: bool,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Panicked, timed out, cancelled: no longer in flight.
        self.release();
    }
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("id", &self.id)
            .field("object", &self.target.object)
            .field("method", &self.target.method)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// Decodes the arguments as `A` (a tuple of the method's parameters).
    ///
    /// # Errors
    ///
    /// [`RpcError::BadArguments`] when the bytes are not exactly one `A`.
    pub fn args<A: DeserializeOwned>(&self) -> Result<A, RpcError> {
        match postcard::take_from_bytes::<A>(&self.args) {
            Ok((a, [])) => Ok(a),
            Ok((_, rest)) => Err(RpcError::BadArguments(format!(
                "{} trailing bytes after the arguments of `{}.{}`",
                rest.len(),
                self.target.object,
                self.target.method
            ))),
            Err(e) => Err(RpcError::BadArguments(format!(
                "arguments of `{}.{}` do not match its parameters: {e}",
                self.target.object, self.target.method
            ))),
        }
    }

    /// The context handed to handlers that ask for it: the caller's peer
    /// (to call back), the connection id, the method, the deadline.
    pub fn context(&self) -> CallContext {
        CallContext {
            peer: self.conn.peer.upgrade_or_detached(&self.conn),
            connection_id: self.conn.info.connection_id,
            remote_name: self.conn.info.remote_name.clone(),
            object: self.target.object.clone(),
            method: self.target.method,
            request_id: self.id,
            deadline: self.deadline,
        }
    }

    /// The name of the method being called.
    pub fn method(&self) -> &'static str {
        self.target.method
    }

    /// Whether this is a one-way notification (no answer is sent).
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }

    /// Answers the call with a value.
    ///
    /// When the value cannot be encoded, or its encoding exceeds the remote's
    /// frame limit, the caller gets the corresponding [`RpcError`] instead.
    pub fn reply<R: Serialize + ?Sized>(mut self, value: &R) -> Replied {
        // Released before the reply leaves, so that a caller who sends its
        // next call on receiving this reply finds a free slot.
        self.release();
        if let Some(id) = self.id {
            self.conn.send_reply(id, value);
        }
        Replied(())
    }

    /// Answers the call with a framework error.
    pub fn fail(mut self, error: RpcError) -> Replied {
        self.release();
        if let Some(id) = self.id {
            self.conn.send_error(id, &error);
        }
        Replied(())
    }

    fn release(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.conn.finish_call(self.id.is_none());
        }
    }

    /// Answers with [`RpcError::UnknownMethod`]; for hand-written `dispatch`
    /// implementations given an index they do not know.
    pub fn unknown_method(self) -> Replied {
        let e = RpcError::UnknownMethod {
            object: self.target.object.to_string(),
            method: self.target.method.to_string(),
        };
        self.fail(e)
    }
}

/// Hashes a call's target name with FNV-1a: a fraction of SipHash's cost on
/// these short keys. Safe from flooding because the remote only looks keys
/// up; it never inserts any.
#[derive(Default)]
struct TargetHasher(u64);

impl std::hash::Hasher for TargetHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

#[derive(Default)]
struct Table {
    targets: HashMap<Box<str>, Arc<Target>, std::hash::BuildHasherDefault<TargetHasher>>,
    objects: HashMap<Arc<str>, ObjectEntry>,
}

struct ObjectEntry {
    service: Arc<dyn Service>,
    methods: &'static [&'static str],
}

/// The named objects one side exposes, shared by every connection that
/// serves them. Cloning gives another handle to the same registry.
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
#[derive(Default)]
struct Layer {
    table: RwLock<Table>,
    version: AtomicU64,
}

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
    pub(crate) method: &'static str,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new, empty registry layered over this one: objects exposed in it
    /// are its own, and names it does not have are looked up in `self`
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
    /// An object already exposed under that name is replaced.
    pub fn expose<S: Service>(&self, object: S) {
        self.expose_arc(S::name(), Arc::new(object));
    }

    /// Exposes `object` under `name`. An object already exposed under that
    /// name is replaced.
    pub fn expose_as<S: Service>(&self, name: &str, object: S) {
        self.expose_arc(name, Arc::new(object));
    }

    /// Exposes an object that is already shared, under `name`.
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
                    method,
                }),
            );
        }
        t.objects.insert(
            name,
            ObjectEntry {
                service,
                methods: S::methods(),
            },
        );
    }

    /// Removes the object exposed under `name`; returns whether there was one.
    pub fn remove(&self, name: &str) -> bool {
        let mut t = self.table.write();
        remove_object(&mut t, name)
    }

    /// The tables to search, own first.
    fn tables(&self) -> impl Iterator<Item = &Layer> {
        std::iter::once(&*self.table).chain(self.parent.as_deref())
    }

    /// The names of the exposed objects (own and, for a layered registry,
    /// inherited), sorted.
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
    ) -> Result<Arc<Target>, RpcError> {
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
        let found = self.lookup(target)?;
        cache.targets.insert(target.into(), found.clone());
        Ok(found)
    }

    pub(crate) fn lookup(&self, target: &str) -> Result<Arc<Target>, RpcError> {
        for t in self.tables() {
            let t = t.read();
            if t.objects.is_empty() {
                continue;
            }
            if let Some(found) = t.targets.get(target) {
                return Ok(found.clone());
            }
        }
        let (object, method) = target.rsplit_once('.').unwrap_or((target, ""));
        if self.tables().any(|t| t.read().objects.contains_key(object)) {
            Err(RpcError::UnknownMethod {
                object: object.to_string(),
                method: method.to_string(),
            })
        } else {
            Err(RpcError::UnknownObject(object.to_string()))
        }
    }

    /// Runs the close hook of every object exposed in this registry's own
    /// table once (each object once, even when it is exposed under several
    /// names).
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
