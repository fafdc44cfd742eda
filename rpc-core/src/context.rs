//! [`CallContext`]: what a handler can learn about the call it is serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::peer::Peer;

/// The context of one incoming call, available to any exposed method that
/// takes a `CallContext` parameter (it is not sent over the wire).
///
/// Through [`peer`](CallContext::peer) a handler can call back into its
/// caller while the call is still in flight.
///
/// # Examples
///
/// ```
/// use rpc_core::{expose, CallContext, RpcError};
///
/// pub struct Jobs;
///
/// #[expose]
/// impl Jobs {
///     /// Tells the caller who it is and how long it has.
///     pub fn whoami(&self, cx: CallContext) -> String {
///         format!("connection {} calling {}", cx.connection_id(), cx.method())
///     }
///
///     /// Calls back into the caller's `Progress` object once per step.
///     pub async fn run(&self, cx: CallContext, steps: u32) -> Result<u32, RpcError> {
///         for i in 0..steps {
///             cx.peer().notify("Progress.step", &(i,)).await?;
///         }
///         Ok(steps)
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct CallContext {
    pub(crate) peer: Peer,
    pub(crate) connection_id: u64,
    pub(crate) remote_name: Option<Arc<str>>,
    pub(crate) object: Arc<str>,
    pub(crate) method: &'static str,
    pub(crate) request_id: Option<u64>,
    pub(crate) deadline: Option<Instant>,
}

impl CallContext {
    /// The peer that made the call; calls through it go back to the caller.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The id of the connection the call arrived on (assigned by the server).
    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// The identifier the remote side announced in the handshake, if any.
    pub fn remote_name(&self) -> Option<&str> {
        self.remote_name.as_deref()
    }

    /// The name the called object is exposed under.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// The exposed name of the called method.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The caller's id for this call; `None` for a one-way notification.
    pub fn request_id(&self) -> Option<u64> {
        self.request_id
    }

    /// When the caller stops waiting, if the call carries a timeout.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the caller's deadline (zero once it has passed);
    /// `None` when the call has no timeout.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}
