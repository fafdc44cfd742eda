//! Streams over real sockets (TCP and Unix): both directions, credit,
//! cancellation, errors, many at once, limits, and a peer that cheats.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use rpc_core::{DisconnectReason, PeerConfig, Registry, RemoteError, RpcError};
use rpc_tests::fixtures::{Calc, CalcClient};
use rpc_tests::streams::{
    counted, Chunk, DropGuard, Dropped, ItemError, Source, Streamer, StreamerClient,
};
use rpc_tests::{addresses, next_disconnect, within};
use rpc_transport::Server;

async fn serve_streamer(streamer: Streamer, addr: &str, config: PeerConfig) -> Server {
    Server::builder()
        .expose(streamer)
        .expose(Calc::default())
        .config(config)
        .bind(addr)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_returned_stream_arrives_whole_and_in_order() {
    for (addr, _dir) in addresses() {
        within(30, async {
            let server = serve_streamer(Streamer::default(), &addr, PeerConfig::default()).await;
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let s = StreamerClient::new(&peer);
            let got: Vec<u32> = s
                .count(20_000)
                .await
                .unwrap()
                .map(|x| x.unwrap())
                .collect()
                .await;
            assert_eq!(got, (0..20_000).collect::<Vec<_>>());
            // An empty stream ends at once.
            let mut empty = s.count(0).await.unwrap();
            assert!(empty.next().await.is_none());
            // The connection is fine for calls afterwards.
            assert_eq!(CalcClient::new(&peer).add(1, 2).await.unwrap(), 3);
        })
        .await;
    }
}

#[tokio::test]
async fn an_input_stream_reaches_the_handler_and_both_ways_work_at_once() {
    for (addr, _dir) in addresses() {
        within(30, async {
            let server = serve_streamer(Streamer::default(), &addr, PeerConfig::default()).await;
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let s = StreamerClient::new(&peer);
            let sum = s.sum(futures::stream::iter(1..=10_000u32)).await.unwrap();
            assert_eq!(sum, Ok(50_005_000));
            let doubled: Vec<u32> = s
                .double(futures::stream::iter(0..5_000u32))
                .await
                .unwrap()
                .map(|x| x.unwrap())
                .collect()
                .await;
            assert_eq!(doubled, (0..5_000).map(|x| x * 2).collect::<Vec<_>>());
        })
        .await;
    }
}

#[tokio::test]
async fn a_server_streams_from_its_client_inside_a_callback() {
    for (addr, _dir) in addresses() {
        within(30, async {
            let server = serve_streamer(Streamer::default(), &addr, PeerConfig::default()).await;
            let mine = Registry::new();
            mine.expose(Source);
            let peer = rpc_transport::connect(server.local_addr())
                .registry(mine)
                .await
                .unwrap();
            let total = StreamerClient::new(&peer).sum_callers(1000).await.unwrap();
            assert_eq!(total.unwrap(), 500_500);
        })
        .await;
    }
}

/// The producer is polled only while there is credit: with a consumer that
/// has stopped reading, it runs a window ahead and no further.
#[tokio::test]
async fn a_producer_runs_only_as_far_as_the_credit() {
    for (addr, _dir) in addresses() {
        within(30, async {
            let streamer = Streamer::default();
            let window = 64 * 1024;
            let config = PeerConfig::default().stream_window(window);
            let server = serve_streamer(streamer.clone(), &addr, config).await;
            let peer = rpc_transport::connect(server.local_addr())
                .config(PeerConfig::default().stream_window(window))
                .await
                .unwrap();
            // Down: 100,000 items of 1 KiB, read one then wait.
            let mut s = StreamerClient::new(&peer)
                .chunks(100_000, 1024)
                .await
                .unwrap();
            assert!(s.next().await.is_some());
            tokio::time::sleep(Duration::from_millis(300)).await;
            let ahead = streamer.produced.load(Ordering::SeqCst);
            // A window of 1 KiB items, plus the one item that may overshoot
            // and the one read.
            let most = window as usize / 1024 + 2;
            assert!(ahead <= most, "produced {ahead} with {most} allowed");
            assert!(ahead >= 10, "the window was used: {ahead}");
            let rest = s.count().await;
            assert_eq!(rest + 1, 100_000);

            // Up: the handler waits 300 ms after its first item.
            let produced = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let input = counted(
                futures::stream::iter(0..100_000).map(|_| Chunk(vec![7; 1024])),
                produced.clone(),
            );
            let client = StreamerClient::new(&peer);
            let reader = client.slow_reader(300, input);
            let watch = async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                produced.load(Ordering::SeqCst)
            };
            let (read, ahead) = tokio::join!(reader, watch);
            assert_eq!(read.unwrap(), 100_000);
            // The server's window (64 KiB by default) of 1 KiB items.
            assert!(
                ahead <= 64 + 2,
                "the caller's input ran {ahead} items ahead"
            );
        })
        .await;
    }
}

#[tokio::test]
async fn dropping_a_receiving_end_stops_its_producer() {
    for (addr, _dir) in addresses() {
        within(30, async {
            let streamer = Streamer::default();
            let server = serve_streamer(streamer.clone(), &addr, PeerConfig::default()).await;
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let client = StreamerClient::new(&peer);

            // Down: the caller drops the stream after three items.
            let mut s = client.chunks(1_000_000, 16).await.unwrap();
            for _ in 0..3 {
                s.next().await.unwrap().unwrap();
            }
            drop(s);
            tokio::time::timeout(Duration::from_secs(5), streamer.dropped.wait(1))
                .await
                .expect("the server's producer was dropped");

            // Up: the handler drops its input after three items; the
            // caller's producer is dropped, and the call returns.
            let dropped = std::sync::Arc::new(Dropped::default());
            let guard = DropGuard(dropped.clone());
            let input = futures::stream::iter(0..u32::MAX).map(move |_| {
                let _ = &guard;
                Chunk(vec![1; 16])
            });
            assert_eq!(client.take(3, input).await.unwrap(), 3);
            tokio::time::timeout(Duration::from_secs(5), dropped.wait(1))
                .await
                .expect("the caller's input was dropped");

            // Dropping the stream gave its call slot back: calls go on.
            assert_eq!(CalcClient::new(&peer).add(2, 2).await.unwrap(), 4);
        })
        .await;
    }
}

#[tokio::test]
async fn a_call_timeout_covers_its_stream() {
    within(30, async {
        let streamer = Streamer::default();
        let server =
            serve_streamer(streamer.clone(), "tcp://127.0.0.1:0", PeerConfig::default()).await;
        let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
        let client = StreamerClient::new(&peer).with_timeout(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let mut s = client.forever().await.unwrap();
        assert_eq!(s.next().await, Some(Err(RpcError::Timeout)));
        assert_eq!(s.next().await, None);
        assert!(started.elapsed() >= Duration::from_millis(200));
        tokio::time::timeout(Duration::from_secs(5), streamer.dropped.wait(1))
            .await
            .expect("the producer was dropped at the deadline");
    })
    .await;
}

#[tokio::test]
async fn items_carry_typed_errors_and_a_framework_error_ends_the_stream() {
    within(30, async {
        let server = serve_streamer(
            Streamer::default(),
            "tcp://127.0.0.1:0",
            PeerConfig::default(),
        )
        .await;
        let peer = rpc_transport::connect(server.local_addr())
            .config(PeerConfig::default().max_frame(4096))
            .await
            .unwrap();
        let client = StreamerClient::new(&peer);
        let items: Vec<Result<u32, ItemError>> = client
            .checked(4)
            .await
            .unwrap()
            .map(|x| x.unwrap())
            .collect()
            .await;
        assert_eq!(
            items,
            [Ok(0), Err(ItemError::Odd(1)), Ok(2), Err(ItemError::Odd(3))]
        );

        // An item over the caller's frame limit ends the stream with the
        // callee's error; the connection stays up.
        let mut s = client.chunks(3, 10_000).await.unwrap();
        match s.next().await {
            Some(Err(RpcError::Remote(RemoteError::Failed(m)))) => {
                assert!(m.contains("too large") || m.contains("limit"), "{m}")
            }
            other => panic!("expected the stream to fail: {other:?}"),
        }
        assert!(s.next().await.is_none());
        assert_eq!(CalcClient::new(&peer).add(1, 1).await.unwrap(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_lost_connection_ends_every_open_stream_with_the_reason() {
    for (addr, _dir) in addresses() {
        within(30, async {
            let streamer = Streamer::default();
            let server = serve_streamer(streamer.clone(), &addr, PeerConfig::default()).await;
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let client = StreamerClient::new(&peer);
            let mut streams = Vec::new();
            for _ in 0..10 {
                streams.push(client.forever().await.unwrap());
            }
            server.shutdown(Duration::from_millis(100)).await;
            for mut s in streams {
                match s.next().await {
                    Some(Err(RpcError::ConnectionClosed(reason))) => {
                        assert_eq!(reason, DisconnectReason::Shutdown)
                    }
                    other => panic!("expected the connection's end: {other:?}"),
                }
                assert!(s.next().await.is_none());
            }
            streamer.dropped.wait(10).await;
        })
        .await;
    }
}

/// A thousand streams at once on one connection, both ways, with calls in
/// between: every stream and every call completes.
#[tokio::test]
async fn a_thousand_streams_and_calls_share_one_connection() {
    for (addr, _dir) in addresses() {
        within(60, async {
            let config = PeerConfig::default().max_streams(1024);
            let server = serve_streamer(Streamer::default(), &addr, config).await;
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let client = StreamerClient::new(&peer);
            let calc = CalcClient::new(&peer);
            let downs = (0..500u32).map(|i| {
                let client = client.clone();
                async move {
                    let got: Vec<u32> = client
                        .count(i % 50)
                        .await
                        .unwrap()
                        .map(|x| x.unwrap())
                        .collect()
                        .await;
                    assert_eq!(got.len() as u32, i % 50);
                }
            });
            let ups = (0..500u32).map(|i| {
                let client = client.clone();
                async move {
                    let sum = client
                        .sum(futures::stream::iter(0..(i % 50)))
                        .await
                        .unwrap();
                    assert_eq!(
                        sum.unwrap(),
                        u64::from((i % 50) * (i % 50).saturating_sub(1) / 2)
                    );
                }
            });
            let calls = (0..500i64).map(|i| {
                let calc = calc.clone();
                async move { assert_eq!(calc.add(i, 1).await.unwrap(), i + 1) }
            });
            tokio::join!(
                futures::future::join_all(downs),
                futures::future::join_all(ups),
                futures::future::join_all(calls),
            );
        })
        .await;
    }
}

#[tokio::test]
async fn the_stream_limit_is_a_clear_error() {
    within(30, async {
        let server = serve_streamer(
            Streamer::default(),
            "tcp://127.0.0.1:0",
            PeerConfig::default().max_streams(2),
        )
        .await;
        let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
        let client = StreamerClient::new(&peer);
        let a = client.forever().await.unwrap();
        let _b = client.forever().await.unwrap();
        let e = client.forever().await.unwrap_err();
        assert_eq!(
            e,
            RpcError::Remote(RemoteError::TooManyStreams { limit: 2 })
        );
        let e = client.sum(futures::stream::iter(0..3)).await.unwrap_err();
        assert_eq!(
            e,
            RpcError::Remote(RemoteError::TooManyStreams { limit: 2 })
        );
        // Closing one frees its place.
        drop(a);
        let mut c = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match client.count(2).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(c.next().await, Some(Ok(0)));
    })
    .await;
}

/// A peer that sends more than the credit it was granted is disconnected;
/// other connections carry on.
#[tokio::test]
async fn a_peer_sending_past_its_credit_is_disconnected() {
    use rpc_core::__wire::{decode_header, Header, Way};
    use rpc_tests::raw::{connected, read_frame, send_frame};

    within(30, async {
        let server = serve_streamer(
            Streamer::default(),
            "tcp://127.0.0.1:0",
            PeerConfig::default(),
        )
        .await;
        let mut events = server.events();
        let honest = rpc_transport::connect(server.local_addr()).await.unwrap();
        let mut s = connected(server.local_addr()).await;
        let call = Header::Call {
            id: 1,
            target: "Streamer.slow_reader",
            timeout_ms: 0,
        };
        send_frame(&mut s, &call, &(60_000u64,)).await.unwrap();
        // The handler grants the first credit.
        let frame = read_frame(&mut s).await;
        let (header, _) = decode_header(&frame).unwrap();
        let Header::Credit {
            id: 1,
            way: Way::Up,
            bytes,
        } = header
        else {
            panic!("expected a credit, got {header:?}")
        };
        // Send twice the credit, without waiting for more.
        let item = Chunk(vec![0; 1000]);
        let mut sent = 0;
        while sent <= 2 * bytes as usize {
            let r = send_frame(
                &mut s,
                &Header::Item {
                    id: 1,
                    way: Way::Up,
                },
                &item,
            )
            .await;
            if r.is_err() {
                break;
            }
            sent += 1010;
        }
        let (_, reason) = next_disconnect(&mut events).await;
        assert!(
            matches!(&reason, DisconnectReason::Protocol(m) if m.contains("beyond the credit")),
            "{reason:?}"
        );
        assert_eq!(CalcClient::new(&honest).add(3, 4).await.unwrap(), 7);
    })
    .await;
}

/// Publish/subscribe over a socket: a subscriber that keeps up gets every
/// item in order; one that falls behind gets a bounded tail and the count of
/// what it missed; subscriptions end when either side goes away.
#[tokio::test]
async fn pubsub_bounds_slow_subscribers_and_ends_with_either_side() {
    use rpc_core::pubsub::{Hub, HubClient, Published};

    for (addr, _dir) in addresses() {
        within(60, async {
            let hub: Hub<u32> = Hub::with_capacity(16);
            let topic = hub.topic("numbers");
            let server = Server::builder()
                .expose(hub.clone())
                .bind(addr.as_str())
                .await
                .unwrap();
            let fast_peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let slow_peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let mut fast = HubClient::<u32>::new(&fast_peer)
                .subscribe("numbers")
                .await
                .unwrap();
            let mut slow = HubClient::<u32>::new(&slow_peer)
                .subscribe("numbers")
                .await
                .unwrap();
            while topic.subscribers() < 2 {
                tokio::task::yield_now().await;
            }

            const N: u32 = 5_000;
            let reader = tokio::spawn(async move {
                let (mut seen, mut missed, mut last) = (0u64, 0u64, None);
                while seen + missed < u64::from(N) {
                    match fast.next().await.unwrap().unwrap() {
                        Published::Item(n) => {
                            assert!(last.is_none_or(|l| n > l), "in order");
                            last = Some(n);
                            seen += 1;
                        }
                        Published::Missed(k) => missed += k,
                    }
                }
                (seen, missed, fast)
            });
            for n in 0..N {
                topic.publish(n);
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            let (seen, missed, mut fast) = reader.await.unwrap();
            assert_eq!(seen + missed, u64::from(N));
            assert!(seen > 0);

            // The slow one read nothing until now: a bounded tail, and the
            // count of the rest.
            let mut tail = 0u64;
            let mut told = 0u64;
            loop {
                match tokio::time::timeout(Duration::from_millis(300), slow.next()).await {
                    Ok(Some(Ok(Published::Item(_)))) => tail += 1,
                    Ok(Some(Ok(Published::Missed(k)))) => told += k,
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(_) => break,
                }
            }
            assert_eq!(tail + told, u64::from(N), "tail {tail}, missed {told}");
            assert!(told > 0, "the slow subscriber fell behind");
            // What reached it: the stream's window of small items plus the
            // topic's buffer of 16, not all 5,000.
            assert!(tail < 2_000, "tail {tail}");

            // The subscriber leaves: the server's side goes.
            drop(slow);
            slow_peer.close().await;
            tokio::time::timeout(Duration::from_secs(5), async {
                while topic.subscribers() > 1 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the closed subscription was dropped on the server");

            // The topic goes away on the server: the stream ends cleanly.
            assert!(hub.remove("numbers"));
            drop(topic);
            assert_eq!(
                tokio::time::timeout(Duration::from_secs(5), fast.next())
                    .await
                    .unwrap(),
                None
            );
        })
        .await;
    }
}
