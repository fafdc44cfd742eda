//! Helpers shared by the integration tests: both transports, a deadline on
//! every test, and log output when `RUST_LOG` is set.

pub mod backend;
pub mod fixtures;
pub mod pki;
pub mod raw;
pub mod streams;

use std::future::Future;
use std::time::Duration;

/// A fresh listening address of each kind: TCP on an ephemeral loopback
/// port, and a Unix socket in a new temporary directory (kept alive by the
/// returned guard).
pub fn addresses() -> Vec<(String, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let unix = format!("unix://{}", dir.path().join("rpc.sock").display());
    vec![("tcp://127.0.0.1:0".to_string(), None), (unix, Some(dir))]
}

/// Runs `f` with a deadline, failing the test if it does not finish.
pub async fn within<F: Future>(secs: u64, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {secs} s"),
    }
}

/// Installs a log subscriber once, filtered by `RUST_LOG` (silent by default).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The READMEs (the workspace's and each published crate's) and the guide
/// in `docs/`, included so that `cargo test --doc` compiles and runs every
/// Rust example in them.
#[cfg(doctest)]
pub mod guide {
    #[doc = include_str!("../../README.md")]
    pub struct Readme;

    #[doc = include_str!("../../rpc-core/README.md")]
    pub struct CoreReadme;

    #[doc = include_str!("../../rpc-macros/README.md")]
    pub struct MacrosReadme;

    #[doc = include_str!("../../rpc-transport/README.md")]
    pub struct TransportReadme;

    #[doc = include_str!("../../docs/README.md")]
    pub struct Index;

    #[doc = include_str!("../../docs/concepts.md")]
    pub struct Concepts;

    #[doc = include_str!("../../docs/calls-and-errors.md")]
    pub struct CallsAndErrors;

    #[doc = include_str!("../../docs/connections.md")]
    pub struct Connections;

    #[doc = include_str!("../../docs/security.md")]
    pub struct Security;

    #[doc = include_str!("../../docs/streams.md")]
    pub struct Streams;

    #[doc = include_str!("../../docs/transports.md")]
    pub struct Transports;

    #[doc = include_str!("../../docs/tls.md")]
    pub struct Tls;

    #[doc = include_str!("../../docs/tracing.md")]
    pub struct Tracing;

    #[doc = include_str!("../../docs/performance.md")]
    pub struct Performance;

    #[doc = include_str!("../../docs/wire.md")]
    pub struct Wire;

    #[doc = include_str!("../../docs/lineage.md")]
    pub struct Lineage;

    #[doc = include_str!("../../docs/many-hosts.md")]
    pub struct ManyHosts;

    #[doc = include_str!("../../docs/architecture.md")]
    pub struct Architecture;
}

/// The server-side peer of the next connection the server reports.
///
/// # Panics
///
/// When the server's event stream ends first.
pub async fn accepted(events: &mut rpc_transport::Events) -> rpc_core::Peer {
    loop {
        match events.recv().await {
            Some(rpc_transport::Event::Connected(p)) => return p,
            Some(_) => {}
            None => panic!("event stream ended"),
        }
    }
}

/// The id and reason of the next connection the server reports ended.
///
/// # Panics
///
/// When the server's event stream ends first.
pub async fn next_disconnect(
    events: &mut rpc_transport::Events,
) -> (u64, rpc_core::DisconnectReason) {
    loop {
        match events.recv().await {
            Some(rpc_transport::Event::Disconnected { id, reason, .. }) => return (id, reason),
            Some(_) => {}
            None => panic!("event stream ended"),
        }
    }
}

/// A server exposing `object` under its default name, bound at `addr`
/// (for example `tcp://127.0.0.1:0`, or an address from [`addresses`]).
///
/// # Panics
///
/// When the address cannot be bound.
pub async fn serve<S: rpc_core::Service>(
    object: S,
    addr: impl rpc_transport::ToAddress,
) -> rpc_transport::Server {
    rpc_transport::Server::builder()
        .expose(object)
        .bind(addr)
        .await
        .expect("bind")
}
