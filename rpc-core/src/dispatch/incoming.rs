//! [`Incoming`]: one call received from the remote, answered exactly once.
//!
//! Owns: decoding the arguments, building the [`CallContext`], and handing
//! the answer to the connection through a narrow [`Respond`] seam. It never
//! holds the connection itself, so nothing here can reach the reader, the
//! pending table or the connection's lifecycle.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::registry::Target;
use super::service::Replied;
use crate::context::CallContext;
use crate::error::RemoteError;
use crate::identity::PeerIdentity;
use crate::peer::Peer;
use crate::stream::{pump, Pumped, RpcStream};
use crate::wire::{describe, Payload, Way};

/// One call (or notification) received from the remote peer.
///
/// It is answered exactly once, by [`reply`](Incoming::reply),
/// [`fail`](Incoming::fail) or [`unknown_method`](Incoming::unknown_method),
/// each of which consumes it. The answer to a notification is dropped.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use rpc_core::{Handled, Incoming, Service};
///
/// struct Echo;
///
/// impl Service for Echo {
///     fn name() -> &'static str { "Echo" }
///     fn methods() -> &'static [&'static str] { &["echo"] }
///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
///         Handled::Done(match call.args::<(String,)>() {
///             Ok((text,)) => call.reply(&text),
///             Err(e) => call.fail(e),
///         })
///     }
/// }
/// # use rpc_core::{Peer, PeerConfig, Registry};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let served = Registry::new();
/// # served.expose(Echo);
/// # let (_server, client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// let back: String = client.call("Echo.echo", &("hi",)).await?;
/// assert_eq!(back, "hi");
/// # Ok(())
/// # }
/// ```
pub struct Incoming {
    /// Where the answer goes; the only way back to the connection.
    pub(crate) respond: Arc<dyn Respond>,
    /// `None` for a notification: the answer is dropped.
    pub(crate) id: Option<u64>,
    pub(crate) args: Bytes,
    /// The object handles announced with the call, claimed as its
    /// arguments are decoded; the rest are released when it is dropped.
    pub(crate) handles: Option<Arc<crate::conn::handles::FrameHandles>>,
    /// What is called: the object, the method's index and name.
    pub(crate) target: Arc<Target>,
    pub(crate) deadline: Option<Instant>,
    /// Not answered yet: still counted in the connection's calls in flight.
    pub(crate) open: bool,
}

/// A call or a one-way notification; they are admitted and counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Wants a reply.
    Call,
    /// One way: any answer is dropped.
    Notification,
}

/// The connection as an [`Incoming`] sees it: a place to put one answer.
///
/// `conn` implements it. Each method queues the answer (when the call, `id`,
/// wants one; `None` is a notification) and then gives up the call's place
/// among the calls in flight, in that order, so a graceful shutdown that
/// waits for the count to reach zero never closes the connection before an
/// answer is queued.
pub(crate) trait Respond: Send + Sync + 'static {
    /// Answers call `id` with `value`, then releases it.
    fn reply(&self, id: Option<u64>, value: &dyn Payload);
    /// Answers call `id` with `error`, then releases it.
    fn fail(&self, id: Option<u64>, error: &RemoteError);
    /// Releases a call that will get no answer (dropped, cancelled, or
    /// panicked: the executor sends that error itself).
    fn release(&self, id: Option<u64>);
    /// Where the call came from, for its [`CallContext`].
    fn origin(&self) -> Origin;
    /// The connection as the ends of the call's streams see it.
    fn port(&self) -> Arc<dyn crate::stream::Port>;
    /// The connection, for the object handles the arguments carry.
    fn conn(&self) -> Option<Arc<crate::conn::Conn>>;
}

/// Where a call came from: the peer a handler calls back through, and what
/// is known of the connection.
pub(crate) struct Origin {
    pub(crate) peer: Peer,
    pub(crate) connection_id: u64,
    /// The name the remote announced.
    pub(crate) remote_name: Option<Arc<str>>,
    /// The certificate chain the transport verified.
    pub(crate) peer_identity: Option<PeerIdentity>,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Panicked, timed out, cancelled: no longer in flight.
        if std::mem::take(&mut self.open) {
            self.respond.release(self.id);
        }
    }
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("id", &self.id)
            .field("object", &self.target.object)
            .field("method", &self.target.method)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// Decodes the arguments as `A` (a tuple of the method's parameters).
    ///
    /// # Errors
    ///
    /// [`RemoteError::BadArguments`] when the bytes are not exactly one `A`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, Service};
    ///
    /// struct Sum;
    ///
    /// impl Service for Sum {
    ///     fn name() -> &'static str { "Sum" }
    ///     fn methods() -> &'static [&'static str] { &["add"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         Handled::Done(match call.args::<(i64, i64)>() {
    ///             Ok((a, b)) => call.reply(&(a + b)),
    ///             Err(e) => call.fail(e),
    ///         })
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry, RemoteError, RpcError};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Sum);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// assert_eq!(client.call::<i64, _>("Sum.add", &(2i64, 3i64)).await?, 5);
    /// let err = client.call::<i64, _>("Sum.add", &("two", 3i64)).await.unwrap_err();
    /// assert!(matches!(err, RpcError::Remote(RemoteError::BadArguments(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn args<A: DeserializeOwned>(&self) -> Result<A, RemoteError> {
        let conn = self.handles.as_ref().and_then(|_| self.respond.conn());
        let decoded = crate::conn::handles::decoding(conn, self.handles.as_ref(), || {
            postcard::take_from_bytes::<A>(&self.args)
        });
        match decoded {
            Ok((a, [])) => Ok(a),
            Ok((_, rest)) => Err(RemoteError::BadArguments(format!(
                "{} trailing bytes after the arguments of `{}.{}`",
                rest.len(),
                self.target.object,
                self.target.method
            ))),
            Err(e) => Err(RemoteError::BadArguments(format!(
                "arguments of `{}.{}` do not match its parameters: {}",
                self.target.object,
                self.target.method,
                describe(&e)
            ))),
        }
    }

    /// The context handed to handlers that ask for it.
    ///
    /// It holds the caller's peer (to call back), the connection id, the
    /// object and method, and the deadline; see [`CallContext`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, Service};
    ///
    /// struct Session;
    ///
    /// impl Service for Session {
    ///     fn name() -> &'static str { "Session" }
    ///     fn methods() -> &'static [&'static str] { &["id"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         let id = call.context().connection_id();
    ///         Handled::Done(call.reply(&id))
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Session);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 9),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// // The hidden setup accepted the connection with id 9.
    /// assert_eq!(client.call::<u64, _>("Session.id", &()).await?, 9);
    /// # Ok(())
    /// # }
    /// ```
    pub fn context(&self) -> CallContext {
        let origin = self.respond.origin();
        CallContext {
            peer: origin.peer,
            connection_id: origin.connection_id,
            remote_name: origin.remote_name,
            peer_identity: origin.peer_identity,
            object: self.target.object.clone(),
            method: self.target.method.clone(),
            request_id: self.id,
            deadline: self.deadline,
        }
    }

    /// The exposed name of the method being called.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, Service};
    ///
    /// struct Names;
    ///
    /// impl Service for Names {
    ///     fn name() -> &'static str { "Names" }
    ///     fn methods() -> &'static [&'static str] { &["ping", "pong"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         let name = call.method().to_string();
    ///         Handled::Done(call.reply(&name))
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Names);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// assert_eq!(client.call::<String, _>("Names.pong", &()).await?, "pong");
    /// # Ok(())
    /// # }
    /// ```
    pub fn method(&self) -> &str {
        &self.target.method
    }

    /// The name of the object being called (as the caller wrote it, which
    /// is the exposed name unless a fallback answers).
    ///
    /// # Examples
    ///
    /// See [`Registry::fallback`](crate::Registry::fallback).
    pub fn object(&self) -> &str {
        &self.target.object
    }

    /// The call's arguments as they arrived: the postcard encoding of the
    /// tuple of its parameters. For a fallback that forwards the call
    /// without knowing its types ([`Peer::call_raw`](crate::Peer::call_raw)).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Handled, Incoming, Peer, PeerConfig, Registry, RpcError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let served = Registry::new();
    /// served.fallback(|call: Incoming| {
    ///     let n = call.raw_args().len();
    ///     Handled::Done(call.reply(&n))
    /// });
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// // Two small varints: two bytes.
    /// assert_eq!(client.call::<usize, _>("Any.thing", &(1u32, 2u32)).await?, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn raw_args(&self) -> &[u8] {
        &self.args
    }

    /// Answers the call with a value that is already encoded (the bytes a
    /// reply carries, as [`Peer::call_raw`](crate::Peer::call_raw) returns
    /// them): for a fallback that forwards calls.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{Handled, Incoming, Peer, PeerConfig, Registry, RpcError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let served = Registry::new();
    /// served.fallback(|call: Incoming| {
    ///     let encoded = postcard::to_stdvec(&42u32).unwrap();
    ///     Handled::Done(call.reply_raw(&encoded))
    /// });
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// assert_eq!(client.call::<u32, _>("Any.thing", &()).await?, 42);
    /// # Ok(())
    /// # }
    /// ```
    pub fn reply_raw(self, encoded: &[u8]) -> Replied {
        self.reply(&crate::wire::Raw(encoded))
    }

    /// Whether this is a one-way notification (no answer is sent).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
    /// use rpc_core::{Handled, Incoming, Service};
    ///
    /// struct Log(UnboundedSender<bool>);
    ///
    /// impl Service for Log {
    ///     fn name() -> &'static str { "Log" }
    ///     fn methods() -> &'static [&'static str] { &["write"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         let _ = self.0.send(call.is_notification());
    ///         Handled::Done(call.reply(&()))
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let (tx, mut seen) = unbounded_channel();
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Log(tx));
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// client.call::<(), _>("Log.write", &()).await?;
    /// client.notify("Log.write", &()).await?;
    /// assert_eq!(seen.recv().await, Some(false));
    /// assert_eq!(seen.recv().await, Some(true));
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }

    /// Answers the call with a value.
    ///
    /// When the value cannot be encoded, or its encoding exceeds the remote's
    /// frame limit, the caller gets [`RemoteError::ReplyTooLarge`] or
    /// [`RemoteError::Failed`] instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, Service};
    ///
    /// struct Blob;
    ///
    /// impl Service for Blob {
    ///     fn name() -> &'static str { "Blob" }
    ///     fn methods() -> &'static [&'static str] { &["zeros"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         Handled::Done(match call.args::<(usize,)>() {
    ///             Ok((n,)) => call.reply(&vec![0u8; n]),
    ///             Err(e) => call.fail(e),
    ///         })
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry, RemoteError, RpcError};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Blob);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default().max_frame(4096)),
    /// # )?;
    /// // The caller (set up above) accepts frames of up to 4096 bytes.
    /// assert_eq!(client.call::<Vec<u8>, _>("Blob.zeros", &(3usize,)).await?, [0, 0, 0]);
    /// let err = client.call::<Vec<u8>, _>("Blob.zeros", &(10_000usize,)).await.unwrap_err();
    /// assert!(matches!(err, RpcError::Remote(RemoteError::ReplyTooLarge { limit: 4096, .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn reply<R: Serialize + ?Sized>(mut self, value: &R) -> Replied {
        if std::mem::take(&mut self.open) {
            self.respond.reply(self.id, &value as &dyn Payload);
        }
        Replied(())
    }

    /// Answers the call with an error.
    ///
    /// The caller gets `RpcError::Remote(RemoteError::Failed(error))` as the `Err` of its call.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, RemoteError, RpcError, Service};
    ///
    /// struct Vault;
    ///
    /// impl Service for Vault {
    ///     fn name() -> &'static str { "Vault" }
    ///     fn methods() -> &'static [&'static str] { &["open"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         Handled::Done(call.fail(RemoteError::Failed("the vault is sealed".into())))
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Vault);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let err = client.call::<(), _>("Vault.open", &()).await.unwrap_err();
    /// assert_eq!(err, RpcError::Remote(RemoteError::Failed("the vault is sealed".into())));
    /// # Ok(())
    /// # }
    /// ```
    pub fn fail(mut self, error: RemoteError) -> Replied {
        if std::mem::take(&mut self.open) {
            self.respond.fail(self.id, &error);
        }
        Replied(())
    }

    /// Answers with [`RemoteError::UnknownMethod`].
    ///
    /// For hand-written `dispatch` implementations given an index they do
    /// not know.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{Handled, Incoming, RemoteError, RpcError, Service};
    ///
    /// struct Greeter;
    ///
    /// impl Service for Greeter {
    ///     fn name() -> &'static str { "Greeter" }
    ///     fn methods() -> &'static [&'static str] { &["hello", "legacy"] }
    ///     fn dispatch(self: Arc<Self>, method: usize, call: Incoming) -> Handled {
    ///         match method {
    ///             0 => Handled::Done(call.reply("hello")),
    ///             _ => Handled::Done(call.unknown_method()),
    ///         }
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Greeter);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let err = client.call::<String, _>("Greeter.legacy", &()).await.unwrap_err();
    /// assert!(matches!(err, RpcError::Remote(RemoteError::UnknownMethod { method, .. }) if method == "legacy"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn unknown_method(self) -> Replied {
        let e = RemoteError::UnknownMethod {
            object: self.target.object.to_string(),
            method: self.target.method.to_string(),
        };
        self.fail(e)
    }

    /// The stream the caller sends with this call, as items of type `T`.
    ///
    /// It is granted its first credit now; the caller sends items only as
    /// the handler reads them. Dropping it tells the caller to stop
    /// sending; the call goes on.
    ///
    /// # Errors
    ///
    /// [`RemoteError::TooManyStreams`] at the connection's limit
    /// ([`PeerConfig::max_streams`](crate::PeerConfig::max_streams)), and
    /// [`RemoteError::BadArguments`] for a notification, which has no
    /// stream.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use futures::StreamExt;
    /// use rpc_core::{Handled, Incoming, Service};
    ///
    /// struct Tally;
    ///
    /// impl Service for Tally {
    ///     fn name() -> &'static str { "Tally" }
    ///     fn methods() -> &'static [&'static str] { &["count"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         let mut items = match call.input::<String>() {
    ///             Ok(items) => items,
    ///             Err(e) => return Handled::Done(call.fail(e)),
    ///         };
    ///         Handled::Pending(Box::pin(async move {
    ///             let mut n = 0u32;
    ///             while let Some(Ok(_)) = items.next().await {
    ///                 n += 1;
    ///             }
    ///             call.reply(&n)
    ///         }))
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Tally);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let words = futures::stream::iter(["a", "b", "c"].map(String::from));
    /// let n: u32 = client.call_with_input("Tally.count", &(), words).await?;
    /// assert_eq!(n, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn input<T: DeserializeOwned>(&self) -> Result<RpcStream<T>, RemoteError> {
        let id = self.id.ok_or_else(|| {
            RemoteError::BadArguments(format!(
                "`{}.{}` takes a stream and cannot be called as a notification",
                self.target.object, self.target.method
            ))
        })?;
        let port = self.respond.port();
        port.open_served(Way::Up, id)?;
        Ok(RpcStream::new(port, Way::Up, id, false, None, None))
    }

    /// Answers the call with a stream: the caller's call returns at once
    /// with the receiving end, and the items follow as the caller's credit
    /// allows. `items` is polled only while there is credit, and dropped
    /// when the caller drops its end, cancels, or the call's deadline
    /// passes. The call stays in flight until the stream ends.
    ///
    /// The returned future runs the stream to its end; give it to
    /// [`Handled::Pending`](crate::Handled::Pending) (or await it in a
    /// handler future).
    ///
    /// A notification gets no stream: `items` is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use futures::StreamExt;
    /// use rpc_core::{Handled, Incoming, Service};
    ///
    /// struct Letters;
    ///
    /// impl Service for Letters {
    ///     fn name() -> &'static str { "Letters" }
    ///     fn methods() -> &'static [&'static str] { &["abc"] }
    ///     fn dispatch(self: Arc<Self>, _: usize, call: Incoming) -> Handled {
    ///         Handled::Pending(Box::pin(call.stream(futures::stream::iter(['a', 'b', 'c']))))
    ///     }
    /// }
    /// # use rpc_core::{Peer, PeerConfig, Registry};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Letters);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let letters = client.call_stream::<char, _>("Letters.abc", &()).await?;
    /// let letters: Vec<char> = letters.map(|c| c.unwrap()).collect().await;
    /// assert_eq!(letters, ['a', 'b', 'c']);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stream<S>(mut self, items: S) -> Replied
    where
        S: Stream + Send + 'static,
        S::Item: Serialize + Send,
    {
        let Some(id) = self.id else {
            return self.reply(&());
        };
        let port = self.respond.port();
        if let Err(e) = port.open_served(Way::Down, id) {
            return self.fail(e);
        }
        match pump(&*port, Way::Down, id, items).await {
            // The end was queued, and the call released with it.
            Pumped::Finished => {
                let _answered = std::mem::take(&mut self.open);
            }
            // Stopped: the connection ended; dropping `self` releases the
            // call.
            Pumped::Stopped => {}
        }
        Replied(())
    }
}
