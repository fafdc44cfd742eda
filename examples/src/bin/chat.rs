//! A chat room in one process, on publish/subscribe: the server keeps a
//! typed `Topic` of lines; each client subscribes with `listen()` (a stream
//! of the room's lines) and talks with `say()`, which publishes to the
//! topic. A client that falls too far behind is told how many lines it
//! missed. The server learns who is there from its event stream.
//!
//! Run it with `cargo run -p rpc-examples --bin chat`; it ends by itself.

use std::time::Duration;

use futures::{Stream, StreamExt};
use rpc_core::pubsub::{Published, Topic};
use rpc_core::{expose, CallContext, RpcError};
use rpc_transport::{Address, Event, Server};
use serde::{Deserialize, Serialize};
use tokio::time::{sleep_until, Instant};

/// One line said in the room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    /// Who said it (the name the client announced).
    pub from: String,
    /// What was said.
    pub text: String,
}

/// The server's object.
pub struct ChatRoom {
    lines: Topic<Line>,
}

#[expose]
impl ChatRoom {
    /// Says `text` to everyone listening; returns how many listen.
    pub fn say(&self, cx: CallContext, text: String) -> usize {
        let from = cx.remote_name().unwrap_or("anonymous").to_string();
        self.lines.publish(Line { from, text })
    }

    /// Every line said in the room from now on.
    pub fn listen(&self) -> impl Stream<Item = Published<Line>> + Send + 'static {
        self.lines.subscribe()
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
    let peer = rpc_transport::connect(&addr).name(script.name).await?;
    let room = ChatRoomClient::new(&peer);
    let mut lines = room.listen().await?;
    let me = script.name;
    let screen = tokio::spawn(async move {
        while let Some(line) = lines.next().await {
            match line {
                Ok(Published::Item(Line { from, text })) => {
                    println!("    [{me:>5}'s screen] {from}: {text}")
                }
                Ok(Published::Missed(n)) => println!("    [{me:>5}'s screen] ({n} lines missed)"),
                Err(e) => println!("    [{me:>5}'s screen] (left the room: {e})"),
            }
        }
    });
    for &(when, text) in script.lines {
        at(when).await;
        println!("{} says {text:?}", script.name);
        let n = room.say(text.to_string()).await?;
        println!("  (heard by {n})");
    }
    at(script.leave).await;
    // Leaving: closing the connection ends this client's subscription.
    peer.close().await;
    let _ = screen.await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), RpcError> {
    let server = Server::builder()
        .expose(ChatRoom {
            lines: Topic::new(),
        })
        .bind("tcp://127.0.0.1:0")
        .await?;
    println!("chat room open on {}", server.local_addr());

    // Report comings and goings from the server's events, until everyone
    // who came has left.
    let mut events = server.events();
    let tracker = tokio::spawn(async move {
        let mut left = 0;
        while left < SCRIPTS.len() {
            match events.recv().await {
                Some(Event::Connected(peer)) => {
                    let name = peer.remote_name().unwrap_or_default();
                    println!("* {name} joined (connection {})", peer.connection_id());
                }
                Some(Event::Disconnected { id, reason, .. }) => {
                    println!("* connection {id} left ({reason})");
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
