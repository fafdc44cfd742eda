//! A long job that reports its progress to the caller while the call is in
//! flight: the server's handler takes the call's `CallContext`, builds a
//! typed stub for the caller's `Progress` object from `cx.peer()`, and calls
//! it after every step. The client prints a progress bar, then the result.
//!
//! Run it with `cargo run -p rpc-examples --bin progress` (add
//! `-- --steps 10` for a longer job); it ends by itself.

use std::time::{Duration, Instant};

use clap::Parser;
use rpc_core::{expose, CallContext, RpcError};
use rpc_transport::Server;

#[derive(Parser)]
#[command(about = "A server job reporting progress back to its caller")]
struct Args {
    /// How many steps the job takes.
    #[arg(long, default_value_t = 5)]
    steps: u32,
    /// How long each step takes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    step_ms: u64,
}

/// The server's object.
pub struct Compiler {
    step: Duration,
}

#[expose]
impl Compiler {
    /// Builds `target` in `steps` steps, reporting each to the caller.
    /// Fails if a progress report cannot be delivered.
    pub async fn build(
        &self,
        cx: CallContext,
        target: String,
        steps: u32,
    ) -> Result<String, RpcError> {
        // Calls through `cx.peer()` go back to whoever made this call.
        let progress = ProgressClient::new(cx.peer());
        for step in 1..=steps {
            tokio::time::sleep(self.step).await;
            progress
                .update(step, steps, format!("compiled unit {step} of {target}"))
                .await?;
        }
        Ok(format!("{target}: {steps} units built"))
    }
}

/// The object the client exposes for progress reports.
pub struct Progress;

#[expose]
impl Progress {
    /// Shows how far the job is.
    pub fn update(&self, done: u32, total: u32, note: String) {
        let width = 20;
        let filled = (done * width / total.max(1)) as usize;
        let bar = format!(
            "{}{}",
            "#".repeat(filled),
            ".".repeat(width as usize - filled)
        );
        println!("  [{bar}] {done}/{total} {note}");
    }
}

#[tokio::main]
async fn main() -> Result<(), RpcError> {
    let args = Args::parse();
    let server = Server::builder()
        .expose(Compiler {
            step: Duration::from_millis(args.step_ms),
        })
        .bind("tcp://127.0.0.1:0")
        .await?;

    let peer = rpc_transport::connect(server.local_addr())
        .expose(Progress)
        .await?;
    let compiler = CompilerClient::new(&peer);

    println!("client: calling build(\"app\", {})", args.steps);
    let started = Instant::now();
    // One call; the progress lines are printed while it is in flight.
    let result = compiler.build("app".into(), args.steps).await??;
    println!(
        "client: build returned {result:?} after {:.1?}",
        started.elapsed()
    );

    peer.close().await;
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
