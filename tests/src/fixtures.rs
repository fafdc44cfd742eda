//! Services used by several integration tests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{expose, CallContext, RpcError};
use serde::{Deserialize, Serialize};

/// An application error that travels typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MathError {
    /// Division by zero was asked for.
    DivideByZero,
}

/// The server-side object of most tests.
#[derive(Default)]
pub struct Calc {
    /// Handlers that ran to completion.
    pub finished: Arc<AtomicU32>,
}

#[expose]
impl Calc {
    /// Adds.
    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    /// Divides, or fails with a typed error.
    pub fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        if b == 0 {
            Err(MathError::DivideByZero)
        } else {
            Ok(a / b)
        }
    }

    /// Sleeps, then returns its argument.
    pub async fn slow(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        ms
    }

    /// Always panics.
    pub fn boom(&self) -> u32 {
        panic!("kaboom")
    }

    /// An `async` method that panics before its first await.
    pub async fn boom_at_once(&self) -> u32 {
        panic!("kaboom at once")
    }

    /// Panics after an await.
    pub async fn boom_later(&self) -> u32 {
        tokio::task::yield_now().await;
        panic!("kaboom later")
    }

    /// Reports each step to the caller's `Progress` object while the call is
    /// still in flight, then returns the sum of what the caller answered.
    pub async fn long_job(&self, cx: CallContext, steps: u32) -> Result<u32, RpcError> {
        let progress = ProgressClient::new(cx.peer());
        let mut sum = 0;
        for i in 0..steps {
            sum += progress.report(i, steps).await?;
        }
        Ok(sum)
    }

    /// The caller's connection id as the server sees it.
    pub fn whoami(&self, cx: CallContext) -> (u64, Option<String>) {
        (cx.connection_id(), cx.remote_name().map(str::to_owned))
    }

    /// How many milliseconds the caller gave this call, as the callee sees it.
    pub fn budget_ms(&self, cx: CallContext) -> Option<u64> {
        cx.remaining().map(|d| d.as_millis() as u64)
    }
}

/// An object with a close hook and a concurrency gauge.
#[derive(Default, Clone)]
pub struct Gauge {
    /// Set by the close hook.
    pub closed: Arc<AtomicU32>,
    /// Calls running now.
    pub running: Arc<AtomicU32>,
    /// The most calls seen running at once.
    pub peak: Arc<AtomicU32>,
}

#[expose]
impl Gauge {
    /// Holds a slot for `ms` milliseconds.
    pub async fn hold(&self, ms: u64) -> u32 {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        now
    }

    /// Runs when the server shuts down gracefully.
    #[expose(close)]
    pub async fn on_close(&self) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A client-side object the server calls back.
#[derive(Default, Clone)]
pub struct Progress {
    /// Every `(step, total)` reported.
    pub seen: Arc<Mutex<Vec<(u32, u32)>>>,
}

#[expose]
impl Progress {
    /// Records a step; answers `step * 10`.
    pub fn report(&self, step: u32, total: u32) -> u32 {
        self.seen.lock().unwrap().push((step, total));
        step * 10
    }

    /// Doubles.
    pub async fn double(&self, x: u64) -> u64 {
        x * 2
    }
}
