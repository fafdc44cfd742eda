//! Items used by the code that `#[expose]` generates. Not a public API:
//! anything here may change in any release.

pub use crate::context::CallContext;
pub use crate::dispatch::{Handled, HandlerFuture, Incoming, Replied, Service};
pub use crate::error::RpcError;
pub use crate::peer::Peer;
pub use serde::de::DeserializeOwned;
pub use serde::Serialize;

use std::sync::Arc;
use std::time::Duration;

/// The full wire targets (`object.method`) of an object's methods, built once
/// per stub so that calls do no string work.
pub fn targets(object: &str, methods: &[&str]) -> Arc<[Box<str>]> {
    methods
        .iter()
        .map(|m| format!("{object}.{m}").into_boxed_str())
        .collect()
}

/// Makes a call on behalf of a generated stub: with the stub's timeout, or
/// else the peer's default.
pub async fn call<A, R>(
    peer: &Peer,
    target: &str,
    args: &A,
    timeout: Option<Duration>,
) -> Result<R, RpcError>
where
    A: Serialize + ?Sized,
    R: DeserializeOwned,
{
    let timeout = timeout.or(peer.config().default_call_timeout());
    peer.call_inner(target, args, timeout).await
}

/// Boxes a handler future.
pub fn pending<F>(f: F) -> Handled
where
    F: std::future::Future<Output = Replied> + Send + 'static,
{
    Handled::Pending(Box::pin(f))
}

/// Compile-time check that an argument type can travel (used with
/// `quote_spanned!` so the error points at the user's type).
pub fn assert_arg<T: Serialize + DeserializeOwned>() {}

/// Compile-time check that a return type can travel.
pub fn assert_ret<T: Serialize + DeserializeOwned>() {}
