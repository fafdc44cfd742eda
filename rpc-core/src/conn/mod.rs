//! `Conn`: one live connection under a [`Peer`](crate::Peer): its tasks, its
//! queues and its tables, each in a room of its own.
//!
//! | room | owns |
//! |------|------|
//! | `outbox` | bytes queued for the remote, the high-water mark, the stall budget |
//! | `writer` | the write half: drains the outbox in as few writes as possible |
//! | `reader` | the read half: decodes frames and routes them, never waits on a handler |
//! | `pending` | this side's calls: ids, reply slots, the guard that cancels |
//! | `inbound` | the remote's calls: admission, the in-flight count, cancels, deadlines |
//! | `executor` | runs handlers: inline or in a task; the panic and deadline paths |
//! | `heartbeat` | liveness by whole frames |
//! | `slots` | the caller's side of the remote's limit of calls in flight |
//! | `streams` | the streams of calls: credit both ways, items received |
//! | `streaming` | a call with streams out, and the connection as a stream end sees it |
//! | `calls` | this side's calls out: slot, id, frame, reply; pings and notifications |
//!
//! This file starts a connection (and tells the other side of its
//! registry's changes), closes it, and takes answers back to the remote. It knows its owner (the peer's lifecycle) only through the
//! [`Owner`] seam, and dispatch knows it only through
//! [`Respond`](crate::dispatch::Respond).
//!
//! # Locks
//!
//! Every lock is a short `std` mutex (or `RwLock`), never held across an
//! `.await`:
//!
//! 1. the peer's `transition` lock (in `peer::lifecycle`), held while a
//!    connection is installed or the peer is closed;
//! 2. then at most one of: the outbox `state`, the `pending` table, the
//!    `running` table, the `streams` table, the `tasks` list, a registry
//!    layer's `RwLock`, or the `state` watch.
//!
//! The connection's locks may be taken under `transition`, never the other
//! way round, and none of them is taken while another of them is held
//! (`close` takes them one after another). With that one order no two
//! threads can wait on each other. The outbox runs the `then` of
//! `push_then` under its lock; it only touches the admission atomics.

mod calls;
mod executor;
pub(crate) mod handles;
mod heartbeat;
mod inbound;
mod outbox;
mod pending;
mod reader;
mod slots;
mod streaming;
pub(crate) use streaming::InputPump;
mod streams;
mod writer;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use self::handles::Handles;
use self::inbound::{Admission, Running};
use self::outbox::{Outbox, PushError};
use self::pending::Pending;
use self::slots::Slots;
use self::streams::StreamTable;
use crate::codec::FrameReader;
use crate::config::PeerConfig;
use crate::dispatch::{Kind, Origin, Registry, Respond, CHANGED};
use crate::error::{DisconnectReason, RemoteError, RpcError};
use crate::handshake::Negotiated;
use crate::identity::PeerIdentity;
use crate::peer::Peer;
use crate::wire::{Header, Payload, HANDSHAKE_MAX_FRAME};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave its data
    // half-updated (every critical section is a single insert/remove/append
    // that is rolled back on failure), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the handshake told about the connection, and what the transport
/// vouched for when it attached the stream.
pub(crate) struct ConnInfo {
    pub(crate) connection_id: u64,
    pub(crate) remote_name: Option<Arc<str>>,
    /// The certificate chain the transport verified, if it verified one.
    pub(crate) peer_identity: Option<PeerIdentity>,
}

/// Whoever owns the connection (the peer's lifecycle), as the connection
/// sees it.
pub(crate) trait Owner: Send + Sync {
    /// The connection ended with `reason` (called once, from `close`).
    fn ended(&self, reason: &DisconnectReason);
    /// The peer a handler's context calls back through.
    fn peer(&self, conn: &Arc<Conn>) -> Peer;
}

/// The connection's end, as a watch: why it closed, and whether the writer
/// has flushed and shut down since.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) reason: Option<DisconnectReason>,
    pub(crate) flushed: bool,
}

pub(crate) struct Conn {
    /// This connection, for the contexts of the calls it serves.
    me: std::sync::Weak<Conn>,
    pub(crate) info: ConnInfo,
    out: Outbox,
    pending: Pending,
    slots: Slots,
    admission: Admission,
    running: Mutex<Running>,
    streams: Mutex<StreamTable>,
    /// Streams the remote's calls may have open on this side at once.
    max_streams: usize,
    /// Object handles handed out, and held, on this connection.
    handles: Handles,
    state: watch::Sender<State>,
    /// Set by the first `close`.
    closing: AtomicBool,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    owner: Arc<dyn Owner>,
    epoch: Instant,
    /// Milliseconds after `epoch` when the last whole frame arrived.
    heard_ms: AtomicU64,
}

impl Conn {
    pub(crate) fn new(
        n: Negotiated,
        peer_identity: Option<PeerIdentity>,
        config: &PeerConfig,
        owner: Arc<dyn Owner>,
    ) -> Arc<Conn> {
        Conn::build(n, peer_identity, config, owner, None)
    }

    /// A connection that is already closed and flushed, for peers not yet
    /// connected (or between connections).
    pub(crate) fn dead(
        owner: Arc<dyn Owner>,
        connection_id: u64,
        reason: DisconnectReason,
    ) -> Arc<Conn> {
        let n = Negotiated {
            connection_id,
            remote_name: None,
            remote_max_frame: HANDSHAKE_MAX_FRAME,
            remote_max_in_flight: 1,
        };
        Conn::build(n, None, &PeerConfig::default(), owner, Some(reason))
    }

    fn build(
        n: Negotiated,
        peer_identity: Option<PeerIdentity>,
        config: &PeerConfig,
        owner: Arc<dyn Owner>,
        dead: Option<DisconnectReason>,
    ) -> Arc<Conn> {
        let out = Outbox::new(
            n.remote_max_frame as usize,
            config.max_send_queue,
            config.budget.clone(),
        );
        let slots = Slots::new(n.remote_max_in_flight);
        let pending = match &dead {
            Some(reason) => {
                out.close(None, true);
                slots.close();
                Pending::closed(reason)
            }
            None => Pending::default(),
        };
        let closing = AtomicBool::new(dead.is_some());
        let state = State {
            flushed: dead.is_some(),
            reason: dead,
        };
        Arc::new_cyclic(|me| Conn {
            me: me.clone(),
            info: ConnInfo {
                connection_id: n.connection_id,
                remote_name: n.remote_name.map(Arc::from),
                peer_identity,
            },
            out,
            pending,
            slots,
            admission: Admission::new(config.max_in_flight),
            running: Mutex::new(Running::default()),
            streams: Mutex::new(StreamTable::new(config.stream_window)),
            max_streams: config.max_streams,
            handles: Handles::new(config.max_handles),
            state: watch::Sender::new(state),
            closing,
            tasks: Mutex::new(Vec::new()),
            owner,
            epoch: Instant::now(),
            heard_ms: AtomicU64::new(0),
        })
    }

    /// Starts the reader, writer, dispatcher and heartbeat tasks.
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
        let changes = registry.changes();
        tokio::spawn(writer::write_loop(self.clone(), writer));
        let mut tasks = vec![
            spawn_abortable(executor::dispatch_loop(self.clone(), rx)),
            spawn_abortable(reader::read_loop(
                self.clone(),
                reader,
                registry,
                tx,
                config.frame_timeout,
            )),
        ];
        // Tells the other side of the objects this side exposes and removes.
        for mut changes in changes {
            let conn = self.clone();
            tasks.push(spawn_abortable(async move {
                loop {
                    match changes.recv().await {
                        Ok(change) => {
                            if conn.notify(CHANGED, &(change,)).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            }));
        }
        if let Some(interval) = config.heartbeat_interval {
            tasks.push(spawn_abortable(heartbeat::heartbeat_loop(
                self.clone(),
                interval,
                config.heartbeat_timeout,
            )));
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
        self.state.borrow().reason.is_some()
    }

    pub(crate) fn closed_error(&self) -> RpcError {
        let reason = self.state.borrow().reason.clone();
        RpcError::ConnectionClosed(reason.unwrap_or(DisconnectReason::Closed))
    }

    /// Waits until the connection has closed; why.
    pub(crate) fn wait_closed(self: Arc<Self>) -> impl Future<Output = DisconnectReason> + Send {
        let mut rx = self.state.subscribe();
        async move {
            match rx.wait_for(|s| s.reason.is_some()).await {
                Ok(s) => s.reason.clone().unwrap_or(DisconnectReason::Closed),
                Err(_) => DisconnectReason::Closed,
            }
        }
    }

    /// Waits until the writer has flushed what was queued (a goodbye
    /// included) and shut the stream down, after the connection closed.
    pub(crate) async fn wait_flushed(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| s.flushed).await;
    }

    /// Ends the connection (first reason wins): fails this side's pending
    /// calls, aborts running handlers, stops the reader, lets the writer
    /// flush what is queued (plus a goodbye when `goodbye`) and shut down,
    /// and tells the owner.
    pub(crate) fn close(&self, reason: DisconnectReason, goodbye: bool) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return; // the first reason wins
        }
        // The owner hears first, so that by the time a call finds this
        // connection closed, the status already says why (a reconnecting
        // peer's calls then fail with `NotConnected`).
        self.owner.ended(&reason);
        self.state.send_modify(|s| s.reason = Some(reason.clone()));
        match &reason {
            DisconnectReason::Closed
            | DisconnectReason::ClosedByPeer
            | DisconnectReason::Shutdown => {
                debug!(connection_id = self.info.connection_id, %reason, "connection closed")
            }
            _ => warn!(connection_id = self.info.connection_id, %reason, "connection lost"),
        }
        let bye = goodbye.then_some(match reason {
            DisconnectReason::Shutdown => Header::Shutdown,
            _ => Header::Goodbye,
        });
        // The remote does not read: what is queued would never leave.
        let discard = matches!(reason, DisconnectReason::Stalled { .. });
        self.out.close(bye, discard);
        self.slots.close();
        self.pending.close(&reason);
        let ended = lock(&self.streams).close(RpcError::ConnectionClosed(reason.clone()));
        ended.into_iter().for_each(std::task::Waker::wake);
        lock(&self.running).abort_all();
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        // Handles do not outlive their connection.
        self.drop_handles();
    }

    /// A whole frame arrived.
    fn heard_from(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.heard_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last whole frame arrived.
    fn silent_for(&self) -> std::time::Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        std::time::Duration::from_millis(now.saturating_sub(self.heard_ms.load(Ordering::Relaxed)))
    }

    /// Whether more than one call is in flight either way, so that more
    /// frames are likely to be queued in the same round.
    fn busy(&self) -> bool {
        self.slots.in_use() as usize + self.admission.serving() > 1
    }

    /// This side's calls in flight on this connection.
    pub(crate) fn calls_in_flight(&self) -> usize {
        self.slots.in_use() as usize
    }

    /// This side's calls in flight, or `None` once the connection has
    /// begun to close: one atomic read each, for a balancer's every call.
    pub(crate) fn load(&self) -> Option<usize> {
        (!self.closing.load(Ordering::Acquire)).then(|| self.calls_in_flight())
    }

    /// Calls and notifications from the remote in flight.
    pub(crate) fn serving(&self) -> usize {
        self.admission.serving()
    }

    /// Refuses the remote's new calls from now on.
    pub(crate) fn drain(&self) {
        self.admission.drain();
    }

    /// What a failed push means for the one who pushed; a stalled remote
    /// ends the connection here.
    fn push_failed(&self, e: PushError) -> RpcError {
        match e {
            PushError::Closed => self.closed_error(),
            PushError::Stalled(queued) => {
                self.close(DisconnectReason::Stalled { queued }, false);
                self.closed_error()
            }
            PushError::OverBudget(limit) => {
                self.close(DisconnectReason::BufferBudget { limit }, false);
                self.closed_error()
            }
            PushError::Frame(e) => e,
        }
    }

    /// Answers call `id` with an error (a short one if the full text is
    /// over the remote's frame limit).
    fn send_error(&self, id: u64, error: &RemoteError) {
        self.answer_error(id, error, || {});
    }

    fn answer_error(&self, id: u64, error: &RemoteError, then: impl FnOnce()) {
        match self.out.push_then(&Header::Error { id }, error, then) {
            Ok(()) => {}
            Err(PushError::Frame(e)) => {
                let short = RemoteError::Failed(format!("error reply could not be sent: {e}"));
                let _ = self.out.push(&Header::Error { id }, &short);
            }
            Err(e) => {
                let _ = self.push_failed(e);
            }
        }
    }
}

/// The timeout a call frame carries for `deadline`: rounded up, plus one
/// timer tick, so the callee's deadline falls after this side's. A call that
/// runs out of time then ends here with `Timeout` (and a cancel), and the
/// callee's `DeadlineExceeded` is a backstop for a caller that is late
/// itself. 0: no timeout.
fn timeout_ms(deadline: Option<tokio::time::Instant>) -> u64 {
    deadline.map_or(0, |d| {
        let left = d.saturating_duration_since(tokio::time::Instant::now());
        u64::try_from(left.as_micros().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    })
}

/// The one timeout path of a call: `fut`, unless `deadline` passes first.
/// (A call without a deadline awaits its futures directly: its future then
/// carries no timer.)
async fn within<F: Future>(deadline: tokio::time::Instant, fut: F) -> Result<F::Output, RpcError> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .map_err(|_| RpcError::Timeout)
}

impl Conn {
    /// This connection, from a call it serves: a handler runs only while
    /// its connection's reader or dispatcher holds the connection, so it is
    /// alive.
    fn served(&self) -> Arc<Conn> {
        self.me
            .upgrade()
            .expect("a served call's connection is alive")
    }
}

impl Respond for Conn {
    fn reply(&self, id: Option<u64>, value: &dyn Payload) {
        let Some(id) = id else {
            return self.admission.release(Kind::Notification);
        };
        let release = || self.admission.release(Kind::Call);
        let pushed = handles::encoding(self, || {
            self.out.push_then(&Header::Reply { id }, value, release)
        });
        match pushed {
            Ok(()) => {}
            Err(PushError::Frame(RpcError::TooLarge { size, limit })) => {
                self.send_error(id, &RemoteError::ReplyTooLarge { size, limit })
            }
            Err(PushError::Frame(e)) => self.send_error(
                id,
                &RemoteError::Failed(format!("the reply could not be encoded: {e}")),
            ),
            Err(e) => {
                let _ = self.push_failed(e);
            }
        }
    }

    fn fail(&self, id: Option<u64>, error: &RemoteError) {
        let Some(id) = id else {
            return self.admission.release(Kind::Notification);
        };
        self.answer_error(id, error, || self.admission.release(Kind::Call));
    }

    fn release(&self, id: Option<u64>) {
        let kind = match id {
            Some(_) => Kind::Call,
            None => Kind::Notification,
        };
        self.admission.release(kind);
    }

    fn port(&self) -> Arc<dyn crate::stream::Port> {
        self.served()
    }

    fn conn(&self) -> Option<Arc<Conn>> {
        self.me.upgrade()
    }

    fn origin(&self) -> Origin {
        let me = self.served();
        Origin {
            peer: self.owner.peer(&me),
            connection_id: self.info.connection_id,
            remote_name: self.info.remote_name.clone(),
            peer_identity: self.info.peer_identity.clone(),
        }
    }
}

fn spawn_abortable<F>(fut: F) -> tokio::task::AbortHandle
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(fut).abort_handle()
}
