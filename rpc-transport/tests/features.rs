//! Builds without a kind of socket: its addresses still parse, and dialing
//! or binding one says which feature is missing. Runs only in such builds,
//! for example `cargo test -p rpc-transport --no-default-features --features tcp`.
#![cfg(any(not(feature = "tcp"), all(unix, not(feature = "unix"))))]

use std::time::Duration;

use rpc_core::RpcError;
use rpc_transport::{connect, Address, Server};

/// Dials and binds `addr`, expecting both to name `feature` as missing.
async fn refused_for_want_of(addr: &str, feature: &str) {
    assert!(addr.parse::<Address>().is_ok(), "{addr} must still parse");
    let dialed = tokio::time::timeout(Duration::from_secs(5), connect(addr))
        .await
        .expect("dialing must fail at once");
    let Err(RpcError::BadAddress(m)) = dialed else {
        panic!("dialing {addr}: expected BadAddress, got {dialed:?}");
    };
    assert!(m.contains(&format!("`{feature}` feature")), "{m}");
    let bound = Server::builder().bind(addr).await;
    let Err(RpcError::BadAddress(m)) = bound else {
        panic!("binding {addr}: expected BadAddress, got {bound:?}");
    };
    assert!(m.contains(&format!("`{feature}` feature")), "{m}");
}

#[cfg(all(unix, not(feature = "unix")))]
#[tokio::test]
async fn unix_address_without_the_unix_feature() {
    refused_for_want_of("unix:///tmp/rpc-transport-features.sock", "unix").await;
}

#[cfg(not(feature = "tcp"))]
#[tokio::test]
async fn tcp_address_without_the_tcp_feature() {
    refused_for_want_of("tcp://127.0.0.1:9", "tcp").await;
}
