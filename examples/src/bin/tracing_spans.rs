//! What the library reports through `tracing`: every call made gets an
//! `rpc.call` span (`otel.kind = "client"`) and every call served an
//! `rpc.serve` span (`otel.kind = "server"`), both with the fields
//! `rpc.service`, `rpc.method` and `rpc.request_id`. This example installs a
//! `tracing_subscriber` fmt subscriber that prints each span when it closes,
//! and makes a few calls.
//!
//! Run it with `cargo run -p rpc-examples --bin tracing_spans`; it ends by itself.
//! The filter is `info,rpc_core=debug` unless `RUST_LOG` says otherwise
//! (try `RUST_LOG=rpc_core=trace,rpc_transport=debug`).

use std::time::Duration;

use rpc_core::{expose, CallContext, RpcError};
use rpc_transport::Server;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

/// The server's object.
pub struct Inventory;

#[expose]
impl Inventory {
    /// How many of `item` are in stock.
    pub fn count(&self, item: String) -> u32 {
        item.len() as u32
    }

    /// Reserves `n` of `item`, after a short wait.
    pub async fn reserve(&self, cx: CallContext, item: String, n: u32) -> bool {
        // Events in a handler are recorded inside its `rpc.serve` span.
        tracing::info!(%item, n, caller = cx.connection_id(), "reserving");
        tokio::time::sleep(Duration::from_millis(20)).await;
        true
    }
}

#[tokio::main]
async fn main() -> Result<(), RpcError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rpc_core=debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .init();

    let server = Server::builder()
        .expose(Inventory)
        .bind("tcp://127.0.0.1:0")
        .await?;
    let peer = rpc_transport::connect(server.local_addr()).await?;
    let inventory = InventoryClient::new(&peer);

    let n = inventory.count("widget".into()).await?;
    tracing::info!(n, "counted");
    let ok = inventory.reserve("widget".into(), 2).await?;
    tracing::info!(ok, "reserved");
    let err = peer.call::<u32, _>("Inventory.restock", &("widget",)).await;
    tracing::info!(?err, "called a method that does not exist");

    peer.close().await;
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
