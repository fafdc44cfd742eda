//! Foundry-style named objects in both directions. The server exposes two
//! `Settings` objects under names of its choosing (`expose_as`) and a
//! `Lobby`; each client announces an identifier (`.name(..)`) and exposes a
//! `RenderNode` under the name "node". A `Lobby` handler sees the caller's
//! connection id and name in its `CallContext`; the server then finds that
//! client's `Peer` by connection id (`server.peer(id)`) and calls its named
//! object through `RenderNodeClient::with_name`.
//!
//! Run it with `cargo run -p rpc-examples --bin named_objects`; it ends by
//! itself.

use std::collections::BTreeMap;
use std::time::Duration;

use rpc_core::{expose, CallContext, RpcError};
use rpc_transport::Server;

/// Read-only key/value settings; the server exposes two of them.
pub struct Settings(BTreeMap<String, String>);

impl Settings {
    fn new(pairs: &[(&str, &str)]) -> Self {
        Settings(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

#[expose]
impl Settings {
    /// The value of `key`, if set.
    pub fn get(&self, key: String) -> Option<String> {
        self.0.get(&key).cloned()
    }
}

/// Where clients check in.
pub struct Lobby;

#[expose]
impl Lobby {
    /// Greets the caller; answers its connection id.
    pub fn check_in(&self, cx: CallContext) -> u64 {
        let name = cx.remote_name().unwrap_or("anonymous");
        println!(
            "server: {name} checked in on connection {}",
            cx.connection_id()
        );
        cx.connection_id()
    }
}

/// The object each client exposes.
pub struct RenderNode {
    name: String,
}

#[expose]
impl RenderNode {
    /// Renders `frame`; answers a description of the work done.
    pub fn render(&self, frame: u32) -> String {
        format!("frame {frame} rendered by {}", self.name)
    }
}

#[tokio::main]
async fn main() -> Result<(), RpcError> {
    let server = Server::builder()
        .expose_as(
            "project",
            Settings::new(&[("fps", "24"), ("title", "Short Film")]),
        )
        .expose_as("studio", Settings::new(&[("fps", "25")]))
        .expose(Lobby)
        .bind("tcp://127.0.0.1:0")
        .await?;

    let mut clients = Vec::new();
    for name in ["render-1", "render-2"] {
        let peer = rpc_transport::connect(server.local_addr())
            .name(name)
            .expose_as("node", RenderNode { name: name.into() })
            .await?;
        // The same stub type, two different objects on the server.
        let project = SettingsClient::with_name(&peer, "project");
        let studio = SettingsClient::with_name(&peer, "studio");
        println!(
            "{name}: project fps {:?}, studio fps {:?}, title {:?}",
            project.get("fps".into()).await?,
            studio.get("fps".into()).await?,
            project.get("title".into()).await?,
        );
        let id = LobbyClient::new(&peer).check_in().await?;
        clients.push((id, peer));
    }

    // The server side: find each client by its connection id and call the
    // object it exposed as "node".
    for (frame, (id, _)) in clients.iter().enumerate() {
        let peer = server.peer(*id).expect("the client is still connected");
        let node = RenderNodeClient::with_name(&peer, "node");
        println!(
            "server: connection {id}: {}",
            node.render(frame as u32).await?
        );
    }

    // A name nobody exposed.
    let (_, peer) = &clients[0];
    let missing = SettingsClient::with_name(peer, "user")
        .get("fps".into())
        .await;
    println!("render-1: settings \"user\" -> {missing:?}");

    for (_, peer) in &clients {
        peer.close().await;
    }
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
