//! This side's calls waiting for their replies.
//!
//! Owns: call ids (numbered per side from 1, so they never collide with the
//! remote's), the slot each caller waits on, and the RAII guard that takes
//! an abandoned call out of the table and tells the remote to cancel it.
//!
//! [`PendingTable`] is plain `&mut self` state, unit-tested below without a
//! socket; [`Pending`] puts it behind the one mutex. Callers are woken only
//! after that mutex is released.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::trace;

use super::lock;
use super::outbox::Outbox;
use crate::error::{DisconnectReason, RpcError};
use crate::wire::Header;

/// A reply's payload, and the object handles announced with it.
pub(crate) struct Answer {
    pub(crate) payload: Bytes,
    pub(crate) handles: Option<std::sync::Arc<super::handles::FrameHandles>>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("bytes", &self.payload.len())
            .field("handles", &self.handles.is_some())
            .finish()
    }
}

impl Answer {
    /// A payload that came with no handles.
    pub(crate) fn plain(payload: Bytes) -> Answer {
        Answer {
            payload,
            handles: None,
        }
    }
}

/// What a caller receives: the reply, or why there is none.
pub(crate) type Outcome = Result<Answer, RpcError>;
type ReplyTx = oneshot::Sender<Outcome>;
pub(crate) type ReplyRx = oneshot::Receiver<Outcome>;

/// Hashes a call id with one multiplication (Fibonacci hashing spreads
/// sequential ids over the high bits the table probes with). Only for this
/// table, whose keys this side picks, never the remote.
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

/// The table itself.
pub(crate) struct PendingTable {
    calls: IdMap<ReplyTx>,
    next_id: u64,
    /// Set once the connection ended: no call is taken any more.
    closed: Option<DisconnectReason>,
}

impl Default for PendingTable {
    fn default() -> Self {
        PendingTable {
            calls: IdMap::default(),
            next_id: 1,
            closed: None,
        }
    }
}

impl PendingTable {
    /// Takes a new call: its id and the slot its reply arrives in.
    pub(crate) fn insert(&mut self) -> Result<(u64, ReplyRx), DisconnectReason> {
        if let Some(r) = &self.closed {
            return Err(r.clone());
        }
        let id = self.next_id;
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        self.calls.insert(id, tx);
        Ok((id, rx))
    }

    /// Takes call `id` out, for its reply; `None` if it is not waiting (it
    /// was abandoned, or the remote answered an id this side never used).
    pub(crate) fn complete(&mut self, id: u64) -> Option<oneshot::Sender<Outcome>> {
        self.calls.remove(&id)
    }

    /// Takes call `id` out because its caller gave up; whether it was still
    /// waiting.
    pub(crate) fn abandon(&mut self, id: u64) -> bool {
        self.calls.remove(&id).is_some()
    }

    /// Refuses new calls from now on and hands back every waiting one.
    pub(crate) fn close(
        &mut self,
        reason: &DisconnectReason,
    ) -> impl Iterator<Item = oneshot::Sender<Outcome>> {
        if self.closed.is_none() {
            self.closed = Some(reason.clone());
        }
        std::mem::take(&mut self.calls).into_values()
    }

    /// Calls waiting for a reply.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }
}

/// The table behind its mutex.
#[derive(Default)]
pub(crate) struct Pending {
    table: Mutex<PendingTable>,
}

impl Pending {
    /// A table that takes no calls (for a connection that never was).
    pub(crate) fn closed(reason: &DisconnectReason) -> Self {
        let mut table = PendingTable::default();
        let _ = table.close(reason).count();
        Pending {
            table: Mutex::new(table),
        }
    }

    pub(crate) fn insert(&self) -> Result<(u64, ReplyRx), RpcError> {
        lock(&self.table)
            .insert()
            .map_err(RpcError::ConnectionClosed)
    }

    /// Hands each reply to its waiting caller: the table is locked once for
    /// all of them, and no caller is woken while it is held. `waking` is
    /// scratch space kept by the reader between calls. Errors for calls no
    /// longer waiting go to `orphans` (they may end a returned stream).
    pub(crate) fn complete_all(
        &self,
        replies: &mut Vec<(u64, Outcome)>,
        waking: &mut Vec<(ReplyTx, Outcome)>,
        orphans: &mut Vec<(u64, RpcError)>,
    ) {
        if replies.is_empty() {
            return;
        }
        // Replies nobody waits for, dropped after the lock: the handles
        // they carry are released, which queues a frame.
        let mut late = Vec::new();
        {
            let mut table = lock(&self.table);
            for (id, outcome) in replies.drain(..) {
                match (table.complete(id), outcome) {
                    (Some(tx), outcome) => waking.push((tx, outcome)),
                    // An error for a call answered already: the end of
                    // the stream that call returned.
                    (None, Err(e)) => orphans.push((id, e)),
                    (None, Ok(answer)) => {
                        trace!(id, "reply for a call no longer waiting");
                        late.push(answer);
                    }
                }
            }
        }
        drop(late);
        for (tx, outcome) in waking.drain(..) {
            let _ = tx.send(outcome);
        }
    }

    /// Fails every waiting call with `reason` and takes no more.
    pub(crate) fn close(&self, reason: &DisconnectReason) {
        let waiting: Vec<_> = lock(&self.table).close(reason).collect();
        for tx in waiting {
            let _ = tx.send(Err(RpcError::ConnectionClosed(reason.clone())));
        }
    }

    fn abandon(&self, id: u64) -> bool {
        lock(&self.table).abandon(id)
    }
}

/// One call in the table, from its id to its reply. Dropped early (the
/// caller gave up, or timed out), it takes the call out of the table and,
/// if the call was sent, tells the remote to cancel it.
pub(crate) struct CallGuard<'a> {
    pending: &'a Pending,
    outbox: &'a Outbox,
    id: u64,
    sent: bool,
    done: bool,
}

impl<'a> CallGuard<'a> {
    pub(crate) fn new(pending: &'a Pending, outbox: &'a Outbox, id: u64) -> Self {
        CallGuard {
            pending,
            outbox,
            id,
            sent: false,
            done: false,
        }
    }

    /// The call's frame is queued: from now on the remote may be running it.
    pub(crate) fn sent(&mut self) {
        self.sent = true;
    }

    /// The reply (or the connection's end) arrived: nothing to undo.
    pub(crate) fn done(mut self) {
        self.done = true;
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.pending.abandon(self.id) && self.sent {
            let _ = self.outbox.push_bare(&Header::Cancel { id: self.id });
            trace!(id = self.id, "call abandoned; cancel sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_from_one_and_each_reply_finds_its_caller() {
        let mut t = PendingTable::default();
        let (a, mut rx_a) = t.insert().unwrap();
        let (b, mut rx_b) = t.insert().unwrap();
        assert_eq!((a, b), (1, 2));
        t.complete(b)
            .unwrap()
            .send(Ok(Answer::plain(Bytes::from_static(b"b"))))
            .unwrap_or_else(|_| panic!("b waits"));
        assert_eq!(
            rx_b.try_recv().unwrap().unwrap().payload,
            Bytes::from_static(b"b")
        );
        assert!(rx_a.try_recv().is_err(), "a is still waiting");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_reply_for_an_unknown_or_abandoned_id_finds_nobody() {
        let mut t = PendingTable::default();
        let (id, _rx) = t.insert().unwrap();
        assert!(t.complete(99).is_none());
        assert!(t.abandon(id));
        assert!(!t.abandon(id));
        assert!(t.complete(id).is_none());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn close_hands_back_every_caller_and_refuses_new_calls() {
        let mut t = PendingTable::default();
        let _calls: Vec<_> = (0..3).map(|_| t.insert().unwrap()).collect();
        assert_eq!(t.close(&DisconnectReason::ClosedByPeer).count(), 3);
        assert_eq!(t.len(), 0);
        assert_eq!(t.insert().unwrap_err(), DisconnectReason::ClosedByPeer);
        // The first reason stays.
        let _ = t.close(&DisconnectReason::Closed).count();
        assert_eq!(t.insert().unwrap_err(), DisconnectReason::ClosedByPeer);
    }

    #[test]
    fn a_dropped_guard_cancels_a_sent_call_only() {
        let pending = Pending::default();
        let outbox = Outbox::new(1 << 20, 1 << 20, None);
        let (unsent, _rx1) = pending.insert().unwrap();
        drop(CallGuard::new(&pending, &outbox, unsent));
        assert_eq!(outbox.len(), 0, "nothing to cancel: it never left");

        let (sent, _rx2) = pending.insert().unwrap();
        let mut guard = CallGuard::new(&pending, &outbox, sent);
        guard.sent();
        drop(guard);
        let mut want = Vec::new();
        crate::wire::encode_frame(&mut want, &Header::Cancel { id: sent }, &()).unwrap();
        assert_eq!(outbox.len(), want.len());

        let (answered, _rx3) = pending.insert().unwrap();
        let mut guard = CallGuard::new(&pending, &outbox, answered);
        guard.sent();
        guard.done();
        assert_eq!(outbox.len(), want.len(), "an answered call sends no cancel");
        assert_eq!(
            lock(&pending.table).len(),
            1,
            "done leaves the table as it is"
        );
    }

    #[test]
    fn closing_fails_the_waiting_callers_with_the_reason() {
        let pending = Pending::default();
        let (_, mut rx) = pending.insert().unwrap();
        pending.close(&DisconnectReason::HeartbeatTimeout);
        assert_eq!(
            rx.try_recv().unwrap().err(),
            Some(RpcError::ConnectionClosed(
                DisconnectReason::HeartbeatTimeout
            ))
        );
    }
}
