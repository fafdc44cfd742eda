//! Handlers marked `#[expose(blocking)]` run on tokio's blocking pool: a
//! handler that blocks does not stall the connection or the runtime, so
//! other calls go on and a caller's timeout is on time, even with server
//! and client on one current-thread runtime.

use std::time::{Duration, Instant};

use rpc_core::{expose, CallContext, RemoteError, RpcError};
use rpc_tests::{addresses, within};
use rpc_transport::Server;

/// Methods that block the thread they run on.
pub struct Disk;

#[expose]
impl Disk {
    /// Blocks for `ms` milliseconds.
    #[expose(blocking)]
    pub fn read(&self, ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    /// Blocks, then panics.
    #[expose(blocking)]
    pub fn broken(&self) -> u64 {
        std::thread::sleep(Duration::from_millis(10));
        panic!("the disk is on fire")
    }

    /// Blocking, with the call's context.
    #[expose(blocking)]
    pub fn whoami(&self, cx: CallContext) -> String {
        cx.method().to_string()
    }

    /// Not blocking.
    pub fn ping(&self) -> u8 {
        1
    }
}

/// Every synchronous method of this block runs on the blocking pool.
pub struct Archive;

#[expose(blocking)]
impl Archive {
    /// Blocks for `ms` milliseconds.
    pub fn fetch(&self, ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_blocking_handler_stalls_nothing_and_timeouts_are_on_time() {
    for (addr, _dir) in addresses() {
        within(20, async {
            let server = Server::builder()
                .expose(Disk)
                .expose(Archive)
                .bind(addr.as_str())
                .await
                .unwrap();
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let disk = DiskClient::new(&peer);

            // Another call on the same connection is answered while the
            // blocking one runs (one runtime thread for everything).
            let slow = disk.read(600);
            let quick = async {
                let answered = disk.ping().await.unwrap();
                (answered, Instant::now())
            };
            let started = Instant::now();
            let (slow, (answered, quick_at)) = tokio::join!(slow, quick);
            assert_eq!((slow.unwrap(), answered), (600, 1));
            assert!(
                quick_at - started < Duration::from_millis(500),
                "the quick call waited"
            );

            // A timeout is on time while the handler blocks for 2 s.
            let started = Instant::now();
            let e = disk
                .clone()
                .with_timeout(Duration::from_millis(200))
                .read(2_000)
                .await
                .unwrap_err();
            assert_eq!(e, RpcError::Timeout);
            assert!(
                started.elapsed() < Duration::from_millis(1_500),
                "{:?}",
                started.elapsed()
            );

            // A panic is the handler's panic; the context is there.
            let e = disk.broken().await.unwrap_err();
            assert!(
                matches!(e, RpcError::Remote(RemoteError::Panicked(m)) if m.contains("on fire"))
            );
            assert_eq!(disk.whoami().await.unwrap(), "whoami");

            // On the whole block.
            let archive = ArchiveClient::new(&peer);
            let (a, b) = tokio::join!(archive.fetch(300), disk.ping());
            assert_eq!((a.unwrap(), b.unwrap()), (300, 1));
        })
        .await;
    }
}

/// The blocking client: a plain `#[test]` (no runtime in sight) calls a
/// server through the blocking stub, over TCP and Unix; typed errors and
/// timeouts as the async stub; the server calls back into an object the
/// blocking client exposes.
#[test]
fn a_blocking_client_calls_and_is_called_back() {
    use rpc_tests::fixtures::{Calc, CalcClient, MathError, Progress};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (addr, _dir) in addresses() {
        let server = runtime
            .block_on(
                Server::builder()
                    .expose(Calc::default())
                    .expose(Disk)
                    .bind(addr.as_str()),
            )
            .unwrap();
        let progress = Progress::default();
        let client = rpc_transport::blocking::connect_with(server.local_addr(), |c| {
            c.expose(progress.clone())
        })
        .unwrap();
        let calc = CalcClient::new(client.peer()).blocking(client.runtime());
        assert_eq!(calc.add(2, 3).unwrap(), 5);
        assert_eq!(calc.div(1, 0).unwrap(), Err(MathError::DivideByZero));
        // The server calls the client's `Progress` during the call.
        assert_eq!(calc.long_job(3).unwrap(), Ok(30)); // 0 + 10 + 20, from the client
        assert_eq!(progress.seen.lock().unwrap().len(), 3);

        let disk = DiskClient::new(client.peer())
            .with_timeout(Duration::from_millis(200))
            .blocking(client.runtime());
        let started = Instant::now();
        assert_eq!(disk.read(2_000).unwrap_err(), RpcError::Timeout);
        assert!(started.elapsed() < Duration::from_millis(1_500));

        let sum: i64 = client
            .block_on(client.peer().call("Calc.add", &(40i64, 2i64)))
            .unwrap();
        assert_eq!(sum, 42);
        client.close();
    }
}

/// A blocking stub called from async code fails at once with a message
/// saying what to do, instead of deadlocking.
#[test]
fn a_blocking_stub_inside_async_code_says_what_to_do() {
    let server = rpc_transport::blocking::serve(Server::builder().expose(Disk)).unwrap();
    let client = rpc_transport::blocking::connect(server.local_addr()).unwrap();
    let disk = DiskClient::new(client.peer()).blocking(client.runtime());
    let inside = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        inside.block_on(async { disk.ping() })
    }))
    .unwrap_err();
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(message.contains(".await"), "{message}");
    // Outside async code it works.
    assert_eq!(disk.ping().unwrap(), 1);
}
