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

use crate::conn::Conn;
use crate::context::CallContext;
use crate::error::RpcError;

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
    /// the future reaches the caller as [`RpcError::RemotePanic`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, RpcError, Service};
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
    /// assert_eq!(err, RpcError::RemotePanic("not today".into()));
    /// # Ok(())
    /// # }
    /// ```
    fn dispatch(self: Arc<Self>, method: usize, call: Incoming) -> Handled;

    /// The object's close hook, run when its server shuts down gracefully.
    ///
    /// [`Registry::close_all`] calls it, once per object; a server's graceful
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
pub struct Replied(());

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

/// One call (or notification) received from the remote peer.
///
/// It is answered exactly once, by [`reply`](Incoming::reply),
/// [`fail`](Incoming::fail) or [`unknown_method`](Incoming::unknown_method),
/// each of which consumes it. The answer to a notification is dropped.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use rpc_core::{Handled, Incoming, Service};
///
/// struct Echo;
///
/// impl Service for Echo {
///     fn name() -> &'static str { "Echo" }
///     fn methods() -> &'static [&'static str] { &["echo"] }
///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
///         Handled::Done(match call.args::<(String,)>() {
///             Ok((text,)) => call.reply(&text),
///             Err(e) => call.fail(e),
///         })
///     }
/// }
/// # use rpc_core::{Peer, PeerConfig, Registry};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let served = Registry::new();
/// # served.expose(Echo);
/// # let (_server, client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// let back: String = client.call("Echo.echo", &("hi",)).await?;
/// assert_eq!(back, "hi");
/// # Ok(())
/// # }
/// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, Service};
    ///
    /// struct Sum;
    ///
    /// impl Service for Sum {
    ///     fn name() -> &'static str { "Sum" }
    ///     fn methods() -> &'static [&'static str] { &["add"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         Handled::Done(match call.args::<(i64, i64)>() {
    ///             Ok((a, b)) => call.reply(&(a + b)),
    ///             Err(e) => call.fail(e),
    ///         })
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry, RpcError};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Sum);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// assert_eq!(client.call::<i64, _>("Sum.add", &(2i64, 3i64)).await?, 5);
    /// let err = client.call::<i64, _>("Sum.add", &("two", 3i64)).await.unwrap_err();
    /// assert!(matches!(err, RpcError::BadArguments(_)));
    /// # Ok(())
    /// # }
    /// ```
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

    /// The context handed to handlers that ask for it.
    ///
    /// It holds the caller's peer (to call back), the connection id, the
    /// object and method, and the deadline; see [`CallContext`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, Service};
    ///
    /// struct Session;
    ///
    /// impl Service for Session {
    ///     fn name() -> &'static str { "Session" }
    ///     fn methods() -> &'static [&'static str] { &["id"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         let id = call.context().connection_id();
    ///         Handled::Done(call.reply(&id))
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Session);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 9),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// // The hidden setup accepted the connection with id 9.
    /// assert_eq!(client.call::<u64, _>("Session.id", &()).await?, 9);
    /// # Ok(())
    /// # }
    /// ```
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

    /// The exposed name of the method being called.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, Service};
    ///
    /// struct Names;
    ///
    /// impl Service for Names {
    ///     fn name() -> &'static str { "Names" }
    ///     fn methods() -> &'static [&'static str] { &["ping", "pong"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         let name = call.method();
    ///         Handled::Done(call.reply(name))
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Names);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// assert_eq!(client.call::<String, _>("Names.pong", &()).await?, "pong");
    /// # Ok(())
    /// # }
    /// ```
    pub fn method(&self) -> &'static str {
        self.target.method
    }

    /// Whether this is a one-way notification (no answer is sent).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
    /// use rpc_core::{Handled, Incoming, Service};
    ///
    /// struct Log(UnboundedSender<bool>);
    ///
    /// impl Service for Log {
    ///     fn name() -> &'static str { "Log" }
    ///     fn methods() -> &'static [&'static str] { &["write"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         let _ = self.0.send(call.is_notification());
    ///         Handled::Done(call.reply(&()))
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let (tx, mut seen) = unbounded_channel();
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Log(tx));
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// client.call::<(), _>("Log.write", &()).await?;
    /// client.notify("Log.write", &()).await?;
    /// assert_eq!(seen.recv().await, Some(false));
    /// assert_eq!(seen.recv().await, Some(true));
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }

    /// Answers the call with a value.
    ///
    /// When the value cannot be encoded, or its encoding exceeds the remote's
    /// frame limit, the caller gets the corresponding [`RpcError`] instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, Service};
    ///
    /// struct Blob;
    ///
    /// impl Service for Blob {
    ///     fn name() -> &'static str { "Blob" }
    ///     fn methods() -> &'static [&'static str] { &["zeros"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         Handled::Done(match call.args::<(usize,)>() {
    ///             Ok((n,)) => call.reply(&vec![0u8; n]),
    ///             Err(e) => call.fail(e),
    ///         })
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry, RpcError};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Blob);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default().max_frame(4096)),
    /// # )?;
    /// // The caller (set up above) accepts frames of up to 4096 bytes.
    /// assert_eq!(client.call::<Vec<u8>, _>("Blob.zeros", &(3usize,)).await?, [0, 0, 0]);
    /// let err = client.call::<Vec<u8>, _>("Blob.zeros", &(10_000usize,)).await.unwrap_err();
    /// assert!(matches!(err, RpcError::TooLarge { limit: 4096, .. }));
    /// # Ok(())
    /// # }
    /// ```
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
    ///
    /// The caller gets `error` as the `Err` of its call.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, RpcError, Service};
    ///
    /// struct Vault;
    ///
    /// impl Service for Vault {
    ///     fn name() -> &'static str { "Vault" }
    ///     fn methods() -> &'static [&'static str] { &["open"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         Handled::Done(call.fail(RpcError::Remote("the vault is sealed".into())))
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Vault);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let err = client.call::<(), _>("Vault.open", &()).await.unwrap_err();
    /// assert_eq!(err, RpcError::Remote("the vault is sealed".into()));
    /// # Ok(())
    /// # }
    /// ```
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

    /// Answers with [`RpcError::UnknownMethod`].
    ///
    /// For hand-written `dispatch` implementations given an index they do
    /// not know.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, RpcError, Service};
    ///
    /// struct Greeter;
    ///
    /// impl Service for Greeter {
    ///     fn name() -> &'static str { "Greeter" }
    ///     fn methods() -> &'static [&'static str] { &["hello", "legacy"] }
    ///     fn dispatch(self: Arc<Self>, method: usize, call: Incoming) -> Handled {
    ///         match method {
    ///             0 => Handled::Done(call.reply("hello")),
    ///             _ => Handled::Done(call.unknown_method()),
    ///         }
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Greeter);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let err = client.call::<String, _>("Greeter.legacy", &()).await.unwrap_err();
    /// assert!(matches!(err, RpcError::UnknownMethod { method, .. } if method == "legacy"));
    /// # Ok(())
    /// # }
    /// ```
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
        let mut t = self.table.write();
        remove_object(&mut t, name)
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
