//! Calls with streams, on the connection: a call out that returns or takes
//! a stream, and the connection as a stream end sees it ([`Port`]).
//!
//! Owns: the order of a streaming call (ends opened before the call frame
//! is queued, so nothing that arrives is lost; closed again if the call
//! fails), the slot a returned stream keeps, and the frames a stream end
//! queues. The credit itself is `streams`' business.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;

use super::pending::{Answer, CallGuard};
use super::streams::Taken;
use super::{lock, Conn};
use crate::dispatch::Kind;
use crate::error::{RemoteError, RpcError};
use crate::stream::{AbortOnDrop, Port};
use crate::wire::{Header, Way};

/// Starts the pump of a call's input, given the connection and the call id.
pub(crate) type InputPump = Box<dyn FnOnce(Arc<dyn Port>, u64) -> BoxFuture<'static, ()> + Send>;

/// A streaming call that was answered.
pub(crate) struct Streaming {
    /// The reply, and the object handles that came with it.
    pub(crate) answer: Answer,
    /// The call's id, which names its streams.
    pub(crate) id: u64,
    /// The task sending the call's input, if it has one and returns a
    /// stream (it goes on while the stream is read).
    pub(crate) input: Option<AbortOnDrop>,
}

/// Closes the ends of a streaming call that did not get its answer (it
/// failed, timed out, or its future was dropped).
struct EndsGuard<'a> {
    conn: &'a Conn,
    id: u64,
    output: bool,
    input: bool,
    armed: bool,
}

impl Drop for EndsGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut streams = lock(&self.conn.streams);
            if self.output {
                streams.close_inlet(Way::Down, self.id);
            }
            if self.input {
                streams.close_outlet(Way::Up, self.id);
            }
        }
    }
}

impl Conn {
    /// Makes a call with streams: `output` when it returns one, `input`
    /// when it takes one (pumped in a task of its own from the moment the
    /// call is queued). Waits for the reply until `deadline`. On success
    /// with `output`, the call keeps its slot: the returned stream gives it
    /// back when it ends.
    pub(crate) async fn call_streaming<A: Serialize + ?Sized>(
        self: &Arc<Self>,
        target: &str,
        args: &A,
        deadline: Option<tokio::time::Instant>,
        output: bool,
        input: Option<InputPump>,
    ) -> Result<Streaming, RpcError> {
        let slot = self.slot(deadline).await?;
        let (id, rx) = self.pending.insert()?;
        let mut guard = CallGuard::new(&self.pending, &self.out, id);
        let mut ends = EndsGuard {
            conn: self,
            id,
            output,
            input: input.is_some(),
            armed: true,
        };
        {
            let mut streams = lock(&self.streams);
            let opened = (!output || streams.open_inlet(Way::Down, id).is_some())
                && (input.is_none() || streams.open_outlet(Way::Up, id));
            if !opened {
                drop(streams);
                return Err(self.closed_error());
            }
        }
        self.queue_call(id, target, args, deadline)?;
        guard.sent();
        let port: Arc<dyn Port> = self.clone();
        let pump = input.map(|start| AbortOnDrop(tokio::spawn(start(port, id)).abort_handle()));
        let answer = self.reply(rx, deadline).await?;
        guard.done();
        let answer = answer?;
        if output {
            // The returned stream keeps the call's slot and its ends.
            ends.armed = false;
            slot.keep();
        }
        // Without a returned stream the callee has answered and reads no
        // more input: the pump (dropped here) and the ends (the guard) go.
        let input = if output { pump } else { None };
        Ok(Streaming { answer, id, input })
    }
}

impl Port for Conn {
    /// The callee's side: opens the stream call `id` returns (and answers
    /// the call with an empty reply, which tells the caller it is open), or
    /// the stream it takes (and grants the caller its first credit).
    fn open_served(&self, way: Way, id: u64) -> Result<(), RemoteError> {
        let limit = self.max_streams;
        let mut streams = lock(&self.streams);
        if streams.serving() >= limit {
            return Err(RemoteError::TooManyStreams {
                limit: limit as u64,
            });
        }
        let grant = match way {
            Way::Down => streams.open_outlet(way, id).then_some(0),
            Way::Up => streams.open_inlet(way, id),
        };
        drop(streams);
        let Some(grant) = grant else {
            return Err(RemoteError::Failed(format!(
                "stream {way:?} of call {id} is already open, or the connection is closing"
            )));
        };
        let queued = match way {
            Way::Down => self.out.push(&Header::Reply { id }, &()),
            Way::Up => self.out.push_bare(&Header::Credit {
                id,
                way,
                bytes: grant,
            }),
        };
        queued.map_err(|e| RemoteError::Failed(self.push_failed(e).to_string()))
    }

    fn poll_take(
        &self,
        way: Way,
        id: u64,
        cx: &mut Context<'_>,
        into: &mut VecDeque<(Bytes, usize)>,
    ) -> Poll<Option<Result<(), RpcError>>> {
        let taken = lock(&self.streams).take(way, id, cx.waker(), into);
        match taken {
            Taken::Items => Poll::Ready(Some(Ok(()))),
            Taken::End(Ok(())) => Poll::Ready(None),
            Taken::End(Err(e)) => Poll::Ready(Some(Err(e))),
            Taken::Wait => Poll::Pending,
        }
    }

    fn consumed(&self, way: Way, id: u64, bytes: usize) {
        let grant = lock(&self.streams).consumed(way, id, bytes);
        if let Some(bytes) = grant {
            let _ = self.out.push_bare(&Header::Credit { id, way, bytes });
        }
    }

    fn close_inlet(&self, way: Way, id: u64, release_slot: bool) {
        let unfinished = {
            let mut streams = lock(&self.streams);
            if way == Way::Down {
                // The call is over for its caller: so is its input.
                streams.close_outlet(Way::Up, id);
            }
            streams.close_inlet(way, id)
        };
        if unfinished {
            // The stream a call returns ends with the call: cancel it. The
            // callee's input is the caller's business: ask it to stop.
            let stop = match way {
                Way::Down => Header::Cancel { id },
                Way::Up => Header::Stop { id },
            };
            let _ = self.out.push_bare(&stop);
        }
        if release_slot {
            self.slots.release_one();
        }
    }

    fn poll_budget(&self, way: Way, id: u64, cx: &mut Context<'_>) -> Poll<Option<usize>> {
        let credit = match lock(&self.streams).may_send(way, id, cx.waker()) {
            None => return Poll::Ready(None),
            Some(0) => return Poll::Pending,
            Some(credit) => credit,
        };
        self.out
            .poll_stream_room(cx)
            .map(|room| Some(room.min(credit)))
    }

    fn max_frame(&self) -> usize {
        self.out.max_frame()
    }

    fn send_frames(&self, way: Way, id: u64, frames: &[u8]) -> Result<(), RpcError> {
        self.out
            .push_encoded(frames)
            .map_err(|e| self.push_failed(e))?;
        lock(&self.streams).sent(way, id, frames.len());
        Ok(())
    }

    fn forget_outlet(&self, way: Way, id: u64) {
        lock(&self.streams).close_outlet(way, id);
    }

    fn send_end(&self, way: Way, id: u64, error: Option<&RemoteError>) {
        lock(&self.streams).close_outlet(way, id);
        let header = Header::End { id, way };
        let queued = match way {
            // The end of the stream a call returns ends the call: it gives
            // up its place among the calls in flight once the end is
            // queued, as an answer does.
            Way::Down => self
                .out
                .push_then(&header, &error, || self.admission.release(Kind::Call)),
            Way::Up => self.out.push(&header, &error),
        };
        if let Err(e) = queued {
            let _ = self.push_failed(e);
        }
    }
}
