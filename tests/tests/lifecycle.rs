//! Connections in the real world: events, status, identity, timeouts and
//! cancellation, heartbeats against a stopped process, reconnect, limits,
//! authentication, graceful shutdown, and the availability probe.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rpc_core::{DisconnectReason, PeerConfig, RpcError, Status};
use rpc_tests::fixtures::{Calc, CalcClient, Gauge, GaugeClient, Progress, ProgressClient};
use rpc_tests::{addresses, init_tracing, next_disconnect, serve, within};
use rpc_transport::{server_available, Backoff, Event, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn events_report_connects_and_disconnects_with_ids_and_names() {
    init_tracing();
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let mut events = server.events();
            let a = rpc_transport::connect(server.local_addr())
                .name("alpha")
                .await
                .unwrap();
            let b = rpc_transport::connect(server.local_addr())
                .name("beta")
                .await
                .unwrap();
            let mut seen = Vec::new();
            for _ in 0..2 {
                match events.recv().await.unwrap() {
                    Event::Connected(p) => seen.push((p.connection_id(), p.remote_name().unwrap())),
                    e => panic!("unexpected {e:?}"),
                }
            }
            seen.sort();
            assert_ne!(seen[0].0, seen[1].0, "connection ids are distinct");
            assert_eq!(
                seen.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
                vec!["alpha", "beta"]
            );
            // The handler's context carries the same id and name.
            let (id, name) = CalcClient::new(&a).whoami().await.unwrap();
            assert_eq!(id, a.connection_id());
            assert_eq!(name.as_deref(), Some("alpha"));
            assert_eq!(server.peers().len(), 2);
            assert!(server.peer(id).is_some());

            a.close().await;
            assert_eq!(
                next_disconnect(&mut events).await,
                (id, DisconnectReason::ClosedByPeer)
            );
            assert_eq!(*a.status().borrow(), Status::Closed);
            let e = CalcClient::new(&a).add(1, 1).await.unwrap_err();
            assert_eq!(e, RpcError::ConnectionClosed(DisconnectReason::Closed));

            // Shutdown is reported as such, on both sides.
            let b_id = b.connection_id();
            server.shutdown(Duration::from_secs(1)).await;
            assert_eq!(
                next_disconnect(&mut events).await,
                (b_id, DisconnectReason::Shutdown)
            );
            assert_eq!(within(5, b.closed()).await, DisconnectReason::Shutdown);
        })
        .await;
    }
}

#[tokio::test]
async fn a_call_times_out_and_its_handler_is_stopped() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let calc = Calc::default();
            let finished = calc.finished.clone();
            let server = serve(calc, &addr).await;
            let client = rpc_transport::connect(server.local_addr()).await.unwrap();
            let stub = CalcClient::new(&client).with_timeout(Duration::from_millis(100));
            let t = Instant::now();
            assert_eq!(stub.slow(400).await.unwrap_err(), RpcError::Timeout);
            assert!(t.elapsed() < Duration::from_millis(390));
            // The callee sees the caller's budget.
            let budget = stub.budget_ms().await.unwrap().unwrap();
            assert!(budget > 0 && budget <= 100, "{budget}");
            assert_eq!(CalcClient::new(&client).budget_ms().await.unwrap(), None);

            // Dropping the call's future cancels it too.
            let plain = CalcClient::new(&client);
            let dropped = tokio::time::timeout(Duration::from_millis(100), plain.slow(400)).await;
            assert!(dropped.is_err());
            // Neither handler ran to completion, long after both would have.
            tokio::time::sleep(Duration::from_millis(600)).await;
            assert_eq!(finished.load(Ordering::SeqCst), 0);
            // A call that is allowed to finish does.
            assert_eq!(plain.slow(10).await.unwrap(), 10);
            assert_eq!(finished.load(Ordering::SeqCst), 1);
        })
        .await;
    }
}

#[tokio::test]
async fn the_peers_default_timeout_applies() {
    within(10, async {
        let server = serve(Calc::default(), "tcp://127.0.0.1:0").await;
        let client = rpc_transport::connect(server.local_addr())
            .call_timeout(Duration::from_millis(50))
            .await
            .unwrap();
        let e = client
            .call::<u64, _>("Calc.slow", &(1000u64,))
            .await
            .unwrap_err();
        assert_eq!(e, RpcError::Timeout);
    })
    .await;
}

struct ChildServer(Child, String);

impl ChildServer {
    fn spawn(addr: &str) -> ChildServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rpc-test-server"))
            .arg(addr)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn test server");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        ChildServer(child, line.trim().to_string())
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn heartbeats_detect_a_stopped_server_process() {
    within(20, async {
        let child = ChildServer::spawn("tcp://127.0.0.1:0");
        let config = PeerConfig::default()
            .heartbeat(Some(Duration::from_millis(200)), Duration::from_millis(800));
        let client = rpc_transport::connect(child.1.as_str())
            .config(config)
            .await
            .unwrap();
        let calc = CalcClient::new(&client);
        assert_eq!(calc.add(1, 2).await.unwrap(), 3);
        // The process stops answering but its kernel keeps the socket open.
        child.signal("-STOP");
        let t = Instant::now();
        let e = calc.slow(60_000).await.unwrap_err();
        assert_eq!(
            e,
            RpcError::ConnectionClosed(DisconnectReason::HeartbeatTimeout)
        );
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(3),
            "{took:?}"
        );
        child.signal("-CONT");
    })
    .await;
}

#[tokio::test]
async fn killing_the_server_process_fails_the_call_in_flight() {
    within(20, async {
        let mut child = ChildServer::spawn("tcp://127.0.0.1:0");
        let client = rpc_transport::connect(child.1.as_str()).await.unwrap();
        let calc = CalcClient::new(&client);
        let call = tokio::spawn(async move { calc.slow(60_000).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        child.0.kill().unwrap();
        let e = call.await.unwrap().unwrap_err();
        assert!(e.is_connection_error(), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn a_client_reconnects_and_serves_its_objects_again() {
    for (addr, _dir) in addresses() {
        within(20, async {
            let server = serve(Calc::default(), &addr).await;
            let bound = server.local_addr().clone();
            let progress = Progress::default();
            let client = rpc_transport::connect(&bound)
                .expose(progress.clone())
                .reconnect(
                    Backoff::default()
                        .initial(Duration::from_millis(20))
                        .max(Duration::from_millis(100)),
                )
                .await
                .unwrap();
            let mut status = client.status();
            assert_eq!(*status.borrow_and_update(), Status::Connected);
            let calc = CalcClient::new(&client);
            assert_eq!(calc.add(1, 2).await.unwrap(), 3);

            drop(server);
            status
                .wait_for(|s| *s == Status::Reconnecting)
                .await
                .unwrap();
            // Calls fail fast while disconnected; nothing is queued or retried.
            let t = Instant::now();
            assert_eq!(calc.add(1, 2).await.unwrap_err(), RpcError::NotConnected);
            assert!(t.elapsed() < Duration::from_millis(50));

            let server = serve(Calc::default(), &bound).await;
            let mut events = server.events();
            status.wait_for(|s| *s == Status::Connected).await.unwrap();
            assert_eq!(calc.add(2, 3).await.unwrap(), 5);
            // The server reaches the client's object on the new connection.
            let server_side = loop {
                match server.peers().pop() {
                    Some(p) => break p,
                    None => {
                        let _ = events.recv().await;
                    }
                }
            };
            assert_eq!(
                ProgressClient::new(&server_side)
                    .report(1, 1)
                    .await
                    .unwrap(),
                10
            );

            client.close().await;
            assert_eq!(*client.status().borrow(), Status::Closed);
        })
        .await;
    }
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_with_a_reason() {
    within(10, async {
        let server = Server::builder()
            .expose(Calc::default())
            .max_connections(2)
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let a = rpc_transport::connect(server.local_addr()).await.unwrap();
        let _b = rpc_transport::connect(server.local_addr()).await.unwrap();
        for _ in 0..20 {
            let e = rpc_transport::connect(server.local_addr())
                .await
                .unwrap_err();
            assert!(
                matches!(&e, RpcError::Refused(m) if m.contains("too many connections")),
                "{e:?}"
            );
        }
        // A slot frees when a client leaves.
        a.close().await;
        let mut ok = None;
        for _ in 0..100 {
            if let Ok(p) = rpc_transport::connect(server.local_addr()).await {
                ok = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(CalcClient::new(&ok.unwrap()).add(1, 1).await.unwrap(), 2);
    })
    .await;
}

#[tokio::test]
async fn calls_in_flight_are_limited_by_backpressure() {
    within(20, async {
        let gauge = Gauge::default();
        let peak = gauge.peak.clone();
        let server = Server::builder()
            .expose(gauge)
            .config(PeerConfig::default().max_in_flight(4))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let client = rpc_transport::connect(server.local_addr()).await.unwrap();
        let g = GaugeClient::new(&client);
        let all = futures::future::join_all((0..20).map(|_| g.hold(30))).await;
        // Every call succeeded (none refused as busy), never more than 4 at once.
        assert!(all.iter().all(|r| r.is_ok()), "{all:?}");
        assert_eq!(peak.load(Ordering::SeqCst), 4);
    })
    .await;
}

#[tokio::test]
async fn a_silent_socket_is_dropped_after_the_handshake_timeout() {
    within(10, async {
        let server = Server::builder()
            .expose(Calc::default())
            .config(PeerConfig::default().handshake_timeout(Duration::from_millis(200)))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let mut events = server.events();
        let rpc_transport::Address::Tcp(hp) = server.local_addr() else {
            unreachable!()
        };
        let mut s = tokio::net::TcpStream::connect(hp.as_str()).await.unwrap();
        let t = Instant::now();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
        assert!(t.elapsed() < Duration::from_secs(2));
        let (_, reason) = next_disconnect(&mut events).await;
        assert!(
            matches!(&reason, DisconnectReason::Protocol(m) if m.contains("did not finish within")),
            "{reason:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn shared_secret_authentication() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = Server::builder()
                .expose(Calc::default())
                .secret("open sesame")
                .bind(addr.as_str())
                .await
                .unwrap();
            let mut events = server.events();
            let good = rpc_transport::connect(server.local_addr())
                .secret("open sesame")
                .await
                .unwrap();
            assert_eq!(CalcClient::new(&good).add(1, 2).await.unwrap(), 3);

            let e = rpc_transport::connect(server.local_addr())
                .secret("open barley")
                .await
                .unwrap_err();
            assert!(
                matches!(&e, RpcError::AuthFailed(m) if m.contains("wrong shared secret")),
                "{e:?}"
            );
            let e = rpc_transport::connect(server.local_addr())
                .await
                .unwrap_err();
            assert!(
                matches!(&e, RpcError::AuthFailed(m) if m.contains("requires a shared secret")),
                "{e:?}"
            );
            // The server saw (and logged) both rejections.
            let mut auth_failures = 0;
            while auth_failures < 2 {
                if let (_, DisconnectReason::AuthFailed) = next_disconnect(&mut events).await {
                    auth_failures += 1;
                }
            }
        })
        .await;
    }
}

#[tokio::test]
async fn a_client_with_a_secret_refuses_a_server_without_one() {
    within(10, async {
        let server = serve(Calc::default(), "tcp://127.0.0.1:0").await;
        let e = rpc_transport::connect(server.local_addr())
            .secret("x")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RpcError::AuthFailed(m) if m.contains("does not authenticate")),
            "{e:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_version_mismatch_is_a_clear_error() {
    within(10, async {
        // A fake server that speaks version 99.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("tcp://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut pre = rpc_core::__wire::MAGIC.to_vec();
            pre.extend_from_slice(&99u16.to_be_bytes());
            s.write_all(&pre).await.unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        });
        let e = rpc_transport::connect(addr.as_str()).await.unwrap_err();
        assert_eq!(
            e,
            RpcError::VersionMismatch {
                ours: rpc_core::__wire::VERSION,
                theirs: 99
            }
        );
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_calls_then_runs_close_hooks() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let gauge = Gauge::default();
            let closed = gauge.closed.clone();
            let server = serve(gauge, &addr).await;
            let client = rpc_transport::connect(server.local_addr()).await.unwrap();
            let g = GaugeClient::new(&client);
            let call = tokio::spawn(async move { g.hold(300).await });
            tokio::time::sleep(Duration::from_millis(50)).await;
            server.shutdown(Duration::from_secs(5)).await;
            // The call in flight finished before the goodbye.
            assert_eq!(call.await.unwrap().unwrap(), 1);
            assert_eq!(closed.load(Ordering::SeqCst), 1);
            assert_eq!(within(5, client.closed()).await, DisconnectReason::Shutdown);
        })
        .await;
    }
}

#[tokio::test]
async fn the_probe_tells_whether_a_server_answers() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let bound = server.local_addr().clone();
            assert!(server_available(&bound, Duration::from_secs(2)).await);
            drop(server);
            assert!(!server_available(&bound, Duration::from_secs(2)).await);
        })
        .await;
    }
}

#[tokio::test]
async fn a_live_unix_socket_is_in_use_and_a_stale_one_is_replaced() {
    within(10, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let addr = format!("unix://{}", path.display());
        let first = serve(Calc::default(), &addr).await;
        let e = Server::builder().bind(addr.as_str()).await.unwrap_err();
        assert!(
            matches!(&e, RpcError::Io(m) if m.kind() == std::io::ErrorKind::AddrInUse),
            "{e:?}"
        );
        drop(first);
        // A socket file whose listener is gone without cleanup is stale.
        let stale = std::os::unix::net::UnixListener::bind(dir.path().join("t.sock")).unwrap();
        drop(stale);
        let addr2 = format!("unix://{}", dir.path().join("t.sock").display());
        let second = serve(Calc::default(), &addr2).await;
        let client = rpc_transport::connect(second.local_addr()).await.unwrap();
        assert_eq!(CalcClient::new(&client).add(1, 1).await.unwrap(), 2);
    })
    .await;
}

#[tokio::test]
async fn the_ping_measures_a_round_trip() {
    within(10, async {
        let server = Server::builder().bind("tcp://127.0.0.1:0").await.unwrap();
        let client = rpc_transport::connect(server.local_addr()).await.unwrap();
        let rtt = client.ping().await.unwrap();
        assert!(rtt < Duration::from_secs(1));
    })
    .await;
}

/// Runs `server` on a current-thread runtime of its own, in a thread of
/// its own; the runtime, and every task it still has, ends with it.
fn on_own_thread<F, Fut>(server: F) -> std::thread::JoinHandle<Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future,
    Fut::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(server())
    })
}

/// Blocks its server's runtime thread on request, as SIGSTOP would.
pub struct Freezer;

#[rpc_core::expose]
impl Freezer {
    /// Blocks the server's runtime thread for `ms`.
    pub fn freeze(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// Answers at once.
    pub fn hello(&self) -> u32 {
        7
    }
}

/// A process that was paused (here: its runtime's only thread blocked for
/// three heartbeat timeouts, as SIGSTOP would) does not drop a healthy
/// client when it resumes: its late heartbeat timer pings before judging.
#[tokio::test]
async fn a_paused_server_pings_before_judging_its_clients() {
    within(20, async {
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server_thread = on_own_thread(move || async move {
            let config = PeerConfig::default()
                .heartbeat(Some(Duration::from_millis(100)), Duration::from_millis(300));
            let server = Server::builder()
                .expose(Freezer)
                .config(config)
                .bind("tcp://127.0.0.1:0")
                .await
                .unwrap();
            let mut events = server.events();
            addr_tx.send(server.local_addr().clone()).unwrap();
            let _ = stop_rx.await;
            // Every event up to now: no disconnect.
            let mut disconnects = Vec::new();
            while let Ok(Some(e)) =
                tokio::time::timeout(Duration::from_millis(50), events.recv()).await
            {
                if let Event::Disconnected { reason, .. } = e {
                    disconnects.push(reason);
                }
            }
            disconnects
        });
        let addr = addr_rx.await.unwrap();
        let client = rpc_transport::connect(&addr).await.unwrap();
        let freezer = FreezerClient::new(&client);
        freezer.freeze(1_000).await.unwrap();
        // Longer than the server's heartbeat timeout after it resumed.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(client.is_connected());
        assert_eq!(freezer.hello().await.unwrap(), 7);
        stop_tx.send(()).unwrap();
        let disconnects = tokio::task::spawn_blocking(move || server_thread.join().unwrap())
            .await
            .unwrap();
        assert!(disconnects.is_empty(), "{disconnects:?}");
    })
    .await;
}

/// A graceful shutdown with many clients and calls in flight, over TCP and
/// Unix, three times: every reply arrives, every client hears the goodbye
/// (`Shutdown`, never `ClosedByPeer`), and so does a call made the instant
/// `shutdown` returns. The server's runtime is dropped as soon as `shutdown`
/// returns, as a process that exits would be, so a goodbye not yet written
/// by then is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_of_a_graceful_shutdown_hears_it() {
    const CLIENTS: usize = 60;
    for round in 0..3 {
        for (addr, _dir) in addresses() {
            within(30, async {
                let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
                let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                let bind = addr.clone();
                // The runtime, and every task it still had, ends with
                // the thread.
                let server_thread = on_own_thread(move || async move {
                    let server = serve(Calc::default(), &bind).await;
                    addr_tx.send(server.local_addr().clone()).unwrap();
                    // Shut down once every client's call is in flight.
                    let _ = go_rx.await;
                    while server.peers().iter().map(|p| p.serving()).sum::<usize>() < CLIENTS {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    server.shutdown(Duration::from_secs(5)).await;
                    let _ = done_tx.send(());
                });
                let bound = addr_rx.await.unwrap();
                let mut clients = Vec::with_capacity(CLIENTS);
                for _ in 0..CLIENTS {
                    clients.push(rpc_transport::connect(&bound).await.unwrap());
                }
                let calls: Vec<_> = clients
                    .iter()
                    .map(|c| {
                        let calc = CalcClient::new(c);
                        tokio::spawn(async move { calc.slow(300).await })
                    })
                    .collect();
                go_tx.send(()).unwrap();
                done_rx.await.unwrap();
                let late = CalcClient::new(&clients[0]).add(1, 1).await;
                assert_eq!(
                    late,
                    Err(RpcError::ConnectionClosed(DisconnectReason::Shutdown)),
                    "round {round} over {addr}"
                );
                for call in calls {
                    assert_eq!(call.await.unwrap(), Ok(300), "round {round} over {addr}");
                }
                for (i, c) in clients.iter().enumerate() {
                    assert_eq!(
                        c.closed().await,
                        DisconnectReason::Shutdown,
                        "client {i}, round {round} over {addr}"
                    );
                }
                tokio::task::spawn_blocking(move || server_thread.join().unwrap())
                    .await
                    .unwrap();
            })
            .await;
        }
    }
}

/// A server that closes (shuts down) while a dialer's handshake is
/// finishing: the dialer has its verdict already, and hears that the
/// server shuts down rather than seeing its stream just end.
#[tokio::test]
async fn a_server_closed_during_the_handshake_says_it_is_shutting_down() {
    use rpc_core::{Peer, PeerConfig, Registry, Side};
    within(10, async {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (rd, wr) = tokio::io::split(a);
        let server = Peer::detached(Registry::new(), PeerConfig::default());
        server.close_with(DisconnectReason::Shutdown);
        let (accepted, dialed) = tokio::join!(
            server.attach(rd, wr, Side::Accept { connection_id: 1 }),
            Peer::connect(b, Registry::new(), PeerConfig::default()),
        );
        assert_eq!(
            accepted.unwrap_err(),
            RpcError::ConnectionClosed(DisconnectReason::Shutdown)
        );
        let client = dialed.unwrap();
        assert_eq!(client.closed().await, DisconnectReason::Shutdown);
    })
    .await;
}
