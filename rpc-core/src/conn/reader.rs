//! The reader task: decodes frames and routes them.
//!
//! Owns: the read half. Replies go to the pending table, admitted calls go
//! to the dispatcher (`executor`) in one batch per read, cancels to the
//! running table, pings are answered. It never runs user code and never
//! waits on a handler, so replies keep flowing while handlers run and a
//! handler that calls back into its caller cannot deadlock the connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

use super::handles::{FrameHandles, HANDLE_PREFIX};
use super::inbound::deadline;
use super::pending::{Answer, Outcome};
use super::streams::Event;
use super::{lock, Conn};
use crate::codec::{FrameReader, ReadError};
use crate::dispatch::{Incoming, Kind, LookupCache, Registry, Respond, Target};
use crate::error::{DisconnectReason, RemoteError, RpcError};
use crate::wire::{decode_header, decode_remote_error, Header, Way, LEN_PREFIX};

/// What one read of the socket produced, handled after the frames of the
/// read are decoded; kept between reads so that its memory is reused.
#[derive(Default)]
struct ReadBatch {
    /// Admitted calls and notifications, for the dispatcher.
    calls: Vec<Incoming>,
    /// The ids of the admitted calls, entered in the running table once
    /// per read.
    ids: Vec<u64>,
    /// Replies (and pongs) to this side's calls, by id.
    replies: Vec<(u64, Outcome)>,
    /// Scratch space for waking their callers.
    waking: Vec<(tokio::sync::oneshot::Sender<Outcome>, Outcome)>,
    /// Errors for calls answered already: the ends of returned streams.
    orphans: Vec<(u64, RpcError)>,
    /// The read's stream frames, applied together.
    streams: Vec<Event>,
    /// Scratch space for the stream ends to wake.
    stream_wakers: Vec<std::task::Waker>,
    /// The object handles announced for the next frame.
    announced: Option<FrameHandles>,
}

impl ReadBatch {
    /// Hands the read's stream frames to their streams, its replies to
    /// their callers, and the errors that end returned streams to those
    /// streams, in that order (the order they came in: a stream's items
    /// come before the error that ends it).
    fn deliver(&mut self, conn: &Conn) -> Result<(), DisconnectReason> {
        let mut applied = Ok(());
        if !self.streams.is_empty() {
            applied = lock(&conn.streams).apply_all(&mut self.streams, &mut self.stream_wakers);
            self.streams.clear();
            self.stream_wakers
                .drain(..)
                .for_each(std::task::Waker::wake);
        }
        conn.pending
            .complete_all(&mut self.replies, &mut self.waking, &mut self.orphans);
        for (id, e) in self.orphans.drain(..) {
            let woken = lock(&conn.streams).ended(Way::Down, id, Err(e));
            woken.into_iter().for_each(std::task::Waker::wake);
        }
        applied.map_err(|v| DisconnectReason::Protocol(v.to_string()))
    }
}

/// The reader task.
pub(super) async fn read_loop<R: AsyncRead + Unpin>(
    conn: Arc<Conn>,
    mut reader: FrameReader<R>,
    registry: Registry,
    jobs: mpsc::UnboundedSender<Vec<Incoming>>,
    frame_timeout: Option<Duration>,
) {
    let mut cache = LookupCache::default();
    let mut batch = ReadBatch::default();
    let respond: Arc<dyn Respond> = conn.clone();
    // When the frame now arriving in part started: trickling bytes do not
    // move it, a completed frame clears it.
    let mut partial_since: Option<Instant> = None;
    let reason = 'outer: loop {
        let mut frames = 0usize;
        loop {
            match reader.buffered_frame() {
                Ok(Some(frame)) => {
                    frames += 1;
                    let routed = route(&conn, &respond, frame, &registry, &mut cache, &mut batch);
                    if let Err(reason) = routed {
                        break 'outer reason;
                    }
                }
                Ok(None) => break,
                Err(e) => break 'outer read_failed(e),
            }
        }
        if !batch.ids.is_empty() {
            // Never two handlers for one id: the read's calls enter the
            // running table together, before any of them runs.
            let opened = lock(&conn.running).open_all(&batch.ids);
            batch.ids.clear();
            if let Err(id) = opened {
                break DisconnectReason::Protocol(format!("call id {id} is already in flight"));
            }
        }
        if frames > 0 {
            // Liveness counts whole frames, not bytes.
            conn.heard_from();
            partial_since = None;
        }
        if reader.partial() && partial_since.is_none() {
            partial_since = Some(Instant::now());
        }
        if let Err(reason) = batch.deliver(&conn) {
            break reason;
        }
        if !batch.calls.is_empty() {
            // If the dispatcher is gone the calls are dropped, which
            // releases them.
            let _ = jobs.send(std::mem::take(&mut batch.calls));
        }
        let deadline = partial_since
            .zip(frame_timeout)
            .and_then(|(since, limit)| since.checked_add(limit).map(|d| (d, limit)));
        let filled = match deadline {
            Some((deadline, limit)) => {
                match tokio::time::timeout_at(deadline.into(), reader.fill()).await {
                    Ok(filled) => filled,
                    Err(_) => break DisconnectReason::FrameTimeout(limit),
                }
            }
            _ => reader.fill().await,
        };
        match filled {
            Ok(true) => {}
            Ok(false) => break DisconnectReason::ClosedByPeer,
            Err(e) => break read_failed(e),
        }
    };
    // Replies that arrived just before the end (a reply followed by a
    // goodbye in one read) still reach their callers.
    let _ = batch.deliver(&conn);
    conn.close(reason, false);
}

/// Why a failed read ends the connection.
fn read_failed(e: ReadError) -> DisconnectReason {
    match e {
        ReadError::Io(e) => DisconnectReason::from_io(&e),
        ReadError::OverBudget { limit } => DisconnectReason::BufferBudget { limit },
        other => DisconnectReason::Protocol(other.to_string()),
    }
}

/// Routes one frame.
fn route(
    conn: &Arc<Conn>,
    respond: &Arc<dyn Respond>,
    mut frame: Bytes,
    registry: &Registry,
    cache: &mut LookupCache,
    batch: &mut ReadBatch,
) -> Result<(), DisconnectReason> {
    let (header, payload) = decode_header(&frame).map_err(DisconnectReason::Protocol)?;
    let header_len = frame.len() - payload.len();
    // The handles announced for this frame, if it is the one they came
    // with (any other frame drops them, which releases them).
    let handles = batch.announced.take().map(Arc::new);
    match header {
        Header::Call {
            id,
            target,
            timeout_ms,
        } => {
            if let Some(target) = admit(conn, Some(id), target, registry, cache) {
                batch.ids.push(id);
                frame.advance(header_len);
                batch.calls.push(Incoming {
                    respond: respond.clone(),
                    id: Some(id),
                    args: frame,
                    handles,
                    target,
                    deadline: deadline(timeout_ms, Instant::now),
                    open: true,
                });
            }
        }
        Header::Notify { target } => {
            if let Some(target) = admit(conn, None, target, registry, cache) {
                frame.advance(header_len);
                batch.calls.push(Incoming {
                    respond: respond.clone(),
                    id: None,
                    args: frame,
                    handles,
                    target,
                    deadline: None,
                    open: true,
                });
            }
        }
        Header::Reply { id } => {
            // The payload is the frame itself, advanced past the header:
            // no second reference to count.
            frame.advance(header_len);
            batch.replies.push((
                id,
                Ok(Answer {
                    payload: frame,
                    handles,
                }),
            ));
        }
        Header::Handles => {
            let names = postcard::from_bytes::<Vec<String>>(payload).map_err(|e| {
                DisconnectReason::Protocol(format!("a handles frame could not be decoded: {e}"))
            })?;
            batch.announced = Some(conn.announced(names).map_err(DisconnectReason::Protocol)?);
        }
        Header::Release => {
            let names = postcard::from_bytes::<Vec<&str>>(payload).map_err(|e| {
                DisconnectReason::Protocol(format!("a release frame could not be decoded: {e}"))
            })?;
            conn.unexport(names);
        }
        Header::Error { id } => batch.replies.push((id, Err(decode_remote_error(payload)))),
        Header::Cancel { id } => {
            if lock(&conn.running).cancel(id) {
                trace!(id, "cancelled by caller");
            }
        }
        Header::Ping { id } => {
            let _ = conn.out.push_bare(&Header::Pong { id });
        }
        Header::Pong { id } => {
            if id != 0 {
                batch.replies.push((id, Ok(Answer::plain(Bytes::new()))));
            }
        }
        Header::Goodbye => return Err(DisconnectReason::ClosedByPeer),
        Header::Shutdown => return Err(DisconnectReason::Shutdown),
        Header::Item { id, way } => {
            let size = LEN_PREFIX + frame.len();
            frame.advance(header_len);
            batch.streams.push(Event::Item {
                way,
                id,
                item: frame,
                size,
            });
        }
        Header::End { id, way } => {
            let end = match postcard::from_bytes::<Option<RemoteError>>(payload) {
                Ok(None) => Ok(()),
                Ok(Some(e)) => Err(RpcError::Remote(e)),
                Err(e) => Err(RpcError::Protocol(format!(
                    "the end of stream {way:?} of call {id} could not be decoded: {e}"
                ))),
            };
            batch.streams.push(Event::End { way, id, end });
        }
        Header::Credit { id, way, bytes } => batch.streams.push(Event::Credit { way, id, bytes }),
        Header::Stop { id } => batch.streams.push(Event::Stop { id }),
    }
    Ok(())
}

/// Admits a call (`id`) or notification (`None`) to `name`: counts it in
/// flight and finds its target, or answers it with the reason it is refused.
fn admit(
    conn: &Conn,
    id: Option<u64>,
    name: &str,
    registry: &Registry,
    cache: &mut LookupCache,
) -> Option<Arc<Target>> {
    let kind = match id {
        Some(_) => Kind::Call,
        None => Kind::Notification,
    };
    let admitted = conn.admission.admit(kind).and_then(|()| {
        let found = if name.starts_with(HANDLE_PREFIX) {
            conn.handle_target(name)
        } else {
            registry.lookup_cached(cache, name)
        };
        found.inspect_err(|_| conn.admission.release(kind))
    });
    match admitted {
        Ok(target) => Some(target),
        Err(e) => {
            match id {
                Some(id) => {
                    debug!(id, %e, "call refused");
                    conn.send_error(id, &e);
                }
                // Nobody to tell: say it where the operator sees it, once
                // per connection.
                None if conn.admission.first_drop() => {
                    warn!(target = name, %e, "notification dropped (further drops on this connection are logged at DEBUG)")
                }
                None => debug!(target = name, %e, "notification dropped"),
            }
            None
        }
    }
}
