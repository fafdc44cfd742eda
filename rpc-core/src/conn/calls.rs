//! This side's calls out, on the connection: a call and its reply, a
//! ping, a notification, and the slot each call waits for first.
//!
//! Owns: the path of one call from its slot to its reply. The pending table
//! (`pending`) and the slots (`slots`) keep the state; this only walks it.

use serde::Serialize;

use super::pending::{Answer, CallGuard, ReplyRx};
use super::{slots, timeout_ms, within, Conn};
use crate::error::{RemoteError, RpcError};
use crate::wire::Header;

impl Conn {
    /// Makes a call and waits for its reply, until `deadline` (the one
    /// deadline of the call: the wait for a slot counts).
    /// `sent` becomes true once the call is queued for the remote: a
    /// failure before that never reached it.
    pub(crate) async fn call<A: Serialize + ?Sized>(
        &self,
        target: &str,
        args: &A,
        deadline: Option<tokio::time::Instant>,
        span: Option<&tracing::Span>,
        sent: &mut bool,
    ) -> Result<Answer, RpcError> {
        let slot = self.slot(deadline).await?;
        let (id, rx) = self.pending.insert()?;
        if let Some(span) = span {
            span.record("rpc.request_id", id);
        }
        let mut guard = CallGuard::new(&self.pending, &self.out, id);
        self.queue_call(id, target, args, deadline)?;
        guard.sent();
        *sent = true;
        // On a timeout the guard, dropped here, sends the cancel.
        let reply = self.reply(rx, deadline).await?;
        guard.done();
        drop(slot);
        reply
    }

    /// Queues the frame of call `id`, with the timeout `deadline` leaves.
    pub(super) fn queue_call<A: Serialize + ?Sized>(
        &self,
        id: u64,
        target: &str,
        args: &A,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), RpcError> {
        let header = Header::Call {
            id,
            target,
            timeout_ms: timeout_ms(deadline),
        };
        super::handles::encoding(self, || self.out.push(&header, args))
            .map_err(|e| self.push_failed(e))
    }

    /// Waits for the reply of a call that was sent, until `deadline`: the
    /// outer `Err` is this side's `Timeout` (the caller's guard then
    /// cancels the call), the inner result is the call's answer.
    pub(super) async fn reply(
        &self,
        rx: ReplyRx,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Result<Answer, RpcError>, RpcError> {
        let reply = match deadline {
            Some(d) => within(d, rx).await?,
            None => rx.await,
        };
        Ok(match reply.unwrap_or_else(|_| Err(self.closed_error())) {
            // Both deadlines passed, and the callee's verdict was read
            // first: this side's own conclusion is that its time ran out.
            Err(RpcError::Remote(RemoteError::DeadlineExceeded))
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) =>
            {
                Err(RpcError::Timeout)
            }
            reply => reply,
        })
    }

    /// A slot among the remote's calls in flight, waited for until
    /// `deadline` (the call's one deadline: the wait counts).
    pub(super) async fn slot(
        &self,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<slots::Slot<'_>, RpcError> {
        let acquired = match deadline {
            Some(d) => within(d, self.slots.acquire()).await?,
            None => self.slots.acquire().await,
        };
        acquired.ok_or_else(|| self.closed_error())
    }

    /// Sends a ping and waits for its pong.
    pub(crate) async fn ping(&self) -> Result<(), RpcError> {
        let (id, rx) = self.pending.insert()?;
        let mut guard = CallGuard::new(&self.pending, &self.out, id);
        self.out
            .push_bare(&Header::Ping { id })
            .map_err(|e| self.push_failed(e))?;
        guard.sent();
        let pong = rx.await;
        guard.done();
        pong.unwrap_or_else(|_| Err(self.closed_error())).map(drop)
    }

    /// Sends a notification, first waiting while a large backlog is queued.
    pub(crate) async fn notify<A: Serialize + ?Sized>(
        &self,
        target: &str,
        args: &A,
    ) -> Result<(), RpcError> {
        self.out.wait_space().await;
        super::handles::encoding(self, || self.out.push(&Header::Notify { target }, args))
            .map_err(|e| self.push_failed(e))
    }
}
