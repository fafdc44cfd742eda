//! Behaviour at the edges: default timeouts reach typed stubs, a timeout
//! covers waiting for a free slot, one-way traffic never starves calls,
//! objects exposed on one accepted peer stay private to that client, a
//! draining server refuses new calls, refusals and give-ups are reported
//! with their reason.

use std::time::{Duration, Instant};

use rpc_core::{expose, DisconnectReason, PeerConfig, RemoteError, RpcError, Status};
use rpc_tests::fixtures::{Calc, CalcClient, Gauge, GaugeClient};
use rpc_tests::{accepted, addresses, next_disconnect, serve, within};
use rpc_transport::{Backoff, Server};

#[tokio::test]
async fn a_typed_stub_uses_the_peers_default_timeout() {
    within(10, async {
        let server = serve(Calc::default(), "tcp://127.0.0.1:0").await;
        let client = rpc_transport::connect(server.local_addr())
            .call_timeout(Duration::from_millis(50))
            .await
            .unwrap();
        let calc = CalcClient::new(&client);
        assert_eq!(calc.slow(1_000).await.unwrap_err(), RpcError::Timeout);
        // The stub's own timeout wins over the default.
        let patient = calc.clone().with_timeout(Duration::from_secs(5));
        assert_eq!(patient.slow(100).await.unwrap(), 100);
    })
    .await;
}

#[tokio::test]
async fn a_timeout_covers_the_wait_for_a_free_slot() {
    within(10, async {
        let server = Server::builder()
            .expose(Gauge::default())
            .config(PeerConfig::default().max_in_flight(1))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let client = rpc_transport::connect(server.local_addr()).await.unwrap();
        let g = GaugeClient::new(&client);
        // Holds the only slot for a while.
        let first = tokio::spawn({
            let g = g.clone();
            async move { g.hold(800).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        let e = g
            .clone()
            .with_timeout(Duration::from_millis(100))
            .hold(1)
            .await
            .unwrap_err();
        assert_eq!(e, RpcError::Timeout);
        // It gave up on its own deadline, not when the slot came free.
        assert!(
            t.elapsed() < Duration::from_millis(700),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(first.await.unwrap().unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn notifications_never_make_calls_busy() {
    within(10, async {
        let server = Server::builder()
            .expose(Gauge::default())
            .config(PeerConfig::default().max_in_flight(2))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let client = rpc_transport::connect(server.local_addr()).await.unwrap();
        for _ in 0..6 {
            client.notify("Gauge.hold", &(500u64,)).await.unwrap();
        }
        // Let them arrive and start.
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Both call slots are free: calls go through despite the one-way load.
        let g = GaugeClient::new(&client);
        let (a, b) = tokio::join!(g.hold(10), g.hold(10));
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    })
    .await;
}

/// An object a server exposes to one client only.
pub struct Locker {
    /// Whose locker it is.
    pub owner: String,
}

#[expose]
impl Locker {
    /// The owner's name.
    pub fn owner(&self) -> String {
        self.owner.clone()
    }
}

#[tokio::test]
async fn an_object_exposed_on_an_accepted_peer_is_private_to_that_client() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let mut events = server.events();
            let alice = rpc_transport::connect(server.local_addr()).await.unwrap();
            let alice_side = accepted(&mut events).await;
            let bob = rpc_transport::connect(server.local_addr()).await.unwrap();
            let _bob_side = accepted(&mut events).await;

            alice_side.expose(Locker {
                owner: "alice".into(),
            });
            assert_eq!(LockerClient::new(&alice).owner().await.unwrap(), "alice");
            let e = LockerClient::new(&bob).owner().await.unwrap_err();
            assert_eq!(
                e,
                RpcError::Remote(RemoteError::UnknownObject("Locker".into()))
            );
            // The server's shared objects still reach both.
            assert_eq!(CalcClient::new(&alice).add(1, 2).await.unwrap(), 3);
            assert_eq!(CalcClient::new(&bob).add(2, 2).await.unwrap(), 4);
            // Objects the server adds later reach every client too.
            server.registry().expose_as("late", Calc::default());
            let late = CalcClient::with_name(&bob, "late");
            assert_eq!(late.add(5, 5).await.unwrap(), 10);
        })
        .await;
    }
}

#[tokio::test]
async fn a_draining_server_refuses_new_calls_and_finishes_running_ones() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Gauge::default(), &addr).await;
            let client = rpc_transport::connect(server.local_addr()).await.unwrap();
            let g = GaugeClient::new(&client);
            let running = tokio::spawn({
                let g = g.clone();
                async move { g.hold(1_500).await }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            let shutdown = tokio::spawn(server.shutdown(Duration::from_secs(5)));
            // Once the shutdown task has run, new calls are refused while
            // the long one is still running.
            loop {
                match g.hold(1).await {
                    Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    Err(e) => {
                        assert_eq!(e, RpcError::Remote(RemoteError::ShuttingDown));
                        break;
                    }
                }
            }
            assert!(!running.is_finished());
            assert_eq!(running.await.unwrap().unwrap(), 1);
            shutdown.await.unwrap();
            // The client learns why the connection ended.
            assert_eq!(within(5, client.closed()).await, DisconnectReason::Shutdown);
        })
        .await;
    }
}

#[tokio::test]
async fn a_refused_connection_is_reported_in_the_events() {
    within(10, async {
        let server = Server::builder()
            .expose(Calc::default())
            .max_connections(1)
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let mut events = server.events();
        let _first = rpc_transport::connect(server.local_addr()).await.unwrap();
        let e = rpc_transport::connect(server.local_addr())
            .await
            .unwrap_err();
        assert!(matches!(e, RpcError::Refused(_)), "{e:?}");
        let (_, reason) = next_disconnect(&mut events).await;
        assert!(
            matches!(&reason, DisconnectReason::Refused(m) if m.contains("too many")),
            "{reason:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_reconnecting_client_that_gives_up_tells_why() {
    for (addr, _dir) in addresses() {
        within(20, async {
            let server = Server::builder()
                .expose(Calc::default())
                .secret("first")
                .bind(addr.as_str())
                .await
                .unwrap();
            let bound = server.local_addr().clone();
            let client = rpc_transport::connect(&bound)
                .secret("first")
                .reconnect(Backoff::default().initial(Duration::from_millis(20)))
                .await
                .unwrap();
            let mut status = client.status();
            // The server comes back with another secret.
            drop(server);
            status
                .wait_for(|s| *s == Status::Reconnecting)
                .await
                .unwrap();
            let _server = Server::builder()
                .expose(Calc::default())
                .secret("second")
                .bind(&bound)
                .await
                .unwrap();
            while *status.borrow_and_update() != Status::Closed {
                status.changed().await.unwrap();
            }
            assert_eq!(client.closed().await, DisconnectReason::AuthFailed);
            let e = CalcClient::new(&client).add(1, 1).await.unwrap_err();
            assert_eq!(e, RpcError::ConnectionClosed(DisconnectReason::AuthFailed));
        })
        .await;
    }
}

/// Echoes bytes back.
pub struct Mirror;

#[expose]
impl Mirror {
    /// Returns `data` unchanged.
    pub fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }
}

#[tokio::test]
async fn a_client_that_sends_but_never_reads_is_dropped_not_buffered_forever() {
    use rpc_core::__wire::Header;
    use rpc_tests::raw::{connected, send_frame};

    for (addr, _dir) in addresses() {
        within(30, async {
            let server = Server::builder()
                .expose(Mirror)
                .config(PeerConfig::default().max_send_queue(1 << 20))
                .bind(addr.as_str())
                .await
                .unwrap();
            let mut events = server.events();
            let mut s = connected(server.local_addr()).await;
            // 64 KiB calls, replies never read: far more than the kernel's
            // socket buffers and the 1 MiB send-queue limit hold.
            let chunk = vec![7u8; 64 * 1024];
            for id in 1..=400u64 {
                let call = Header::Call {
                    id,
                    target: "Mirror.echo",
                    timeout_ms: 0,
                };
                if send_frame(&mut s, &call, &(&chunk,)).await.is_err() {
                    break; // the server already hung up
                }
            }
            let (_, reason) = next_disconnect(&mut events).await;
            assert!(
                matches!(reason, DisconnectReason::Stalled { queued } if queued > 1 << 20),
                "{reason:?}"
            );
            drop(s);
            // Everyone else is still served.
            let good = rpc_transport::connect(server.local_addr()).await.unwrap();
            let back = MirrorClient::new(&good).echo(vec![1, 2, 3]).await.unwrap();
            assert_eq!(back, vec![1, 2, 3]);
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_server_frees_its_address_at_once() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let mut server = serve(Calc::default(), &addr).await;
            let bound = server.local_addr().clone();
            for _ in 0..20 {
                let client = rpc_transport::connect(&bound).await.unwrap();
                assert_eq!(CalcClient::new(&client).add(1, 1).await.unwrap(), 2);
                drop(server);
                // No wait: the listening socket is closed by `drop` itself.
                server = serve(Calc::default(), &bound).await;
            }
        })
        .await;
    }
}

#[tokio::test]
async fn an_oversized_byte_vector_reports_its_real_size() {
    within(10, async {
        let server = Server::builder()
            .expose(Mirror)
            .config(PeerConfig::default().max_frame(64 * 1024))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let client = rpc_transport::connect(server.local_addr()).await.unwrap();
        let e = MirrorClient::new(&client)
            .echo(vec![0; 100 * 1024])
            .await
            .unwrap_err();
        match e {
            RpcError::TooLarge { size, limit } => {
                assert_eq!(limit, 64 * 1024);
                assert!(size > 100 * 1024, "{size}");
            }
            other => panic!("{other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn a_connection_still_shaking_hands_does_not_outlive_shutdown() {
    use rpc_tests::raw::{handshake_by_hand, raw, read_until_closed};

    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let bound = server.local_addr().clone();
            // An application still listening to the events (which would
            // hold a peer that connected, keeping it open).
            let mut events = server.events();
            // Connected, but the hello is not sent yet: the server waits in
            // its handshake.
            let mut s = raw(&bound).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            server.shutdown(Duration::ZERO).await;
            // The handshake now completes, and the connection is closed
            // right after instead of being served.
            handshake_by_hand(&mut s).await;
            read_until_closed(&mut s).await;
            let (_, reason) = next_disconnect(&mut events).await;
            assert_eq!(reason, DisconnectReason::Shutdown);
        })
        .await;
    }
}

#[tokio::test]
async fn connecting_to_a_listener_that_never_accepts_times_out() {
    within(20, async {
        // A listener with a backlog of one that never accepts: once its
        // queue is full, the kernel drops new connection attempts, so a
        // dial would wait for minutes of retries.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..3 {
            let attempt = tokio::net::TcpStream::connect(addr);
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), attempt).await {
                queued.push(s);
            }
        }
        let config = PeerConfig::default().handshake_timeout(Duration::from_millis(300));
        let t = Instant::now();
        let e = rpc_transport::connect(format!("tcp://{addr}").as_str())
            .config(config)
            .await
            .unwrap_err();
        assert_eq!(e, RpcError::HandshakeTimeout(Duration::from_millis(300)));
        // Dialing and the handshake are each bounded by the timeout.
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        drop(listener);
    })
    .await;
}

/// An `Error` frame carries only the remote's verdict on one call: whatever
/// bytes it holds (here, among others, the version-1 encodings of "connection
/// closed", "not connected", "timed out" and an i/o error), the caller sees
/// a call-level error and the connection stays up.
#[tokio::test]
async fn an_error_frame_cannot_make_a_live_connection_look_closed() {
    use rpc_core::__wire::{decode_header, Header, LEN_PREFIX};
    use rpc_tests::raw::{connected, read_frame};
    use tokio::io::AsyncWriteExt;

    for (addr, _dir) in addresses() {
        within(20, async {
            let server = serve(Calc::default(), &addr).await;
            let mut events = server.events();
            let mut s = connected(server.local_addr()).await;
            let peer = accepted(&mut events).await;
            let mut payloads: Vec<Vec<u8>> = vec![vec![], vec![0xff; 3]];
            for kind in 0..=24u8 {
                payloads.push(vec![kind]);
                payloads.push(vec![kind, 0]);
                payloads.push(vec![kind, 1, b'x']);
                payloads.push(vec![kind, 2, b'x', b'y', 0]);
            }
            for payload in &payloads {
                // The server calls the raw client, which answers with an
                // `Error` frame holding `payload`.
                let call = tokio::spawn({
                    let peer = peer.clone();
                    async move { peer.call::<u32, _>("Raw.anything", &()).await }
                });
                let frame = read_frame(&mut s).await;
                let (header, _) = decode_header(&frame).unwrap();
                let Header::Call { id, .. } = header else {
                    panic!("expected a call, got {header:?}")
                };
                let mut out = Vec::new();
                rpc_core::__wire::encode_frame(&mut out, &Header::Error { id }, &()).unwrap();
                out.extend_from_slice(payload);
                let len = (out.len() - LEN_PREFIX) as u32;
                out[..LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
                s.write_all(&out).await.unwrap();
                let err = call.await.unwrap().unwrap_err();
                assert!(
                    matches!(err, RpcError::Remote(_) | RpcError::Protocol(_)),
                    "{payload:?} became {err:?}"
                );
                assert!(!err.is_connection_error(), "{payload:?} became {err:?}");
                assert!(peer.is_connected(), "{payload:?} closed the connection");
            }
            // A well-formed verdict comes through as itself.
            let call = tokio::spawn({
                let peer = peer.clone();
                async move { peer.call::<u32, _>("Raw.anything", &()).await }
            });
            let frame = read_frame(&mut s).await;
            let Ok((Header::Call { id, .. }, _)) = decode_header(&frame) else {
                panic!("expected a call")
            };
            let mut out = Vec::new();
            let busy = RemoteError::Busy { limit: 3 };
            rpc_core::__wire::encode_frame(&mut out, &Header::Error { id }, &busy).unwrap();
            s.write_all(&out).await.unwrap();
            assert_eq!(call.await.unwrap(), Err(RpcError::Remote(busy)));
        })
        .await;
    }
}

/// Two calls in flight with one id: the second is a protocol error that
/// ends that connection (never two handlers for one id); an id may come
/// back once its call has ended.
#[tokio::test]
async fn a_duplicate_call_id_in_flight_ends_the_connection() {
    use rpc_core::__wire::{decode_header, Header};
    use rpc_tests::raw::{connected, read_frame, send_frame};

    for (addr, _dir) in addresses() {
        within(20, async {
            let server = serve(Calc::default(), &addr).await;
            let mut events = server.events();
            let mut s = connected(server.local_addr()).await;
            let _peer = accepted(&mut events).await;
            let add = |id| Header::Call {
                id,
                target: "Calc.add",
                timeout_ms: 0,
            };
            // Sequential reuse of an id is fine.
            for _ in 0..2 {
                send_frame(&mut s, &add(1), &(2i64, 3i64)).await.unwrap();
                let reply = read_frame(&mut s).await;
                assert_eq!(decode_header(&reply).unwrap().0, Header::Reply { id: 1 });
            }
            let slow = Header::Call {
                id: 9,
                target: "Calc.slow",
                timeout_ms: 0,
            };
            send_frame(&mut s, &slow, &(5_000u64,)).await.unwrap();
            send_frame(&mut s, &slow, &(5_000u64,)).await.unwrap();
            let (_, reason) = next_disconnect(&mut events).await;
            assert_eq!(
                reason,
                DisconnectReason::Protocol("call id 9 is already in flight".into())
            );
            // Others are still served.
            let good = rpc_transport::connect(server.local_addr()).await.unwrap();
            assert_eq!(CalcClient::new(&good).add(1, 2).await.unwrap(), 3);
        })
        .await;
    }
}

/// A frame that starts and then trickles in is cut at the frame deadline,
/// however steadily its bytes come; well-behaved clients are served
/// meanwhile.
#[tokio::test]
async fn a_trickled_frame_is_cut_at_the_frame_deadline() {
    use rpc_tests::raw::connected;
    use tokio::io::AsyncWriteExt;

    for (addr, _dir) in addresses() {
        within(20, async {
            let limit = Duration::from_millis(400);
            let server = Server::builder()
                .expose(Calc::default())
                .config(PeerConfig::default().frame_timeout(Some(limit)))
                .bind(addr.as_str())
                .await
                .unwrap();
            let mut events = server.events();
            let mut s = connected(server.local_addr()).await;
            let _peer = accepted(&mut events).await;
            let started = Instant::now();
            // A frame of 100,000 bytes, sent one byte every 20 ms.
            s.write_all(&100_000u32.to_le_bytes()).await.unwrap();
            let dripping = tokio::spawn(async move {
                for _ in 0..200 {
                    if s.write_all(&[0]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            let good = rpc_transport::connect(server.local_addr()).await.unwrap();
            assert_eq!(CalcClient::new(&good).add(1, 2).await.unwrap(), 3);
            let (_, reason) = next_disconnect(&mut events).await;
            assert_eq!(reason, DisconnectReason::FrameTimeout(limit));
            // The drip lasts 4 s: a deadline that the bytes moved would
            // cut the connection after that, not near the limit.
            let took = started.elapsed();
            assert!(took >= limit && took < Duration::from_secs(3), "{took:?}");
            assert_eq!(CalcClient::new(&good).add(2, 2).await.unwrap(), 4);
            dripping.abort();
        })
        .await;
    }
}

/// Silent sockets count against the handshake limit, not against
/// `max_connections`: they cannot lock clients out, and a client refused for
/// either limit hears why at once, with its address in the server's events.
#[tokio::test]
async fn silent_sockets_cannot_lock_clients_out_and_refusals_are_prompt() {
    for (addr, _dir) in addresses() {
        within(30, async {
            let server = Server::builder()
                .expose(Calc::default())
                .max_connections(3)
                .max_handshaking(20)
                .bind(addr.as_str())
                .await
                .unwrap();
            let mut events = server.events();
            // Ten sockets that connect and say nothing.
            let mut silent = Vec::new();
            for _ in 0..10 {
                silent.push(rpc_tests::raw::raw(server.local_addr()).await);
            }
            // Three clients still get in, past the ten silent sockets.
            let mut clients = Vec::new();
            for _ in 0..3 {
                let c = rpc_transport::connect(server.local_addr()).await.unwrap();
                assert_eq!(CalcClient::new(&c).add(1, 2).await.unwrap(), 3);
                clients.push(c);
            }
            // The fourth is refused at once, naming the limit.
            let t = Instant::now();
            let e = rpc_transport::connect(server.local_addr())
                .await
                .unwrap_err();
            assert_eq!(
                e,
                RpcError::Refused("too many connections (limit 3)".into())
            );
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
            let (reason, remote) = loop {
                match events.recv().await {
                    Some(rpc_transport::Event::Disconnected { reason, remote, .. }) => {
                        break (reason, remote)
                    }
                    Some(_) => {}
                    None => panic!("events ended"),
                }
            };
            assert_eq!(
                reason,
                DisconnectReason::Refused("too many connections (limit 3)".into())
            );
            assert!(!remote.is_empty());
            if addr.starts_with("tcp") {
                assert!(remote.starts_with("127.0.0.1:"), "{remote}");
            }
            // Fill the handshake limit with silent sockets: the next dialer is
            // refused for that, at once; the clients in are still served.
            drop(clients.pop());
            for _ in 0..10 {
                silent.push(rpc_tests::raw::raw(server.local_addr()).await);
            }
            let t = Instant::now();
            let e = rpc_transport::connect(server.local_addr())
                .await
                .unwrap_err();
            assert_eq!(
                e,
                RpcError::Refused("too many connections in their handshake (limit 20)".into())
            );
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
            assert_eq!(CalcClient::new(&clients[0]).add(2, 2).await.unwrap(), 4);
        })
        .await;
    }
}

/// A dialer that gets the opening wrong hears why before the server hangs
/// up, where the protocol lets it read a verdict.
#[tokio::test]
async fn a_dialer_with_another_version_is_told_why() {
    use rpc_core::__wire::{Handshake, Hello, Rejection, Verdict, MAGIC, VERSION};
    use rpc_tests::raw::{raw, read_frame};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let mut s = raw(server.local_addr()).await;
            let hello = Handshake::Hello(Hello {
                max_frame: 1 << 20,
                max_in_flight: 16,
                pake: None,
                name: None,
            });
            let body = postcard::to_stdvec(&hello).unwrap();
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&7u16.to_be_bytes());
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&body);
            s.write_all(&out).await.unwrap();
            let mut pre = [0u8; 6];
            s.read_exact(&mut pre).await.unwrap();
            let _their_hello = read_frame(&mut s).await;
            let verdict: Handshake = postcard::from_bytes(&read_frame(&mut s).await).unwrap();
            assert_eq!(
                verdict,
                Handshake::Verdict(Verdict::Rejected(Rejection::Protocol(format!(
                    "protocol version 7 not supported (this server speaks {VERSION})"
                ))))
            );
        })
        .await;
    }
}

/// A builder's result does not depend on the order of its calls: a secret
/// (or a name, or a call timeout) set before `.config(..)` still applies.
#[tokio::test]
async fn builder_settings_survive_a_later_config() {
    within(10, async {
        let config = PeerConfig::default().max_frame(1 << 20);
        let server = Server::builder()
            .secret("s3cret")
            .config(config.clone())
            .expose(Calc::default())
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let anonymous = rpc_transport::connect(server.local_addr()).await;
        assert!(
            matches!(anonymous, Err(RpcError::AuthFailed(_))),
            "{anonymous:?}"
        );
        let mut events = server.events();
        let client = rpc_transport::connect(server.local_addr())
            .secret("s3cret")
            .name("worker-7")
            .call_timeout(Duration::from_millis(50))
            .config(config)
            .await
            .unwrap();
        assert_eq!(client.config().max_frame_len(), 1 << 20);
        assert_eq!(
            client.config().default_call_timeout(),
            Some(Duration::from_millis(50))
        );
        let peer = accepted(&mut events).await;
        assert_eq!(peer.remote_name().as_deref(), Some("worker-7"));
        assert_eq!(CalcClient::new(&client).add(2, 3).await.unwrap(), 5);
    })
    .await;
}

/// `connect(..)` is a future itself: it goes into `join_all`, into
/// `tokio::spawn` and into functions that take `impl Future`.
#[tokio::test]
async fn connect_is_a_future() {
    async fn first<F: std::future::Future>(f: F) -> F::Output {
        f.await
    }

    within(10, async {
        let server = serve(Calc::default(), "tcp://127.0.0.1:0").await;
        let addr = server.local_addr().clone();
        let many: Vec<_> = (0..3).map(|_| rpc_transport::connect(&addr)).collect();
        for peer in futures::future::join_all(many).await {
            assert_eq!(CalcClient::new(&peer.unwrap()).add(1, 2).await.unwrap(), 3);
        }
        let spawned = tokio::spawn(rpc_transport::connect(&addr).name("spawned"));
        let peer = spawned.await.unwrap().unwrap();
        assert_eq!(CalcClient::new(&peer).add(2, 2).await.unwrap(), 4);
        let peer = first(rpc_transport::connect(&addr)).await.unwrap();
        assert_eq!(CalcClient::new(&peer).add(3, 3).await.unwrap(), 6);
    })
    .await;
}
