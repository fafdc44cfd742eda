//! The [`Service`] trait that `#[expose]` implements, and what its
//! `dispatch` returns: [`Handled`] with a [`Replied`] token or a
//! [`HandlerFuture`].
//!
//! Owns: the contract between a handler and the runtime. Never runs a
//! handler and never touches a connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::incoming::Incoming;

/// A boxed handler future, as returned in [`Handled::Pending`].
///
/// It answers the call when it completes, and runs in a task of its own.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use rpc_core::{Handled, HandlerFuture, Incoming, Service};
///
/// struct Later;
///
/// impl Service for Later {
///     fn name() -> &'static str { "Later" }
///     fn methods() -> &'static [&'static str] { &["answer"] }
///     fn dispatch(self: Arc<Self>, _method: usize, call: Incoming) -> Handled {
///         let work: HandlerFuture = Box::pin(async move {
///             tokio::time::sleep(Duration::from_millis(1)).await;
///             call.reply(&42u32)
///         });
///         Handled::Pending(work)
///     }
/// }
/// # use rpc_core::{Peer, PeerConfig, Registry};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let served = Registry::new();
/// # served.expose(Later);
/// # let (_server, client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// assert_eq!(client.call::<u32, _>("Later.answer", &()).await?, 42);
/// # Ok(())
/// # }
/// ```
pub type HandlerFuture = Pin<Box<dyn Future<Output = Replied> + Send + 'static>>;

/// A boxed future with no output, as returned by [`Service::close`].
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
/// use std::sync::Arc;
/// use rpc_core::{CloseFuture, Handled, Incoming, Registry, Service};
///
/// #[derive(Default)]
/// struct Store { flushed: AtomicBool }
///
/// impl Service for Store {
///     fn name() -> &'static str { "Store" }
///     fn methods() -> &'static [&'static str] { &[] }
///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
///         Handled::Done(call.unknown_method())
///     }
///     fn close(self: Arc<Self>) -> CloseFuture {
///         Box::pin(async move { self.flushed.store(true, SeqCst) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = Arc::new(Store::default());
/// let registry = Registry::new();
/// registry.expose_arc("store", store.clone());
/// registry.close_all().await;
/// assert!(store.flushed.load(SeqCst));
/// # }
/// ```
pub type CloseFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// An object whose methods can be called remotely.
///
/// `#[expose]` implements this for you. Writing it by hand takes a few lines.
///
/// A `Service` is shared by the runtime's threads, so it is `Send + Sync`.
/// For an object that is not (an `Rc`/`RefCell` model, GUI state), see
/// [`LocalService`](crate::LocalService) and [`Local`](crate::Local).
///
/// # Examples
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
    ///
    /// `#[expose]` uses the type's name, or the `name` given on the `impl`
    /// block.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Service};
    ///
    /// pub struct Calculator;
    /// #[expose(name = "calc")]
    /// impl Calculator {
    ///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    /// }
    ///
    /// assert_eq!(Calculator::name(), "calc");
    /// ```
    fn name() -> &'static str
    where
        Self: Sized;

    /// The exposed method names; `dispatch` receives an index into this list.
    ///
    /// `#[expose]` lists the `pub` methods taking `&self`, in declaration
    /// order, under their Rust name or the `name` given to them.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Service};
    ///
    /// pub struct Calculator;
    /// #[expose]
    /// impl Calculator {
    ///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    ///     #[expose(name = "divide")]
    ///     pub fn div(&self, a: i64, b: i64) -> Option<i64> { a.checked_div(b) }
    /// }
    ///
    /// assert_eq!(Calculator::methods(), ["add", "divide"]);
    /// ```
    fn methods() -> &'static [&'static str]
    where
        Self: Sized;

    /// Runs method number `method` (an index into [`Service::methods`]).
    ///
    /// Return [`Handled::Done`] when the call was answered synchronously, or
    /// [`Handled::Pending`] with a future that answers it. The runtime never
    /// waits on the future from its reader: a pending handler runs in its own
    /// task, so it may call back into the caller. A panic in `dispatch` or in
    /// the future reaches the caller as
    /// [`RemoteError::Panicked`](crate::RemoteError::Panicked).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, RemoteError, RpcError, Service};
    ///
    /// struct Counter;
    ///
    /// impl Service for Counter {
    ///     fn name() -> &'static str { "Counter" }
    ///     fn methods() -> &'static [&'static str] { &["double", "boom"] }
    ///     fn dispatch(self: Arc<Self>, method: usize, call: Incoming) -> Handled {
    ///         match (method, call.args::<(u32,)>()) {
    ///             (0, Ok((n,))) => Handled::Done(call.reply(&(n * 2))),
    ///             (1, _) => panic!("not today"),
    ///             (_, Err(e)) => Handled::Done(call.fail(e)),
    ///             _ => Handled::Done(call.unknown_method()),
    ///         }
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Counter);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// assert_eq!(client.call::<u32, _>("Counter.double", &(21u32,)).await?, 42);
    /// let err = client.call::<u32, _>("Counter.boom", &(0u32,)).await.unwrap_err();
    /// assert_eq!(err, RpcError::Remote(RemoteError::Panicked("not today".into())));
    /// # Ok(())
    /// # }
    /// ```
    fn dispatch(self: Arc<Self>, method: usize, call: Incoming) -> Handled;

    /// The object's close hook, run when its server shuts down gracefully.
    ///
    /// [`Registry::close_all`](crate::Registry::close_all) calls it, once per object; a server's graceful
    /// shutdown does so after calls in flight have finished (or its grace
    /// period has passed). Does nothing by default; `#[expose]` calls the
    /// method marked `#[expose(close)]`, if any.
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
    ///     pub fn get(&self) -> u32 { 1 }
    ///     #[expose(close)]
    ///     pub async fn flush(&self) { self.closes.fetch_add(1, SeqCst); }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let db = Arc::new(Db::default());
    /// let registry = Registry::new();
    /// registry.expose_arc("db", db.clone());
    /// registry.close_all().await;
    /// assert_eq!(db.closes.load(SeqCst), 1);
    /// # }
    /// ```
    fn close(self: Arc<Self>) -> CloseFuture {
        Box::pin(async {})
    }
}

/// Proof that a call was answered; only [`Incoming::reply`] and friends make one.
///
/// A handler returns it (in [`Handled::Done`], or as the output of its
/// future), so a handler that forgets to answer does not compile.
///
/// # Examples
///
/// ```
/// use rpc_core::{Incoming, Replied};
///
/// fn double(call: Incoming) -> Replied {
///     match call.args::<(u32,)>() {
///         Ok((n,)) => call.reply(&(n * 2)),
///         Err(e) => call.fail(e),
///     }
/// }
/// # use std::sync::Arc;
/// # use rpc_core::{Handled, Peer, PeerConfig, Registry, Service};
/// # struct Math;
/// # impl Service for Math {
/// #     fn name() -> &'static str { "Math" }
/// #     fn methods() -> &'static [&'static str] { &["double"] }
/// #     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
/// #         Handled::Done(double(call))
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let served = Registry::new();
/// # served.expose(Math);
/// # let (_server, client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// assert_eq!(client.call::<u32, _>("Math.double", &(21u32,)).await?, 42);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "return the token from the handler"]
pub struct Replied(pub(super) ());

/// What [`Service::dispatch`] did with a call.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use rpc_core::{Handled, Incoming, Service};
///
/// struct Clock;
///
/// impl Service for Clock {
///     fn name() -> &'static str { "Clock" }
///     fn methods() -> &'static [&'static str] { &["now", "later"] }
///     fn dispatch(self: Arc<Self>, method: usize, call: Incoming) -> Handled {
///         match method {
///             0 => Handled::Done(call.reply("now")),
///             _ => Handled::Pending(Box::pin(async move {
///                 tokio::task::yield_now().await;
///                 call.reply("later")
///             })),
///         }
///     }
/// }
/// # use rpc_core::{Peer, PeerConfig, Registry};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let served = Registry::new();
/// # served.expose(Clock);
/// # let (_server, client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// assert_eq!(client.call::<String, _>("Clock.now", &()).await?, "now");
/// assert_eq!(client.call::<String, _>("Clock.later", &()).await?, "later");
/// # Ok(())
/// # }
/// ```
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
