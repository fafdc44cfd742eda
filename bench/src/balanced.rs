//! This framework's balanced client (`rpc_transport::balance::Balanced`)
//! over one backend, against a direct `Peer` to the same server: what the
//! balancer costs per call. Also the failover measurement: how long calls
//! stop flowing when one of two backends dies.

#![allow(unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rpc_transport::balance::{Balanced, Endpoints};

use crate::harness::{Backend, BoxError, Client, Endpoint, ServerProcess, Transport};
use crate::ours::{BenchClient, Ours};

/// The balanced client, as a [`Backend`]: the same server as `ours`.
pub(crate) struct OursBalanced;

/// A balanced set over one backend. Clones share the set.
#[derive(Clone)]
pub(crate) struct BalancedClient {
    stub: BenchClient<Balanced>,
}

impl Client for BalancedClient {
    async fn add(&self, a: i32, b: i32) -> Result<i32, BoxError> {
        Ok(self.stub.add(a, b).await?)
    }

    async fn echo(&self, data: Vec<u8>) -> Result<Vec<u8>, BoxError> {
        Ok(self.stub.echo(data).await?)
    }
}

impl crate::harness::StreamClient for BalancedClient {
    async fn read_stream(
        &self,
        _n: u32,
        _size: u32,
        _ctl: &Arc<crate::harness::Control>,
    ) -> Result<u64, BoxError> {
        Err("the balanced client is measured on calls only".into())
    }
}

impl Backend for OursBalanced {
    const NAME: &'static str = "ours-balanced";
    type Client = BalancedClient;

    async fn bind(listen: &Endpoint) -> Result<(Endpoint, BoxFuture<'static, ()>), BoxError> {
        Ours::bind(listen).await
    }

    async fn connect(addr: &Endpoint) -> Result<BalancedClient, BoxError> {
        if matches!(addr, Endpoint::Tls { .. }) {
            return Err("the balanced client is measured over tcp and unix".into());
        }
        let set = Balanced::builder(Endpoints::new([addr.to_string()])?).start();
        set.until_connected(1, Duration::from_secs(10)).await?;
        Ok(BalancedClient {
            stub: BenchClient::new(&set),
        })
    }
}

/// What the failover run saw.
pub(crate) struct Failover {
    /// The longest pause between two answered calls before the kill.
    pub(crate) gap_before: Duration,
    /// The longest pause between two answered calls from the kill on: the
    /// time calls stopped flowing.
    pub(crate) gap_after: Duration,
    /// From the kill to the first answer to calls started at the kill
    /// (retrying the ones lost with the dead backend).
    pub(crate) first_after: Duration,
    /// Calls answered before and after the kill.
    pub(crate) answered: (u64, u64),
    /// Calls that failed (lost mid-call, not idempotent: `Interrupted`).
    pub(crate) failed: u64,
}

/// Two backend processes, a balanced set over both, `callers` closed-loop
/// callers of `add`; one backend is killed after `before`, and the run goes
/// on for `after`.
pub(crate) fn failover(
    transport: Transport,
    callers: usize,
    before: Duration,
    after: Duration,
) -> Result<Failover, BoxError> {
    let mut one = ServerProcess::spawn("ours", transport, 1)?;
    let two = ServerProcess::spawn("ours", transport, 1)?;
    let rt = crate::harness::runtime(1)?;
    rt.block_on(async move {
        let endpoints = Endpoints::new([one.addr().to_string(), two.addr().to_string()])?;
        let set = Balanced::builder(endpoints).start();
        set.until_connected(2, Duration::from_secs(10)).await?;
        let stub = BenchClient::new(&set);
        let done: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let started = Instant::now();
        let stop = started + before + after;
        let mut tasks = Vec::new();
        for _ in 0..callers {
            let (stub, done, failed) = (stub.clone(), done.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < stop {
                    match stub.add(1, 2).await {
                        Ok(_) => done.lock().unwrap().push(Instant::now()),
                        Err(_) => {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(before).await;
        let killed = Instant::now();
        one.kill();
        // The first call started at the kill that is answered: a call
        // that was on its way to the dead backend fails (`add` is not
        // idempotent), the next goes to the other one.
        while stub.add(1, 2).await.is_err() {}
        let first_after = killed.elapsed();
        for t in tasks {
            t.await?;
        }
        let mut times = std::mem::take(&mut *done.lock().unwrap());
        times.sort_unstable();
        let gap = |from: Instant, to: Instant| {
            let mut last = from;
            let mut widest = Duration::ZERO;
            for &t in times.iter().filter(|&&t| t >= from && t <= to) {
                widest = widest.max(t - last);
                last = t;
            }
            widest
        };
        let warm = started + Duration::from_millis(200);
        let answered_before = times.iter().filter(|&&t| t < killed).count() as u64;
        Ok(Failover {
            gap_before: gap(warm, killed),
            gap_after: gap(killed, stop),
            first_after,
            answered: (answered_before, times.len() as u64 - answered_before),
            failed: failed.load(std::sync::atomic::Ordering::Relaxed),
        })
    })
}
