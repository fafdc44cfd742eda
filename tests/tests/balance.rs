//! The balanced client against real server processes on distinct loopback
//! ports: calls spread evenly, a backend killed mid-run loses no
//! idempotent call, a backend added at run time takes calls, sticky keys
//! stay on one backend, and callbacks come back on the chosen connection.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rpc_core::RpcError;
use rpc_tests::backend::{BackendClient, Pong};
use rpc_tests::within;
use rpc_transport::balance::{Balanced, Endpoints};
use rpc_transport::Address;

/// A backend process, killed when dropped.
struct Process {
    child: Child,
    addr: Address,
}

impl Process {
    fn start(name: &str) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_backend"))
            .arg(name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the backend starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the backend prints its address");
        let addr = line.trim().parse().expect("an address");
        Process { child, addr }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start(n: usize) -> Vec<Process> {
    (0..n).map(|i| Process::start(&format!("b{i}"))).collect()
}

fn balanced(endpoints: &Endpoints) -> Balanced {
    Balanced::builder(endpoints.clone())
        .refresh(Duration::from_millis(200))
        .dial(|c| {
            c.call_timeout(Duration::from_secs(10)).expose(Pong {
                name: "client".into(),
            })
        })
        .start()
}

/// Makes `n` calls of `whoami`, 16 at a time; the answers by backend.
async fn spread(set: &Balanced, n: usize) -> HashMap<String, usize> {
    use futures::StreamExt;
    let stub = BackendClient::new(set);
    let answers: Vec<String> = futures::stream::iter(0..n)
        .map(|_| {
            let stub = stub.clone();
            async move { stub.whoami().await.unwrap() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut by = HashMap::new();
    for a in answers {
        *by.entry(a).or_insert(0) += 1;
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_across_three_backends_within_twenty_percent() {
    within(60, async {
        let backends = start(3);
        let endpoints = Endpoints::new(backends.iter().map(|b| &b.addr)).unwrap();
        let set = balanced(&endpoints);
        set.until_connected(3, Duration::from_secs(10))
            .await
            .unwrap();
        let by = spread(&set, 3000).await;
        assert_eq!(by.len(), 3, "{by:?}");
        for (backend, n) in &by {
            assert!(
                (800..=1200).contains(n),
                "{backend} took {n} of 3000 calls: {by:?}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_run_loses_no_idempotent_call() {
    within(60, async {
        let mut backends = start(3);
        let endpoints = Endpoints::new(backends.iter().map(|b| &b.addr)).unwrap();
        let set = balanced(&endpoints);
        set.until_connected(3, Duration::from_secs(10))
            .await
            .unwrap();
        let stub = BackendClient::new(&set);

        // Eight callers of each kind run while backend b0 is killed.
        let stop_at = Instant::now() + Duration::from_millis(1500);
        let mut idempotent = Vec::new();
        let mut once = Vec::new();
        for _ in 0..8 {
            let worker = stub.clone();
            idempotent.push(tokio::spawn(async move {
                let mut results = Vec::new();
                while Instant::now() < stop_at {
                    results.push(worker.work(20).await);
                }
                results
            }));
            let stub = stub.clone();
            once.push(tokio::spawn(async move {
                let mut results = Vec::new();
                while Instant::now() < stop_at {
                    results.push(stub.charge(20).await);
                }
                results
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let killed = Instant::now();
        backends[0].kill();

        // Failover: how long until a call goes through again after the kill
        // (reported, not asserted).
        let next = stub.whoami().await.unwrap();
        let failover = killed.elapsed();
        assert_ne!(next, "b0");

        let mut done = 0;
        for task in idempotent {
            for result in task.await.unwrap() {
                let answered = result.expect("an idempotent call is never lost");
                assert!(["b0", "b1", "b2"].contains(&answered.as_str()));
                done += 1;
            }
        }
        let (mut completed, mut interrupted) = (0, 0);
        for task in once {
            for result in task.await.unwrap() {
                match result {
                    Ok(_) => completed += 1,
                    Err(RpcError::Interrupted(_)) => interrupted += 1,
                    Err(other) => panic!("a call that may have run failed unclearly: {other}"),
                }
            }
        }
        eprintln!(
            "idempotent calls: {done} completed, 0 lost; others: {completed} completed, \
             {interrupted} interrupted; first call after the kill answered in {failover:?}"
        );
        assert!(done > 100 && completed > 100, "{done} {completed}");
        // Once the set knows b0 is gone, calls no longer go there.
        let deadline = Instant::now() + Duration::from_secs(5);
        while set.backends().len() != 2 {
            assert!(Instant::now() < deadline, "{:?}", set.backends());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let by = spread(&set, 300).await;
        assert!(!by.contains_key("b0"), "{by:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_added_at_run_time_takes_calls() {
    within(60, async {
        let backends = start(3);
        let endpoints = Endpoints::new(backends[..2].iter().map(|b| &b.addr)).unwrap();
        let set = balanced(&endpoints);
        set.until_connected(2, Duration::from_secs(10))
            .await
            .unwrap();
        let by = spread(&set, 300).await;
        assert!(!by.contains_key("b2"), "{by:?}");

        endpoints.add(&backends[2].addr).unwrap();
        set.until_connected(3, Duration::from_secs(10))
            .await
            .unwrap();
        let by = spread(&set, 600).await;
        assert!(by.get("b2").copied().unwrap_or(0) >= 100, "{by:?}");

        // Removed again: its connection is dropped and it gets nothing.
        endpoints.remove(&backends[2].addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while set.backends().len() != 2 {
            assert!(Instant::now() < deadline, "{:?}", set.backends());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let by = spread(&set, 300).await;
        assert!(!by.contains_key("b2"), "{by:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_key_stays_on_its_backend_while_it_lives() {
    within(60, async {
        let mut backends = start(3);
        let endpoints = Endpoints::new(backends.iter().map(|b| &b.addr)).unwrap();
        let set = balanced(&endpoints);
        set.until_connected(3, Duration::from_secs(10))
            .await
            .unwrap();

        // Each key's calls all land on one backend; keys spread.
        let mut homes = HashMap::new();
        for user in 0..12 {
            let sticky = set.sticky(format!("user-{user}"));
            let by = spread(&sticky, 30).await;
            assert_eq!(by.len(), 1, "user-{user}: {by:?}");
            homes.insert(user, by.into_keys().next().unwrap());
        }
        let used: std::collections::HashSet<_> = homes.values().collect();
        assert!(used.len() >= 2, "twelve keys all on one backend: {homes:?}");

        // The home of user-0 dies: its calls move to one other backend, and
        // the other keys stay where they were.
        let dead = homes[&0].clone();
        let index: usize = dead[1..].parse().unwrap();
        backends[index].kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while set.backends().len() != 2 {
            assert!(Instant::now() < deadline, "{:?}", set.backends());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let by = spread(&set.sticky("user-0"), 30).await;
        assert_eq!(by.len(), 1, "{by:?}");
        assert!(!by.contains_key(&dead), "{by:?}");
        for (user, home) in &homes {
            if *home != dead {
                let by = spread(&set.sticky(format!("user-{user}")), 10).await;
                assert_eq!(by.keys().collect::<Vec<_>>(), [home], "user-{user}");
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_call_back_on_the_connection_the_balancer_chose() {
    within(60, async {
        let backends = start(3);
        let endpoints = Endpoints::new(backends.iter().map(|b| &b.addr)).unwrap();
        let set = balanced(&endpoints);
        set.until_connected(3, Duration::from_secs(10))
            .await
            .unwrap();
        let stub = BackendClient::new(&set);
        let answers = futures::future::try_join_all((0..60).map(|_| stub.ping_back()))
            .await
            .unwrap();
        let mut by = HashMap::new();
        for answer in answers {
            let (backend, pong) = answer
                .unwrap()
                .split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .unwrap();
            assert_eq!(pong, "client");
            *by.entry(backend).or_insert(0) += 1;
        }
        assert_eq!(by.len(), 3, "{by:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_backend_a_call_fails_clearly_after_its_wait() {
    within(30, async {
        let endpoints = Endpoints::new(["tcp://127.0.0.1:1"]).unwrap();
        let set = Balanced::builder(endpoints)
            .wait_for_backend(Duration::from_millis(300))
            .start();
        let started = Instant::now();
        let err = BackendClient::new(&set).whoami().await.unwrap_err();
        assert_eq!(err, RpcError::NotConnected);
        assert!(started.elapsed() >= Duration::from_millis(300));
    })
    .await;
}
