//! A backend for the balancing tests: the object each `backend` process
//! serves, and the object the client exposes for backends to call back.

use std::time::Duration;

use rpc_core::{expose, CallContext, RpcError};

/// One backend's object: answers with the backend's name.
pub struct Backend {
    /// The name given on the command line.
    pub name: String,
}

#[expose]
impl Backend {
    /// Which backend answered.
    #[expose(idempotent)]
    pub fn whoami(&self) -> String {
        self.name.clone()
    }

    /// Works `ms` milliseconds, then says which backend did; safe to repeat.
    #[expose(idempotent)]
    pub async fn work(&self, ms: u64) -> String {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.name.clone()
    }

    /// Works `ms` milliseconds, then says which backend did; not safe to
    /// repeat (it stands for a payment, say).
    pub async fn charge(&self, ms: u64) -> String {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.name.clone()
    }

    /// Calls the caller's `Pong` back on the connection the call came on,
    /// and answers with both names.
    pub async fn ping_back(&self, cx: CallContext) -> Result<String, RpcError> {
        let pong = PongClient::new(cx.peer()).pong().await?;
        Ok(format!("{}:{pong}", self.name))
    }
}

/// The client's object, called back by backends.
pub struct Pong {
    /// The client's name.
    pub name: String,
}

#[expose]
impl Pong {
    /// The client's name.
    pub fn pong(&self) -> String {
        self.name.clone()
    }
}
