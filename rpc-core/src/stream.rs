//! Streams of a call: [`RpcStream`], the receiving end, and the pump that
//! feeds a sending end from any [`Stream`].
//!
//! A call can return a stream (from the callee to the caller, [`Way::Down`]),
//! take one (from the caller to the callee, [`Way::Up`]), or both. Each
//! stream is flow-controlled by credit in bytes: the receiver grants a
//! window, the sender sends only while credit is left, and the producer is
//! polled only then, so a slow consumer holds up its producer instead of
//! filling memory. `docs/streams.md` is the guide.
//!
//! Owns: the typed ends. The bytes, the credit and the frames belong to the
//! connection, reached through the [`Port`] seam.

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{RemoteError, RpcError};
use crate::wire::{describe, encode_frame_within, Header, Way};

/// The connection as a stream end sees it.
pub(crate) trait Port: Send + Sync + 'static {
    /// The callee's side: opens the stream call `id` returns
    /// ([`Way::Down`]; the call is answered with an empty reply, which
    /// tells the caller it is open) or the one it takes ([`Way::Up`]; the
    /// caller is granted its first credit).
    fn open_served(&self, way: Way, id: u64) -> Result<(), RemoteError>;
    /// Moves the items receiving end `(way, id)` holds into `into`
    /// (`Ready(Some(Ok(())))`), or says how it ended: `Ready(None)`
    /// cleanly, `Ready(Some(Err(..)))` with an error.
    fn poll_take(
        &self,
        way: Way,
        id: u64,
        cx: &mut Context<'_>,
        into: &mut VecDeque<(Bytes, usize)>,
    ) -> Poll<Option<Result<(), RpcError>>>;
    /// The consumer of receiving end `(way, id)` used up `bytes` of items:
    /// the sender is granted more credit when half the window is used.
    fn consumed(&self, way: Way, id: u64, bytes: usize);
    /// The consumer let go of receiving end `(way, id)`: the sender is told
    /// to stop if the stream had not ended; `release_slot` gives back the
    /// call's slot among the remote's calls in flight.
    fn close_inlet(&self, way: Way, id: u64, release_slot: bool);
    /// How many bytes sending end `(way, id)` may send now (at least one
    /// item may go, whatever its size): `Ready(Some(n))`, with `n > 0` the
    /// smaller of its credit and the room in the connection's queue;
    /// `Ready(None)` never again (stopped, or the connection ended).
    fn poll_budget(&self, way: Way, id: u64, cx: &mut Context<'_>) -> Poll<Option<usize>>;
    /// The largest frame the remote accepts.
    fn max_frame(&self) -> usize;
    /// Queues encoded item frames of sending end `(way, id)` and takes
    /// their size off its credit.
    fn send_frames(&self, way: Way, id: u64, frames: &[u8]) -> Result<(), RpcError>;
    /// Ends sending end `(way, id)`, cleanly or with `error`. For a stream
    /// the callee returns, this also ends the call.
    fn send_end(&self, way: Way, id: u64, error: Option<&RemoteError>);
    /// Forgets sending end `(way, id)` without a word: its producer was
    /// dropped (the call was cancelled, or the connection ended).
    fn forget_outlet(&self, way: Way, id: u64);
}

/// Forgets a sending end when dropped (its producer went with it).
pub(crate) struct OutletGuard<'a> {
    pub(crate) port: &'a dyn Port,
    pub(crate) way: Way,
    pub(crate) id: u64,
}

impl Drop for OutletGuard<'_> {
    fn drop(&mut self) {
        self.port.forget_outlet(self.way, self.id);
    }
}

/// The receiving end of a stream: the stream a call returned (on the
/// caller's side), or the stream a call takes (on the callee's side).
///
/// Each item arrives as `Ok(item)`; a stream that ends with a failure
/// yields one `Err` and then ends. A stream ends with an error when the
/// sender's side failed ([`RpcError::Remote`]), when the call's timeout
/// passed ([`RpcError::Timeout`]), when an item could not be decoded
/// ([`RpcError::BadReply`]), or when the connection was lost
/// ([`RpcError::ConnectionClosed`], with the reason).
///
/// Dropping it stops the sender promptly: the stream a call returned is
/// cancelled with the call; a stream a call takes is told to stop.
///
/// # Examples
///
/// ```
/// use futures::{Stream, StreamExt};
/// use rpc_core::{expose, Peer, PeerConfig, Registry, RpcError, RpcStream};
///
/// pub struct Counter;
///
/// #[expose]
/// impl Counter {
///     /// Counts from 0 to `n - 1`.
///     pub fn count(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
///         futures::stream::iter(0..n)
///     }
///
///     /// Adds up what the caller sends.
///     pub async fn sum(&self, mut numbers: RpcStream<u32>) -> Result<u64, String> {
///         let mut total = 0u64;
///         while let Some(n) = numbers.next().await {
///             total += u64::from(n.map_err(|e| e.to_string())?);
///         }
///         Ok(total)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// # let (a, b) = tokio::io::duplex(64 * 1024);
/// # let served = Registry::new();
/// # served.expose(Counter);
/// # let (_server, client) = tokio::try_join!(
/// #     Peer::accept(a, served, PeerConfig::default(), 1),
/// #     Peer::connect(b, Registry::new(), PeerConfig::default()),
/// # )?;
/// let counter = CounterClient::new(&client);
/// let numbers: Vec<u32> = counter.count(5).await?.map(|n| n.unwrap()).collect().await;
/// assert_eq!(numbers, [0, 1, 2, 3, 4]);
/// assert_eq!(counter.sum(futures::stream::iter(1..=4)).await?, Ok(10));
/// # Ok(())
/// # }
/// ```
pub struct RpcStream<T> {
    port: Arc<dyn Port>,
    way: Way,
    id: u64,
    /// Yielded its end; the receiving end is closed.
    done: bool,
    /// The stream a call returned holds the call's slot until it ends.
    holds_slot: bool,
    /// Items taken from the connection, not yet yielded, with their
    /// frames' sizes.
    local: VecDeque<(Bytes, usize)>,
    /// Bytes of items yielded and not yet reported as consumed.
    unreported: usize,
    /// The call's deadline, which covers its streams.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The caller's input to the same call, sent while this is read.
    _input: Option<AbortOnDrop>,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for RpcStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcStream")
            .field("way", &self.way)
            .field("call", &self.id)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T> RpcStream<T> {
    pub(crate) fn new(
        port: Arc<dyn Port>,
        way: Way,
        id: u64,
        holds_slot: bool,
        deadline: Option<tokio::time::Instant>,
        input: Option<AbortOnDrop>,
    ) -> Self {
        RpcStream {
            port,
            way,
            id,
            done: false,
            holds_slot,
            local: VecDeque::new(),
            unreported: 0,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            _input: input,
            _item: PhantomData,
        }
    }

    fn finish(&mut self) {
        if !std::mem::replace(&mut self.done, true) {
            self.port.close_inlet(self.way, self.id, self.holds_slot);
        }
    }
}

impl<T> Drop for RpcStream<T> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<T: DeserializeOwned> Stream for RpcStream<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        if this.local.is_empty() {
            if this.unreported > 0 {
                this.port.consumed(this.way, this.id, this.unreported);
                this.unreported = 0;
            }
            let next = this.port.poll_take(this.way, this.id, cx, &mut this.local);
            let end = match next {
                Poll::Ready(Some(Ok(()))) => None,
                Poll::Ready(Some(Err(e))) => Some(Some(Err(e))),
                Poll::Ready(None) => Some(None),
                Poll::Pending => match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => Some(Some(Err(RpcError::Timeout))),
                    _ => return Poll::Pending,
                },
            };
            if let Some(end) = end {
                this.finish();
                return Poll::Ready(end);
            }
        }
        let Some((bytes, size)) = this.local.pop_front() else {
            return Poll::Pending;
        };
        this.unreported += size;
        if this.unreported >= REPORT_EVERY {
            this.port.consumed(this.way, this.id, this.unreported);
            this.unreported = 0;
        }
        match postcard::from_bytes::<T>(&bytes) {
            Ok(item) => Poll::Ready(Some(Ok(item))),
            Err(e) => {
                let e = RpcError::BadReply(format!(
                    "a stream item of call {} could not be decoded: {}",
                    this.id,
                    describe(&e)
                ));
                this.finish();
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

/// How many bytes of items a receiving end yields before it reports them
/// consumed (also when it has yielded all it took): one lock per batch of
/// small items, and credit back well before the sender runs dry.
const REPORT_EVERY: usize = 16 * 1024;

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a pump ended.
pub(crate) enum Pumped {
    /// The producer ended; the end was sent.
    Finished,
    /// The receiver stopped reading, or the connection ended: nothing more
    /// was sent.
    Stopped,
}

/// Feeds sending end `(way, id)` from `items`: polls the producer only
/// while credit is left, and sends the end when it runs out. Items ready
/// together are encoded into one batch, queued with one lock. An item that
/// cannot be sent (it does not encode, or is over the remote's frame limit)
/// ends the stream with that error.
pub(crate) async fn pump<S>(port: &dyn Port, way: Way, id: u64, items: S) -> Pumped
where
    S: Stream,
    S::Item: Serialize,
{
    let _forget = OutletGuard { port, way, id };
    let mut items = pin!(items);
    let header = Header::Item { id, way };
    let max_frame = port.max_frame();
    let mut frames = Vec::new();
    loop {
        let Some(budget) = std::future::poll_fn(|cx| port.poll_budget(way, id, cx)).await else {
            return Pumped::Stopped;
        };
        // The first item is awaited; more are taken while they are ready
        // and the budget lasts.
        let mut end = None;
        while frames.len() < budget {
            let next = if frames.is_empty() {
                Some(items.next().await)
            } else {
                std::future::poll_fn(|cx| match items.as_mut().poll_next(cx) {
                    Poll::Ready(item) => Poll::Ready(Some(item)),
                    Poll::Pending => Poll::Ready(None),
                })
                .await
            };
            match next {
                Some(Some(item)) => {
                    if let Err(e) = encode_frame_within(&mut frames, &header, &item, max_frame) {
                        end = Some(Some(RemoteError::Failed(format!(
                            "a stream item could not be sent: {e}"
                        ))));
                        break;
                    }
                }
                Some(None) => {
                    end = Some(None);
                    break;
                }
                None => break,
            }
        }
        if !frames.is_empty() {
            if let Err(e) = port.send_frames(way, id, &frames) {
                let why = RemoteError::Failed(format!("stream items could not be sent: {e}"));
                port.send_end(way, id, Some(&why));
                return Pumped::Finished;
            }
            frames.clear();
        }
        if let Some(error) = end {
            port.send_end(way, id, error.as_ref());
            return Pumped::Finished;
        }
    }
}
