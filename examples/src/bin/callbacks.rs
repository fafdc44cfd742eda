//! Pyro's callback pattern with object references: each client passes the
//! server a listener (`Remote<Listener>`), and the server calls every
//! listener from a background task, long after the call that brought it
//! has returned. A client that leaves (it drops its connection, or asks to
//! be forgotten) stops getting calls: the server sees the failure, drops
//! the listener, and the client's object is released.
//!
//! Run it with `cargo run -p rpc-examples --bin callbacks`; it ends by
//! itself.

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{expose, Remote, RpcError};
use rpc_transport::Server;

/// A client's listener: prints the ticks it hears.
pub struct Listener {
    who: String,
    heard: Arc<AtomicU32>,
}

#[expose]
impl Listener {
    /// One tick from the server.
    pub fn tick(&self, n: u32) {
        self.heard.fetch_add(1, SeqCst);
        println!("  {} heard tick {n}", self.who);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        println!("  {}'s listener was released", self.who);
    }
}

/// The server's object: keeps the listeners it is given.
#[derive(Default)]
pub struct Clock {
    listeners: Mutex<Vec<(u64, Remote<Listener>)>>,
    next: AtomicU32,
}

#[expose]
impl Clock {
    /// Calls `listener` on every tick until it fails or is forgotten;
    /// returns a ticket to forget it with.
    pub fn subscribe(&self, listener: Remote<Listener>) -> u64 {
        let ticket = u64::from(self.next.fetch_add(1, SeqCst));
        self.listeners.lock().unwrap().push((ticket, listener));
        ticket
    }

    /// Forgets the listener of `ticket`; its object is released.
    pub fn forget(&self, ticket: u64) {
        self.listeners.lock().unwrap().retain(|(t, _)| *t != ticket);
    }
}

impl Clock {
    /// One tick: calls every listener, and drops the ones that fail.
    async fn tick(&self, n: u32) {
        let listeners = self.listeners.lock().unwrap().clone();
        for (ticket, listener) in listeners {
            if let Err(e) = listener.tick(n).await {
                println!("server: listener {ticket} is gone ({e}); dropping it");
                self.forget(ticket);
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), RpcError> {
    let clock = Arc::new(Clock::default());
    let server = Server::builder()
        .registry({
            let registry = rpc_core::Registry::new();
            registry.expose_arc("Clock", clock.clone());
            registry
        })
        .bind("tcp://127.0.0.1:0")
        .await?;
    // The server's background task: a tick every 50 ms.
    let ticking = tokio::spawn({
        let clock = clock.clone();
        async move {
            for n in 1.. {
                tokio::time::sleep(Duration::from_millis(50)).await;
                clock.tick(n).await;
            }
        }
    });

    let ada_heard = Arc::new(AtomicU32::new(0));
    let bob_heard = Arc::new(AtomicU32::new(0));
    let ada = rpc_transport::connect(server.local_addr()).await?;
    let bob = rpc_transport::connect(server.local_addr()).await?;
    let ada_ticket = ClockClient::new(&ada)
        .subscribe(Remote::new(Listener {
            who: "ada".into(),
            heard: ada_heard.clone(),
        }))
        .await?;
    ClockClient::new(&bob)
        .subscribe(Remote::new(Listener {
            who: "bob".into(),
            heard: bob_heard.clone(),
        }))
        .await?;

    tokio::time::sleep(Duration::from_millis(170)).await;
    println!("bob leaves (drops his connection)");
    bob.close().await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    println!("ada asks to be forgotten");
    ClockClient::new(&ada).forget(ada_ticket).await?;
    // The release reaches ada's side before the answer to this ping.
    ada.ping().await?;
    println!(
        "ada heard {} ticks, bob {}; the server holds {} listeners",
        ada_heard.load(SeqCst),
        bob_heard.load(SeqCst),
        clock.listeners.lock().unwrap().len()
    );
    ticking.abort();
    ada.close().await;
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
