//! Both ends of a bulk stream, each in a process of its own, for the test
//! that measures their memory (`tests/tests/memory.rs`).
//!
//! - `stream_peer serve`: serves `Bulk` on a fresh loopback port, prints
//!   its address on the first line of stdout, and, when its stdin closes,
//!   prints `rss <baseline KiB> <peak KiB>` and exits.
//! - `stream_peer consume <addr> <bytes> <pause-ms>`: reads `<bytes>` of
//!   the server's stream in 64 KiB items, slowly (it stops for `<pause-ms>`
//!   after the first item, and for 1 ms after every MiB), then prints
//!   `consumed <bytes> rss <baseline KiB> <peak KiB>`.
//!
//! Both sample their own resident memory every 10 ms.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use rpc_core::expose;
use rpc_tests::streams::Chunk;
use rpc_transport::Server;

const ITEM: usize = 64 * 1024;

/// A source of bytes.
pub struct Bulk;

#[expose]
impl Bulk {
    /// `bytes` bytes in items of 64 KiB.
    pub fn bytes(&self, bytes: u64) -> impl Stream<Item = Chunk> + Send + 'static {
        let items = bytes.div_ceil(ITEM as u64);
        futures::stream::iter(0..items).map(|i| Chunk(vec![i as u8; ITEM]))
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Samples resident memory every 10 ms; the peak so far.
fn watch_rss() -> Arc<AtomicU64> {
    let peak = Arc::new(AtomicU64::new(rss_kib()));
    let p = peak.clone();
    std::thread::spawn(move || loop {
        p.fetch_max(rss_kib(), Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(10));
    });
    peak
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    match args.first().map(String::as_str) {
        Some("serve") => rt.block_on(serve()),
        Some("consume") => {
            let addr = args[1].clone();
            let bytes: u64 = args[2].parse().expect("a byte count");
            let pause: u64 = args[3].parse().expect("a pause in ms");
            rt.block_on(consume(addr, bytes, pause));
        }
        _ => panic!("usage: stream_peer serve | consume <addr> <bytes> <pause-ms>"),
    }
}

async fn serve() {
    let server = Server::builder()
        .expose(Bulk)
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("binds");
    let baseline = rss_kib();
    let peak = watch_rss();
    println!("{}", server.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.await;
    println!("rss {baseline} {}", peak.load(Ordering::Relaxed));
}

async fn consume(addr: String, bytes: u64, pause: u64) {
    let peer = rpc_transport::connect(addr.as_str())
        .await
        .expect("connects");
    let bulk = BulkClient::new(&peer);
    // Warm up the call path, so the baseline holds what any call needs.
    drop(bulk.bytes(1).await.expect("a stream").next().await);
    let baseline = rss_kib();
    let peak = watch_rss();
    let mut stream = bulk.bytes(bytes).await.expect("a stream");
    let mut consumed = 0u64;
    let mut next_mib = 1 << 20;
    while let Some(item) = stream.next().await {
        let item = item.expect("an item");
        if consumed == 0 {
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        consumed += item.0.len() as u64;
        if consumed >= next_mib {
            next_mib += 1 << 20;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    println!(
        "consumed {consumed} rss {baseline} {}",
        peak.load(Ordering::Relaxed)
    );
}
