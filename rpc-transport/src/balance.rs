//! Many servers behind one client: [`Balanced`], a set of connections to
//! the endpoints a [`Discover`] source names, which carries each call on
//! one of them.
//!
//! Owns: the set of backends (dialing new endpoints, dropping removed or
//! lost ones), the choice of a backend for each call (power of two choices
//! on the calls in flight, or rendezvous hashing of a sticky key), and
//! failover (what may be repeated on another backend).
//!
//! The endpoints come from a [`Discover`] source: [`Endpoints`], a list the
//! program keeps; [`Registered`], the servers registered in a name service;
//! or, with the `dns` cargo feature, `Dns`, a DNS name's A/AAAA or SRV
//! records (a Kubernetes headless Service as it is).
//!
//! A generated stub takes a `Balanced` as it takes a `Peer`
//! (`CalculatorClient::new(&balanced)`). Each backend is an ordinary
//! connection dialed with [`connect`](crate::connect), so the objects the
//! client exposes on it (see [`BalancedBuilder::dial`]) are called back on
//! the connection the balancer chose for the call.
//!
//! Failover:
//! - a call that never reached its backend (no connection, or lost before
//!   it was sent) is sent to another one;
//! - a call refused without being run (`Busy`, `ShuttingDown`) too;
//! - a call whose backend was lost after it was sent may have run: it is
//!   sent again only if its method is `#[expose(idempotent)]`, and fails
//!   with [`RpcError::Interrupted`] otherwise. Nothing else is repeated.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::Stream;
use rpc_core::{CallSpec, Caller, DisconnectReason, Peer, RemoteError, RpcError, RpcStream};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tracing::{debug, warn};

use crate::address::{Address, ToAddress};
use crate::connect::{connect, Connect};

#[cfg(feature = "dns")]
mod dns;
#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub use dns::Dns;

/// Where the endpoints of a [`Balanced`] set come from.
///
/// The balancer asks for the whole current list when it starts, every
/// refresh interval ([`BalancedBuilder::refresh`]), whenever a backend's
/// connection is lost, and whenever [`changed`](Discover::changed)
/// completes. It dials endpoints it has no connection to and drops
/// connections to endpoints no longer listed.
///
/// # Examples
///
/// ```
/// use futures::future::BoxFuture;
/// use rpc_core::RpcError;
/// use rpc_transport::balance::Discover;
/// use rpc_transport::Address;
///
/// /// Endpoints read from an environment variable, comma-separated.
/// struct FromEnv;
///
/// impl Discover for FromEnv {
///     fn endpoints(&self) -> BoxFuture<'_, Result<Vec<Address>, RpcError>> {
///         Box::pin(async {
///             let list = std::env::var("BACKENDS").unwrap_or_default();
///             list.split(',').filter(|s| !s.is_empty()).map(str::parse).collect()
///         })
///     }
/// }
/// ```
pub trait Discover: Send + Sync + 'static {
    /// The endpoints now.
    ///
    /// # Errors
    ///
    /// When the source cannot be read; the balancer keeps the backends it
    /// has and asks again later.
    fn endpoints(&self) -> BoxFuture<'_, Result<Vec<Address>, RpcError>>;

    /// Completes when the endpoints may have changed, so that the balancer
    /// asks at once instead of at its next refresh. Never, unless
    /// overridden.
    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(futures::future::pending())
    }
}

/// A list of endpoints given by the program, which it may change at run
/// time ([`set`](Self::set), [`add`](Self::add), [`remove`](Self::remove));
/// the balancer follows each change at once.
///
/// Clones share the list.
///
/// # Examples
///
/// ```
/// use rpc_transport::balance::Endpoints;
///
/// let endpoints = Endpoints::new(["tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002"])?;
/// endpoints.add("tcp://127.0.0.1:7003")?;
/// endpoints.remove("tcp://127.0.0.1:7001")?;
/// assert_eq!(endpoints.list().len(), 2);
/// # Ok::<(), rpc_core::RpcError>(())
/// ```
#[derive(Clone)]
pub struct Endpoints {
    list: Arc<watch::Sender<Vec<Address>>>,
}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list.borrow().iter()).finish()
    }
}

impl Endpoints {
    /// A list of these endpoints.
    ///
    /// # Errors
    ///
    /// [`RpcError::BadAddress`] for an address that does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::balance::Endpoints;
    ///
    /// assert!(Endpoints::new(["tcp://127.0.0.1:7001"]).is_ok());
    /// assert!(Endpoints::new(["127.0.0.1:7001"]).is_err());
    /// ```
    pub fn new<A: ToAddress>(addrs: impl IntoIterator<Item = A>) -> Result<Endpoints, RpcError> {
        let list = addrs
            .into_iter()
            .map(|a| a.to_address())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Endpoints {
            list: Arc::new(watch::Sender::new(list)),
        })
    }

    /// Replaces the list.
    ///
    /// # Errors
    ///
    /// [`RpcError::BadAddress`] for an address that does not parse (the
    /// list is then left as it was).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::balance::Endpoints;
    ///
    /// let endpoints = Endpoints::new(["tcp://127.0.0.1:7001"])?;
    /// endpoints.set(["tcp://127.0.0.1:7002", "tcp://127.0.0.1:7003"])?;
    /// assert_eq!(endpoints.list().len(), 2);
    /// # Ok::<(), rpc_core::RpcError>(())
    /// ```
    pub fn set<A: ToAddress>(&self, addrs: impl IntoIterator<Item = A>) -> Result<(), RpcError> {
        let list = addrs
            .into_iter()
            .map(|a| a.to_address())
            .collect::<Result<Vec<_>, _>>()?;
        self.list.send_replace(list);
        Ok(())
    }

    /// Adds an endpoint (if it is not listed already).
    ///
    /// # Errors
    ///
    /// [`RpcError::BadAddress`] for an address that does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::balance::Endpoints;
    ///
    /// let endpoints = Endpoints::new(Vec::<String>::new())?;
    /// endpoints.add("tcp://127.0.0.1:7001")?;
    /// endpoints.add("tcp://127.0.0.1:7001")?;
    /// assert_eq!(endpoints.list().len(), 1);
    /// # Ok::<(), rpc_core::RpcError>(())
    /// ```
    pub fn add(&self, addr: impl ToAddress) -> Result<(), RpcError> {
        let addr = addr.to_address()?;
        self.list.send_if_modified(|list| {
            let new = !list.contains(&addr);
            if new {
                list.push(addr);
            }
            new
        });
        Ok(())
    }

    /// Removes an endpoint; its connection is dropped.
    ///
    /// # Errors
    ///
    /// [`RpcError::BadAddress`] for an address that does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::balance::Endpoints;
    ///
    /// let endpoints = Endpoints::new(["tcp://127.0.0.1:7001"])?;
    /// endpoints.remove("tcp://127.0.0.1:7001")?;
    /// assert!(endpoints.list().is_empty());
    /// # Ok::<(), rpc_core::RpcError>(())
    /// ```
    pub fn remove(&self, addr: impl ToAddress) -> Result<(), RpcError> {
        let addr = addr.to_address()?;
        self.list.send_if_modified(|list| {
            let before = list.len();
            list.retain(|a| *a != addr);
            list.len() != before
        });
        Ok(())
    }

    /// The endpoints listed now.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::balance::Endpoints;
    ///
    /// let endpoints = Endpoints::new(["tcp://127.0.0.1:7001"])?;
    /// assert_eq!(endpoints.list()[0].to_string(), "tcp://127.0.0.1:7001");
    /// # Ok::<(), rpc_core::RpcError>(())
    /// ```
    pub fn list(&self) -> Vec<Address> {
        self.list.borrow().clone()
    }
}

impl Discover for Endpoints {
    fn endpoints(&self) -> BoxFuture<'_, Result<Vec<Address>, RpcError>> {
        let list = self.list();
        Box::pin(async move { Ok(list) })
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        let mut rx = self.list.subscribe();
        Box::pin(async move {
            rx.mark_unchanged();
            let _ = rx.changed().await;
        })
    }
}

/// The servers registered in a name service under a prefix (see
/// [`names`](crate::names)): a server that registers joins the set, one
/// whose registration goes (it stopped, or lost its connection to the name
/// service) leaves it.
///
/// # Examples
///
/// ```no_run
/// use rpc_transport::balance::{Balanced, Registered};
/// use rpc_transport::names::Names;
///
/// # async fn run() -> Result<(), rpc_core::RpcError> {
/// let workers = Balanced::builder(Registered::new(Names::at("tcp://127.0.0.1:9090"), "worker."))
///     .start();
/// # drop(workers);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Registered {
    names: crate::names::Names,
    prefix: String,
}

impl Registered {
    /// The servers registered under names starting with `prefix` in the
    /// name service `names`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::balance::Registered;
    /// use rpc_transport::names::Names;
    ///
    /// let source = Registered::new(Names::at("tcp://127.0.0.1:9090"), "worker.");
    /// # drop(source);
    /// ```
    pub fn new(names: crate::names::Names, prefix: impl Into<String>) -> Registered {
        Registered {
            names,
            prefix: prefix.into(),
        }
    }
}

impl Discover for Registered {
    fn endpoints(&self) -> BoxFuture<'_, Result<Vec<Address>, RpcError>> {
        Box::pin(async move {
            let entries = self.names.list(&self.prefix).await?;
            entries.iter().map(|e| e.address.parse()).collect()
        })
    }
}

/// How each backend is dialed: a function of the [`Connect`] for its
/// address.
type Dial = Arc<dyn Fn(Connect) -> Connect + Send + Sync>;

/// Options of a [`Balanced`] set, from [`Balanced::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rpc_transport::balance::{Balanced, Endpoints};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let set = Balanced::builder(Endpoints::new(["tcp://127.0.0.1:7001"])?)
///     .dial(|c| c.secret("shared secret").call_timeout(Duration::from_secs(5)))
///     .refresh(Duration::from_secs(10))
///     .attempts(3)
///     .start();
/// # drop(set);
/// # Ok(())
/// # }
/// ```
pub struct BalancedBuilder {
    discover: Arc<dyn Discover>,
    dial: Dial,
    refresh: Duration,
    attempts: usize,
    wait: Duration,
}

impl fmt::Debug for BalancedBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancedBuilder")
            .field("refresh", &self.refresh)
            .field("attempts", &self.attempts)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl BalancedBuilder {
    /// How each backend is dialed: `dial` gets the [`Connect`] for the
    /// backend's address and returns it with the options to use (a
    /// secret, TLS, a name, timeouts, objects to expose for the backends
    /// to call back). Reconnection is the balancer's job: a lost backend
    /// is dialed again when the source still lists it.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::expose;
    /// use rpc_transport::balance::{Balanced, Endpoints};
    ///
    /// pub struct Progress;
    /// #[expose]
    /// impl Progress {
    ///     pub fn step(&self, n: u32) { println!("step {n}") }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// // Each backend can call `Progress` back on its own connection.
    /// let set = Balanced::builder(Endpoints::new(["tcp://127.0.0.1:7001"])?)
    ///     .dial(|c| c.expose(Progress))
    ///     .start();
    /// # drop(set);
    /// # Ok(())
    /// # }
    /// ```
    pub fn dial(mut self, dial: impl Fn(Connect) -> Connect + Send + Sync + 'static) -> Self {
        self.dial = Arc::new(dial);
        self
    }

    /// How often the source is asked for the endpoints when nothing else
    /// asks (default 30 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_transport::balance::{Balanced, Endpoints};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let set = Balanced::builder(Endpoints::new(["tcp://127.0.0.1:7001"])?)
    ///     .refresh(Duration::from_secs(5))
    ///     .start();
    /// # drop(set);
    /// # Ok(())
    /// # }
    /// ```
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// How many backends one call may try, in all (default 3, at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::balance::{Balanced, Endpoints};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let set = Balanced::builder(Endpoints::new(["tcp://127.0.0.1:7001"])?)
    ///     .attempts(1) // no failover
    ///     .start();
    /// # drop(set);
    /// # Ok(())
    /// # }
    /// ```
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// How long a call waits for a backend when none is connected (default
    /// 5 s; the call's own timeout, when shorter, wins). It then fails with
    /// [`RpcError::NotConnected`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_transport::balance::{Balanced, Endpoints};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let set = Balanced::builder(Endpoints::new(["tcp://127.0.0.1:7001"])?)
    ///     .wait_for_backend(Duration::from_millis(500))
    ///     .start();
    /// # drop(set);
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_for_backend(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Starts the set: a task dials the endpoints and keeps the set up to
    /// date while any clone of the returned [`Balanced`] lives. Calls made
    /// before the first backend is connected wait for it (see
    /// [`wait_for_backend`](Self::wait_for_backend)).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::balance::{Balanced, Endpoints};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let set = Balanced::builder(Endpoints::new(Vec::<String>::new())?).start();
    /// assert!(set.backends().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn start(self) -> Balanced {
        let (live, _) = watch::channel(0usize);
        let shared = Arc::new(Shared {
            backends: RwLock::new(Vec::new()),
            live,
            lost: Notify::new(),
            attempts: self.attempts,
            wait: self.wait,
            hasher: RandomState::new(),
        });
        let task = tokio::spawn(maintain(
            shared.clone(),
            self.discover,
            self.dial,
            self.refresh,
        ));
        Balanced {
            shared,
            key: None,
            _task: Arc::new(AbortOnDrop(task.abort_handle())),
        }
    }
}

/// Stops the task that keeps the set when the last handle goes.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One backend: a connection to one endpoint.
struct Backend {
    addr: Address,
    peer: Peer,
}

struct Shared {
    backends: RwLock<Vec<Arc<Backend>>>,
    /// How many backends are connected, for calls waiting for one.
    live: watch::Sender<usize>,
    /// A backend's connection was lost: ask the source again.
    lost: Notify,
    attempts: usize,
    wait: Duration,
    /// Keys the choices: the two random candidates, and sticky keys.
    hasher: RandomState,
}

/// A set of connections to many servers, used like one [`Peer`]: a
/// generated stub over it (`CalculatorClient::new(&balanced)`) carries
/// each call on one backend.
///
/// Backends come from a [`Discover`] source: a list the program keeps
/// ([`Endpoints`]), the servers registered in a name service
/// ([`Registered`]), or DNS (`Dns`, with the `dns` feature). Each call goes
/// to the less loaded of two backends picked at random (power of two
/// choices on the calls each has in flight), or, on a
/// [`sticky`](Self::sticky) handle, to the backend its key maps to while
/// that backend lives. See the module documentation for failover.
///
/// Clones share the set.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rpc_core::expose;
/// use rpc_transport::balance::{Balanced, Endpoints};
/// use rpc_transport::Server;
///
/// pub struct Calc;
/// #[expose]
/// impl Calc {
///     #[expose(idempotent)]
///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let one = Server::builder().expose(Calc).bind("tcp://127.0.0.1:0").await?;
/// let two = Server::builder().expose(Calc).bind("tcp://127.0.0.1:0").await?;
/// let set = Balanced::builder(Endpoints::new([one.local_addr(), two.local_addr()])?).start();
/// set.until_connected(2, Duration::from_secs(5)).await?;
///
/// let calc = CalcClient::new(&set);
/// assert_eq!(calc.add(2, 3).await?, 5);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Balanced {
    shared: Arc<Shared>,
    /// The sticky key's hash, on a sticky handle.
    key: Option<u64>,
    _task: Arc<AbortOnDrop>,
}

impl fmt::Debug for Balanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balanced")
            .field("backends", &self.backends())
            .field("sticky", &self.key.is_some())
            .finish()
    }
}

impl Balanced {
    /// A set whose endpoints come from `discover`; set its options, then
    /// [`start`](BalancedBuilder::start) it.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::balance::{Balanced, Endpoints};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let set = Balanced::builder(Endpoints::new(["tcp://127.0.0.1:7001"])?).start();
    /// # drop(set);
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(discover: impl Discover) -> BalancedBuilder {
        BalancedBuilder {
            discover: Arc::new(discover),
            dial: Arc::new(|c| c),
            refresh: Duration::from_secs(30),
            attempts: 3,
            wait: Duration::from_secs(5),
        }
    }

    /// The addresses of the backends connected now.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::balance::{Balanced, Endpoints};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let set = Balanced::builder(Endpoints::new(Vec::<String>::new())?).start();
    /// assert!(set.backends().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn backends(&self) -> Vec<Address> {
        read(&self.shared.backends)
            .iter()
            .filter(|b| b.peer.is_connected())
            .map(|b| b.addr.clone())
            .collect()
    }

    /// Waits until at least `n` backends are connected.
    ///
    /// # Errors
    ///
    /// [`RpcError::Timeout`] when fewer are connected after `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::RpcError;
    /// use rpc_transport::balance::{Balanced, Endpoints};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let set = Balanced::builder(Endpoints::new(Vec::<String>::new())?).start();
    /// let err = set.until_connected(1, Duration::from_millis(50)).await.unwrap_err();
    /// assert_eq!(err, RpcError::Timeout);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn until_connected(&self, n: usize, timeout: Duration) -> Result<(), RpcError> {
        let mut live = self.shared.live.subscribe();
        tokio::time::timeout(timeout, live.wait_for(|&live| live >= n))
            .await
            .map_err(|_| RpcError::Timeout)?
            .map_err(|_| RpcError::NotConnected)?;
        Ok(())
    }

    /// A handle to the same set whose calls all go to the backend `key`
    /// maps to, for as long as that backend lives (then to the next one in
    /// its order): for objects with per-client state on the server, such
    /// as a user's session.
    ///
    /// Keys map by rendezvous hashing, so adding or losing a backend moves
    /// only the keys of that backend.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::balance::{Balanced, Endpoints};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let set = Balanced::builder(Endpoints::new(["tcp://127.0.0.1:7001"])?).start();
    /// let ada = set.sticky("user:ada");
    /// # drop(ada);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sticky(&self, key: impl Hash) -> Balanced {
        Balanced {
            shared: self.shared.clone(),
            key: Some(self.shared.hasher.hash_one(key)),
            _task: self._task.clone(),
        }
    }

    /// Picks a backend not in `tried`; while none is connected, waits for
    /// one (see [`BalancedBuilder::wait_for_backend`], bounded by the
    /// call's `timeout`).
    async fn pick(
        &self,
        tried: &[Arc<Backend>],
        timeout: Option<Duration>,
    ) -> Option<Arc<Backend>> {
        if let Some(b) = self.choose(tried) {
            return Some(b);
        }
        if !tried.is_empty() && self.any_connected() {
            // Every connected backend was tried.
            return None;
        }
        let wait = timeout.map_or(self.shared.wait, |t| t.min(self.shared.wait));
        let wait_until = tokio::time::Instant::now() + wait;
        let mut live = self.shared.live.subscribe();
        loop {
            live.mark_unchanged();
            if let Some(b) = self.choose(tried) {
                return Some(b);
            }
            if tokio::time::timeout_at(wait_until, live.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// The backend of a call that is not repeated anywhere else.
    async fn pick_once(&self, spec: CallSpec<'_>) -> Result<Arc<Backend>, RpcError> {
        self.pick(&[], spec.timeout_or(None))
            .await
            .ok_or(RpcError::NotConnected)
    }

    fn any_connected(&self) -> bool {
        read(&self.shared.backends)
            .iter()
            .any(|b| b.peer.is_connected())
    }

    /// The backend for the next call: by the sticky key, or the less
    /// loaded of two picked at random.
    fn choose(&self, tried: &[Arc<Backend>]) -> Option<Arc<Backend>> {
        let backends = read(&self.shared.backends);
        // A backend's load, `None` when it cannot take the call (its
        // connection is closing, or the call tried it already).
        let load = |b: &Arc<Backend>| {
            if tried.iter().any(|t| Arc::ptr_eq(t, b)) {
                return None;
            }
            rpc_core::__private::load_if_open(&b.peer)
        };
        if let Some(key) = self.key {
            return backends
                .iter()
                .filter(|b| load(b).is_some())
                .max_by_key(|b| self.shared.hasher.hash_one((key, &b.addr)))
                .cloned();
        }
        let n = backends.len();
        if n < 2 {
            return backends.first().filter(|b| load(b).is_some()).cloned();
        }
        let r = random(&self.shared.hasher);
        let i = (r % n as u64) as usize;
        let mut j = ((r >> 32) % (n as u64 - 1)) as usize;
        if j >= i {
            j += 1;
        }
        let (a, b) = (&backends[i], &backends[j]);
        match (load(a), load(b)) {
            (Some(la), Some(lb)) if lb < la => Some(b.clone()),
            (Some(_), _) => Some(a.clone()),
            (None, Some(_)) => Some(b.clone()),
            // Both out: any other that is in.
            (None, None) => backends.iter().find(|b| load(b).is_some()).cloned(),
        }
    }
}

impl Balanced {
    /// Makes a call with `attempt` (given a backend and what is left of
    /// the call's timeout) on one backend after another, as the failover
    /// rules allow (see the module documentation).
    async fn failover<T, F, Fut>(&self, spec: CallSpec<'_>, mut attempt: F) -> Result<T, RpcError>
    where
        F: FnMut(Arc<Backend>, Option<Duration>) -> Fut,
        Fut: std::future::Future<Output = Result<T, (RpcError, bool)>>,
    {
        let timeout = spec.timeout_or(None);
        // Read the clock only when there is a timeout to share out.
        let started = timeout.map(|_| tokio::time::Instant::now());
        let mut tried: Vec<Arc<Backend>> = Vec::new();
        let mut last = RpcError::NotConnected;
        while tried.len() < self.shared.attempts {
            let Some(backend) = self.pick(&tried, timeout).await else {
                break;
            };
            // What is left of the call's timeout, for this attempt.
            let left = match (timeout, started) {
                (Some(t), Some(started)) => match t.checked_sub(started.elapsed()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Err(RpcError::Timeout),
                },
                _ => None,
            };
            match attempt(backend.clone(), left).await {
                Ok(value) => return Ok(value),
                Err((error, sent)) => {
                    debug!(backend = %backend.addr, %error, sent, "call failed on a backend");
                    match after_failure(error.clone(), sent, spec.is_idempotent()) {
                        Next::Retry => {
                            last = error;
                            tried.push(backend);
                        }
                        Next::Fail(e) => return Err(e),
                    }
                }
            }
        }
        Err(last)
    }
}

impl Balanced {
    /// Calls `target` with arguments already encoded on one of the
    /// backends, with failover; returns the reply as it came (see
    /// [`Peer::call_raw`]).
    ///
    /// # Errors
    ///
    /// As a stub's call through the set.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::expose;
    /// use rpc_transport::balance::{Balanced, Endpoints};
    /// use rpc_transport::Server;
    ///
    /// pub struct Calc;
    /// #[expose]
    /// impl Calc {
    ///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let server = Server::builder().expose(Calc).bind("tcp://127.0.0.1:0").await?;
    /// let set = Balanced::builder(Endpoints::new([server.local_addr()])?).start();
    /// let args = postcard::to_stdvec(&(2i64, 3i64)).unwrap();
    /// let reply = set.call_raw("Calc.add", &args, None, true).await?;
    /// assert_eq!(postcard::from_bytes::<i64>(&reply).unwrap(), 5);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_raw(
        &self,
        target: &str,
        encoded_args: &[u8],
        timeout: Option<Duration>,
        idempotent: bool,
    ) -> Result<Vec<u8>, RpcError> {
        let spec = CallSpec::new(target)
            .timeout(timeout)
            .idempotent(idempotent);
        self.failover(spec, |backend, left| async move {
            rpc_core::__private::call_raw_reaching(&backend.peer, spec.timeout(left), encoded_args)
                .await
        })
        .await
    }

    /// The calls in flight on all backends.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::balance::{Balanced, Endpoints};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let set = Balanced::builder(Endpoints::new(Vec::<String>::new())?).start();
    /// assert_eq!(set.in_flight(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn in_flight(&self) -> usize {
        read(&self.shared.backends)
            .iter()
            .map(|b| b.peer.in_flight())
            .sum()
    }
}

/// A balanced set as a `tower` service: each request is one call, with
/// the set's failover (an idempotent [`RawCall`](rpc_core::tower::RawCall)
/// may be repeated on another backend).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rpc_core::expose;
/// use rpc_core::tower::RawCall;
/// use rpc_transport::balance::{Balanced, Endpoints};
/// use rpc_transport::Server;
/// use tower::{Service, ServiceExt};
///
/// pub struct Calc;
/// #[expose]
/// impl Calc {
///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let server = Server::builder().expose(Calc).bind("tcp://127.0.0.1:0").await?;
/// let mut set = Balanced::builder(Endpoints::new([server.local_addr()])?).start();
/// let args = postcard::to_stdvec(&(2i64, 3i64)).unwrap();
/// let reply = set.ready().await?.call(RawCall::new("Calc.add", args)).await?;
/// assert_eq!(postcard::from_bytes::<i64>(&reply).unwrap(), 5);
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
impl tower::Service<rpc_core::tower::RawCall> for Balanced {
    type Response = Vec<u8>;
    type Error = RpcError;
    type Future = BoxFuture<'static, Result<Vec<u8>, RpcError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), RpcError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: rpc_core::tower::RawCall) -> Self::Future {
        let set = self.clone();
        Box::pin(async move {
            set.call_raw(&call.target, &call.args, call.timeout, call.idempotent)
                .await
        })
    }
}

/// A balanced set's load is the calls in flight on all its backends.
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
impl tower::load::Load for Balanced {
    type Metric = usize;

    fn load(&self) -> usize {
        self.in_flight()
    }
}

/// A pseudo-random number for the choice of two backends: xorshift64*, one
/// generator per thread, seeded from the per-process random keys of
/// `hasher` and the thread. Not for secrets; cheap on every call.
fn random(hasher: &RandomState) -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            x = hasher.hash_one(std::thread::current().id()) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// What to do with a failed attempt.
enum Next {
    /// Try another backend.
    Retry,
    /// Give up with this error.
    Fail(RpcError),
}

/// Decides about a failed attempt: `sent` says whether the call may have
/// reached the backend.
fn after_failure(error: RpcError, sent: bool, idempotent: bool) -> Next {
    match error {
        // Refused without being run.
        RpcError::Remote(RemoteError::Busy { .. } | RemoteError::ShuttingDown) => Next::Retry,
        e if e.is_connection_error() && !sent => Next::Retry,
        e if e.is_connection_error() && idempotent => Next::Retry,
        RpcError::ConnectionClosed(reason) => Next::Fail(RpcError::Interrupted(reason)),
        RpcError::Io(_) => Next::Fail(RpcError::Interrupted(DisconnectReason::Closed)),
        e => Next::Fail(e),
    }
}

impl Caller for Balanced {
    async fn call<A, R>(&self, spec: CallSpec<'_>, args: &A) -> Result<R, RpcError>
    where
        A: Serialize + Sync + ?Sized,
        R: DeserializeOwned + Send,
    {
        self.failover(spec, |backend, left| async move {
            rpc_core::__private::call_reaching(&backend.peer, spec.timeout(left), args).await
        })
        .await
    }

    async fn call_stream<A, T>(
        &self,
        spec: CallSpec<'_>,
        args: &A,
    ) -> Result<RpcStream<T>, RpcError>
    where
        A: Serialize + Sync + ?Sized,
        T: DeserializeOwned + Send,
    {
        let mut tried: Vec<Arc<Backend>> = Vec::new();
        loop {
            let Some(backend) = self.pick(&tried, spec.timeout_or(None)).await else {
                return Err(RpcError::NotConnected);
            };
            match Caller::call_stream(&backend.peer, spec, args).await {
                // Not connected: the call was not sent anywhere.
                Err(RpcError::NotConnected) if tried.len() + 1 < self.shared.attempts => {
                    tried.push(backend)
                }
                other => return other,
            }
        }
    }

    async fn call_duplex<A, T, S>(
        &self,
        spec: CallSpec<'_>,
        args: &A,
        input: S,
    ) -> Result<RpcStream<T>, RpcError>
    where
        A: Serialize + Sync + ?Sized,
        T: DeserializeOwned + Send,
        S: Stream + Send + 'static,
        S::Item: Serialize + Send,
    {
        // The input is sent once: no second backend.
        let backend = self.pick_once(spec).await?;
        Caller::call_duplex(&backend.peer, spec, args, input).await
    }

    async fn call_with_input<A, R, S>(
        &self,
        spec: CallSpec<'_>,
        args: &A,
        input: S,
    ) -> Result<R, RpcError>
    where
        A: Serialize + Sync + ?Sized,
        R: DeserializeOwned + Send,
        S: Stream + Send + 'static,
        S::Item: Serialize + Send,
    {
        let backend = self.pick_once(spec).await?;
        Caller::call_with_input(&backend.peer, spec, args, input).await
    }
}

/// Keeps the set: asks the source, dials what is new, drops what is gone.
/// The last [`Balanced`] handle to go aborts it.
async fn maintain(set: Arc<Shared>, discover: Arc<dyn Discover>, dial: Dial, refresh: Duration) {
    loop {
        match discover.endpoints().await {
            Ok(wanted) => reconcile(&set, wanted, &dial).await,
            Err(e) => warn!(%e, "the endpoint source failed; keeping the backends there are"),
        }
        let lost = set.lost.notified();
        tokio::select! {
            () = tokio::time::sleep(refresh) => {}
            () = lost => {}
            () = discover.changed() => {}
        }
    }
}

/// Makes the backends match `wanted`.
async fn reconcile(set: &Arc<Shared>, wanted: Vec<Address>, dial: &Dial) {
    let gone: Vec<Arc<Backend>> = {
        let mut backends = write(&set.backends);
        let (keep, gone) = std::mem::take(&mut *backends)
            .into_iter()
            .partition(|b| wanted.contains(&b.addr) && b.peer.is_connected());
        *backends = keep;
        gone
    };
    for backend in gone {
        debug!(backend = %backend.addr, "backend dropped");
        tokio::spawn(async move { backend.peer.close().await });
    }
    let missing: Vec<Address> = {
        let backends = read(&set.backends);
        wanted
            .into_iter()
            .filter(|a| !backends.iter().any(|b| b.addr == *a))
            .collect()
    };
    let dialed = futures::future::join_all(missing.into_iter().map(|addr| {
        let connect = dial(connect(addr.clone()));
        async move { (addr, connect.await) }
    }))
    .await;
    for (addr, peer) in dialed {
        match peer {
            Ok(peer) => {
                debug!(backend = %addr, "backend connected");
                let backend = Arc::new(Backend { addr, peer });
                write(&set.backends).push(backend.clone());
                watch_backend(Arc::downgrade(set), backend);
            }
            Err(e) => warn!(backend = %addr, %e, "backend could not be reached"),
        }
    }
    update_live(set);
}

/// Takes a backend out of the set when its connection is lost, and asks
/// the source again.
fn watch_backend(set: Weak<Shared>, backend: Arc<Backend>) {
    let closed = backend.peer.closed_owned();
    tokio::spawn(async move {
        let reason = closed.await;
        let Some(set) = set.upgrade() else { return };
        debug!(backend = %backend.addr, %reason, "backend lost");
        write(&set.backends).retain(|b| !Arc::ptr_eq(b, &backend));
        update_live(&set);
        set.lost.notify_one();
    });
}

fn update_live(set: &Shared) {
    let live = read(&set.backends)
        .iter()
        .filter(|b| b.peer.is_connected())
        .count();
    set.live.send_replace(live);
}
