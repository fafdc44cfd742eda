//! The `tower` feature: a `Peer` and a `Balanced` set are tower services,
//! so tower's layers apply, and a peer's load is its calls in flight.

use std::time::Duration;

use rpc_core::tower::RawCall;
use rpc_core::RpcError;
use rpc_tests::fixtures::Calc;
use rpc_tests::within;
use rpc_transport::balance::{Balanced, Endpoints};
use rpc_transport::Server;
use tower::load::Load;
use tower::{Service, ServiceBuilder, ServiceExt};

fn slow(ms: u64) -> RawCall {
    RawCall::new("Calc.slow", postcard::to_stdvec(&(ms,)).unwrap())
}

#[tokio::test(flavor = "current_thread")]
async fn tower_layers_apply_to_a_peer_and_its_load_is_its_calls_in_flight() {
    within(20, async {
        let server = Server::builder()
            .expose(Calc::default())
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let peer = rpc_transport::connect(server.local_addr()).await.unwrap();

        // tower's timeout layer ends a slow call; a quick one goes through.
        let mut timed = ServiceBuilder::new()
            .timeout(Duration::from_millis(100))
            .service(peer.clone());
        let err = timed
            .ready()
            .await
            .unwrap()
            .call(slow(2_000))
            .await
            .unwrap_err();
        assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
        let reply = timed.ready().await.unwrap().call(slow(1)).await.unwrap();
        assert_eq!(postcard::from_bytes::<u64>(&reply).unwrap(), 1);

        // The load is the calls in flight, as the balancers compare it.
        let mut svc = peer.clone();
        let calls: Vec<_> = (0..3).map(|_| Service::call(&mut svc, slow(300))).collect();
        let running = tokio::spawn(futures::future::join_all(calls));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while peer.load() != 3 {
            assert!(std::time::Instant::now() < deadline, "load {}", peer.load());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for reply in running.await.unwrap() {
            assert_eq!(postcard::from_bytes::<u64>(&reply.unwrap()).unwrap(), 300);
        }
        assert_eq!(peer.load(), 0);

        // Errors stay the framework's own.
        let mut plain = peer.clone();
        let err = Service::call(&mut plain, RawCall::new("Nobody.home", Vec::new()))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Remote(_)), "{err:?}");
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_balanced_set_is_a_tower_service_too() {
    within(20, async {
        let one = Server::builder()
            .expose(Calc::default())
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let two = Server::builder()
            .expose(Calc::default())
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let set = Balanced::builder(Endpoints::new([one.local_addr(), two.local_addr()]).unwrap())
            .start();
        set.until_connected(2, Duration::from_secs(5))
            .await
            .unwrap();

        // A concurrency limit of 2 in front: 6 calls of 100 ms take at
        // least three rounds.
        let limited = ServiceBuilder::new()
            .concurrency_limit(2)
            .service(set.clone());
        let started = std::time::Instant::now();
        let replies = futures::future::join_all((0..6).map(|_| {
            let svc = limited.clone();
            async move { svc.oneshot(slow(100)).await }
        }))
        .await;
        for reply in replies {
            assert_eq!(postcard::from_bytes::<u64>(&reply.unwrap()).unwrap(), 100);
        }
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(set.load(), 0);
    })
    .await;
}
