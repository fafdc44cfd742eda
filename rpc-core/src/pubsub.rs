//! Publish/subscribe on top of streams: Pyro's Event Server, typed.
//!
//! A [`Topic`] is a typed channel that the server (or any handler)
//! publishes to; each subscriber gets a stream of [`Published`] items. A
//! [`Hub`] is a ready-made object that exposes named topics, so that
//! clients subscribe by name with a [`HubClient`].
//!
//! **Slow subscribers.** Every topic keeps a bounded buffer of the most
//! recent items (its capacity, 1024 by default). A subscriber that falls
//! further behind than that, because it or its connection is slow, loses
//! the oldest items and is told how many with [`Published::Missed`] before
//! it gets the next one. Publishing never waits and never grows memory
//! with a slow subscriber. (This is the buffer of
//! `tokio::sync::broadcast`.)
//!
//! **Lifetime.** A subscription ends when the subscriber drops its stream
//! (the server's side of it goes at once), when the topic goes away on the
//! server (the stream ends cleanly), or when the connection is lost (the
//! stream ends with the reason).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::dispatch::{Handled, Incoming, Service};
use crate::error::{RemoteError, RpcError};
use crate::peer::Peer;
use crate::stream::RpcStream;

/// What a subscriber receives: an item, or word of the items it missed.
///
/// # Examples
///
/// ```
/// use futures::StreamExt;
/// use rpc_core::pubsub::{Published, Topic};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let topic = Topic::with_capacity(2);
/// let mut sub = topic.subscribe();
/// for n in 0..5u32 {
///     topic.publish(n);
/// }
/// // Only the last two fitted in the buffer.
/// assert_eq!(sub.next().await, Some(Published::Missed(3)));
/// assert_eq!(sub.next().await, Some(Published::Item(3)));
/// assert_eq!(sub.next().await, Some(Published::Item(4)));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Published<T> {
    /// The next item.
    Item(T),
    /// This many items were dropped because the subscriber fell behind by
    /// more than the topic's buffer.
    Missed(u64),
}

/// A typed topic: publish items, subscribe to a stream of them.
///
/// Cheap to clone; clones publish to the same subscribers. Return
/// [`subscribe`](Topic::subscribe) from an exposed method to give remote
/// callers a subscription.
///
/// # Examples
///
/// ```
/// use futures::{Stream, StreamExt};
/// use rpc_core::pubsub::{Published, Topic};
/// use rpc_core::{expose, Peer, PeerConfig, Registry};
///
/// pub struct Weather {
///     readings: Topic<f32>,
/// }
///
/// #[expose]
/// impl Weather {
///     /// A subscription to every reading from now on.
///     pub fn readings(&self) -> impl Stream<Item = Published<f32>> + Send + 'static {
///         self.readings.subscribe()
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let readings = Topic::new();
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let served = Registry::new();
/// served.expose(Weather { readings: readings.clone() });
/// # let (_server, client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// let mut sub = WeatherClient::new(&client).readings().await?;
/// readings.publish(21.5);
/// assert_eq!(sub.next().await, Some(Ok(Published::Item(21.5))));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Topic<T> {
    tx: broadcast::Sender<T>,
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Topic {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Clone + Send + 'static> Default for Topic<T> {
    fn default() -> Self {
        Topic::new()
    }
}

impl<T: Clone + Send + 'static> Topic<T> {
    /// The buffer a topic keeps by default for subscribers that fall behind.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// A topic that keeps the last [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY)
    /// items for subscribers that fall behind.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::pubsub::Topic;
    /// let topic: Topic<String> = Topic::new();
    /// assert_eq!(topic.subscribers(), 0);
    /// ```
    pub fn new() -> Self {
        Topic::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A topic that keeps the last `capacity` items (at least 1) for
    /// subscribers that fall behind.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::pubsub::Topic;
    /// let small: Topic<u8> = Topic::with_capacity(16);
    /// # let _ = small;
    /// ```
    pub fn with_capacity(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Topic { tx }
    }

    /// Publishes `item` to every current subscriber; how many there are.
    /// Never waits.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::pubsub::Topic;
    /// let topic = Topic::new();
    /// assert_eq!(topic.publish("nobody listens"), 0);
    /// let _sub = topic.subscribe();
    /// assert_eq!(topic.publish("one listens"), 1);
    /// ```
    pub fn publish(&self, item: T) -> usize {
        self.tx.send(item).unwrap_or(0)
    }

    /// A subscription to the items published from now on. It ends when
    /// every clone of the topic is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::StreamExt;
    /// use rpc_core::pubsub::{Published, Topic};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let topic = Topic::new();
    /// let mut sub = topic.subscribe();
    /// topic.publish(1);
    /// drop(topic);
    /// assert_eq!(sub.next().await, Some(Published::Item(1)));
    /// assert_eq!(sub.next().await, None);
    /// # }
    /// ```
    pub fn subscribe(&self) -> Subscription<T> {
        let items = futures::stream::unfold(self.tx.subscribe(), |mut rx| async move {
            let next = match rx.recv().await {
                Ok(item) => Published::Item(item),
                Err(broadcast::error::RecvError::Lagged(n)) => Published::Missed(n),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((next, rx))
        });
        Subscription(Box::pin(items))
    }

    /// Subscribers now.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::pubsub::Topic;
    /// let topic: Topic<u8> = Topic::new();
    /// let sub = topic.subscribe();
    /// assert_eq!(topic.subscribers(), 1);
    /// drop(sub);
    /// assert_eq!(topic.subscribers(), 0);
    /// ```
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// A subscription to a [`Topic`]: a stream of [`Published`] items, which
/// ends when every clone of the topic is dropped. Return it from an exposed
/// method (as `impl Stream<Item = Published<T>> + Send + 'static`) to give
/// remote callers a subscription.
///
/// # Examples
///
/// See [`Topic::subscribe`].
pub struct Subscription<T>(Pin<Box<dyn Stream<Item = Published<T>> + Send>>);

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

impl<T> Stream for Subscription<T> {
    type Item = Published<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

/// Named topics of one item type, exposed as one object (`"Hub"` by
/// default): clients subscribe by name, and may publish.
///
/// The server creates the topics ([`topic`](Hub::topic)); a subscription or
/// publication to a name it has not created fails with
/// [`RemoteError::Failed`], so clients cannot make the server hold topics
/// it never asked for.
///
/// # Examples
///
/// ```
/// use futures::StreamExt;
/// use rpc_core::pubsub::{Hub, HubClient, Published};
/// use rpc_core::{Peer, PeerConfig, Registry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let hub: Hub<String> = Hub::new();
/// let news = hub.topic("news");
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let served = Registry::new();
/// served.expose(hub.clone());
/// # let (_server, client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// let hub_client = HubClient::<String>::new(&client);
/// let mut headlines = hub_client.subscribe("news").await?;
/// news.publish("rust 2.0 released".into());
/// hub_client.publish("news", &"from a client".into()).await?;
/// assert_eq!(headlines.next().await, Some(Ok(Published::Item("rust 2.0 released".into()))));
/// assert_eq!(headlines.next().await, Some(Ok(Published::Item("from a client".into()))));
/// assert!(hub_client.subscribe("sports").await.is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Hub<T> {
    topics: Arc<Mutex<HashMap<String, Topic<T>>>>,
    capacity: usize,
}

impl<T> Clone for Hub<T> {
    fn clone(&self) -> Self {
        Hub {
            topics: self.topics.clone(),
            capacity: self.capacity,
        }
    }
}

impl<T: Clone + Send + 'static> Default for Hub<T> {
    fn default() -> Self {
        Hub::new()
    }
}

impl<T: Clone + Send + 'static> Hub<T> {
    /// A hub whose topics keep [`Topic::DEFAULT_CAPACITY`] items for slow
    /// subscribers.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::pubsub::Hub;
    /// let hub: Hub<u32> = Hub::new();
    /// # let _ = hub;
    /// ```
    pub fn new() -> Self {
        Hub::with_capacity(Topic::<T>::DEFAULT_CAPACITY)
    }

    /// A hub whose topics keep `capacity` items for slow subscribers.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::pubsub::Hub;
    /// let hub: Hub<u32> = Hub::with_capacity(64);
    /// # let _ = hub;
    /// ```
    pub fn with_capacity(capacity: usize) -> Self {
        Hub {
            topics: Arc::new(Mutex::new(HashMap::new())),
            capacity,
        }
    }

    /// The topic named `name`, created if it does not exist yet.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::pubsub::Hub;
    /// let hub: Hub<u32> = Hub::new();
    /// let a = hub.topic("a");
    /// let _sub = hub.topic("a").subscribe();
    /// assert_eq!(a.subscribers(), 1);
    /// ```
    pub fn topic(&self, name: &str) -> Topic<T> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(name.to_string())
            .or_insert_with(|| Topic::with_capacity(self.capacity))
            .clone()
    }

    /// Removes topic `name`: its subscriptions end (cleanly) once the last
    /// clone of it is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::pubsub::Hub;
    /// let hub: Hub<u32> = Hub::new();
    /// hub.topic("old");
    /// assert!(hub.remove("old"));
    /// assert!(!hub.remove("old"));
    /// ```
    pub fn remove(&self, name: &str) -> bool {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.remove(name).is_some()
    }

    fn existing(&self, name: &str) -> Result<Topic<T>, RemoteError> {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .get(name)
            .cloned()
            .ok_or_else(|| RemoteError::Failed(format!("no topic named `{name}`")))
    }
}

impl<T> Service for Hub<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn name() -> &'static str {
        "Hub"
    }

    fn methods() -> &'static [&'static str] {
        &["subscribe", "publish"]
    }

    fn dispatch(self: Arc<Self>, method: usize, call: Incoming) -> Handled {
        match method {
            0 => {
                let topic = call
                    .args::<(String,)>()
                    .and_then(|(name,)| self.existing(&name));
                match topic {
                    Ok(topic) => Handled::Pending(Box::pin(call.stream(topic.subscribe()))),
                    Err(e) => Handled::Done(call.fail(e)),
                }
            }
            1 => {
                let published = call
                    .args::<(String, T)>()
                    .and_then(|(name, item)| Ok(self.existing(&name)?.publish(item)));
                Handled::Done(match published {
                    Ok(n) => call.reply(&(n as u64)),
                    Err(e) => call.fail(e),
                })
            }
            _ => Handled::Done(call.unknown_method()),
        }
    }
}

/// A typed client of a remote [`Hub`].
///
/// # Examples
///
/// See [`Hub`].
#[derive(Debug)]
pub struct HubClient<T> {
    peer: Peer,
    object: String,
    _item: std::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for HubClient<T> {
    fn clone(&self) -> Self {
        HubClient {
            peer: self.peer.clone(),
            object: self.object.clone(),
            _item: std::marker::PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> HubClient<T> {
    /// A client of the hub exposed as `"Hub"` on the other end of `peer`.
    ///
    /// # Examples
    ///
    /// See [`Hub`].
    pub fn new(peer: &Peer) -> Self {
        HubClient::with_name(peer, "Hub")
    }

    /// A client of the hub exposed under `name`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(peer: &rpc_core::Peer) {
    /// let events = rpc_core::pubsub::HubClient::<String>::with_name(peer, "Events");
    /// # let _ = events;
    /// # }
    /// ```
    pub fn with_name(peer: &Peer, name: &str) -> Self {
        HubClient {
            peer: peer.clone(),
            object: name.to_string(),
            _item: std::marker::PhantomData,
        }
    }

    /// Subscribes to topic `name`: its items from now on.
    ///
    /// # Errors
    ///
    /// As [`Peer::call`]; `RemoteError::Failed` when the hub has no such
    /// topic.
    ///
    /// # Examples
    ///
    /// See [`Hub`].
    pub async fn subscribe(&self, name: &str) -> Result<RpcStream<Published<T>>, RpcError> {
        let target = format!("{}.subscribe", self.object);
        self.peer.call_stream(&target, &(name,)).await
    }

    /// Publishes `item` to topic `name` on the hub; how many subscribers
    /// it reached.
    ///
    /// # Errors
    ///
    /// As [`Peer::call`]; `RemoteError::Failed` when the hub has no such
    /// topic.
    ///
    /// # Examples
    ///
    /// See [`Hub`].
    pub async fn publish(&self, name: &str, item: &T) -> Result<u64, RpcError> {
        let target = format!("{}.publish", self.object);
        self.peer.call(&target, &(name, item)).await
    }
}
