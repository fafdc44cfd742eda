//! The `Echo` object served by the `echo_server` example and called by the
//! `echo_client` example, in the spirit of Pyro's echo test server.

use std::fmt;
use std::time::Duration;

use rpc_core::expose;
use serde::{Deserialize, Serialize};

/// The application error of [`Echo::error`]. It reaches the caller as this
/// type, not as a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EchoError {
    /// The caller asked for an error, with this message.
    Requested(String),
}

impl fmt::Display for EchoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EchoError::Requested(message) => write!(f, "error requested: {message}"),
        }
    }
}

impl std::error::Error for EchoError {}

/// Gives back what it is given.
#[derive(Debug, Default)]
pub struct Echo;

#[expose]
impl Echo {
    /// Returns `value` unchanged.
    pub fn echo(&self, value: String) -> String {
        value
    }

    /// Always fails, with [`EchoError::Requested`] carrying `message`.
    pub fn error(&self, message: String) -> Result<(), EchoError> {
        Err(EchoError::Requested(message))
    }

    /// Waits `ms` milliseconds, then returns `ms`.
    pub async fn slow(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}
