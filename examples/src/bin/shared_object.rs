//! Kodi-style: expose one object in a few lines, check that the server is
//! available, call it, then stop the server gracefully. The call still in
//! flight when the server stops is allowed to finish, the client is told the
//! server is shutting down, and the object's close hook
//! (`#[expose(close)]`) runs last.
//!
//! Run it with `cargo run -p rpc-examples --bin shared_object`; it ends by
//! itself.

use std::sync::Mutex;
use std::time::Duration;

use rpc_core::{expose, RpcError};
use rpc_transport::{server_available, Server};

/// A media player, shared with whoever connects.
#[derive(Default)]
pub struct Player {
    playing: Mutex<Option<String>>,
}

#[expose]
impl Player {
    /// Starts playing `item`.
    pub fn play(&self, item: String) {
        *self.playing.lock().unwrap() = Some(item);
    }

    /// What is playing, if anything.
    pub fn now_playing(&self) -> Option<String> {
        self.playing.lock().unwrap().clone()
    }

    /// Scans the media library (slowly); returns how many items it found.
    pub async fn scan_library(&self) -> u32 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        42
    }

    /// Runs once when the server shuts down gracefully.
    #[expose(close)]
    pub async fn close(&self) {
        let playing = self.playing.lock().unwrap().take();
        println!("player: close hook: stopped {playing:?}");
    }
}

#[tokio::main]
async fn main() -> Result<(), RpcError> {
    // The whole server side.
    let server = Server::builder()
        .expose(Player::default())
        .bind("tcp://127.0.0.1:0")
        .await?;
    let addr = server.local_addr().clone();

    let timeout = Duration::from_secs(1);
    println!(
        "server_available({addr}): {}",
        server_available(&addr, timeout).await
    );

    let peer = rpc_transport::connect(&addr).await?;
    let player = PlayerClient::new(&peer);
    player.play("Big Buck Bunny".into()).await?;
    println!("now playing: {:?}", player.now_playing().await?);

    // Start a slow call, then stop the server while it runs.
    let scan = tokio::spawn({
        let player = player.clone();
        async move { player.scan_library().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    println!("stopping the server (grace: 2 s)");
    server.shutdown(Duration::from_secs(2)).await;
    println!("server stopped");

    println!(
        "the scan, in flight during shutdown: {:?}",
        scan.await.expect("scan task panicked")
    );
    println!("client connection ended: {}", peer.closed().await);
    println!("a call now: {:?}", player.now_playing().await);
    println!(
        "server_available({addr}): {}",
        server_available(&addr, timeout).await
    );
    Ok(())
}
