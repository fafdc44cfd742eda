//! Thread-bound objects: serving an object that is not `Send`, such as an
//! `Rc`/`RefCell` model or GUI state, from the one thread it lives on.
//!
//! Owns: [`LocalService`] (what `#[expose(local)]` implements), [`Local`]
//! (the `Send` stand-in that a registry holds) and [`LocalRunner`] (the loop
//! on the object's thread).
//!
//! A call to a [`Local`] object travels from the connection to the object's
//! thread over a channel and its answer comes back the same way. The
//! runner starts calls one at a time, in the order they arrive, on that
//! thread: a synchronous handler runs to its end before the next call
//! starts; an `async` handler gives the thread up only at its `.await`s, as
//! on any event loop, so a handler that calls back into its caller does not
//! stop the object's other calls (nor deadlock when the callback calls the
//! object again).
//!
//! Nothing here blocks a connection. The channel has no bound of its own:
//! each connection's calls in flight are already bounded by
//! [`PeerConfig::max_concurrent`](crate::PeerConfig::max_concurrent), and
//! a call stays in the channel only until the runner takes it.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::{Handled, Incoming, Replied, Service};
use crate::error::RemoteError;

/// A boxed handler future of a thread-bound object: like
/// [`HandlerFuture`](crate::HandlerFuture), but it need not be `Send`.
pub type LocalHandlerFuture = Pin<Box<dyn Future<Output = Replied> + 'static>>;

/// A boxed future with no output that need not be `Send`, as returned by
/// [`LocalService::close`].
pub type LocalCloseFuture = Pin<Box<dyn Future<Output = ()> + 'static>>;

/// What [`LocalService::dispatch`] did with a call: like [`Handled`], with
/// a future that need not be `Send`.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use rpc_core::{Incoming, LocalHandled, LocalService};
///
/// struct Ticker;
///
/// impl LocalService for Ticker {
///     fn name() -> &'static str { "Ticker" }
///     fn methods() -> &'static [&'static str] { &["now", "later"] }
///     fn dispatch(self: Rc<Self>, method: usize, call: Incoming) -> LocalHandled {
///         match method {
///             0 => LocalHandled::Done(call.reply("now")),
///             _ => LocalHandled::Pending(Box::pin(async move {
///                 tokio::task::yield_now().await;
///                 call.reply("later")
///             })),
///         }
///     }
/// }
/// ```
#[must_use]
pub enum LocalHandled {
    /// The call has been answered.
    Done(Replied),
    /// The call will be answered when this future completes, on the
    /// object's thread.
    Pending(LocalHandlerFuture),
}

/// An object whose methods can be called remotely and which lives on one
/// thread: it need not be `Send` or `Sync`.
///
/// `#[expose(local)]` implements this for you. Serve such an object with
/// [`Local::spawn`] (a thread of its own) or [`Local::new`] (a thread you
/// drive).
///
/// # Examples
///
/// ```
/// use std::cell::RefCell;
/// use rpc_core::{expose, LocalService};
///
/// pub struct Notes {
///     lines: RefCell<Vec<String>>,
/// }
///
/// #[expose(local)]
/// impl Notes {
///     pub fn add(&self, line: String) -> usize {
///         self.lines.borrow_mut().push(line);
///         self.lines.borrow().len()
///     }
/// }
///
/// assert_eq!(Notes::name(), "Notes");
/// assert_eq!(Notes::methods(), &["add"]);
/// ```
pub trait LocalService: 'static {
    /// The name the object is exposed under unless another is given.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    /// use rpc_core::{expose, LocalService};
    ///
    /// pub struct View(Rc<String>);
    /// #[expose(local, name = "view")]
    /// impl View {
    ///     pub fn title(&self) -> String { self.0.to_string() }
    /// }
    ///
    /// assert_eq!(View::name(), "view");
    /// ```
    fn name() -> &'static str
    where
        Self: Sized;

    /// The exposed method names; `dispatch` receives an index into this list.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    /// use rpc_core::{expose, LocalService};
    ///
    /// pub struct View(Rc<String>);
    /// #[expose(local)]
    /// impl View {
    ///     pub fn title(&self) -> String { self.0.to_string() }
    ///     pub fn len(&self) -> usize { self.0.len() }
    /// }
    ///
    /// assert_eq!(View::methods(), &["title", "len"]);
    /// ```
    fn methods() -> &'static [&'static str]
    where
        Self: Sized;

    /// Handles one call to method number `method`, on the object's thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use rpc_core::{Incoming, LocalHandled, LocalService};
    ///
    /// struct Counter(Cell<u32>);
    ///
    /// impl LocalService for Counter {
    ///     fn name() -> &'static str { "Counter" }
    ///     fn methods() -> &'static [&'static str] { &["hit"] }
    ///     fn dispatch(self: Rc<Self>, method: usize, call: Incoming) -> LocalHandled {
    ///         match method {
    ///             0 => {
    ///                 self.0.set(self.0.get() + 1);
    ///                 LocalHandled::Done(call.reply(&self.0.get()))
    ///             }
    ///             _ => LocalHandled::Done(call.unknown_method()),
    ///         }
    ///     }
    /// }
    /// ```
    fn dispatch(self: Rc<Self>, method: usize, call: Incoming) -> LocalHandled;

    /// Called on the object's thread when the object stops being served
    /// (see [`Service::close`]). Does nothing unless overridden.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::rc::Rc;
    /// use rpc_core::{Incoming, LocalCloseFuture, LocalHandled, LocalService};
    ///
    /// struct Doc;
    ///
    /// impl LocalService for Doc {
    ///     fn name() -> &'static str { "Doc" }
    ///     fn methods() -> &'static [&'static str] { &[] }
    ///     fn dispatch(self: Rc<Self>, _: usize, call: Incoming) -> LocalHandled {
    ///         LocalHandled::Done(call.unknown_method())
    ///     }
    ///     fn close(self: Rc<Self>) -> LocalCloseFuture {
    ///         Box::pin(async move { println!("saved") })
    ///     }
    /// }
    /// ```
    fn close(self: Rc<Self>) -> LocalCloseFuture {
        Box::pin(async {})
    }
}

/// What a panic carries, sent back from the object's thread.
type Panic = Box<dyn Any + Send>;

/// One piece of work for the object's thread.
enum Job {
    Call {
        method: usize,
        call: Incoming,
        done: oneshot::Sender<Result<Replied, Panic>>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// A thread-bound object, as a [`Service`] that any registry can expose:
/// the calls it receives run on the object's own thread.
///
/// Make one with [`Local::spawn`], which starts a thread for the object, or
/// with [`Local::new`], which hands back a [`LocalRunner`] to drive on a
/// thread of your choosing (a GUI's main thread, a `LocalSet`). It is
/// exposed like any other object, under [`LocalService::name`] or a name
/// given to [`Registry::expose_as`](crate::Registry::expose_as).
///
/// When the registries and connections holding it let it go, the runner
/// finishes the calls in flight and returns, and the object is dropped on
/// its thread.
///
/// # Examples
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use rpc_core::{expose, Local, Peer, PeerConfig, Registry};
///
/// /// GUI-like state: `Rc` and `RefCell`, so not `Send`.
/// pub struct Model {
///     items: Rc<RefCell<Vec<String>>>,
/// }
///
/// #[expose(local)]
/// impl Model {
///     pub fn push(&self, item: String) -> usize {
///         self.items.borrow_mut().push(item);
///         self.items.borrow().len()
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let served = Registry::new();
/// served.expose(Local::spawn(|| Model { items: Rc::default() }).expect("thread"));
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let (_server, client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// let model = ModelClient::new(&client);
/// assert_eq!(model.push("a".into()).await?, 1);
/// assert_eq!(model.push("b".into()).await?, 2);
/// # Ok(())
/// # }
/// ```
pub struct Local<S> {
    jobs: mpsc::UnboundedSender<Job>,
    _object: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for Local<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("object", &std::any::type_name::<S>())
            .field("running", &!self.jobs.is_closed())
            .finish()
    }
}

impl<S: LocalService> Local<S> {
    /// Wraps `object`, and returns the runner that must be driven on the
    /// thread that is to run its calls.
    ///
    /// Until [`LocalRunner::run`] is polled, calls to the object wait (and
    /// are subject to their deadlines as usual).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use rpc_core::{expose, Local, Peer, PeerConfig, Registry};
    ///
    /// pub struct Clicks(Cell<u32>);
    ///
    /// #[expose(local)]
    /// impl Clicks {
    ///     pub fn click(&self) -> u32 { self.0.set(self.0.get() + 1); self.0.get() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// // On the thread that owns the object: here, this runtime's only one.
    /// let (clicks, runner) = Local::new(Clicks(Cell::new(0)));
    /// let local = tokio::task::LocalSet::new();
    /// local.spawn_local(runner.run());
    ///
    /// let served = Registry::new();
    /// served.expose(clicks);
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let clicks = ClicksClient::new(&client);
    /// let n = local.run_until(async { clicks.click().await }).await?;
    /// assert_eq!(n, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(object: S) -> (Local<S>, LocalRunner<S>) {
        let (jobs, queue) = mpsc::unbounded_channel();
        let local = Local {
            jobs,
            _object: PhantomData,
        };
        let runner = LocalRunner {
            object: Rc::new(object),
            jobs: queue,
        };
        (local, runner)
    }

    /// Starts a thread for the object, made there by `make`, and runs its
    /// calls on that thread (with a current-thread tokio runtime of its
    /// own, so handlers can await calls, timers and I/O).
    ///
    /// The thread ends once the object is no longer served.
    ///
    /// # Errors
    ///
    /// The thread could not be started.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use rpc_core::{expose, Local, Registry};
    ///
    /// pub struct Log(RefCell<Vec<String>>);
    ///
    /// #[expose(local)]
    /// impl Log {
    ///     pub fn write(&self, line: String) { self.0.borrow_mut().push(line) }
    /// }
    ///
    /// let registry = Registry::new();
    /// registry.expose(Local::spawn(|| Log(RefCell::default()))?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn spawn<F>(make: F) -> std::io::Result<Local<S>>
    where
        F: FnOnce() -> S + Send + 'static,
    {
        let (jobs, queue) = mpsc::unbounded_channel();
        // The runtime is made on the new thread (a runtime may not be
        // dropped inside async code, where this may be called); whether
        // that worked comes back before this returns.
        let (started, outcome) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(format!("rpc-local-{}", S::name()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let runtime = match runtime {
                    Ok(runtime) => {
                        let _ = started.send(Ok(()));
                        runtime
                    }
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                let runner = LocalRunner {
                    object: Rc::new(make()),
                    jobs: queue,
                };
                runtime.block_on(runner.run());
            })?;
        outcome
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the object's thread ended at once")))?;
        Ok(Local {
            jobs,
            _object: PhantomData,
        })
    }

    /// Why a call cannot be answered: the runner is gone.
    fn stopped() -> String {
        format!(
            "the thread serving `{}` has stopped",
            std::any::type_name::<S>()
        )
    }
}

impl<S: LocalService> Service for Local<S> {
    fn name() -> &'static str {
        S::name()
    }

    fn methods() -> &'static [&'static str] {
        S::methods()
    }

    fn dispatch(self: Arc<Self>, method: usize, call: Incoming) -> Handled {
        let (done, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(Job::Call { method, call, done }) {
            let Job::Call { call, .. } = job else {
                unreachable!("the job sent is a call")
            };
            return Handled::Done(call.fail(RemoteError::Failed(Self::stopped())));
        }
        Handled::Pending(Box::pin(async move {
            match answer.await {
                Ok(Ok(replied)) => replied,
                // The handler's panic, as a panic of this call.
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                // The runner was dropped with the call in it; the call's
                // `Incoming` went with it, and this becomes its error.
                Err(_) => panic!("{}", Self::stopped()),
            }
        }))
    }

    fn close(self: Arc<Self>) -> crate::CloseFuture {
        Box::pin(async move {
            let (done, closed) = oneshot::channel();
            if self.jobs.send(Job::Close { done }).is_ok() {
                let _ = closed.await;
            }
        })
    }
}

/// The loop that runs a [`Local`] object's calls on the object's thread.
///
/// Returned by [`Local::new`]. It is not `Send`: it holds the object.
///
/// # Examples
///
/// ```no_run
/// use std::cell::Cell;
/// use rpc_core::{expose, Local};
///
/// pub struct Lamp(Cell<bool>);
///
/// #[expose(local)]
/// impl Lamp {
///     pub fn toggle(&self) -> bool { self.0.set(!self.0.get()); self.0.get() }
/// }
///
/// let (lamp, runner) = Local::new(Lamp(Cell::new(false)));
/// // ... give `lamp` to a server's registry on another thread, then serve
/// // its calls here until it is no longer served:
/// # drop(lamp);
/// runner.run_blocking()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct LocalRunner<S> {
    object: Rc<S>,
    jobs: mpsc::UnboundedReceiver<Job>,
}

impl<S> std::fmt::Debug for LocalRunner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRunner")
            .field("object", &std::any::type_name::<S>())
            .finish_non_exhaustive()
    }
}

impl<S: LocalService> LocalRunner<S> {
    /// Runs the object's calls until every [`Local`] handle is gone (the
    /// object is no longer served), then finishes the calls in flight and
    /// returns.
    ///
    /// Drive it on the object's thread: `spawn_local` it on a
    /// [`tokio::task::LocalSet`], or `block_on` it on a current-thread
    /// runtime. A call whose caller stopped waiting (cancelled, past its
    /// deadline) is dropped here too.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use rpc_core::{expose, Local};
    ///
    /// pub struct Lamp(Cell<bool>);
    ///
    /// #[expose(local)]
    /// impl Lamp {
    ///     pub fn toggle(&self) -> bool { self.0.set(!self.0.get()); self.0.get() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (lamp, runner) = Local::new(Lamp(Cell::new(false)));
    /// drop(lamp); // nobody serves it: the runner has nothing to do
    /// tokio::task::LocalSet::new().run_until(runner.run()).await;
    /// # }
    /// ```
    pub async fn run(self) {
        let LocalRunner { object, mut jobs } = self;
        let mut running: FuturesUnordered<Pin<Box<dyn Future<Output = ()>>>> =
            FuturesUnordered::new();
        loop {
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(Job::Call { method, call, done }) => {
                        let object = Rc::clone(&object);
                        let dispatched =
                            std::panic::catch_unwind(AssertUnwindSafe(|| object.dispatch(method, call)));
                        match dispatched {
                            Ok(LocalHandled::Done(replied)) => {
                                let _ = done.send(Ok(replied));
                            }
                            Ok(LocalHandled::Pending(handler)) => {
                                running.push(Box::pin(answer(handler, done)));
                            }
                            Err(panic) => {
                                let _ = done.send(Err(panic));
                            }
                        }
                    }
                    Some(Job::Close { done }) => {
                        let object = Rc::clone(&object);
                        running.push(Box::pin(async move {
                            let _ = AssertUnwindSafe(object.close()).catch_unwind().await;
                            let _ = done.send(());
                        }));
                    }
                    None => break,
                },
                Some(()) = running.next(), if !running.is_empty() => {}
            }
        }
        while running.next().await.is_some() {}
    }

    /// Runs [`run`](Self::run) on this thread with a current-thread tokio
    /// runtime of its own, until the object is no longer served.
    ///
    /// # Errors
    ///
    /// The runtime could not be built.
    ///
    /// # Panics
    ///
    /// When called inside a tokio runtime (use [`run`](Self::run) there).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use rpc_core::{expose, Local};
    ///
    /// pub struct Lamp(Cell<bool>);
    ///
    /// #[expose(local)]
    /// impl Lamp {
    ///     pub fn toggle(&self) -> bool { self.0.set(!self.0.get()); self.0.get() }
    /// }
    ///
    /// let (lamp, runner) = Local::new(Lamp(Cell::new(false)));
    /// drop(lamp);
    /// runner.run_blocking()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn run_blocking(self) -> std::io::Result<()> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(self.run());
        Ok(())
    }
}

/// Runs one waiting handler and sends its answer back; drops it unrun if
/// the caller stops waiting first.
async fn answer(handler: LocalHandlerFuture, mut done: oneshot::Sender<Result<Replied, Panic>>) {
    tokio::select! {
        outcome = AssertUnwindSafe(handler).catch_unwind() => {
            let _ = done.send(outcome);
        }
        () = done.closed() => {}
    }
}
