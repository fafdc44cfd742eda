//! Asynchronous methods, with the same shapes as the synchronous ones, mixed
//! with synchronous methods in one block.

use rpc_core::{expose, Service};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct WorkError {
    pub code: u32,
    pub message: String,
}

#[derive(Default)]
pub struct Worker {
    done: std::sync::atomic::AtomicU64,
}

#[expose]
impl Worker {
    pub async fn ping(&self) {}

    pub async fn unit(&self) -> () {}

    pub async fn done(&self) -> u64 {
        self.done.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn sleep_ms(&self, ms: u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }

    pub async fn work(&self, n: u32, label: String, mut retries: u8) -> Result<String, WorkError> {
        retries = retries.saturating_sub(1);
        self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n == 0 {
            Err(WorkError { code: 1, message: label })
        } else {
            Ok(format!("{label}: {n} ({retries} retries left)"))
        }
    }

    pub fn sync_too(&self, v: Vec<u8>) -> usize {
        v.len()
    }
}

async fn client_calls(c: &WorkerClient) -> Result<(), rpc_core::RpcError> {
    let () = c.ping().await?;
    let () = c.unit().await?;
    let _: u64 = c.done().await?;
    let () = c.sleep_ms(1).await?;
    let _: Result<String, WorkError> = c.work(1, "x".to_string(), 3).await?;
    let _: usize = c.sync_too(vec![1, 2]).await?;
    Ok(())
}

fn main() {
    let _ = client_calls;
    assert_eq!(
        <Worker as Service>::methods(),
        ["ping", "unit", "done", "sleep_ms", "work", "sync_too"]
    );
}
