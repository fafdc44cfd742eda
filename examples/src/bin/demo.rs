//! The main demo: a server and a client in one process, over a real socket
//! (TCP by default, a Unix socket with `--unix`), calling each other.
//!
//! Run it with `cargo run -p rpc-examples` (add `-- --unix` for a Unix socket,
//! `-- -v` for the library's trace output).
//!
//! What it shows: a typed call, a typed application error, a dynamic call by
//! name, the server calling the client, and a server handler that calls back
//! into its caller while that caller's call is still in flight.

use std::time::Duration;

use clap::Parser;
use rpc_core::{expose, CallContext, RpcError};
use rpc_transport::{Event, Server};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "rpc demo: a server and a client calling each other")]
struct Args {
    /// Use a Unix socket in a temporary directory instead of TCP.
    #[arg(long)]
    unix: bool,
    /// Print the library's debug log.
    #[arg(short, long)]
    verbose: bool,
}

/// A typed application error: the client receives it as this type.
#[derive(Debug, Serialize, Deserialize)]
pub enum MathError {
    /// Asked to divide by zero.
    DivideByZero,
}

/// The object the server exposes.
pub struct Calculator;

#[expose]
impl Calculator {
    /// Adds two numbers.
    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    /// Divides, or explains why not.
    pub fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        if b == 0 {
            Err(MathError::DivideByZero)
        } else {
            Ok(a / b)
        }
    }

    /// A long job that reports progress to its caller while it runs.
    #[expose(name = "long_job")]
    pub async fn run_job(&self, cx: CallContext, steps: u32) -> Result<u32, RpcError> {
        println!(
            "  server: job started for connection {}",
            cx.connection_id()
        );
        let progress = ProgressClient::new(cx.peer());
        let mut acks = 0;
        for step in 1..=steps {
            tokio::time::sleep(Duration::from_millis(50)).await;
            // A call into the caller, while the caller's call is in flight.
            if progress.report(step, steps).await? {
                acks += 1;
            }
        }
        Ok(acks)
    }
}

/// The object the client exposes, for the server to call.
pub struct Progress;

#[expose]
impl Progress {
    /// Shows a progress step; answers `true` to acknowledge it.
    pub fn report(&self, step: u32, total: u32) -> bool {
        println!("  client: progress {step}/{total}");
        true
    }

    /// Greets whoever calls.
    pub fn hello(&self, from: String) -> String {
        format!("hello {from}, this is the client")
    }
}

#[tokio::main]
async fn main() -> Result<(), RpcError> {
    let args = Args::parse();
    if args.verbose {
        tracing_subscriber::fmt()
            .with_env_filter("rpc_core=debug,rpc_transport=debug")
            .init();
    }
    let dir = std::env::temp_dir().join(format!("rpc-demo-{}", std::process::id()));
    let addr = if args.unix {
        std::fs::create_dir_all(&dir).map_err(RpcError::from)?;
        format!("unix://{}", dir.join("demo.sock").display())
    } else {
        "tcp://127.0.0.1:0".to_string()
    };

    let server = Server::builder()
        .expose(Calculator)
        .bind(addr.as_str())
        .await?;
    println!("server listening on {}", server.local_addr());
    let mut events = server.events();

    let peer = rpc_transport::connect(server.local_addr())
        .name("demo-client")
        .expose(Progress)
        .await?;
    let Some(Event::Connected(client_seen_by_server)) = events.recv().await else {
        return Err(RpcError::Protocol("expected a connect event".into()));
    };
    println!(
        "server: client `{}` connected as connection {}",
        client_seen_by_server.remote_name().unwrap_or_default(),
        client_seen_by_server.connection_id()
    );

    let calc = CalculatorClient::new(&peer);
    println!("client: add(2, 3) = {}", calc.add(2, 3).await?);
    println!("client: div(7, 0) = {:?}", calc.div(7, 0).await?);
    let n: i64 = peer.call("Calculator.add", &(40i64, 2i64)).await?;
    println!("client: dynamic call Calculator.add(40, 2) = {n}");
    match peer.call::<i64, _>("Calculator.mul", &(6i64, 7i64)).await {
        Err(e) => println!("client: Calculator.mul -> error: {e}"),
        Ok(v) => println!("client: Calculator.mul -> {v}?"),
    }

    let back = ProgressClient::new(&client_seen_by_server);
    let answer = back.hello("server".into()).await?;
    println!("server: called the client's Progress.hello -> {answer:?}");

    println!("client: calling long_job(3); the server will call back during it");
    let acks = calc.run_job(3).await??;
    println!("client: long_job returned {acks} acknowledged steps");

    peer.close().await;
    if let Some(Event::Disconnected { id, reason, .. }) = events.recv().await {
        println!("server: connection {id} ended: {reason}");
    }
    server.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
