//! Pyro's remote iterator, typed: a long job returns a stream that yields
//! its progress step by step and then its result. The caller reads it like
//! a local iterator; the server computes each step only when the caller has
//! room for it (credit), and stops as soon as the caller lets go.
//!
//! Compare with the `progress` example, which reports through a callback
//! into the caller's object instead.
//!
//! Run it with `cargo run -p rpc-examples --bin progress_stream` (add
//! `-- --steps 10` for a longer job); it ends by itself.

use std::time::Duration;

use clap::Parser;
use futures::{Stream, StreamExt};
use rpc_core::{expose, RpcError};
use rpc_transport::Server;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "A server job streaming its progress to the caller")]
struct Args {
    /// How many steps the job takes.
    #[arg(long, default_value_t = 5)]
    steps: u32,
    /// How long each step takes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    step_ms: u64,
}

/// What the job reports.
#[derive(Debug, Serialize, Deserialize)]
pub enum Report {
    /// Step `done` of `of` is finished.
    Step {
        /// Steps finished so far.
        done: u32,
        /// Steps in all.
        of: u32,
    },
    /// The job's result.
    Finished(String),
}

/// The server's object.
pub struct Compiler {
    step: Duration,
}

#[expose]
impl Compiler {
    /// Builds `target` in `steps` steps, as a stream of reports.
    pub fn build(&self, target: String, steps: u32) -> impl Stream<Item = Report> + Send + 'static {
        let step = self.step;
        let progress = futures::stream::iter(1..=steps).then(move |done| async move {
            tokio::time::sleep(step).await;
            Report::Step { done, of: steps }
        });
        let result = futures::stream::once(async move {
            Report::Finished(format!("{target}: built in {steps} steps"))
        });
        progress.chain(result)
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
    let peer = rpc_transport::connect(server.local_addr()).await?;

    let mut reports = CompilerClient::new(&peer)
        .build("app".into(), args.steps)
        .await?;
    while let Some(report) = reports.next().await {
        match report? {
            Report::Step { done, of } => {
                let bar = "#".repeat(done as usize) + &".".repeat((of - done) as usize);
                println!("[{bar}] {done}/{of}");
            }
            Report::Finished(result) => println!("{result}"),
        }
    }
    peer.close().await;
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
