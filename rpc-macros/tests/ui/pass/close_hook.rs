//! `#[expose(close)]`: a sync hook (private, or `pub` and then not exposed)
//! and an async one. The hook runs from `Service::close`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rpc_core::{expose, Service};

#[derive(Default)]
pub struct SyncHook {
    closed: AtomicBool,
}

#[expose]
impl SyncHook {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    #[expose(close)]
    fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

#[derive(Default)]
pub struct AsyncHook {
    closed: AtomicBool,
}

#[expose]
impl AsyncHook {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    #[expose(close)]
    pub async fn stop(&self) -> () {
        tokio::task::yield_now().await;
        self.closed.store(true, Ordering::SeqCst);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let sync = Arc::new(SyncHook::default());
    let hook = sync.clone().close();
    assert!(!sync.is_closed(), "the hook runs when the future is polled");
    hook.await;
    assert!(sync.is_closed());
    assert_eq!(<SyncHook as Service>::methods(), ["is_closed"]);

    let with_async = Arc::new(AsyncHook::default());
    with_async.clone().close().await;
    assert!(with_async.is_closed());
    assert_eq!(<AsyncHook as Service>::methods(), ["is_closed"]);
}
