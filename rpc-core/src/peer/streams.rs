//! Calls with streams, through the dynamic API: a call that returns a
//! stream, one that takes a stream, and one that does both.

use std::time::Duration;

use futures::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Peer;
use crate::conn::handles::decode_answer;
use crate::conn::InputPump;
use crate::dispatch::{RemoteChange, RemoteObject, INTROSPECTION};
use crate::error::RpcError;
use crate::stream::{pump, RpcStream};
use crate::wire::{describe, Raw, Way};

/// The pump of a call's input, started once the call has its id.
pub(crate) fn input_pump<S>(input: S) -> InputPump
where
    S: Stream + Send + 'static,
    S::Item: Serialize + Send,
{
    Box::new(move |port, id| {
        Box::pin(async move {
            pump(&*port, Way::Up, id, input).await;
        })
    })
}

impl Peer {
    /// Calls a method that returns a stream; returns its receiving end once
    /// the remote has opened it.
    ///
    /// The items arrive as the stream is read: the remote sends only as
    /// much as this side's window allows
    /// ([`PeerConfig::stream_window`](crate::PeerConfig::stream_window)).
    /// The call's timeout, if it has one, covers the whole stream.
    /// Dropping the stream cancels the call.
    ///
    /// # Errors
    ///
    /// As [`call`](Peer::call), for the call itself; the stream's own
    /// errors come as its items.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{Stream, StreamExt};
    /// use rpc_core::{expose, Peer, PeerConfig, Registry};
    ///
    /// pub struct Words;
    /// #[expose]
    /// impl Words {
    ///     pub fn split(&self, text: String) -> impl Stream<Item = String> + Send + 'static {
    ///         let words: Vec<String> = text.split(' ').map(String::from).collect();
    ///         futures::stream::iter(words)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Words);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let mut words = client.call_stream::<String, _>("Words.split", &("to be",)).await?;
    /// assert_eq!(words.next().await, Some(Ok("to".to_string())));
    /// assert_eq!(words.next().await, Some(Ok("be".to_string())));
    /// assert_eq!(words.next().await, None);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_stream<T, A>(&self, target: &str, args: &A) -> Result<RpcStream<T>, RpcError>
    where
        T: DeserializeOwned,
        A: Serialize + ?Sized,
    {
        self.stream_inner(target, args, None, None).await
    }

    /// Calls a method that takes a stream: sends `input` as the remote
    /// reads it, and returns the method's value.
    ///
    /// `input` is polled only while the remote has granted credit, so a
    /// slow handler holds it up. When the remote answers, or stops reading,
    /// `input` is dropped. The call's timeout covers the whole exchange.
    ///
    /// # Errors
    ///
    /// As [`call`](Peer::call).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::StreamExt;
    /// use rpc_core::{expose, Peer, PeerConfig, Registry, RpcStream};
    ///
    /// pub struct Bytes;
    /// #[expose]
    /// impl Bytes {
    ///     pub async fn total(&self, mut chunks: RpcStream<Vec<u8>>) -> usize {
    ///         let mut n = 0;
    ///         while let Some(Ok(chunk)) = chunks.next().await {
    ///             n += chunk.len();
    ///         }
    ///         n
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Bytes);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let chunks = futures::stream::iter((0..100).map(|_| vec![0u8; 1000]));
    /// let n: usize = client.call_with_input("Bytes.total", &(), chunks).await?;
    /// assert_eq!(n, 100_000);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_with_input<R, A, S>(
        &self,
        target: &str,
        args: &A,
        input: S,
    ) -> Result<R, RpcError>
    where
        R: DeserializeOwned,
        A: Serialize + ?Sized,
        S: Stream + Send + 'static,
        S::Item: Serialize + Send,
    {
        self.input_inner(target, args, input, None).await
    }

    /// Calls a method that takes a stream and returns one: `input` is sent
    /// while the returned stream is read.
    ///
    /// # Errors
    ///
    /// As [`call`](Peer::call).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::{Stream, StreamExt};
    /// use rpc_core::{expose, Peer, PeerConfig, Registry, RpcStream};
    ///
    /// pub struct Shout;
    /// #[expose]
    /// impl Shout {
    ///     pub fn upper(&self, lines: RpcStream<String>) -> impl Stream<Item = String> + Send + 'static {
    ///         lines.filter_map(|l| async move { l.ok().map(|l| l.to_uppercase()) })
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Shout);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let lines = futures::stream::iter(["hi".to_string(), "there".to_string()]);
    /// let back: Vec<String> = client
    ///     .call_duplex::<String, _, _>("Shout.upper", &(), lines)
    ///     .await?
    ///     .map(|l| l.unwrap())
    ///     .collect()
    ///     .await;
    /// assert_eq!(back, ["HI", "THERE"]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_duplex<T, A, S>(
        &self,
        target: &str,
        args: &A,
        input: S,
    ) -> Result<RpcStream<T>, RpcError>
    where
        T: DeserializeOwned,
        A: Serialize + ?Sized,
        S: Stream + Send + 'static,
        S::Item: Serialize + Send,
    {
        self.stream_inner(target, args, Some(input_pump(input)), None)
            .await
    }

    /// A call that returns a stream (and takes one with `input`), with the
    /// timeout settled as for every call.
    pub(crate) async fn stream_inner<T, A>(
        &self,
        target: &str,
        args: &A,
        input: Option<InputPump>,
        timeout: Option<Duration>,
    ) -> Result<RpcStream<T>, RpcError>
    where
        T: DeserializeOwned,
        A: Serialize + ?Sized,
    {
        let conn = self.current()?;
        let deadline = self.deadline(timeout);
        let answered = conn
            .call_streaming(target, args, deadline, true, input)
            .await?;
        Ok(RpcStream::new(
            conn,
            Way::Down,
            answered.id,
            true,
            deadline,
            answered.input,
        ))
    }

    /// A call that takes a stream and returns a value, with the timeout
    /// settled as for every call.
    pub(crate) async fn input_inner<R, A, S>(
        &self,
        target: &str,
        args: &A,
        input: S,
        timeout: Option<Duration>,
    ) -> Result<R, RpcError>
    where
        R: DeserializeOwned,
        A: Serialize + ?Sized,
        S: Stream + Send + 'static,
        S::Item: Serialize + Send,
    {
        let conn = self.current()?;
        let deadline = self.deadline(timeout);
        let answered = conn
            .call_streaming(target, args, deadline, false, Some(input_pump(input)))
            .await?;
        decode_answer::<R>(&conn, &answered.answer)
            .map_err(|e| RpcError::BadReply(format!("reply of `{target}`: {}", describe(&e))))
    }

    /// Calls `target` with arguments that are already encoded (the postcard
    /// encoding of the tuple of its parameters), and returns the reply as
    /// it arrived, encoded: for a gateway that forwards calls it does not
    /// know the types of (see [`Incoming::raw_args`](crate::Incoming::raw_args)
    /// and [`Incoming::reply_raw`](crate::Incoming::reply_raw)).
    ///
    /// # Errors
    ///
    /// As [`call`](Peer::call); the reply is not decoded, so never
    /// [`RpcError::BadReply`].
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Peer, PeerConfig, Registry};
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
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let args = postcard::to_stdvec(&(2i64, 3i64)).unwrap();
    /// let reply = client.call_raw("Calc.add", &args, None).await?;
    /// assert_eq!(postcard::from_bytes::<i64>(&reply).unwrap(), 5);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_raw(
        &self,
        target: &str,
        encoded_args: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, RpcError> {
        self.call_raw_reaching(target, encoded_args, timeout, &mut false)
            .await
    }

    /// [`call_raw`](Self::call_raw), telling through `sent` whether the
    /// call was queued for the remote before it failed.
    pub(crate) async fn call_raw_reaching(
        &self,
        target: &str,
        encoded_args: &[u8],
        timeout: Option<Duration>,
        sent: &mut bool,
    ) -> Result<Vec<u8>, RpcError> {
        let conn = self.current()?;
        let deadline = self.deadline(timeout);
        let reply = conn
            .call(target, &Raw(encoded_args), deadline, None, sent)
            .await?;
        Ok(reply.payload.to_vec())
    }

    /// The objects the other side exposes to this connection, with their
    /// methods: its own and, on a server, the ones shared by every client.
    ///
    /// # Errors
    ///
    /// As [`call`](Peer::call);
    /// `RpcError::Remote(RemoteError::UnknownObject("rpc"))` when the other
    /// side switched introspection off
    /// ([`Registry::introspection`](crate::Registry::introspection)).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Peer, PeerConfig, Registry, RemoteObject};
    ///
    /// pub struct Calc;
    /// #[expose]
    /// impl Calc {
    ///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
    ///     #[expose(name = "times")]
    ///     pub fn mul(&self, a: i64, b: i64) -> i64 { a * b }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// # let served = Registry::new();
    /// # served.expose(Calc);
    /// # let (_server, client) = tokio::try_join!(
    /// #     Peer::accept(a, served, PeerConfig::default(), 1),
    /// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
    /// # )?;
    /// let objects: Vec<RemoteObject> = client.remote_objects().await?;
    /// assert_eq!(objects.len(), 1);
    /// assert_eq!(objects[0].name, "Calc");
    /// assert_eq!(objects[0].methods, ["add", "times"]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn remote_objects(&self) -> Result<Vec<RemoteObject>, RpcError> {
        self.call(INTROSPECTION, &()).await
    }

    /// What the other side exposes and removes from now on, as it happens:
    /// Foundry's "when the client registers Bank, call it".
    ///
    /// Each side tells the other of every object it exposes or removes
    /// while they are connected (a one-way `rpc.changed` notification),
    /// unless it switched introspection off. Changes made while
    /// disconnected are not replayed; [`remote_objects`](Peer::remote_objects)
    /// lists the current ones. A subscriber that falls 64 changes behind
    /// gets `Err(Lagged(n))` and goes on.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{expose, Peer, PeerConfig, Registry, RemoteChange};
    ///
    /// pub struct Bank;
    /// #[expose]
    /// impl Bank {
    ///     pub fn balance(&self) -> u64 { 100 }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let client_objects = Registry::new();
    /// # let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (server, _client) = tokio::try_join!(
    ///     Peer::accept(a, Registry::new(), PeerConfig::default(), 1),
    ///     Peer::connect(b, client_objects.clone(), PeerConfig::default()),
    /// )?;
    /// let mut changes = server.remote_changes();
    /// client_objects.expose(Bank);
    /// // When the client registers Bank, call it.
    /// while let Ok(change) = changes.recv().await {
    ///     if change == RemoteChange::Exposed("Bank".into()) {
    ///         assert_eq!(BankClient::new(&server).balance().await?, 100);
    ///         break;
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn remote_changes(&self) -> tokio::sync::broadcast::Receiver<RemoteChange> {
        self.shared.changes.subscribe()
    }

    /// The other side said it exposed or removed an object.
    pub(crate) fn heard_change(&self, change: RemoteChange) {
        let _ = self.shared.changes.send(change);
    }

    /// The deadline of a call from now: `timeout`, else the peer's default.
    pub(super) fn deadline(&self, timeout: Option<Duration>) -> Option<tokio::time::Instant> {
        timeout
            .or(self.shared.config.call_timeout)
            .map(|t| tokio::time::Instant::now() + t)
    }
}
