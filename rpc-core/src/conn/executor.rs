//! Runs the handlers of admitted calls.
//!
//! Owns: the choice between running a handler inline and giving it a task,
//! the one path by which a panic becomes an error reply, and the one path by
//! which the callee's deadline ends a handler.
//!
//! One dispatcher task per connection takes the calls of each read from the
//! reader. Synchronous handlers run to completion; an `async` one is polled
//! once, and only if it must wait (for example on a call back into its
//! caller) does it move to a task of its own, so it holds up nothing else.
//! The reader never waits on any of this.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures::future::{AbortHandle, Abortable};
use futures::FutureExt;
use tokio::sync::mpsc;
use tracing::{trace, warn, Instrument};

use super::{lock, Conn};
use crate::dispatch::{Handled, HandlerFuture, Incoming};
use crate::error::RemoteError;

/// Pipelining of a large batch of calls: every `PIPELINE_STEP` calls of a
/// batch larger than `PIPELINE_MIN_BATCH`, the dispatcher lets the writer
/// send the replies so far, as long as they are small (under
/// `PIPELINE_MAX_BYTES` queued). The remote then works on those replies while
/// this side works on the rest, instead of both taking turns on whole
/// batches. Large replies are not split: more writes would cost more than the
/// overlap gains. Only where the writer cannot run beside the dispatcher
/// (see [`pipelines`]).
const PIPELINE_STEP: usize = 8;
const PIPELINE_MIN_BATCH: usize = 16;
const PIPELINE_MAX_BYTES: usize = 2048;

/// Whether yielding to the writer mid-batch pays: on a runtime with one
/// worker (current-thread, or multi-thread with a single worker) the writer
/// cannot run until the dispatcher yields; with more workers it already
/// runs beside it, and yielding only adds cross-thread wake-ups.
fn pipelines() -> bool {
    let handle = tokio::runtime::Handle::current();
    match handle.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => true,
        _ => handle.metrics().num_workers() == 1,
    }
}

/// The dispatcher task: runs each batch of calls the reader hands over.
pub(super) async fn dispatch_loop(
    conn: Arc<Conn>,
    mut jobs: mpsc::UnboundedReceiver<Vec<Incoming>>,
) {
    let pipeline = pipelines();
    // The ids of the calls of a batch that ended inline, taken out of the
    // running table together (kept between batches for its memory).
    let mut ended = Vec::new();
    while let Some(batch) = jobs.recv().await {
        let split = pipeline && batch.len() > PIPELINE_MIN_BATCH;
        for (i, call) in batch.into_iter().enumerate() {
            if split && i > 0 && i % PIPELINE_STEP == 0 && conn.out.len() < PIPELINE_MAX_BYTES {
                finish(&conn, &mut ended);
                tokio::task::yield_now().await;
            }
            let id = call.id;
            if run(&conn, call) == Ran::Inline {
                ended.extend(id);
            }
        }
        finish(&conn, &mut ended);
    }
}

/// Takes the calls that ended out of the running table.
fn finish(conn: &Conn, ended: &mut Vec<u64>) {
    if !ended.is_empty() {
        lock(&conn.running).finish_all(ended);
    }
}

/// Where a call ran.
#[derive(Debug, PartialEq, Eq)]
enum Ran {
    /// To its end, here (answered, or panicked and answered for).
    Inline,
    /// In a task of its own, which takes it out of the running table.
    Spawned,
}

/// Runs one call: inline to completion if it can, else in a task.
fn run(conn: &Arc<Conn>, incoming: Incoming) -> Ran {
    let service = incoming.target.service.clone();
    let index = incoming.target.index;
    let id = incoming.id;
    let deadline = incoming.deadline;
    let span = tracing::level_enabled!(tracing::Level::DEBUG).then(|| {
        tracing::debug_span!(
            "rpc.serve",
            otel.kind = "server",
            rpc.service = &*incoming.target.object,
            rpc.method = &*incoming.target.method,
            rpc.request_id = id,
        )
    });
    let dispatch = AssertUnwindSafe(|| match service.dispatch(index, incoming) {
        // Many `async` handlers finish without waiting for anything: poll
        // once here and give the handler a task of its own only if it must
        // wait. (The task polls it again at once, with its own waker, as
        // the `Future` contract allows.)
        Handled::Pending(mut fut) => {
            match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(replied) => Handled::Done(replied),
                Poll::Pending => Handled::Pending(fut),
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
        Ok(Handled::Done(_)) => Ran::Inline,
        Ok(Handled::Pending(fut)) => {
            spawn(conn, id, deadline, fut, span);
            Ran::Spawned
        }
        Err(panic) => {
            panicked(conn, id, &*panic);
            Ran::Inline
        }
    }
}

/// Gives a handler that must wait a task of its own, stopped by a cancel
/// from the caller or at the call's deadline.
fn spawn(
    conn: &Arc<Conn>,
    id: Option<u64>,
    deadline: Option<Instant>,
    fut: HandlerFuture,
    span: Option<tracing::Span>,
) {
    let (abort, registration) = AbortHandle::new_pair();
    if let Some(id) = id {
        if !lock(&conn.running).start(id, abort) {
            lock(&conn.running).finish(id);
            return; // cancelled, or the connection ended, meanwhile
        }
    }
    let conn = conn.clone();
    let task = async move {
        let outcome = {
            let mut guarded = std::pin::pin!(Abortable::new(
                AssertUnwindSafe(fut).catch_unwind(),
                registration
            ));
            let outcome = match deadline {
                Some(d) => tokio::select! {
                    r = &mut guarded => Some(r),
                    () = tokio::time::sleep_until(d.into()) => None,
                },
                None => Some(guarded.as_mut().await),
            };
            // The one deadline path: the caller hears why while the handler
            // (and so its place among the calls in flight) still exists;
            // the handler is dropped at the end of this block, which
            // releases the call.
            if let (None, Some(id)) = (&outcome, id) {
                conn.send_error(id, &RemoteError::DeadlineExceeded);
            }
            outcome
        };
        if let Some(Ok(Err(panic))) = outcome {
            panicked(&conn, id, &*panic);
        }
        // Otherwise: answered, stopped at the deadline (above), or aborted
        // by the caller's cancel (who waits no more).
        if let Some(id) = id {
            lock(&conn.running).finish(id);
        }
    };
    match span {
        Some(span) => tokio::spawn(task.instrument(span)),
        None => tokio::spawn(task),
    };
}

/// The one panic path: the handler (inline or in its task) panicked. Its
/// `Incoming` was dropped while unwinding, which released the call before
/// this error is queued; the caller gets [`RemoteError::Panicked`].
fn panicked(conn: &Conn, id: Option<u64>, panic: &(dyn std::any::Any + Send)) {
    let msg = if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "handler panicked".to_string()
    };
    warn!(?id, %msg, "handler panicked");
    if let Some(id) = id {
        conn.send_error(id, &RemoteError::Panicked(msg));
    }
}
