//! Thread-bound objects (`#[expose(local)]`, `Local`): an object that is not
//! `Send` is served over real sockets, its calls run one at a time on its
//! own thread, and its handlers can call back into their caller.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpc_core::{expose, CallContext, Local, RemoteError, RpcError};
use rpc_tests::{addresses, within};
use rpc_transport::Server;

/// GUI-like state: `Rc`, `RefCell` and `Cell`, so neither `Send` nor `Sync`.
pub struct Model {
    items: Rc<RefCell<Vec<String>>>,
    /// Set while a synchronous handler runs: two at once would be a bug.
    busy: Cell<bool>,
    /// The threads the handlers ran on.
    threads: Arc<Mutex<Vec<ThreadId>>>,
    /// Set when an `async` handler is dropped before its end.
    dropped_early: Arc<AtomicBool>,
    /// Counts close hooks, with the thread they ran on.
    closed: Arc<Mutex<Vec<ThreadId>>>,
}

/// Sets a flag when dropped before `done` is called.
struct DropGuard(Arc<AtomicBool>, bool);

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, SeqCst);
        }
    }
}

#[expose(local)]
impl Model {
    /// Appends an item after holding the thread for `ms` milliseconds;
    /// returns the number of items.
    pub fn push(&self, item: String, ms: u64) -> usize {
        assert!(!self.busy.replace(true), "two handlers ran at once");
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        std::thread::sleep(Duration::from_millis(ms));
        self.items.borrow_mut().push(item);
        self.busy.set(false);
        self.items.borrow().len()
    }

    /// The items so far.
    pub fn items(&self) -> Vec<String> {
        self.items.borrow().clone()
    }

    /// Asks the caller's `Viewer` for a title, calls back once more into
    /// this object through the caller, and returns both.
    pub async fn refresh(&self, cx: CallContext) -> Result<String, RpcError> {
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        let viewer = ViewerClient::new(cx.peer());
        let title = viewer.title().await?;
        // The caller calls back into this object while this call is in
        // flight: the object's thread is not held by this handler.
        let count = viewer.count_items().await??;
        self.items.borrow_mut().push(title.clone());
        Ok(format!("{title}:{count}"))
    }

    /// Waits `ms` milliseconds on the object's thread.
    pub async fn wait(&self, ms: u64) -> u64 {
        let mut guard = DropGuard(self.dropped_early.clone(), false);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        guard.1 = true;
        ms
    }

    /// Panics.
    pub fn broken(&self) -> u8 {
        panic!("the model is broken")
    }

    /// The items as a stream.
    pub fn each(&self) -> impl futures::Stream<Item = String> + Send + 'static {
        futures::stream::iter(self.items.borrow().clone())
    }

    /// Runs on the object's thread when the server shuts down.
    #[expose(close)]
    pub fn save(&self) {
        self.closed
            .lock()
            .unwrap()
            .push(std::thread::current().id());
    }
}

/// What a test needs to look at after the model moved to its thread.
#[derive(Clone, Default)]
struct Probes {
    threads: Arc<Mutex<Vec<ThreadId>>>,
    dropped_early: Arc<AtomicBool>,
    closed: Arc<Mutex<Vec<ThreadId>>>,
}

impl Probes {
    fn model(&self) -> Model {
        Model {
            items: Rc::default(),
            busy: Cell::new(false),
            threads: self.threads.clone(),
            dropped_early: self.dropped_early.clone(),
            closed: self.closed.clone(),
        }
    }
}

/// The caller's side of `Model.refresh`: answers the callback, and calls
/// back into the model itself.
pub struct Viewer {
    calls: Arc<AtomicUsize>,
}

#[expose]
impl Viewer {
    /// The title the model asks for.
    pub fn title(&self) -> String {
        self.calls.fetch_add(1, SeqCst);
        "inbox".to_string()
    }

    /// Calls `Model.items` on the connection the callback came in on.
    pub async fn count_items(&self, cx: CallContext) -> Result<usize, RpcError> {
        self.calls.fetch_add(1, SeqCst);
        Ok(ModelClient::new(cx.peer()).items().await?.len())
    }
}

/// A server at `addr` with a `Model` on a thread of its own.
async fn serve(addr: &str) -> (Server, Probes) {
    let probes = Probes::default();
    let make = probes.clone();
    let server = Server::builder()
        .expose(Local::spawn(move || make.model()).unwrap())
        .bind(addr)
        .await
        .unwrap();
    (server, probes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_one_at_a_time_on_the_objects_thread() {
    for (addr, _dir) in addresses() {
        within(20, async {
            let (server, probes) = serve(&addr).await;
            // Two connections, 20 calls each, all at once.
            let a = rpc_transport::connect(server.local_addr()).await.unwrap();
            let b = rpc_transport::connect(server.local_addr()).await.unwrap();
            let calls = (0..40).map(|i| {
                let peer = if i % 2 == 0 { a.clone() } else { b.clone() };
                async move { ModelClient::new(&peer).push(format!("item{i}"), 2).await }
            });
            let counts: Vec<usize> = futures::future::try_join_all(calls).await.unwrap();
            // Every call saw a different length: none was lost or doubled.
            let mut sorted = counts.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (1..=40).collect::<Vec<_>>());
            assert_eq!(ModelClient::new(&a).items().await.unwrap().len(), 40);

            // All on one thread, which is not one of this runtime's.
            let threads = probes.threads.lock().unwrap().clone();
            assert_eq!(threads.len(), 40);
            assert!(threads.iter().all(|t| *t == threads[0]));
            assert_ne!(threads[0], std::thread::current().id());
            server.shutdown(Duration::from_secs(5)).await;
        })
        .await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_thread_bound_handler_calls_back_into_its_caller() {
    for (addr, _dir) in addresses() {
        within(20, async {
            let (server, _probes) = serve(&addr).await;
            let calls = Arc::new(AtomicUsize::new(0));
            let peer = rpc_transport::connect(server.local_addr())
                .expose(Viewer {
                    calls: calls.clone(),
                })
                .await
                .unwrap();
            let model = ModelClient::new(&peer);
            model.push("first".into(), 0).await.unwrap();
            // The handler asks the caller, and the caller calls back into
            // the model (which has one item) during the call.
            assert_eq!(model.refresh().await.unwrap().unwrap(), "inbox:1");
            assert_eq!(calls.load(SeqCst), 2);
            assert_eq!(model.items().await.unwrap(), ["first", "inbox"]);
            server.shutdown(Duration::from_secs(5)).await;
        })
        .await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn panics_timeouts_and_streams_of_a_thread_bound_object() {
    for (addr, _dir) in addresses() {
        within(20, async {
            let (server, probes) = serve(&addr).await;
            let peer = rpc_transport::connect(server.local_addr())
                .call_timeout(Duration::from_millis(200))
                .await
                .unwrap();
            let model = ModelClient::new(&peer);

            // A panic is the call's error, and the object lives on.
            match model.broken().await {
                Err(RpcError::Remote(RemoteError::Panicked(msg))) => {
                    assert!(msg.contains("the model is broken"), "{msg}")
                }
                other => panic!("expected the handler's panic, got {other:?}"),
            }
            assert_eq!(model.push("after".into(), 0).await.unwrap(), 1);

            // The caller's timeout is on time, and the handler on the
            // object's thread is dropped when the caller gives up.
            let started = Instant::now();
            let err = model.wait(5_000).await.unwrap_err();
            assert!(matches!(err, RpcError::Timeout), "{err:?}");
            assert!(started.elapsed() < Duration::from_millis(1_500));
            let deadline = Instant::now() + Duration::from_secs(5);
            while !probes.dropped_early.load(SeqCst) {
                assert!(Instant::now() < deadline, "the cancelled handler ran on");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(model.wait(1).await.unwrap(), 1);

            // A stream made on the object's thread.
            model.push("second".into(), 0).await.unwrap();
            let items: Vec<String> = model
                .each()
                .await
                .unwrap()
                .map(|item| item.unwrap())
                .collect()
                .await;
            assert_eq!(items, ["after", "second"]);

            // Shutting down runs the close hook on the object's thread.
            let handler_thread = probes.threads.lock().unwrap()[0];
            server.shutdown(Duration::from_secs(5)).await;
            assert_eq!(*probes.closed.lock().unwrap(), [handler_thread]);
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_on_a_thread_the_caller_hands_in() {
    within(20, async {
        let probes = Probes::default();
        let make = probes.clone();
        // The object is made on the thread that runs its calls; that thread
        // hands back the `Send` half and then serves until it is let go.
        let (handle, thread) = {
            let (tx, rx) = std::sync::mpsc::channel();
            let thread = std::thread::spawn(move || {
                let (local, runner) = Local::new(make.model());
                tx.send(local).unwrap();
                runner.run_blocking().unwrap();
                std::thread::current().id()
            });
            (rx.recv().unwrap(), thread)
        };
        let server = Server::builder()
            .expose(handle)
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
        assert_eq!(
            ModelClient::new(&peer).push("x".into(), 0).await.unwrap(),
            1
        );
        drop(peer);
        server.shutdown(Duration::from_secs(5)).await;
        // Once the server let the object go, the runner returned.
        let runner_thread = tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        assert_eq!(*probes.threads.lock().unwrap(), [runner_thread]);
        assert_eq!(*probes.closed.lock().unwrap(), [runner_thread]);
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_stopped_runner_gives_a_clear_error() {
    within(20, async {
        let probes = Probes::default();
        let (local, runner) = Local::new(probes.model());
        drop(runner);
        let server = Server::builder()
            .expose(local)
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
        match ModelClient::new(&peer).items().await {
            Err(RpcError::Remote(RemoteError::Failed(msg))) => {
                assert!(
                    msg.contains("has stopped") && msg.contains("Model"),
                    "{msg}"
                )
            }
            other => panic!("expected a clear error, got {other:?}"),
        }
        // The connection is fine.
        assert!(peer.ping().await.is_ok());
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}
