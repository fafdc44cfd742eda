//! A chat room in one process: a server exposes `ChatRoom`, three clients
//! join, talk and leave, and the server pushes every message to every
//! connected client by calling the `Inbox` object each client exposes.
//! The server learns who is there from its event stream (`Connected` and
//! `Disconnected` with a reason) and keeps the `Peer` of each connection.
//!
//! Run it with `cargo run -p rpc-examples --bin chat`; it ends by itself.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{expose, CallContext, Peer, RpcError};
use rpc_transport::{Address, Event, Server};
use tokio::time::{sleep_until, Instant};

/// Who is connected: connection id -> the server's handle on that client.
type Members = Arc<Mutex<BTreeMap<u64, Peer>>>;

/// The server's object: clients call `say`.
pub struct ChatRoom {
    members: Members,
}

#[expose]
impl ChatRoom {
    /// Sends `text` to everyone in the room; returns how many received it.
    pub async fn say(&self, cx: CallContext, text: String) -> usize {
        let from = cx.remote_name().unwrap_or("anonymous").to_string();
        // Clone the handles out so that no lock is held across an await.
        let members: Vec<Peer> = self.members.lock().unwrap().values().cloned().collect();
        let mut delivered = 0;
        for member in &members {
            let inbox = InboxClient::new(member);
            if inbox.deliver(from.clone(), text.clone()).await.is_ok() {
                delivered += 1;
            }
        }
        delivered
    }
}

/// The object each client exposes, for the server to push messages to.
pub struct Inbox {
    owner: &'static str,
}

#[expose]
impl Inbox {
    /// Shows a message on this client's screen.
    pub fn deliver(&self, from: String, text: String) {
        println!("    [{:>5}'s screen] {from}: {text}", self.owner);
    }
}

/// One client's part: when to join, what to say and when, when to leave
/// (in milliseconds from the start).
struct Script {
    name: &'static str,
    join: u64,
    lines: &'static [(u64, &'static str)],
    leave: u64,
}

const SCRIPTS: [Script; 3] = [
    Script {
        name: "alice",
        join: 0,
        lines: &[(100, "hi, anyone here?"), (500, "welcome carol, I must go")],
        leave: 600,
    },
    Script {
        name: "bob",
        join: 200,
        lines: &[(300, "hi alice!")],
        leave: 900,
    },
    Script {
        name: "carol",
        join: 400,
        lines: &[(700, "just us now, bob")],
        leave: 800,
    },
];

async fn client(addr: Address, script: &'static Script, start: Instant) -> Result<(), RpcError> {
    let at = |ms| sleep_until(start + Duration::from_millis(ms));
    at(script.join).await;
    let peer = rpc_transport::connect(&addr)
        .name(script.name)
        .expose(Inbox { owner: script.name })
        .await?;
    let room = ChatRoomClient::new(&peer);
    for &(when, text) in script.lines {
        at(when).await;
        println!("{} says {text:?}", script.name);
        let n = room.say(text.to_string()).await?;
        println!("  (delivered to {n})");
    }
    at(script.leave).await;
    peer.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), RpcError> {
    let members = Members::default();
    let server = Server::builder()
        .expose(ChatRoom {
            members: members.clone(),
        })
        .bind("tcp://127.0.0.1:0")
        .await?;
    println!("chat room open on {}", server.local_addr());

    // Keep the member list in step with the server's events, until everyone
    // who came has left.
    let mut events = server.events();
    let tracker = tokio::spawn(async move {
        let mut left = 0;
        while left < SCRIPTS.len() {
            match events.recv().await {
                Some(Event::Connected(peer)) => {
                    let name = peer.remote_name().unwrap_or_default();
                    println!("* {name} joined (connection {})", peer.connection_id());
                    members.lock().unwrap().insert(peer.connection_id(), peer);
                }
                Some(Event::Disconnected { id, reason, .. }) => {
                    let gone = members.lock().unwrap().remove(&id);
                    let name = gone.and_then(|p| p.remote_name()).unwrap_or_default();
                    println!("* {name} left (connection {id}: {reason})");
                    left += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
    });

    let start = Instant::now();
    let clients: Vec<_> = SCRIPTS
        .iter()
        .map(|script| tokio::spawn(client(server.local_addr().clone(), script, start)))
        .collect();
    for c in clients {
        c.await.expect("client task panicked")?;
    }

    tracker.await.expect("tracker panicked");
    server.shutdown(Duration::from_secs(1)).await;
    println!("chat room closed");
    Ok(())
}
