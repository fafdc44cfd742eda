//! The remote's calls to this side: admission, the in-flight count, the
//! table of running handlers (for cancels), and the deadline a call carries.
//!
//! Owns: the one counter of calls (and, apart, notifications) in flight. It
//! is taken in [`Admission::admit`] and given back in [`Admission::release`],
//! both here, and `conn` releases only after the answer is queued.
//!
//! Never runs a handler and never writes: it only says yes or no.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::future::AbortHandle;

use crate::dispatch::Kind;
use crate::error::RemoteError;

/// Counts the remote's calls and notifications in flight against the limit
/// this side announced, and refuses new ones while draining. Lock-free: one
/// atomic add to admit, one subtract to release.
pub(crate) struct Admission {
    calls: AtomicU32,
    notifications: AtomicU32,
    /// The limit of each of the two counters.
    max: u32,
    /// New calls are refused with [`RemoteError::ShuttingDown`].
    draining: AtomicBool,
    /// Whether a dropped notification was already logged at WARN.
    dropped_notice: AtomicBool,
}

impl Admission {
    pub(crate) fn new(max: u32) -> Self {
        Admission {
            calls: AtomicU32::new(0),
            notifications: AtomicU32::new(0),
            max,
            draining: AtomicBool::new(false),
            dropped_notice: AtomicBool::new(false),
        }
    }

    fn counter(&self, kind: Kind) -> &AtomicU32 {
        match kind {
            Kind::Call => &self.calls,
            Kind::Notification => &self.notifications,
        }
    }

    /// Counts one more call of `kind` in flight, or says why it is refused
    /// (and then does not count it). Calls and notifications are counted
    /// apart, so one-way traffic never makes a call fail with `Busy`.
    pub(crate) fn admit(&self, kind: Kind) -> Result<(), RemoteError> {
        let before = self.counter(kind).fetch_add(1, Ordering::AcqRel);
        let refused = if self.draining.load(Ordering::Acquire) {
            RemoteError::ShuttingDown
        } else if before >= self.max {
            RemoteError::Busy { limit: self.max }
        } else {
            return Ok(());
        };
        self.release(kind);
        Err(refused)
    }

    /// Gives back the place of one call of `kind`.
    pub(crate) fn release(&self, kind: Kind) {
        self.counter(kind).fetch_sub(1, Ordering::AcqRel);
    }

    /// Calls and notifications in flight.
    pub(crate) fn serving(&self) -> usize {
        (self.calls.load(Ordering::Acquire) + self.notifications.load(Ordering::Acquire)) as usize
    }

    /// Refuses every new call from now on.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether a dropped notification is the first on this connection (the
    /// one logged at WARN; a remote could send them in a flood).
    pub(crate) fn first_drop(&self) -> bool {
        !self.dropped_notice.swap(true, Ordering::Relaxed)
    }
}

/// The deadline a call carries: `timeout_ms` from `now()`, or none (0, or
/// too far to represent). The clock is read only for a call with a timeout.
pub(crate) fn deadline(timeout_ms: u64, now: impl FnOnce() -> Instant) -> Option<Instant> {
    (timeout_ms > 0)
        .then(|| now().checked_add(Duration::from_millis(timeout_ms)))
        .flatten()
}

/// The remote's calls in flight, by id: at most one per id, and the abort
/// handle of each handler that runs in a task of its own, so that a cancel
/// from the caller can stop it. Plain `&mut self` state; `conn` keeps it
/// behind one mutex.
#[derive(Default)]
pub(crate) struct Running {
    calls: HashMap<u64, Handler, SeededIds>,
    /// Set once the connection ended: nothing new is admitted or started.
    closed: bool,
}

/// Hashes the remote's call ids: one folded 64x64->128-bit multiply with
/// keys drawn at random per table, instead of SipHash, which cost a tenth
/// of the server's time per call in `rpc-bench`. The remote picks these
/// ids, so the keys are secret and random: it cannot aim them at one bucket
/// without knowing the keys. (The same folded multiply as `foldhash` and
/// `ahash`'s fallback.)
#[derive(Clone)]
pub(crate) struct SeededIds {
    k0: u64,
    k1: u64,
}

impl Default for SeededIds {
    fn default() -> Self {
        // Seeded from the standard library's random hasher keys: no extra
        // dependency, and fresh per table.
        use std::hash::{BuildHasher, Hasher};
        let random = std::collections::hash_map::RandomState::new();
        let mut a = random.build_hasher();
        a.write_u8(0);
        let mut b = random.build_hasher();
        b.write_u8(1);
        SeededIds {
            k0: a.finish(),
            k1: b.finish() | 1,
        }
    }
}

impl std::hash::BuildHasher for SeededIds {
    type Hasher = IdHash;

    fn build_hasher(&self) -> IdHash {
        IdHash {
            keys: (self.k0, self.k1),
            state: 0,
        }
    }
}

/// The hasher of [`SeededIds`].
pub(crate) struct IdHash {
    keys: (u64, u64),
    state: u64,
}

impl std::hash::Hasher for IdHash {
    fn finish(&self) -> u64 {
        self.state
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let product = u128::from(n ^ self.keys.0 ^ self.state) * u128::from(self.keys.1);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }
}

/// Where the handler of one admitted call is.
enum Handler {
    /// Not started in a task (queued, or running inline).
    Queued,
    /// Cancelled before it had a task: it gets none.
    Cancelled,
    /// Running in a task of its own.
    Spawned(AbortHandle),
}

impl Running {
    /// Admits call `id`; false when a call with that id is already in
    /// flight (a protocol error: never two handlers for one id) or the
    /// connection ended.
    pub(crate) fn open(&mut self, id: u64) -> bool {
        if self.closed || self.calls.contains_key(&id) {
            return false;
        }
        self.calls.insert(id, Handler::Queued);
        true
    }

    /// Admits the calls of one read; the first id already in flight (or
    /// twice among them) is the error, and then none is admitted.
    pub(crate) fn open_all(&mut self, ids: &[u64]) -> Result<(), u64> {
        for (i, &id) in ids.iter().enumerate() {
            if !self.open(id) {
                for &undo in &ids[..i] {
                    self.calls.remove(&undo);
                }
                return Err(id);
            }
        }
        Ok(())
    }

    /// The handler of call `id` moves to a task: false (and aborted) when
    /// the call was cancelled meanwhile or the connection ended.
    pub(crate) fn start(&mut self, id: u64, handle: AbortHandle) -> bool {
        match self.calls.get_mut(&id) {
            Some(h @ Handler::Queued) if !self.closed => {
                *h = Handler::Spawned(handle);
                true
            }
            _ => {
                handle.abort();
                false
            }
        }
    }

    /// The caller cancelled call `id`: stops its handler if it runs in a
    /// task, or keeps it from getting one. Whether the call was in flight.
    pub(crate) fn cancel(&mut self, id: u64) -> bool {
        match self.calls.get_mut(&id) {
            Some(Handler::Spawned(h)) => {
                h.abort();
                true
            }
            Some(h) => {
                *h = Handler::Cancelled;
                true
            }
            None => false,
        }
    }

    /// Call `id` ended (answered, or dropped without an answer).
    pub(crate) fn finish(&mut self, id: u64) {
        self.calls.remove(&id);
    }

    /// Calls that ended, together.
    pub(crate) fn finish_all(&mut self, ids: &mut Vec<u64>) {
        for id in ids.drain(..) {
            self.calls.remove(&id);
        }
    }

    /// The connection ended: stops every handler, and every later one.
    pub(crate) fn abort_all(&mut self) {
        self.closed = true;
        for (_, h) in self.calls.drain() {
            if let Handler::Spawned(h) = h {
                h.abort();
            }
        }
    }

    /// Calls in flight.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_past_the_limit_are_busy_and_notifications_count_apart() {
        let a = Admission::new(2);
        a.admit(Kind::Call).unwrap();
        a.admit(Kind::Call).unwrap();
        assert_eq!(a.admit(Kind::Call), Err(RemoteError::Busy { limit: 2 }));
        a.admit(Kind::Notification).unwrap();
        assert_eq!(a.serving(), 3, "a refused call is not counted");
        a.release(Kind::Call);
        a.admit(Kind::Call).unwrap();
        assert_eq!(a.serving(), 3);
    }

    #[test]
    fn draining_refuses_new_calls_and_keeps_the_running_ones() {
        let a = Admission::new(8);
        a.admit(Kind::Call).unwrap();
        a.drain();
        assert_eq!(a.admit(Kind::Call), Err(RemoteError::ShuttingDown));
        assert_eq!(a.admit(Kind::Notification), Err(RemoteError::ShuttingDown));
        assert_eq!(a.serving(), 1);
        a.release(Kind::Call);
        assert_eq!(a.serving(), 0);
    }

    #[test]
    fn only_the_first_dropped_notification_is_noticed() {
        let a = Admission::new(1);
        assert!(a.first_drop());
        assert!(!a.first_drop());
    }

    #[test]
    fn deadlines_from_milliseconds() {
        let now = Instant::now();
        assert_eq!(deadline(0, || unreachable!("no clock read")), None);
        assert_eq!(deadline(5, || now), Some(now + Duration::from_millis(5)));
        // Too far to represent on some platforms: no deadline, never a panic.
        assert!(deadline(u64::MAX, || now).is_none_or(|d| d > now));
    }

    #[test]
    fn one_call_per_id_until_it_finishes() {
        let mut r = Running::default();
        assert!(r.open(1));
        assert!(!r.open(1), "a second call with id 1 while the first runs");
        r.finish(1);
        assert!(r.open(1), "an id may come back once its call ended");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_cancel_aborts_the_running_handler_and_close_aborts_the_rest() {
        let mut r = Running::default();
        let (h1, reg1) = AbortHandle::new_pair();
        let (h2, reg2) = AbortHandle::new_pair();
        assert!(r.open(1) && r.open(2));
        assert!(r.start(1, h1));
        assert!(r.start(2, h2));
        assert!(r.cancel(1));
        assert!(reg1.handle().is_aborted());
        r.abort_all();
        assert!(reg2.handle().is_aborted());
        assert!(!r.open(3), "closed: nothing new is admitted");
        let (h3, reg3) = AbortHandle::new_pair();
        assert!(!r.start(3, h3), "closed: nothing new starts");
        assert!(reg3.handle().is_aborted());
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn the_calls_of_one_read_enter_together_or_not_at_all() {
        let mut r = Running::default();
        assert_eq!(r.open_all(&[1, 2, 3]), Ok(()));
        assert_eq!(r.open_all(&[4, 2, 5]), Err(2), "2 is in flight");
        assert_eq!(r.open_all(&[6, 6]), Err(6), "twice in one read");
        assert_eq!(r.len(), 3, "a refused read admits none of its calls");
        r.finish_all(&mut vec![1, 2, 3]);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_call_cancelled_before_its_task_never_gets_one() {
        let mut r = Running::default();
        assert!(r.open(7));
        assert!(r.cancel(7));
        let (h, reg) = AbortHandle::new_pair();
        assert!(!r.start(7, h));
        assert!(reg.handle().is_aborted());
        r.finish(7);
        assert!(!r.cancel(7), "gone once finished");
    }
}
