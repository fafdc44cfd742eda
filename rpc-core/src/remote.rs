//! Object references: [`Remote<T>`], a typed handle to an object that
//! lives on the side that sent it, passed in calls like any other value
//! (Pyro's auto-proxies and callback objects, capnp's capabilities).
//!
//! Owns: the public face of handles: [`Remote`], and [`Exposed`], which
//! `#[expose]` implements to tie an object type to its client stub. The
//! connection keeps the tables (`conn::handles`).
//!
//! Sending a `Remote` hands the object out on that connection under a
//! fresh name of 128 random bits, which only the receiver learns; the
//! receiver gets a `Remote` that derefs to the object's client stub. When
//! the receiver drops its last clone of it, a release message lets the
//! owner drop the object; closing the connection releases every handle.
//! A handle works on the connection it came on only: after a reconnect,
//! calls through it fail with [`RemoteError::DeadHandle`].

use std::ops::Deref;
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::conn::handles::{self, Imported};
use crate::dispatch::{Handled, Incoming, Service};
use crate::error::{RemoteError, RpcError};
use crate::local::{Local, LocalService};
use crate::peer::Peer;

/// An object type that has a client stub: what [`Remote<T>`] derefs to on
/// the side that receives it.
///
/// `#[expose]` implements it for every type it exposes (with
/// `Client = <Type>Client`).
///
/// # Examples
///
/// ```
/// use rpc_core::{expose, Exposed};
///
/// pub struct Counter;
/// #[expose]
/// impl Counter {
///     pub fn next(&self) -> u64 { 1 }
/// }
///
/// fn stub_name<T: Exposed>() -> &'static str { std::any::type_name::<T::Client>() }
/// assert!(stub_name::<Counter>().ends_with("CounterClient"));
/// assert_eq!(Counter::method_names(), &["next"]);
/// ```
pub trait Exposed: 'static {
    /// The client stub for objects of this type.
    type Client: Clone + Send + Sync + 'static;

    /// A stub for the object exposed under `name` on the other end of
    /// `peer`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Exposed, Peer, PeerConfig, Registry};
    ///
    /// pub struct Counter;
    /// #[expose]
    /// impl Counter {
    ///     pub fn next(&self) -> u64 { 1 }
    /// }
    ///
    /// let peer = Peer::detached(Registry::new(), PeerConfig::default());
    /// let _stub: CounterClient = Counter::client(&peer, "counter-2");
    /// ```
    fn client(peer: &Peer, name: &str) -> Self::Client;

    /// The exposed method names, as [`Service::methods`] (named apart from
    /// it so that both traits can be in scope).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Exposed};
    ///
    /// pub struct Counter;
    /// #[expose]
    /// impl Counter {
    ///     pub fn next(&self) -> u64 { 1 }
    ///     #[expose(name = "zero")]
    ///     pub fn reset(&self) {}
    /// }
    ///
    /// assert_eq!(Counter::method_names(), &["next", "zero"]);
    /// ```
    fn method_names() -> &'static [&'static str];
}

impl<S: LocalService + Exposed> Exposed for Local<S> {
    type Client = S::Client;

    fn client(peer: &Peer, name: &str) -> Self::Client {
        S::client(peer, name)
    }

    fn method_names() -> &'static [&'static str] {
        S::method_names()
    }
}

/// A typed handle to an object on the side that sent it: an argument or a
/// return value that is a reference, not a copy.
///
/// The sender wraps an object with [`Remote::new`] and passes it in a call
/// (or returns it from a handler); the receiver gets a `Remote<T>` that
/// derefs to `T`'s client stub, and can keep it and call through it for as
/// long as it likes, after the call that brought it has returned.
///
/// - **Exposure.** Each time a `Remote` is sent, the object is exposed on
///   that connection only, under a fresh name of 128 random bits that
///   nobody else learns: the remote can reach only the objects it was
///   given, and a guessed or forged name is refused.
/// - **Lifetime.** The object is released when the receiver drops its last
///   clone of the handle (a release message goes back), or when the
///   connection closes. A handle does not survive a reconnect: calls
///   through it then fail with [`RemoteError::DeadHandle`], like calls
///   through a released name.
/// - **Both ways.** Either side can send handles, as arguments or return
///   values (a factory method returning a session object). A handle that
///   was received can be sent on too (back, or to another peer); calls
///   through what the next receiver gets are forwarded through this side.
/// - **Limits.** At most [`PeerConfig::max_handles`](crate::PeerConfig::max_handles)
///   handles are live per connection in each direction; past it, sending
///   fails with an error naming the limit.
///
/// A `Remote` travels only as an argument or a return value of a call (or
/// an argument of a notification), not inside a stream's items.
///
/// # Examples
///
/// A client passes a listener; the server keeps it and calls it later:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use rpc_core::{expose, Peer, PeerConfig, Registry, Remote, RpcError};
///
/// pub struct Listener(Arc<Mutex<Vec<String>>>);
/// #[expose]
/// impl Listener {
///     pub fn event(&self, what: String) { self.0.lock().unwrap().push(what) }
/// }
///
/// #[derive(Default)]
/// pub struct Feed { listeners: Mutex<Vec<Remote<Listener>>> }
/// #[expose]
/// impl Feed {
///     pub fn subscribe(&self, listener: Remote<Listener>) {
///         self.listeners.lock().unwrap().push(listener);
///     }
///     pub async fn publish(&self, what: String) -> Result<(), RpcError> {
///         let listeners = self.listeners.lock().unwrap().clone();
///         for listener in listeners {
///             listener.event(what.clone()).await?;
///         }
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let served = Registry::new();
/// # served.expose(Feed::default());
/// # let (_server, client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// let heard = Arc::new(Mutex::new(Vec::new()));
/// let feed = FeedClient::new(&client);
/// feed.subscribe(Remote::new(Listener(heard.clone()))).await?;
/// feed.publish("hello".into()).await??;
/// assert_eq!(*heard.lock().unwrap(), ["hello"]);
/// # Ok(())
/// # }
/// ```
pub struct Remote<T: Exposed> {
    state: State<T>,
}

enum State<T: Exposed> {
    /// Made on this side: the object, handed out each time it is sent.
    Here(Arc<dyn Service>),
    /// Received: a stub for the object on the other side, and the handle
    /// whose last clone releases it.
    There {
        client: T::Client,
        peer: Peer,
        handle: Arc<Imported>,
    },
}

impl<T: Exposed> Clone for Remote<T> {
    fn clone(&self) -> Self {
        let state = match &self.state {
            State::Here(object) => State::Here(object.clone()),
            State::There {
                client,
                peer,
                handle,
            } => State::There {
                client: client.clone(),
                peer: peer.clone(),
                handle: handle.clone(),
            },
        };
        Remote { state }
    }
}

impl<T: Exposed> std::fmt::Debug for Remote<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            State::Here(_) => write!(f, "Remote<{}>(here)", std::any::type_name::<T>()),
            State::There { handle, .. } => {
                write!(f, "Remote<{}>({handle:?})", std::any::type_name::<T>())
            }
        }
    }
}

impl<T: Exposed + Service> Remote<T> {
    /// Wraps `object` to be sent as a handle.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Remote};
    ///
    /// pub struct Session;
    /// #[expose]
    /// impl Session {
    ///     pub fn user(&self) -> String { "ada".into() }
    /// }
    ///
    /// let handle = Remote::new(Session);
    /// assert!(handle.is_here());
    /// ```
    pub fn new(object: T) -> Remote<T> {
        Remote::from_arc(Arc::new(object))
    }

    /// Wraps an object that is already shared: this side keeps using it
    /// while the remote holds the handle.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::{expose, Remote};
    ///
    /// pub struct Session;
    /// #[expose]
    /// impl Session {
    ///     pub fn user(&self) -> String { "ada".into() }
    /// }
    ///
    /// let session = Arc::new(Session);
    /// let handle = Remote::from_arc(session.clone());
    /// assert_eq!(Arc::strong_count(&session), 2);
    /// # drop(handle);
    /// ```
    pub fn from_arc(object: Arc<T>) -> Remote<T> {
        Remote {
            state: State::Here(object),
        }
    }
}

impl<T: Exposed> Remote<T> {
    /// Whether this handle was made on this side (with [`Remote::new`]),
    /// rather than received.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Remote};
    ///
    /// pub struct Session;
    /// #[expose]
    /// impl Session {
    ///     pub fn user(&self) -> String { "ada".into() }
    /// }
    ///
    /// assert!(Remote::new(Session).is_here());
    /// ```
    pub fn is_here(&self) -> bool {
        matches!(self.state, State::Here(_))
    }

    /// The client stub of a received handle; `None` for one made here.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Remote};
    ///
    /// pub struct Session;
    /// #[expose]
    /// impl Session {
    ///     pub fn user(&self) -> String { "ada".into() }
    /// }
    ///
    /// assert!(Remote::new(Session).client().is_none());
    /// ```
    pub fn client(&self) -> Option<&T::Client> {
        match &self.state {
            State::Here(_) => None,
            State::There { client, .. } => Some(client),
        }
    }

    /// The name the object goes by on the connection, for a received
    /// handle (`rpc.ref.` and 32 hex digits); `None` for one made here.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Remote};
    ///
    /// pub struct Session;
    /// #[expose]
    /// impl Session {
    ///     pub fn user(&self) -> String { "ada".into() }
    /// }
    ///
    /// assert_eq!(Remote::new(Session).name(), None);
    /// ```
    pub fn name(&self) -> Option<&str> {
        match &self.state {
            State::Here(_) => None,
            State::There { handle, .. } => Some(handle.name()),
        }
    }
}

/// A received handle derefs to the object's client stub.
///
/// # Panics
///
/// On a handle made on this side with [`Remote::new`]: it becomes callable
/// on the side that receives it. Use [`Remote::client`] to check.
impl<T: Exposed> Deref for Remote<T> {
    type Target = T::Client;

    fn deref(&self) -> &T::Client {
        match &self.state {
            State::There { client, .. } => client,
            State::Here(_) => panic!(
                "a `Remote<{}>` made on this side has no client: it becomes callable on the \
                 side that receives it (`Remote::client` returns `None` here)",
                std::any::type_name::<T>()
            ),
        }
    }
}

impl<T: Exposed> Serialize for Remote<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let service: Arc<dyn Service> = match &self.state {
            State::Here(object) => object.clone(),
            State::There { peer, handle, .. } => Arc::new(Forward {
                peer: peer.clone(),
                name: handle.name().into(),
                methods: T::method_names(),
                _keep: self.clone(),
            }),
        };
        let name = handles::export(service, T::method_names())
            .map_err(|why| S::Error::custom(handles::failed(why)))?;
        s.serialize_str(&name)
    }
}

impl<'de, T: Exposed> Deserialize<'de> for Remote<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let (peer, handle) =
            handles::import(&name).map_err(|why| D::Error::custom(handles::failed(why)))?;
        Ok(Remote {
            state: State::There {
                client: T::client(&peer, &name),
                peer,
                handle,
            },
        })
    }
}

/// A received handle sent on: calls to it are made through the handle it
/// keeps, on the connection that handle came from.
struct Forward<T: Exposed> {
    peer: Peer,
    name: Box<str>,
    methods: &'static [&'static str],
    _keep: Remote<T>,
}

impl<T: Exposed> Service for Forward<T> {
    fn name() -> &'static str {
        "rpc.forward"
    }

    fn methods() -> &'static [&'static str] {
        T::method_names()
    }

    fn dispatch(self: Arc<Self>, method: usize, call: Incoming) -> Handled {
        let Some(method) = self.methods.get(method) else {
            return Handled::Done(call.unknown_method());
        };
        let target = format!("{}.{method}", self.name);
        let args = call.raw_args().to_vec();
        let timeout = call.context().remaining();
        Handled::Pending(Box::pin(async move {
            match self.peer.call_raw(&target, &args, timeout).await {
                Ok(reply) => call.reply_raw(&reply),
                Err(RpcError::Remote(e)) => call.fail(e),
                Err(e) => call.fail(RemoteError::Failed(format!(
                    "the object behind this handle could not be reached: {e}"
                ))),
            }
        }))
    }
}
