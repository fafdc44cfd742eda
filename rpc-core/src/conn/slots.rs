//! [`Slots`]: the caller's side of the remote's limit on calls in flight.
//!
//! Each side announces in the handshake how many of the other side's calls it
//! runs at once; the caller holds one slot per call until its reply arrives,
//! and waits for a free slot instead of sending a call the remote would
//! refuse. A slot is taken and given back with one atomic operation each (a
//! `tokio` semaphore takes a lock on every release, which showed in profiles).

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::sync::Notify;

/// A counter of calls in flight with an upper bound, and a queue of callers
/// waiting for a slot.
///
/// No lock is held while waiting: a waiter registers with `freed` and then
/// checks the counter again, so a release between its first check and its
/// registration cannot be missed.
pub(crate) struct Slots {
    used: AtomicU32,
    max: u32,
    closed: AtomicBool,
    /// Callers between their first failed try and their wake-up. A release
    /// notifies only when this is non-zero (`used` and `waiters` are both
    /// SeqCst, so a release and a new waiter cannot miss each other: either
    /// the waiter's second try sees the freed slot, or the release sees the
    /// waiter).
    waiters: AtomicU32,
    freed: Notify,
}

/// One taken slot; given back on drop.
pub(crate) struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::SeqCst);
        if self.0.waiters.load(Ordering::SeqCst) > 0 {
            self.0.freed.notify_one();
        }
    }
}

/// Counts a waiter for as long as it lives (a waiting future may be dropped).
struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    fn new(waiters: &'a AtomicU32) -> Self {
        waiters.fetch_add(1, Ordering::SeqCst);
        Waiting(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slots {
    /// Up to `max` slots (at least one).
    pub(crate) fn new(max: u32) -> Self {
        Slots {
            used: AtomicU32::new(0),
            max: max.max(1),
            closed: AtomicBool::new(false),
            waiters: AtomicU32::new(0),
            freed: Notify::new(),
        }
    }

    fn try_take(&self) -> bool {
        let mut cur = self.used.load(Ordering::SeqCst);
        while cur < self.max {
            match self
                .used
                .compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
        false
    }

    /// Takes a slot, waiting for one if all are in use; `None` once the
    /// slots are closed (the connection ended).
    pub(crate) async fn acquire(&self) -> Option<Slot<'_>> {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            if self.try_take() {
                return Some(Slot(self));
            }
            let mut notified = pin!(self.freed.notified());
            notified.as_mut().enable();
            let _waiting = Waiting::new(&self.waiters);
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            if self.try_take() {
                return Some(Slot(self));
            }
            notified.await;
        }
    }

    /// Fails every waiter and every later [`acquire`](Slots::acquire).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_set_waits_for_a_release_and_close_fails_waiters() {
        let slots = Slots::new(2);
        let a = slots.acquire().await.unwrap();
        let _b = slots.acquire().await.unwrap();
        // Full: a third caller waits until a slot is given back.
        let third = slots.acquire();
        let mut third = pin!(third);
        assert!(futures::poll!(third.as_mut()).is_pending());
        drop(a);
        let _c = match futures::poll!(third.as_mut()) {
            std::task::Poll::Ready(Some(slot)) => slot,
            other => panic!(
                "a freed slot was not handed to the waiter: {:?}",
                other.is_ready()
            ),
        };
        // Closing fails a waiter and later callers.
        let fourth = slots.acquire();
        let mut fourth = pin!(fourth);
        assert!(futures::poll!(fourth.as_mut()).is_pending());
        slots.close();
        assert!(matches!(
            futures::poll!(fourth.as_mut()),
            std::task::Poll::Ready(None)
        ));
        assert!(slots.acquire().await.is_none());
    }
}
