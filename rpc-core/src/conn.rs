//! `Conn`: one live connection under a [`Peer`](crate::Peer): its tasks,
//! its queues and its tables.
//!
//! Each connection runs four tasks:
//! - the **reader** decodes frames, routes replies to the pending-call table
//!   and hands incoming calls to the dispatcher. It never runs user code, so
//!   replies keep flowing while handlers run, and a handler that calls back
//!   into its caller cannot deadlock the connection;
//! - the **dispatcher** runs each incoming call's handler: synchronous methods
//!   to completion; asynchronous ones are polled once, and those that must
//!   wait (for example on a call back into their caller) move to a task of
//!   their own, so they hold up nothing else;
//! - the **writer** owns the write half and writes everything queued since its
//!   last wake-up in one `write` (coalescing);
//! - the **heartbeat** pings an idle connection and drops a silent one.
//!
//! Synchronisation lives in a few places, each a short `std` mutex that is
//! never held across an `.await`: the outbox (bytes queued for the writer),
//! the pending-call table, the table of running handlers (for
//! cancellation), and the list of the connection's tasks; none of these is
//! taken while another is held. Above them sits the peer's `transition`
//! lock (in `peer`), held while a connection is installed or the peer is
//! closed; the connection's locks may be taken under it, never the other
//! way round. With that one order, no two threads can wait on each other.
//! The caller-side limit of calls in flight is lock-free (`slots`).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures::future::{AbortHandle, Abortable};
use futures::FutureExt;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{debug, trace, warn, Instrument};

use crate::codec::FrameReader;
use crate::config::PeerConfig;
use crate::dispatch::{Handled, HandlerFuture, Incoming, LookupCache, Registry, Target};
use crate::error::{DisconnectReason, RpcError};
use crate::handshake::Negotiated;
use crate::peer::{Lifecycle, Status, WeakPeer};
use crate::slots::Slots;
use crate::wire::{decode_header, encode_bare, encode_frame_within, Header, HANDSHAKE_MAX_FRAME};

/// Queued output above this makes [`Peer::notify`](crate::Peer::notify) wait for the writer.
const OUTBOX_HIGH_WATER: usize = 4 * 1024 * 1024;
/// Pipelining of a large batch of calls on a current-thread runtime (where
/// the writer cannot run until the dispatcher yields): every
/// `PIPELINE_STEP` calls of a batch larger than `PIPELINE_MIN_BATCH`, the
/// dispatcher lets the writer send the replies so far, as long as they are
/// small (under `PIPELINE_MAX_BYTES` queued). The remote then works on those replies
/// while this side works on the rest, instead of both taking turns on whole
/// batches. Large replies are not split: more writes would cost more than
/// the overlap gains. (Tuned with `rpc-bench` on a 2-core machine: par-add
/// went from level with the hand-written floor to 1.3-2x it; echo-1k and
/// conns-16, whose batches are not split, did not move.)
const PIPELINE_STEP: usize = 8;
const PIPELINE_MIN_BATCH: usize = 16;
const PIPELINE_MAX_BYTES: usize = 2048;

/// How long the writer may go on flushing after the connection closed.
const FLUSH_GRACE: Duration = Duration::from_secs(2);

/// Finishes a write within [`FLUSH_GRACE`].
async fn flush_within(
    write: std::pin::Pin<&mut impl Future<Output = std::io::Result<()>>>,
) -> std::io::Result<()> {
    match tokio::time::timeout(FLUSH_GRACE, write).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the peer did not read what was left to send",
        )),
    }
}

/// A write buffer larger than this is released after use.
const KEEP_WRITE_CAPACITY: usize = 256 * 1024;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave its data
    // half-updated (every critical section is a single insert/remove/append
    // that is rolled back on failure), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct ConnInfo {
    pub(crate) connection_id: u64,
    pub(crate) remote_name: Option<Arc<str>>,
}

type ReplyTx = oneshot::Sender<Result<Bytes, RpcError>>;

/// Hashes a call id with one multiplication (Fibonacci hashing spreads
/// sequential ids over the high bits the table probes with). Only for the
/// pending table, whose keys this side picks, never the remote.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

struct Pending {
    calls: IdMap<ReplyTx>,
    closed: Option<DisconnectReason>,
}

pub(crate) struct Conn {
    pub(crate) info: ConnInfo,
    pub(crate) out: Outbox,
    pending: Mutex<Pending>,
    running: Mutex<HashMap<u64, AbortHandle>>,
    /// Calls from the remote being served now.
    pub(crate) inflight: AtomicU32,
    /// Notifications from the remote being handled now.
    pub(crate) notifying: AtomicU32,
    /// The limit of each of the two counters above.
    max_in_flight: u32,
    /// Set by [`Peer::drain`]: new calls are refused with
    /// [`RpcError::ShuttingDown`].
    pub(crate) draining: AtomicBool,
    /// Whether a dropped notification was already logged at WARN.
    dropped_notice: AtomicBool,
    next_id: AtomicU64,
    slots: Slots,
    remote_max_frame: usize,
    /// Bytes queued for the remote beyond which it counts as stalled.
    max_send_queue: usize,
    closed: watch::Sender<Option<DisconnectReason>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    pub(crate) writer_done: Notify,
    epoch: Instant,
    last_rx_ms: AtomicU64,
    pub(crate) life: Arc<Lifecycle>,
    /// The peer this connection belongs to, for the context of the calls it
    /// serves (weak: the connection must not keep its peer alive).
    pub(crate) peer: WeakPeer,
}

pub(crate) struct Outbox {
    state: Mutex<OutState>,
    wake: Notify,
    space: Notify,
}

struct OutState {
    buf: Vec<u8>,
    /// No more frames are accepted; the writer flushes and shuts down.
    closing: bool,
}

impl Outbox {
    /// Bytes waiting for the writer.
    fn len(&self) -> usize {
        lock(&self.state).buf.len()
    }

    pub(crate) async fn wait_space(&self) {
        loop {
            let notified = self.space.notified();
            {
                let st = lock(&self.state);
                if st.buf.len() < OUTBOX_HIGH_WATER || st.closing {
                    return;
                }
            }
            notified.await;
        }
    }
}

/// What one read of the socket produced, handled after the frames of the
/// read are decoded.
#[derive(Default)]
struct ReadBatch {
    /// Admitted calls and notifications, for the dispatcher.
    calls: Vec<Incoming>,
    /// Replies (and pongs) to this side's calls, by id.
    replies: Vec<(u64, Result<Bytes, RpcError>)>,
    /// The callers of those replies, woken once the table is unlocked
    /// (kept between reads so that its memory is reused).
    waking: Vec<(ReplyTx, Result<Bytes, RpcError>)>,
}

/// Removes a call from the pending table if its future is dropped early, and
/// tells the remote to cancel it.
pub(crate) struct PendingGuard<'a> {
    pub(crate) conn: &'a Conn,
    pub(crate) id: u64,
    pub(crate) armed: bool,
    pub(crate) sent: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let was_pending = lock(&self.conn.pending).calls.remove(&self.id).is_some();
        if was_pending && self.sent {
            let _ = self.conn.push_bare(&Header::Cancel { id: self.id });
            trace!(id = self.id, "call abandoned; cancel sent");
        }
    }
}

impl Conn {
    pub(crate) fn new(
        n: Negotiated,
        config: &PeerConfig,
        life: Arc<Lifecycle>,
        peer: WeakPeer,
    ) -> Arc<Conn> {
        Arc::new(Conn {
            info: ConnInfo {
                connection_id: n.connection_id,
                remote_name: n.remote_name.map(Arc::from),
            },
            out: Outbox {
                state: Mutex::new(OutState {
                    buf: Vec::new(),
                    closing: false,
                }),
                wake: Notify::new(),
                space: Notify::new(),
            },
            pending: Mutex::new(Pending {
                calls: IdMap::default(),
                closed: None,
            }),
            running: Mutex::new(HashMap::new()),
            inflight: AtomicU32::new(0),
            notifying: AtomicU32::new(0),
            max_in_flight: config.max_in_flight,
            draining: AtomicBool::new(false),
            dropped_notice: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            slots: Slots::new(n.remote_max_in_flight),
            remote_max_frame: n.remote_max_frame as usize,
            max_send_queue: config.max_send_queue,
            closed: watch::Sender::new(None),
            tasks: Mutex::new(Vec::new()),
            writer_done: Notify::new(),
            epoch: Instant::now(),
            last_rx_ms: AtomicU64::new(0),
            life,
            peer,
        })
    }

    /// A connection that is already closed, for peers not yet connected.
    pub(crate) fn dead(
        life: Arc<Lifecycle>,
        connection_id: u64,
        reason: DisconnectReason,
    ) -> Arc<Conn> {
        let n = Negotiated {
            connection_id,
            remote_name: None,
            remote_max_frame: HANDSHAKE_MAX_FRAME,
            remote_max_in_flight: 1,
        };
        let nobody = WeakPeer::none();
        let conn = Conn::new(n, &PeerConfig::default(), life, nobody);
        conn.closed.send_replace(Some(reason.clone()));
        lock(&conn.pending).closed = Some(reason);
        lock(&conn.out.state).closing = true;
        conn.slots.close();
        conn
    }

    pub(crate) fn start<R, W>(
        self: &Arc<Self>,
        reader: FrameReader<R>,
        writer: W,
        registry: Registry,
        config: &PeerConfig,
    ) where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::with_capacity(3);
        tokio::spawn(self.clone().write_loop(writer));
        tasks.push(spawn_abortable(self.clone().dispatch_loop(rx)));
        tasks.push(spawn_abortable(
            self.clone().read_loop(reader, registry, tx),
        ));
        if let Some(interval) = config.heartbeat_interval {
            tasks.push(spawn_abortable(
                self.clone()
                    .heartbeat_loop(interval, config.heartbeat_timeout),
            ));
        }
        lock(&self.tasks).extend(tasks);
        // A close that raced with start (e.g. the remote vanished at once)
        // must still stop the tasks.
        if self.is_closed() {
            for t in lock(&self.tasks).drain(..) {
                t.abort();
            }
        }
        debug!(connection_id = self.info.connection_id, "connection open");
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    pub(crate) fn closed_error(&self) -> RpcError {
        RpcError::ConnectionClosed(
            self.closed
                .borrow()
                .clone()
                .unwrap_or(DisconnectReason::Closed),
        )
    }

    pub(crate) async fn wait_closed(&self) -> DisconnectReason {
        let mut rx = self.closed.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return DisconnectReason::Closed;
            }
        }
    }

    /// Ends the connection (first reason wins): fails this side's pending
    /// calls, aborts running handlers, stops the reader, and lets the writer
    /// flush what is queued (plus a goodbye when `goodbye`) and shut down.
    pub(crate) fn close(&self, reason: DisconnectReason, goodbye: bool) {
        let first = self.closed.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason.clone());
                true
            } else {
                false
            }
        });
        if !first {
            return;
        }
        match &reason {
            DisconnectReason::Closed
            | DisconnectReason::ClosedByPeer
            | DisconnectReason::Shutdown => {
                debug!(connection_id = self.info.connection_id, %reason, "connection closed")
            }
            _ => warn!(connection_id = self.info.connection_id, %reason, "connection lost"),
        }
        {
            let mut st = lock(&self.out.state);
            if matches!(reason, DisconnectReason::Stalled { .. }) {
                // The remote does not read: what is queued would never leave.
                st.buf = Vec::new();
            }
            if goodbye && !st.closing {
                let bye = match reason {
                    DisconnectReason::Shutdown => Header::Shutdown,
                    _ => Header::Goodbye,
                };
                encode_bare(&mut st.buf, &bye);
            }
            st.closing = true;
        }
        self.out.wake.notify_one();
        self.out.space.notify_waiters();
        self.slots.close();
        let calls = {
            let mut p = lock(&self.pending);
            p.closed = Some(reason.clone());
            std::mem::take(&mut p.calls)
        };
        for (_, tx) in calls {
            let _ = tx.send(Err(RpcError::ConnectionClosed(reason.clone())));
        }
        for (_, h) in lock(&self.running).drain() {
            h.abort();
        }
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        let next = if self.life.reconnect.load(Ordering::SeqCst) {
            Status::Reconnecting
        } else {
            Status::Closed
        };
        self.life.status.send_if_modified(|s| {
            // Only the current connection's end moves the status.
            if *s == Status::Connected {
                *s = next;
                true
            } else {
                false
            }
        });
    }

    // --- output -----------------------------------------------------------

    /// Encodes a frame straight into the outbox.
    pub(crate) fn push_frame<P: Serialize + ?Sized>(
        &self,
        header: &Header<'_>,
        payload: &P,
    ) -> Result<(), RpcError> {
        let mut st = lock(&self.out.state);
        if st.closing {
            drop(st);
            return Err(self.closed_error());
        }
        let start = st.buf.len();
        let was_empty = start == 0;
        // A panicking `Serialize` impl must not leave half a frame behind.
        let res = std::panic::catch_unwind(AssertUnwindSafe(|| {
            encode_frame_within(&mut st.buf, header, payload, self.remote_max_frame)
        }));
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(panic) => {
                st.buf.truncate(start);
                drop(st);
                std::panic::resume_unwind(panic);
            }
        }
        let queued = st.buf.len();
        drop(st);
        self.after_push(queued, was_empty)
    }

    /// After bytes were queued: wakes the writer when the queue was empty,
    /// and ends the connection when the remote lets more pile up than the
    /// send-queue limit (it stopped reading but may still be sending). One
    /// frame alone never counts, however large.
    fn after_push(&self, queued: usize, was_empty: bool) -> Result<(), RpcError> {
        if was_empty {
            self.out.wake.notify_one();
        } else if queued > self.max_send_queue {
            self.close(
                DisconnectReason::Stalled {
                    queued: queued as u64,
                },
                false,
            );
            return Err(self.closed_error());
        }
        Ok(())
    }

    /// Queues a frame that is a header alone (ping, pong, cancel).
    pub(crate) fn push_bare(&self, header: &Header<'_>) -> Result<(), RpcError> {
        self.push_frame(header, &())
    }

    pub(crate) fn send_reply<R: Serialize + ?Sized>(&self, id: u64, value: &R) {
        match self.push_frame(&Header::Reply { id }, value) {
            Ok(()) => {}
            Err(e @ (RpcError::TooLarge { .. } | RpcError::Encode(_))) => self.send_error(id, &e),
            Err(_) => {} // closed: nobody to answer
        }
    }

    pub(crate) fn send_error(&self, id: u64, error: &RpcError) {
        if let Err(e) = self.push_frame(&Header::Error { id }, error) {
            if !matches!(e, RpcError::ConnectionClosed(_)) {
                // An error message too large for the remote: send a short one.
                let short = RpcError::Remote(format!("error reply could not be sent: {e}"));
                let _ = self.push_frame(&Header::Error { id }, &short);
            }
        }
    }

    async fn write_loop<W: AsyncWrite + Unpin>(self: Arc<Self>, mut wr: W) {
        let mut spare: Vec<u8> = Vec::new();
        let mut closed = self.closed.subscribe();
        loop {
            let took = {
                let mut st = lock(&self.out.state);
                if st.buf.is_empty() && st.closing {
                    break;
                }
                std::mem::swap(&mut st.buf, &mut spare);
                !spare.is_empty()
            };
            if !took {
                self.out.wake.notified().await;
                continue;
            }
            self.out.space.notify_waiters();
            let write = async {
                wr.write_all(&spare).await?;
                wr.flush().await
            };
            tokio::pin!(write);
            // A write may wait as long as the remote takes to read while the
            // connection is open; once it has closed, only `FLUSH_GRACE`
            // more (a remote that stopped reading must not pin this task
            // and its buffer forever).
            let res = if closed.borrow().is_some() {
                flush_within(write).await
            } else {
                tokio::select! {
                    r = &mut write => r,
                    _ = closed.changed() => flush_within(write).await,
                }
            };
            if let Err(e) = res {
                self.close(DisconnectReason::from_io(&e), false);
                break;
            }
            spare.clear();
            if spare.capacity() > KEEP_WRITE_CAPACITY {
                spare = Vec::new();
            }
        }
        let _ = tokio::time::timeout(FLUSH_GRACE, wr.shutdown()).await;
        self.writer_done.notify_waiters();
        self.writer_done.notify_one();
    }

    // --- input ------------------------------------------------------------

    async fn read_loop<R: AsyncRead + Unpin>(
        self: Arc<Self>,
        mut reader: FrameReader<R>,
        registry: Registry,
        jobs: mpsc::UnboundedSender<Vec<Incoming>>,
    ) {
        let mut cache = LookupCache::default();
        // The calls of one read go to the dispatcher together (one message
        // and one wake-up per read rather than per call), and its replies
        // leave the pending table under one lock.
        let mut batch = ReadBatch::default();
        let reason = 'outer: loop {
            loop {
                match reader.buffered_frame() {
                    Ok(Some(frame)) => {
                        if let Err(reason) = self.on_frame(frame, &registry, &mut cache, &mut batch)
                        {
                            break 'outer reason;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => break 'outer DisconnectReason::Protocol(e.to_string()),
                }
            }
            self.complete_all(&mut batch);
            if !batch.calls.is_empty() {
                // If the dispatcher is gone the calls are dropped, which
                // releases them.
                let _ = jobs.send(std::mem::take(&mut batch.calls));
            }
            match reader.fill().await {
                Ok(true) => self.touch(),
                Ok(false) => break DisconnectReason::ClosedByPeer,
                Err(RpcError::Io(m)) => break DisconnectReason::Io(m),
                Err(RpcError::ConnectionClosed(r)) => break r,
                Err(e) => break DisconnectReason::Protocol(e.to_string()),
            }
        };
        // Replies that arrived just before the end (a reply followed by a
        // goodbye in one read) still reach their callers.
        self.complete_all(&mut batch);
        self.close(reason, false);
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_rx_ms.store(ms, Ordering::Relaxed);
    }

    fn on_frame(
        self: &Arc<Self>,
        frame: Bytes,
        registry: &Registry,
        cache: &mut LookupCache,
        batch: &mut ReadBatch,
    ) -> Result<(), DisconnectReason> {
        let (header, payload) =
            decode_header(&frame).map_err(|e| DisconnectReason::Protocol(e.to_string()))?;
        let header_len = frame.len() - payload.len();
        // The payload is the frame itself, advanced past the header: no
        // second reference to count.
        fn skip(mut frame: Bytes, n: usize) -> Bytes {
            frame.advance(n);
            frame
        }
        match header {
            Header::Call {
                id,
                target,
                timeout_ms,
            } => {
                if let Some(target) = self.admit(Some(id), target, registry, cache) {
                    self.enqueue(
                        Some(id),
                        target,
                        timeout_ms,
                        skip(frame, header_len),
                        &mut batch.calls,
                    );
                }
            }
            Header::Notify { target } => {
                if let Some(target) = self.admit(None, target, registry, cache) {
                    self.enqueue(None, target, 0, skip(frame, header_len), &mut batch.calls);
                }
            }
            Header::Reply { id } => batch.replies.push((id, Ok(skip(frame, header_len)))),
            Header::Error { id } => {
                let err = postcard::from_bytes::<RpcError>(payload).unwrap_or_else(|e| {
                    RpcError::Protocol(format!("undecodable error reply: {e}"))
                });
                batch.replies.push((id, Err(err)));
            }
            Header::Cancel { id } => {
                if let Some(h) = lock(&self.running).remove(&id) {
                    trace!(id, "cancelled by caller");
                    h.abort();
                }
            }
            Header::Ping { id } => {
                let _ = self.push_bare(&Header::Pong { id });
            }
            Header::Pong { id } => {
                if id != 0 {
                    batch.replies.push((id, Ok(Bytes::new())));
                }
            }
            Header::Goodbye => return Err(DisconnectReason::ClosedByPeer),
            Header::Shutdown => return Err(DisconnectReason::Shutdown),
        }
        Ok(())
    }

    /// Hands each reply to its waiting caller; the table is locked once for
    /// all of them, and no caller is woken while it is held.
    fn complete_all(&self, batch: &mut ReadBatch) {
        if batch.replies.is_empty() {
            return;
        }
        {
            let mut p = lock(&self.pending);
            for (id, result) in batch.replies.drain(..) {
                match p.calls.remove(&id) {
                    Some(tx) => batch.waking.push((tx, result)),
                    None => trace!(id, "reply for a call no longer waiting"),
                }
            }
        }
        for (tx, result) in batch.waking.drain(..) {
            let _ = tx.send(result);
        }
    }

    /// Counts an incoming call (`id`) or notification (`None`) in flight and
    /// finds what it calls; or answers it with the reason it is refused.
    fn admit(
        &self,
        id: Option<u64>,
        name: &str,
        registry: &Registry,
        cache: &mut LookupCache,
    ) -> Option<Arc<Target>> {
        // Calls and notifications are counted apart, so that one-way traffic
        // never makes a call fail with `Busy`.
        let busy = self.counter(id.is_none()).fetch_add(1, Ordering::AcqRel) >= self.max_in_flight;
        let target = if self.draining.load(Ordering::Acquire) {
            Err(RpcError::ShuttingDown)
        } else if busy {
            Err(RpcError::Busy {
                limit: self.max_in_flight,
            })
        } else {
            registry.lookup_cached(cache, name)
        };
        match target {
            Ok(t) => Some(t),
            Err(e) => {
                self.finish_call(id.is_none());
                match id {
                    Some(id) => {
                        debug!(id, %e, "call refused");
                        self.send_error(id, &e);
                    }
                    // Nobody to tell: say it where the operator sees it, once
                    // per connection (a remote could send these in a flood).
                    None if !self.dropped_notice.swap(true, Ordering::Relaxed) => {
                        warn!(target = name, %e, "notification dropped (further drops on this connection are logged at DEBUG)")
                    }
                    None => debug!(target = name, %e, "notification dropped"),
                }
                None
            }
        }
    }

    /// Adds an admitted call to the batch for the dispatcher.
    fn enqueue(
        self: &Arc<Self>,
        id: Option<u64>,
        target: Arc<Target>,
        timeout_ms: u64,
        args: Bytes,
        batch: &mut Vec<Incoming>,
    ) {
        // A deadline too far to represent is no deadline.
        let deadline = (timeout_ms > 0)
            .then(|| Instant::now().checked_add(Duration::from_millis(timeout_ms)))
            .flatten();
        let incoming = Incoming {
            conn: self.clone(),
            id,
            args,
            target,
            deadline,
            counted: true,
        };
        batch.push(incoming);
    }

    fn counter(&self, notification: bool) -> &AtomicU32 {
        if notification {
            &self.notifying
        } else {
            &self.inflight
        }
    }

    pub(crate) fn finish_call(&self, notification: bool) {
        self.counter(notification).fetch_sub(1, Ordering::AcqRel);
    }

    // --- dispatch ---------------------------------------------------------

    async fn dispatch_loop(self: Arc<Self>, mut jobs: mpsc::UnboundedReceiver<Vec<Incoming>>) {
        // On a multi-threaded runtime the writer already runs beside the
        // dispatcher, and yielding there only adds cross-thread wake-ups.
        let pipeline = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread;
        while let Some(batch) = jobs.recv().await {
            let split = pipeline && batch.len() > PIPELINE_MIN_BATCH;
            for (i, call) in batch.into_iter().enumerate() {
                if split && i > 0 && i % PIPELINE_STEP == 0 && self.out.len() < PIPELINE_MAX_BYTES {
                    tokio::task::yield_now().await;
                }
                self.run(call);
            }
        }
    }

    fn run(self: &Arc<Self>, incoming: Incoming) {
        let service = incoming.target.service.clone();
        let index = incoming.target.index;
        let id = incoming.id;
        let deadline = incoming.deadline;
        let span = tracing::level_enabled!(tracing::Level::DEBUG).then(|| {
            tracing::debug_span!(
                "rpc.serve",
                otel.kind = "server",
                rpc.service = &*incoming.target.object,
                rpc.method = incoming.target.method,
                rpc.request_id = id,
            )
        });
        let dispatch = AssertUnwindSafe(|| match service.dispatch(index, incoming) {
            // Many `async` handlers finish without waiting for anything:
            // poll once here and give the handler a task of its own only if
            // it must wait. (The task polls it again at once, with its own
            // waker, as the `Future` contract allows.)
            Handled::Pending(mut fut) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match fut.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(replied) => Handled::Done(replied),
                    std::task::Poll::Pending => Handled::Pending(fut),
                }
            }
            done => done,
        });
        let res = match &span {
            Some(span) => span.in_scope(|| {
                trace!("call dispatched");
                std::panic::catch_unwind(dispatch)
            }),
            None => std::panic::catch_unwind(dispatch),
        };
        match res {
            Ok(Handled::Done(_)) => {}
            Ok(Handled::Pending(fut)) => self.spawn_handler(id, deadline, fut, span),
            Err(panic) => {
                let msg = panic_message(&panic);
                warn!(?id, %msg, "handler panicked");
                if let Some(id) = id {
                    self.send_error(id, &RpcError::RemotePanic(msg));
                }
            }
        }
    }

    fn spawn_handler(
        self: &Arc<Self>,
        id: Option<u64>,
        deadline: Option<Instant>,
        fut: HandlerFuture,
        span: Option<tracing::Span>,
    ) {
        let (abort, registration) = AbortHandle::new_pair();
        if let Some(id) = id {
            lock(&self.running).insert(id, abort);
        }
        let conn = self.clone();
        let task = async move {
            let guarded = Abortable::new(AssertUnwindSafe(fut).catch_unwind(), registration);
            let outcome = match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), guarded).await.ok(),
                None => Some(guarded.await),
            };
            match (outcome, id) {
                (None, Some(id)) => conn.send_error(id, &RpcError::Timeout),
                (Some(Ok(Err(panic))), id) => {
                    let msg = panic_message(&panic);
                    warn!(?id, %msg, "handler panicked");
                    if let Some(id) = id {
                        conn.send_error(id, &RpcError::RemotePanic(msg));
                    }
                }
                _ => {}
            }
            if let Some(id) = id {
                lock(&conn.running).remove(&id);
            }
        };
        match span {
            Some(span) => tokio::spawn(task.instrument(span)),
            None => tokio::spawn(task),
        };
    }

    // --- calls out ----------------------------------------------------------

    pub(crate) fn register(
        &self,
    ) -> Result<(u64, oneshot::Receiver<Result<Bytes, RpcError>>), RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut p = lock(&self.pending);
        if let Some(r) = &p.closed {
            return Err(RpcError::ConnectionClosed(r.clone()));
        }
        p.calls.insert(id, tx);
        Ok((id, rx))
    }

    pub(crate) async fn call_raw<A: Serialize + ?Sized>(
        &self,
        target: &str,
        args: &A,
        timeout: Option<Duration>,
        span: Option<&tracing::Span>,
    ) -> Result<Bytes, RpcError> {
        // The timeout covers the whole call, waiting for a free slot included.
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let slot = match deadline {
            Some(d) => tokio::time::timeout_at(d, self.slots.acquire())
                .await
                .map_err(|_| RpcError::Timeout)?,
            None => self.slots.acquire().await,
        };
        let _slot = slot.ok_or_else(|| self.closed_error())?;
        let (id, rx) = self.register()?;
        if let Some(span) = span {
            span.record("rpc.request_id", id);
        }
        let mut guard = PendingGuard {
            conn: self,
            id,
            armed: true,
            sent: false,
        };
        let timeout_ms = deadline.map_or(0, |d| {
            let left = d.saturating_duration_since(tokio::time::Instant::now());
            (left.as_millis() as u64).max(1)
        });
        self.push_frame(
            &Header::Call {
                id,
                target,
                timeout_ms,
            },
            args,
        )?;
        guard.sent = true;
        let reply = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx).await {
                Ok(r) => r,
                Err(_) => return Err(RpcError::Timeout), // guard sends the cancel
            },
            None => rx.await,
        };
        guard.armed = false;
        match reply {
            Ok(r) => r,
            Err(_) => Err(self.closed_error()),
        }
    }

    // --- heartbeat ----------------------------------------------------------

    async fn heartbeat_loop(self: Arc<Self>, interval: Duration, timeout: Duration) {
        self.touch();
        let tick = interval.min(timeout / 2).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            let now = self.epoch.elapsed().as_millis() as u64;
            let idle =
                Duration::from_millis(now.saturating_sub(self.last_rx_ms.load(Ordering::Relaxed)));
            if idle >= timeout {
                self.close(DisconnectReason::HeartbeatTimeout, false);
                return;
            }
            if idle >= interval.min(timeout / 2) && self.push_bare(&Header::Ping { id: 0 }).is_err()
            {
                return;
            }
        }
    }
}

fn spawn_abortable<F>(fut: F) -> tokio::task::AbortHandle
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(fut).abort_handle()
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "handler panicked".to_string()
    }
}
