//! The send queue: bytes encoded for the remote and not yet written.
//!
//! Owns: the queue's bytes, its high-water mark (where one-way senders
//! wait), its budget (past which the remote counts as stalled), and the
//! closing flag after which nothing more is queued. Frames are encoded
//! straight into the queue, behind what is already there.
//!
//! Never does I/O (the writer drains it) and never closes the connection
//! itself: a push that finds the remote stalled says so, and the caller in
//! `conn` ends the connection.
//!
//! Lock: `state` is a short `std` mutex, never held across an `.await`. The
//! only code run under it besides the queue's own is the `then` of
//! [`Outbox::push_then`], which touches atomics only.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::{handles, lock};
use crate::budget::{BufferBudget, Share};
use crate::error::RpcError;
use crate::wire::{encode_bare, encode_frame_within, Header, Payload};

/// Queued output above this makes one-way senders wait for the writer.
const HIGH_WATER: usize = 4 * 1024 * 1024;

/// Queued output above this makes stream senders wait for the writer. Low,
/// so that a call's frame queued behind a bulk stream waits for at most
/// this much (plus one item) to go out first: streams are paced by the
/// socket, and calls and other streams get their turn between writes.
pub(crate) const STREAM_WATER: usize = 64 * 1024;

/// Why a frame was not queued.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The queue is closed: the connection is ending.
    Closed,
    /// More than the budget is queued: the remote stopped reading. The
    /// queue is emptied and closed.
    Stalled(u64),
    /// The frame could not be encoded or is over the remote's frame limit.
    Frame(RpcError),
    /// The queue needed more than the shared budget had left; it is emptied
    /// and closed.
    OverBudget(u64),
}

/// What the writer found in the queue.
pub(crate) enum Take {
    /// Bytes to write, swapped into the writer's buffer.
    Bytes,
    /// Nothing queued; wait for a wake-up.
    Empty,
    /// Nothing queued and nothing more will be: flush and shut down.
    Done,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer when the queue goes from empty to not empty.
    wake: Notify,
    /// Wakes one-way senders waiting below the high-water mark.
    space: Notify,
    /// The remote's frame limit.
    max_frame: usize,
    /// Bytes queued beyond which the remote counts as stalled.
    budget: usize,
}

struct State {
    buf: Vec<u8>,
    /// Stream senders waiting for the queue to drain below
    /// [`STREAM_WATER`]; woken when the writer takes it.
    stream_waiters: Vec<std::task::Waker>,
    /// Bytes the writer took and is writing.
    writing: usize,
    /// What the queue and the write take from a shared budget.
    share: Share,
    /// No more frames are accepted; the writer flushes and shuts down.
    closing: bool,
}

impl Outbox {
    pub(crate) fn new(max_frame: usize, budget: usize, shared: Option<BufferBudget>) -> Self {
        Outbox {
            state: Mutex::new(State {
                buf: Vec::new(),
                stream_waiters: Vec::new(),
                writing: 0,
                share: Share::new(shared),
                closing: false,
            }),
            wake: Notify::new(),
            space: Notify::new(),
            max_frame,
            budget,
        }
    }

    /// Bytes waiting for the writer.
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).buf.len()
    }

    /// Encodes a frame into the queue.
    pub(crate) fn push<P: Payload + ?Sized>(
        &self,
        header: &Header<'_>,
        payload: &P,
    ) -> Result<(), PushError> {
        self.push_then(header, payload, || {})
    }

    /// Encodes a frame into the queue, then runs `then` before the writer
    /// can take the frame (whether or not it was queued). An answer
    /// releases its call this way: the caller cannot see the reply, and
    /// send its next call, before the place is free.
    pub(crate) fn push_then<P: Payload + ?Sized>(
        &self,
        header: &Header<'_>,
        payload: &P,
        then: impl FnOnce(),
    ) -> Result<(), PushError> {
        let mut st = lock(&self.state);
        let res = if st.closing {
            Err(PushError::Closed)
        } else {
            let start = st.buf.len();
            // A panicking `Serialize` impl must not leave half a frame behind.
            let res = std::panic::catch_unwind(AssertUnwindSafe(|| {
                encode_frame_within(&mut st.buf, header, payload, self.max_frame)?;
                announce_handles(&mut st.buf, start, self.max_frame)
            }));
            match res {
                Ok(Ok(announced)) => {
                    let queued = self.queued(&mut st, start == 0);
                    if announced && queued.is_ok() {
                        handles::sent();
                    }
                    queued
                }
                Ok(Err(e)) => Err(PushError::Frame(e)),
                Err(panic) => {
                    st.buf.truncate(start);
                    drop(st);
                    then();
                    std::panic::resume_unwind(panic);
                }
            }
        };
        then();
        res
    }

    /// The remote's frame limit.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Queues frames encoded elsewhere (a stream's batch of items).
    pub(crate) fn push_encoded(&self, frames: &[u8]) -> Result<(), PushError> {
        let mut st = lock(&self.state);
        if st.closing {
            return Err(PushError::Closed);
        }
        let was_empty = st.buf.is_empty();
        st.buf.extend_from_slice(frames);
        self.queued(&mut st, was_empty)
    }

    /// The room below [`STREAM_WATER`] (at least one byte), once there is
    /// some; else the waker is registered for the writer's next take. A
    /// closing queue has room: the push that follows reports it closed.
    pub(crate) fn poll_stream_room(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<usize> {
        let mut st = lock(&self.state);
        if st.buf.len() < STREAM_WATER || st.closing {
            return std::task::Poll::Ready(STREAM_WATER.saturating_sub(st.buf.len()).max(1));
        }
        if !st.stream_waiters.iter().any(|w| w.will_wake(cx.waker())) {
            st.stream_waiters.push(cx.waker().clone());
        }
        std::task::Poll::Pending
    }

    /// Queues a frame that is a header alone (ping, pong, cancel).
    pub(crate) fn push_bare(&self, header: &Header<'_>) -> Result<(), PushError> {
        let mut st = lock(&self.state);
        if st.closing {
            return Err(PushError::Closed);
        }
        let was_empty = st.buf.is_empty();
        encode_bare(&mut st.buf, header);
        self.queued(&mut st, was_empty)
    }

    /// After bytes were queued: wakes the writer when the queue was empty,
    /// and gives up on a remote that lets more than the budget pile up (it
    /// stopped reading but may still be sending). One frame alone never
    /// counts, however large.
    fn queued(&self, st: &mut State, was_empty: bool) -> Result<(), PushError> {
        if st.buf.len() + st.writing > BufferBudget::FREE_PER_CONNECTION
            && !st.share.hold(st.buf.len() + st.writing)
        {
            let limit = st.share.limit();
            st.buf = Vec::new();
            st.closing = true;
            self.wake.notify_one();
            self.space.notify_waiters();
            return Err(PushError::OverBudget(limit));
        }
        if was_empty {
            self.wake.notify_one();
        } else if st.buf.len() > self.budget {
            let queued = st.buf.len() as u64;
            // What is queued would never leave.
            st.buf = Vec::new();
            st.closing = true;
            self.wake.notify_one();
            self.space.notify_waiters();
            return Err(PushError::Stalled(queued));
        }
        Ok(())
    }

    /// Waits until the queue is below its high-water mark (or closing).
    pub(crate) async fn wait_space(&self) {
        loop {
            let notified = self.space.notified();
            {
                let st = lock(&self.state);
                if st.buf.len() < HIGH_WATER || st.closing {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Accepts nothing more. `bye` (a goodbye frame) goes after what is
    /// queued; with `discard`, what is queued is dropped first.
    pub(crate) fn close(&self, bye: Option<Header<'_>>, discard: bool) {
        let waiters = {
            let mut st = lock(&self.state);
            if discard {
                st.buf = Vec::new();
                let writing = st.writing;
                st.share.hold(writing);
            }
            if let (Some(bye), false) = (bye, st.closing) {
                encode_bare(&mut st.buf, &bye);
            }
            st.closing = true;
            std::mem::take(&mut st.stream_waiters)
        };
        self.wake.notify_one();
        self.space.notify_waiters();
        waiters.into_iter().for_each(std::task::Waker::wake);
    }

    /// For the writer: swaps the queued bytes into `spare` (which must be
    /// empty).
    ///
    /// What it took before is written by now (the writer takes again only
    /// after a write), so the share of the budget follows what it takes.
    pub(crate) fn take(&self, spare: &mut Vec<u8>) -> Take {
        let mut st = lock(&self.state);
        if st.buf.is_empty() {
            // Nothing in flight, nothing queued: no share of the budget.
            st.writing = 0;
            st.share.hold(0);
            return if st.closing { Take::Done } else { Take::Empty };
        }
        std::mem::swap(&mut st.buf, spare);
        st.writing = spare.len();
        let writing = st.writing;
        st.share.hold(writing);
        let waiters = std::mem::take(&mut st.stream_waiters);
        drop(st);
        self.space.notify_waiters();
        waiters.into_iter().for_each(std::task::Waker::wake);
        Take::Bytes
    }

    /// For the writer: waits for bytes after [`Take::Empty`].
    pub(crate) async fn wait_bytes(&self) {
        self.wake.notified().await;
    }
}

/// Puts a `Handles` frame in front of the frame just encoded at `start`,
/// listing the object handles its payload carries; whether it carries any.
fn announce_handles(buf: &mut Vec<u8>, start: usize, max_frame: usize) -> Result<bool, RpcError> {
    let names = handles::exported();
    if names.is_empty() {
        return Ok(false);
    }
    let names: Vec<&str> = names.iter().map(|n| &**n).collect();
    let end = buf.len();
    if let Err(e) = encode_frame_within(buf, &Header::Handles, &names, max_frame) {
        buf.truncate(start);
        return Err(e);
    }
    let announce = buf.len() - end;
    buf[start..].rotate_right(announce);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_queue_in_order_and_the_writer_takes_them_all() {
        let out = Outbox::new(1 << 20, 1 << 20, None);
        out.push_bare(&Header::Ping { id: 1 }).unwrap();
        out.push(&Header::Reply { id: 2 }, &42u32).unwrap();
        let mut spare = Vec::new();
        assert!(matches!(out.take(&mut spare), Take::Bytes));
        let mut want = Vec::new();
        crate::wire::encode_frame(&mut want, &Header::Ping { id: 1 }, &()).unwrap();
        crate::wire::encode_frame(&mut want, &Header::Reply { id: 2 }, &42u32).unwrap();
        assert_eq!(spare, want);
        assert!(matches!(out.take(&mut Vec::new()), Take::Empty));
    }

    #[test]
    fn a_frame_over_the_remote_limit_is_refused_and_leaves_nothing() {
        let out = Outbox::new(1024, 1 << 20, None);
        let big = vec![0u8; 2000];
        let err = out.push(&Header::Reply { id: 1 }, &big).unwrap_err();
        assert!(matches!(
            err,
            PushError::Frame(RpcError::TooLarge { limit: 1024, .. })
        ));
        assert_eq!(out.len(), 0);
    }

    #[test]
    fn then_runs_whether_or_not_the_frame_was_queued() {
        let out = Outbox::new(1024, 1 << 20, None);
        let mut ran = 0;
        out.push_then(&Header::Reply { id: 1 }, &1u8, || ran += 1)
            .unwrap();
        let _ = out.push_then(&Header::Reply { id: 2 }, &vec![0u8; 4096], || ran += 1);
        out.close(None, false);
        let _ = out.push_then(&Header::Reply { id: 3 }, &1u8, || ran += 1);
        assert_eq!(ran, 3);
    }

    #[test]
    fn a_queue_past_its_budget_is_a_stalled_remote_and_closes() {
        let out = Outbox::new(1 << 20, 10_000, None);
        let chunk = vec![7u8; 4000];
        out.push(&Header::Reply { id: 1 }, &chunk).unwrap();
        out.push(&Header::Reply { id: 2 }, &chunk).unwrap();
        match out.push(&Header::Reply { id: 3 }, &chunk) {
            Err(PushError::Stalled(queued)) => assert!(queued > 10_000),
            other => panic!("not stalled: {other:?}"),
        }
        assert_eq!(out.len(), 0);
        assert!(matches!(
            out.push_bare(&Header::Ping { id: 0 }),
            Err(PushError::Closed)
        ));
        assert!(matches!(out.take(&mut Vec::new()), Take::Done));
    }

    #[test]
    fn close_appends_the_goodbye_after_what_is_queued() {
        let out = Outbox::new(1 << 20, 1 << 20, None);
        out.push_bare(&Header::Ping { id: 9 }).unwrap();
        out.close(Some(Header::Shutdown), false);
        out.close(Some(Header::Goodbye), false); // a second close adds nothing
        let mut spare = Vec::new();
        assert!(matches!(out.take(&mut spare), Take::Bytes));
        let mut want = Vec::new();
        crate::wire::encode_frame(&mut want, &Header::Ping { id: 9 }, &()).unwrap();
        crate::wire::encode_frame(&mut want, &Header::Shutdown, &()).unwrap();
        assert_eq!(spare, want);
        assert!(matches!(out.take(&mut Vec::new()), Take::Done));
    }
}
