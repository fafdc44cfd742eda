//! The foundation over real sockets, each test over TCP and over a Unix
//! socket: calls both ways, re-entrant callbacks, many concurrent calls,
//! errors, panics, lost connections and hostile bytes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rpc_core::{DisconnectReason, RemoteError, RpcError};
use rpc_tests::fixtures::{Calc, CalcClient, MathError, Progress, ProgressClient};
use rpc_tests::raw::{connected, raw, read_until_closed};
use rpc_tests::{accepted, addresses, init_tracing, next_disconnect, serve, within};
use rpc_transport::Server;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn calls_go_both_ways() {
    init_tracing();
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let mut events = server.events();
            let progress = Progress::default();
            let client = rpc_transport::connect(server.local_addr())
                .expose(progress.clone())
                .await
                .unwrap();
            let server_side = accepted(&mut events).await;

            let calc = CalcClient::new(&client);
            assert_eq!(calc.add(2, 3).await.unwrap(), 5);
            // The server calls the object the client exposed.
            let back = ProgressClient::new(&server_side);
            assert_eq!(back.report(4, 9).await.unwrap(), 40);
            assert_eq!(back.double(21).await.unwrap(), 42);
            assert_eq!(*progress.seen.lock().unwrap(), vec![(4, 9)]);
            // Dynamic calls by name, both ways.
            let n: i64 = client.call("Calc.add", &(40i64, 2i64)).await.unwrap();
            assert_eq!(n, 42);
            let n: u64 = server_side.call("Progress.double", &(5u64,)).await.unwrap();
            assert_eq!(n, 10);
        })
        .await;
    }
}

#[tokio::test]
async fn handler_calls_back_into_its_caller_during_the_call() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let progress = Progress::default();
            let client = rpc_transport::connect(server.local_addr())
                .expose(progress.clone())
                .await
                .unwrap();
            let sum = CalcClient::new(&client).long_job(5).await.unwrap().unwrap();
            assert_eq!(sum, 10 * (1 + 2 + 3 + 4));
            let seen = progress.seen.lock().unwrap().clone();
            assert_eq!(seen, (0..5).map(|i| (i, 5)).collect::<Vec<_>>());
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_each_way_on_one_connection() {
    for (addr, _dir) in addresses() {
        within(30, async {
            let server = serve(Calc::default(), &addr).await;
            let mut events = server.events();
            let client = rpc_transport::connect(server.local_addr())
                .expose(Progress::default())
                .await
                .unwrap();
            let server_side = accepted(&mut events).await;
            let calc = CalcClient::new(&client);
            let back = ProgressClient::new(&server_side);
            let out = join_all((0..1000i64).map(|i| {
                let calc = calc.clone();
                async move { (i, calc.add(i, i * 1000).await.unwrap()) }
            }));
            let back_calls = join_all((0..1000u64).map(|i| {
                let back = back.clone();
                async move { (i, back.double(i).await.unwrap()) }
            }));
            let (out, back_out) = tokio::join!(out, back_calls);
            for (i, r) in out {
                assert_eq!(r, i + i * 1000);
            }
            for (i, r) in back_out {
                assert_eq!(r, i * 2);
            }
        })
        .await;
    }
}

#[tokio::test]
async fn unknown_names_and_wrong_arguments_are_clear_errors() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let client = rpc_transport::connect(server.local_addr()).await.unwrap();
            let e = client
                .call::<i64, _>("Nope.add", &(1i64, 2i64))
                .await
                .unwrap_err();
            assert_eq!(
                e,
                RpcError::Remote(RemoteError::UnknownObject("Nope".into()))
            );
            let e = client
                .call::<i64, _>("Calc.mul", &(1i64, 2i64))
                .await
                .unwrap_err();
            assert_eq!(
                e,
                RpcError::Remote(RemoteError::UnknownMethod {
                    object: "Calc".into(),
                    method: "mul".into()
                })
            );
            // A string where two integers are expected.
            let e = client
                .call::<i64, _>("Calc.add", &("two", "three"))
                .await
                .unwrap_err();
            assert!(
                matches!(e, RpcError::Remote(RemoteError::BadArguments(_))),
                "{e:?}"
            );
            // Too few arguments.
            let e = client
                .call::<i64, _>("Calc.add", &(1i64,))
                .await
                .unwrap_err();
            assert!(
                matches!(e, RpcError::Remote(RemoteError::BadArguments(_))),
                "{e:?}"
            );
            // The reply is not what the caller expects.
            let e = client
                .call::<String, _>("Calc.add", &(1i64, 2i64))
                .await
                .unwrap_err();
            assert!(matches!(e, RpcError::BadReply(_)), "{e:?}");
            // Typed application errors arrive as values, not as RpcError.
            let calc = CalcClient::new(&client);
            assert_eq!(calc.div(7, 0).await.unwrap(), Err(MathError::DivideByZero));
            assert_eq!(calc.div(7, 2).await.unwrap(), Ok(3));
            // The connection still works.
            assert_eq!(calc.add(1, 1).await.unwrap(), 2);
        })
        .await;
    }
}

#[tokio::test]
async fn a_panicking_handler_fails_only_its_call() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let client = rpc_transport::connect(server.local_addr()).await.unwrap();
            let calc = CalcClient::new(&client);
            let slow = calc.slow(200);
            let boom = async {
                assert_eq!(
                    calc.boom().await.unwrap_err(),
                    RpcError::Remote(RemoteError::Panicked("kaboom".into()))
                );
                assert_eq!(
                    calc.boom_at_once().await.unwrap_err(),
                    RpcError::Remote(RemoteError::Panicked("kaboom at once".into()))
                );
                assert_eq!(
                    calc.boom_later().await.unwrap_err(),
                    RpcError::Remote(RemoteError::Panicked("kaboom later".into()))
                );
            };
            let (slow, ()) = tokio::join!(slow, boom);
            assert_eq!(slow.unwrap(), 200);
            assert_eq!(calc.add(2, 2).await.unwrap(), 4);
        })
        .await;
    }
}

#[tokio::test]
async fn dropping_the_server_mid_call_fails_the_call_promptly() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let client = rpc_transport::connect(server.local_addr()).await.unwrap();
            let calc = CalcClient::new(&client);
            let call = tokio::spawn(async move { calc.slow(60_000).await });
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = Instant::now();
            drop(server);
            let e = call.await.unwrap().unwrap_err();
            assert!(e.is_connection_error(), "{e:?}");
            assert!(t.elapsed() < Duration::from_secs(5));
            // Later calls fail at once too.
            let e = CalcClient::new(&client).add(1, 2).await.unwrap_err();
            assert!(e.is_connection_error(), "{e:?}");
        })
        .await;
    }
}

#[tokio::test]
async fn a_client_that_vanishes_fails_the_servers_calls_to_it() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let mut events = server.events();
            let client = rpc_transport::connect(server.local_addr())
                .expose(Progress::default())
                .await
                .unwrap();
            let server_side = accepted(&mut events).await;
            let id = server_side.connection_id();
            // A call from the server that the client will never answer: the
            // client goes away first.
            let call = tokio::spawn({
                let p = server_side.clone();
                async move { p.call::<u32, _>("Progress.never", &()).await }
            });
            drop(client);
            let e = call.await.unwrap();
            // Either the client answered UnknownMethod before going, or the
            // call failed with the connection; it never hangs.
            assert!(
                matches!(e, Err(RpcError::Remote(RemoteError::UnknownMethod { .. })))
                    || e.as_ref().unwrap_err().is_connection_error(),
                "{e:?}"
            );
            assert_eq!(
                next_disconnect(&mut events).await,
                (id, DisconnectReason::ClosedByPeer)
            );
            let e = ProgressClient::new(&server_side)
                .double(1)
                .await
                .unwrap_err();
            assert!(e.is_connection_error(), "{e:?}");
            assert!(server.peer(id).is_none());
        })
        .await;
    }
}

#[tokio::test]
async fn hostile_bytes_close_only_their_own_connection() {
    for (addr, _dir) in addresses() {
        within(20, async {
            let server = serve(Calc::default(), &addr).await;
            let mut events = server.events();
            let good = rpc_transport::connect(server.local_addr()).await.unwrap();
            let calc = CalcClient::new(&good);

            // 1. Garbage instead of a handshake.
            let mut s = raw(server.local_addr()).await;
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            read_until_closed(&mut s).await;

            // 2. A 4 GiB length prefix where the hello should be.
            let mut s = raw(server.local_addr()).await;
            let mut pre = rpc_core::__wire::MAGIC.to_vec();
            pre.extend_from_slice(&rpc_core::__wire::VERSION.to_be_bytes());
            pre.extend_from_slice(&u32::MAX.to_le_bytes());
            s.write_all(&pre).await.unwrap();
            read_until_closed(&mut s).await;

            // 3. A 4 GiB length prefix after a valid handshake.
            let mut s = connected(server.local_addr()).await;
            s.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
            read_until_closed(&mut s).await;

            // 4. A well-formed length with a garbage header after a valid handshake.
            let mut s = connected(server.local_addr()).await;
            s.write_all(&[5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff])
                .await
                .unwrap();
            read_until_closed(&mut s).await;

            // Each hostile connection was dropped with a protocol reason.
            let mut protocol_errors = 0;
            while protocol_errors < 4 {
                if let (_, DisconnectReason::Protocol(m)) = next_disconnect(&mut events).await {
                    assert!(!m.is_empty());
                    protocol_errors += 1;
                }
            }
            // The well-behaved clients, old and new, are served throughout.
            assert_eq!(calc.add(20, 22).await.unwrap(), 42);
            let second = rpc_transport::connect(server.local_addr()).await.unwrap();
            assert_eq!(CalcClient::new(&second).add(1, 2).await.unwrap(), 3);
        })
        .await;
    }
}

#[tokio::test]
async fn an_oversized_call_is_refused_before_sending() {
    within(10, async {
        let config = rpc_core::PeerConfig::default().max_frame(64 * 1024);
        let server = Server::builder()
            .expose(rpc_tests::fixtures::Calc::default())
            .config(config)
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let client = rpc_transport::connect(server.local_addr()).await.unwrap();
        let big = vec![0u8; 100 * 1024];
        let e = client
            .call::<u32, _>("Calc.add", &(big,))
            .await
            .unwrap_err();
        assert!(
            matches!(e, RpcError::TooLarge { limit: 65536, .. }),
            "{e:?}"
        );
        // Nothing was sent, the connection is intact.
        assert_eq!(CalcClient::new(&client).add(1, 2).await.unwrap(), 3);
        let _ = Calc::default().finished.load(Ordering::SeqCst);
    })
    .await;
}
