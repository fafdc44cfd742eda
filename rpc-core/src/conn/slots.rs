//! [`Slots`]: the caller's side of the remote's limit on calls in flight.
//!
//! Each side announces in the handshake how many of the other side's calls it
//! runs at once; the caller holds one slot per call until its reply arrives,
//! and waits for a free slot instead of sending a call the remote would
//! refuse. A slot is taken and given back with one atomic operation each (a
//! `tokio` semaphore takes a lock on every release; swapping it in cost 2-8%
//! of client CPU per call in `rpc-bench`). Being hand-written, it is
//! model-checked with loom: `RUSTFLAGS="--cfg rpc_loom" cargo test -p
//! rpc-core --lib slots` (run by `.ci/run`).

use std::pin::pin;

// Under `--cfg rpc_loom` the atomics are loom's, so the model-checked tests
// below explore every interleaving of them (tokio's `Notify`, model-checked
// by tokio itself, acts as one step each).
#[cfg(rpc_loom)]
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
#[cfg(not(rpc_loom))]
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
    /// notifies only when this is non-zero. A release and a new waiter
    /// cannot miss each other: both touch `waiters` with a read-modify-write
    /// (the release adds 0), and read-modify-writes of one atomic are
    /// totally ordered. If the release's comes second, it sees the waiter
    /// and notifies it (its `Notified` is enabled before it counts itself);
    /// if first, the waiter's reads from it and so synchronizes with it, and
    /// the waiter's second try sees the freed slot. This argument needs only
    /// acquire/release, which is what loom checks.
    waiters: AtomicU32,
    freed: Notify,
}

/// One taken slot; given back on drop.
pub(crate) struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.release_one();
    }
}

impl Slot<'_> {
    /// Keeps the slot taken past this guard: a call whose stream outlives
    /// the call's future gives it back with [`Slots::release_one`].
    pub(crate) fn keep(self) {
        std::mem::forget(self);
    }
}

/// Counts a waiter for as long as it lives (a waiting future may be dropped).
struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    fn new(waiters: &'a AtomicU32) -> Self {
        waiters.fetch_add(1, Ordering::AcqRel);
        Waiting(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
        let mut cur = self.used.load(Ordering::Acquire);
        while cur < self.max {
            match self
                .used
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
        false
    }

    /// Gives back one slot (what dropping a [`Slot`] does).
    pub(crate) fn release_one(&self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
        // A read-modify-write, not a load: see `Slots::waiters`.
        if self.waiters.fetch_add(0, Ordering::AcqRel) > 0 {
            self.freed.notify_one();
        }
    }

    /// Slots taken now (a snapshot).
    pub(crate) fn in_use(&self) -> u32 {
        self.used.load(Ordering::Relaxed)
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
        // As in a release (see `waiters`): a waiter that counts itself after
        // this sees `closed`; one that counted itself before is woken below.
        self.waiters.fetch_add(0, Ordering::AcqRel);
        self.freed.notify_waiters();
    }
}

#[cfg(all(test, not(rpc_loom)))]
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

#[cfg(all(test, rpc_loom))]
mod loom_tests {
    use super::*;
    use loom::future::block_on;
    use loom::sync::Arc;
    use loom::thread;

    /// A release is never lost: a caller waiting for the only slot gets it
    /// whatever the interleaving of its check, its registration and the
    /// release (a lost wake-up would leave it blocked, which loom reports).
    #[test]
    fn a_release_always_reaches_the_waiter() {
        loom::model(|| {
            let slots = Arc::new(Slots::new(1));
            let held = block_on(slots.acquire()).unwrap();
            let waiter = {
                let slots = slots.clone();
                thread::spawn(move || block_on(slots.acquire()).is_some())
            };
            drop(held);
            assert!(waiter.join().unwrap());
        });
    }

    /// Two callers and one slot: both get it in turn, never both at once.
    #[test]
    fn one_slot_is_shared_in_turn() {
        loom::model(|| {
            let slots = Arc::new(Slots::new(1));
            let inside = Arc::new(AtomicU32::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (slots, inside) = (slots.clone(), inside.clone());
                    thread::spawn(move || {
                        let slot = block_on(slots.acquire()).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(slot);
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(slots.used.load(Ordering::SeqCst), 0);
        });
    }

    /// Two waiters for one held slot: the release reaches one of them, and
    /// that one's release reaches the other.
    #[test]
    fn releases_pass_along_a_queue_of_waiters() {
        // Three threads: explored with up to three preemptions, which keeps
        // the run in seconds (unbounded takes many minutes).
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let slots = Arc::new(Slots::new(1));
            let held = block_on(slots.acquire()).unwrap();
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let slots = slots.clone();
                    thread::spawn(move || drop(block_on(slots.acquire()).unwrap()))
                })
                .collect();
            drop(held);
            for w in waiters {
                w.join().unwrap();
            }
        });
    }

    /// Closing wakes a waiter, which then gets no slot.
    #[test]
    fn close_wakes_a_waiter() {
        loom::model(|| {
            let slots = Arc::new(Slots::new(1));
            let _held = block_on(slots.acquire()).unwrap();
            let waiter = {
                let slots = slots.clone();
                thread::spawn(move || block_on(slots.acquire()).is_none())
            };
            slots.close();
            assert!(waiter.join().unwrap());
        });
    }
}
