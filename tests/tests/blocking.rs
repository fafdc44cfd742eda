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
