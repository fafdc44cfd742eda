//! epyrpc's arbitrator: a gateway that answers any call it does not know by
//! forwarding it, unread, to a backend, and hands back whatever the backend
//! says. The client uses the backend's typed stub against the gateway and
//! cannot tell the difference; the gateway knows none of the backend's
//! types.
//!
//! Run it with `cargo run -p rpc-examples --bin gateway`; it ends by itself.

use std::time::Duration;

use rpc_core::{expose, Handled, Incoming, Peer, RemoteError, RpcError};
use rpc_transport::Server;
use serde::{Deserialize, Serialize};

/// What the backend's stock lookup can fail with.
#[derive(Debug, Serialize, Deserialize)]
pub enum StockError {
    /// No such item.
    Unknown(String),
}

/// The backend's object.
pub struct Inventory;

#[expose]
impl Inventory {
    /// How many of `item` are in stock.
    pub fn stock(&self, item: String) -> Result<u32, StockError> {
        match item.as_str() {
            "apple" => Ok(12),
            "pear" => Ok(0),
            _ => Err(StockError::Unknown(item)),
        }
    }
}

/// The gateway's fallback: forwards the call to `backend` as it came, and
/// answers with the backend's reply as it came.
fn forward(backend: Peer) -> impl Fn(Incoming) -> Handled + Send + Sync + 'static {
    move |call: Incoming| {
        let backend = backend.clone();
        Handled::Pending(Box::pin(async move {
            let target = format!("{}.{}", call.object(), call.method());
            println!("  gateway: forwarding {target}");
            match backend.call_raw(&target, call.raw_args(), None).await {
                Ok(reply) => call.reply_raw(&reply),
                Err(RpcError::Remote(e)) => call.fail(e),
                Err(e) => call.fail(RemoteError::Failed(format!(
                    "the backend is unavailable: {e}"
                ))),
            }
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), RpcError> {
    let backend = Server::builder()
        .expose(Inventory)
        .bind("tcp://127.0.0.1:0")
        .await?;
    let to_backend = rpc_transport::connect(backend.local_addr()).await?;

    let gateway = Server::builder().bind("tcp://127.0.0.1:0").await?;
    gateway.registry().fallback(forward(to_backend));
    println!(
        "backend on {}, gateway on {}",
        backend.local_addr(),
        gateway.local_addr()
    );

    // The client talks to the gateway only, with the backend's stub.
    let peer = rpc_transport::connect(gateway.local_addr()).await?;
    let inventory = InventoryClient::new(&peer);
    for item in ["apple", "pear", "plum"] {
        println!("stock of {item}: {:?}", inventory.stock(item.into()).await?);
    }
    match peer.call::<u32, _>("Inventory.price", &("apple",)).await {
        Err(e) => println!("Inventory.price: {e}"),
        Ok(p) => println!("Inventory.price: {p}"),
    }

    peer.close().await;
    gateway.shutdown(Duration::from_secs(1)).await;
    backend.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
