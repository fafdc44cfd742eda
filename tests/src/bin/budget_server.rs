//! A server in a process of its own, for tests that measure its memory:
//! serves `Calc` on a fresh loopback port with the budget and frame deadline
//! given on the command line, prints its address on the first line of
//! stdout, then one `disconnected <reason>` line per connection that ends,
//! and exits when its stdin closes.
//!
//! `budget_server <max-buffered-bytes> <frame-timeout-ms>`; the library's
//! warnings go to stderr.

use std::io::Read;
use std::time::Duration;

use rpc_core::PeerConfig;
use rpc_tests::fixtures::Calc;
use rpc_transport::{Event, Server};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let budget: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64 << 20);
    let frame_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let config = PeerConfig::default().frame_timeout(Some(Duration::from_millis(frame_ms)));
        let server = Server::builder()
            .expose(Calc::default())
            .config(config)
            .max_buffered_bytes(budget)
            .max_handshaking(2048)
            .bind("tcp://127.0.0.1:0")
            .await
            .expect("binds");
        let mut events = server.events();
        println!("{}", server.local_addr());
        while let Some(event) = events.recv().await {
            if let Event::Disconnected { reason, .. } = event {
                println!("disconnected {reason}");
            }
        }
    });
}
