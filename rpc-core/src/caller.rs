//! [`Caller`]: anything that can carry a call, so that one generated stub
//! works over a single [`Peer`] or over a balanced set of them.
//!
//! Owns: the contract between a stub and what carries its calls, and the
//! [`CallSpec`] each call comes with. `Peer` implements it here;
//! `rpc_transport`'s balanced client implements it too.
//!
//! Stubs are generic over their caller, with `Peer` as the default type
//! (`CalculatorClient` is `CalculatorClient<Peer>`), so a stub over one peer
//! costs what it did before: no boxing, no dynamic dispatch.

use std::future::Future;
use std::time::Duration;

use futures::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::RpcError;
use crate::peer::Peer;
use crate::stream::RpcStream;

/// How one call is to be made: its target, its timeout, and whether it
/// may be repeated.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rpc_core::CallSpec;
///
/// let spec = CallSpec::new("Calc.add")
///     .timeout(Some(Duration::from_secs(1)))
///     .idempotent(true);
/// assert_eq!(spec.target(), "Calc.add");
/// assert!(spec.is_idempotent());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CallSpec<'a> {
    target: &'a str,
    timeout: Option<Duration>,
    idempotent: bool,
}

impl<'a> CallSpec<'a> {
    /// A call to `target` (`Object.method`), with the caller's default
    /// timeout, not idempotent.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::CallSpec;
    ///
    /// let spec = CallSpec::new("Log.write");
    /// assert_eq!(spec.timeout_or(None), None);
    /// assert!(!spec.is_idempotent());
    /// ```
    pub fn new(target: &'a str) -> CallSpec<'a> {
        CallSpec {
            target,
            timeout: None,
            idempotent: false,
        }
    }

    /// The call's timeout; `None` leaves the caller's default.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::CallSpec;
    ///
    /// let spec = CallSpec::new("Log.write").timeout(Some(Duration::from_millis(5)));
    /// assert_eq!(spec.timeout_or(None), Some(Duration::from_millis(5)));
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Option<Duration>) -> CallSpec<'a> {
        self.timeout = timeout;
        self
    }

    /// Whether running the call twice does no harm
    /// (`#[expose(idempotent)]`): a balanced caller may then repeat it on
    /// another backend when the first one is lost mid-call.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::CallSpec;
    ///
    /// assert!(CallSpec::new("Kv.get").idempotent(true).is_idempotent());
    /// ```
    #[must_use]
    pub fn idempotent(mut self, idempotent: bool) -> CallSpec<'a> {
        self.idempotent = idempotent;
        self
    }

    /// The target, `Object.method`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::CallSpec;
    ///
    /// assert_eq!(CallSpec::new("Kv.get").target(), "Kv.get");
    /// ```
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The call's own timeout, else `default`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::CallSpec;
    ///
    /// let default = Some(Duration::from_secs(3));
    /// assert_eq!(CallSpec::new("Kv.get").timeout_or(default), default);
    /// ```
    pub fn timeout_or(&self, default: Option<Duration>) -> Option<Duration> {
        self.timeout.or(default)
    }

    /// Whether the call may be repeated (see [`idempotent`](Self::idempotent)).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::CallSpec;
    ///
    /// assert!(!CallSpec::new("Kv.put").is_idempotent());
    /// ```
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}

/// Anything that can carry a call: a [`Peer`], or a set of peers behind a
/// balancer. Generated stubs take any `Caller`
/// (`CalculatorClient::new(&caller)`).
///
/// Implement it to route calls your own way; the methods mirror
/// [`Peer::call`], [`Peer::call_stream`], [`Peer::call_duplex`] and
/// [`Peer::call_with_input`], with a [`CallSpec`] in place of the target.
///
/// # Examples
///
/// A stub over a caller that counts the calls it carries:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
/// use std::sync::Arc;
/// use futures::Stream;
/// use rpc_core::{expose, CallSpec, Caller, Peer, PeerConfig, Registry, RpcError, RpcStream};
/// use serde::{de::DeserializeOwned, Serialize};
///
/// #[derive(Clone, Debug)]
/// struct Counting { peer: Peer, calls: Arc<AtomicUsize> }
///
/// impl Caller for Counting {
///     async fn call<A, R>(&self, spec: CallSpec<'_>, args: &A) -> Result<R, RpcError>
///     where A: Serialize + Sync + ?Sized, R: DeserializeOwned + Send {
///         self.calls.fetch_add(1, SeqCst);
///         Caller::call(&self.peer, spec, args).await
///     }
///     async fn call_stream<A, T>(&self, spec: CallSpec<'_>, args: &A) -> Result<RpcStream<T>, RpcError>
///     where A: Serialize + Sync + ?Sized, T: DeserializeOwned + Send {
///         Caller::call_stream(&self.peer, spec, args).await
///     }
///     async fn call_duplex<A, T, S>(&self, spec: CallSpec<'_>, args: &A, input: S) -> Result<RpcStream<T>, RpcError>
///     where A: Serialize + Sync + ?Sized, T: DeserializeOwned + Send,
///           S: Stream + Send + 'static, S::Item: Serialize + Send {
///         Caller::call_duplex(&self.peer, spec, args, input).await
///     }
///     async fn call_with_input<A, R, S>(&self, spec: CallSpec<'_>, args: &A, input: S) -> Result<R, RpcError>
///     where A: Serialize + Sync + ?Sized, R: DeserializeOwned + Send,
///           S: Stream + Send + 'static, S::Item: Serialize + Send {
///         Caller::call_with_input(&self.peer, spec, args, input).await
///     }
/// }
///
/// pub struct Calc;
/// #[expose]
/// impl Calc {
///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let served = Registry::new();
/// # served.expose(Calc);
/// # let (_server, client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// let counting = Counting { peer: client, calls: Arc::default() };
/// let calc = CalcClient::new(&counting);
/// assert_eq!(calc.add(2, 3).await?, 5);
/// assert_eq!(counting.calls.load(SeqCst), 1);
/// # Ok(())
/// # }
/// ```
pub trait Caller: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Makes a call and waits for its reply.
    ///
    /// # Errors
    ///
    /// As [`Peer::call`].
    fn call<A, R>(
        &self,
        spec: CallSpec<'_>,
        args: &A,
    ) -> impl Future<Output = Result<R, RpcError>> + Send
    where
        A: Serialize + Sync + ?Sized,
        R: DeserializeOwned + Send;

    /// Calls a method that returns a stream.
    ///
    /// # Errors
    ///
    /// As [`Peer::call_stream`].
    fn call_stream<A, T>(
        &self,
        spec: CallSpec<'_>,
        args: &A,
    ) -> impl Future<Output = Result<RpcStream<T>, RpcError>> + Send
    where
        A: Serialize + Sync + ?Sized,
        T: DeserializeOwned + Send;

    /// Calls a method that takes a stream and returns one.
    ///
    /// # Errors
    ///
    /// As [`Peer::call_duplex`].
    fn call_duplex<A, T, S>(
        &self,
        spec: CallSpec<'_>,
        args: &A,
        input: S,
    ) -> impl Future<Output = Result<RpcStream<T>, RpcError>> + Send
    where
        A: Serialize + Sync + ?Sized,
        T: DeserializeOwned + Send,
        S: Stream + Send + 'static,
        S::Item: Serialize + Send;

    /// Calls a method that takes a stream and returns a value.
    ///
    /// # Errors
    ///
    /// As [`Peer::call_with_input`].
    fn call_with_input<A, R, S>(
        &self,
        spec: CallSpec<'_>,
        args: &A,
        input: S,
    ) -> impl Future<Output = Result<R, RpcError>> + Send
    where
        A: Serialize + Sync + ?Sized,
        R: DeserializeOwned + Send,
        S: Stream + Send + 'static,
        S::Item: Serialize + Send;
}

impl Caller for Peer {
    async fn call<A, R>(&self, spec: CallSpec<'_>, args: &A) -> Result<R, RpcError>
    where
        A: Serialize + Sync + ?Sized,
        R: DeserializeOwned + Send,
    {
        self.call_inner(spec.target, args, spec.timeout).await
    }

    async fn call_stream<A, T>(
        &self,
        spec: CallSpec<'_>,
        args: &A,
    ) -> Result<RpcStream<T>, RpcError>
    where
        A: Serialize + Sync + ?Sized,
        T: DeserializeOwned + Send,
    {
        self.stream_inner(spec.target, args, None, spec.timeout)
            .await
    }

    async fn call_duplex<A, T, S>(
        &self,
        spec: CallSpec<'_>,
        args: &A,
        input: S,
    ) -> Result<RpcStream<T>, RpcError>
    where
        A: Serialize + Sync + ?Sized,
        T: DeserializeOwned + Send,
        S: Stream + Send + 'static,
        S::Item: Serialize + Send,
    {
        let input = crate::peer::input_pump(input);
        self.stream_inner(spec.target, args, Some(input), spec.timeout)
            .await
    }

    async fn call_with_input<A, R, S>(
        &self,
        spec: CallSpec<'_>,
        args: &A,
        input: S,
    ) -> Result<R, RpcError>
    where
        A: Serialize + Sync + ?Sized,
        R: DeserializeOwned + Send,
        S: Stream + Send + 'static,
        S::Item: Serialize + Send,
    {
        self.input_inner(spec.target, args, input, spec.timeout)
            .await
    }
}
