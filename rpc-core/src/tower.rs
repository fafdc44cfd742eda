//! `tower` integration (the `tower` feature): a [`Peer`] is a
//! `tower::Service<RawCall>`, and its calls in flight are its
//! `tower::load::Load`, so tower's timeout, retry, rate-limit and
//! load-shed layers (and tower's own balancers) apply to it.
//!
//! Owns: [`RawCall`], the request type, and the two trait impls.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::error::RpcError;
use crate::peer::Peer;

/// A call with its arguments already encoded (the postcard encoding of the
/// tuple of the method's parameters), as a `tower` request; the response
/// is the reply, encoded.
///
/// # Examples
///
/// ```
/// use rpc_core::tower::RawCall;
///
/// let call = RawCall::new("Calc.add", postcard::to_stdvec(&(2i64, 3i64)).unwrap());
/// assert_eq!(call.target, "Calc.add");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawCall {
    /// `Object.method`.
    pub target: String,
    /// The encoded arguments.
    pub args: Vec<u8>,
    /// The call's timeout; `None` for the peer's default.
    pub timeout: Option<Duration>,
    /// Whether the call may be repeated (see
    /// [`CallSpec::idempotent`](crate::CallSpec::idempotent)).
    pub idempotent: bool,
}

impl RawCall {
    /// A call to `target` with `args`, the default timeout, not idempotent.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::tower::RawCall;
    ///
    /// let call = RawCall::new("Kv.get", vec![1, b'k'])
    ///     .timeout(Duration::from_secs(1))
    ///     .idempotent();
    /// assert!(call.idempotent);
    /// ```
    pub fn new(target: impl Into<String>, args: Vec<u8>) -> RawCall {
        RawCall {
            target: target.into(),
            args,
            timeout: None,
            idempotent: false,
        }
    }

    /// With a timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::tower::RawCall;
    ///
    /// let call = RawCall::new("Kv.get", vec![]).timeout(Duration::from_secs(1));
    /// assert_eq!(call.timeout, Some(Duration::from_secs(1)));
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> RawCall {
        self.timeout = Some(timeout);
        self
    }

    /// Marked as safe to repeat.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::tower::RawCall;
    ///
    /// assert!(RawCall::new("Kv.get", vec![]).idempotent().idempotent);
    /// ```
    #[must_use]
    pub fn idempotent(mut self) -> RawCall {
        self.idempotent = true;
        self
    }
}

/// A peer as a `tower` service: each request is one call.
///
/// It is always ready: the connection's own limit of calls in flight
/// applies inside the call (put a `ConcurrencyLimit` or `LoadShed` layer
/// in front to act before that).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rpc_core::tower::RawCall;
/// use rpc_core::{expose, Peer, PeerConfig, Registry};
/// use tower::{Service, ServiceExt};
///
/// pub struct Calc;
/// #[expose]
/// impl Calc {
///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let served = Registry::new();
/// # served.expose(Calc);
/// # let (_server, mut client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// let args = postcard::to_stdvec(&(2i64, 3i64)).unwrap();
/// let reply = client.ready().await?.call(RawCall::new("Calc.add", args)).await?;
/// assert_eq!(postcard::from_bytes::<i64>(&reply).unwrap(), 5);
/// # Ok(())
/// # }
/// ```
impl tower::Service<RawCall> for Peer {
    type Response = Vec<u8>;
    type Error = RpcError;
    type Future = BoxFuture<'static, Result<Vec<u8>, RpcError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: RawCall) -> Self::Future {
        let peer = self.clone();
        Box::pin(async move { peer.call_raw(&call.target, &call.args, call.timeout).await })
    }
}

/// A peer's load is its calls in flight ([`Peer::in_flight`]): what
/// `tower::balance::p2c` compares.
///
/// # Examples
///
/// ```
/// use rpc_core::{Peer, PeerConfig, Registry};
/// use tower::load::Load;
///
/// let peer = Peer::detached(Registry::new(), PeerConfig::default());
/// assert_eq!(peer.load(), 0);
/// ```
impl tower::load::Load for Peer {
    type Metric = usize;

    fn load(&self) -> usize {
        self.in_flight()
    }
}
