//! 10,000 object handles made and dropped both ways leave nothing behind:
//! no handle counted on either side, no object alive, and no growth of
//! the process's memory after the first round. (One test alone in its
//! binary, so that no other test's memory is measured with it.)

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc_core::{expose, Remote};
use rpc_tests::within;
use rpc_transport::Server;

/// Objects of either kind alive in this process.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// A handed-out object.
pub struct Item(#[allow(dead_code)] Vec<u8>);

impl Item {
    fn new() -> Item {
        LIVE.fetch_add(1, SeqCst);
        Item(vec![0; 64])
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, SeqCst);
    }
}

#[expose]
impl Item {
    /// Its size.
    pub fn size(&self) -> usize {
        self.0.len()
    }
}

/// Makes items, and takes the caller's.
pub struct Factory;

#[expose]
impl Factory {
    /// `n` new items.
    pub fn make(&self, n: u32) -> Vec<Remote<Item>> {
        (0..n).map(|_| Remote::new(Item::new())).collect()
    }

    /// Takes the caller's items, calls the last, and drops them all.
    pub async fn take(&self, items: Vec<Remote<Item>>) -> usize {
        match items.last() {
            Some(item) => item.size().await.unwrap_or(0),
            None => 0,
        }
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn settle(peer: &rpc_core::Peer, server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        peer.ping().await.unwrap();
        let theirs = server.peers()[0].handle_counts();
        let mine = peer.handle_counts();
        if LIVE.load(SeqCst) == 0 && theirs == mine && mine == Default::default() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {} objects, client {mine:?}, server {theirs:?}",
            LIVE.load(SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_handles_both_ways_leave_no_growth() {
    within(60, async {
        let server = Server::builder()
            .expose(Factory)
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
        let factory = FactoryClient::new(&peer);
        let sent = Arc::new(AtomicUsize::new(0));
        let mut after_first = 0;
        for round in 0..10 {
            // 1,000 from the server, called once each, then dropped.
            let items = factory.make(1000).await.unwrap();
            assert_eq!(peer.handle_counts().imported, 1000);
            let sizes = futures::future::try_join_all(items.iter().map(|i| i.size()))
                .await
                .unwrap();
            assert!(sizes.iter().all(|&n| n == 64));
            drop(items);
            // 1,000 to the server, which drops them when the call ends.
            let mine: Vec<Remote<Item>> = (0..1000).map(|_| Remote::new(Item::new())).collect();
            assert_eq!(factory.take(mine).await.unwrap(), 64);
            sent.fetch_add(2000, SeqCst);
            settle(&peer, &server).await;
            if round == 0 {
                after_first = rss_kib();
            }
        }
        assert_eq!(sent.load(SeqCst), 20_000);
        let growth = rss_kib().saturating_sub(after_first);
        eprintln!(
            "resident memory after the first round: {after_first} KiB; growth since: {growth} KiB"
        );
        assert!(
            growth < 4 * 1024,
            "resident memory grew by {growth} KiB over nine rounds of 2,000 handles"
        );
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}
