//! [`BufferBudget`]: a limit on the bytes that many connections together may
//! hold in partial frames and send queues.
//!
//! Owns: one counter shared by every connection given the budget. Each
//! connection holds a small allowance of its own for free
//! ([`BufferBudget::FREE_PER_CONNECTION`] for reading, as much again for
//! sending) and takes from the budget only beyond it, so ordinary traffic
//! never touches the shared counter. Never blocks: a connection that cannot
//! have more is closed with
//! [`DisconnectReason::BufferBudget`](crate::DisconnectReason::BufferBudget).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A budget of buffered bytes shared by connections (a server's, say).
///
/// Give it to the connections with
/// [`PeerConfig::buffer_budget`](crate::PeerConfig::buffer_budget); a
/// `Server` built with `ServerBuilder::max_buffered_bytes` does this for all
/// of its connections.
///
/// # Examples
///
/// ```
/// use rpc_core::BufferBudget;
///
/// let budget = BufferBudget::new(1 << 20);
/// assert!(budget.try_take(600 << 10));
/// assert!(!budget.try_take(600 << 10), "over the limit: refused, nothing taken");
/// budget.give(600 << 10);
/// assert_eq!(budget.in_use(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct BufferBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    used: AtomicUsize,
}

impl BufferBudget {
    /// What each connection may buffer for reading (a partial frame), and as
    /// much again for sending, before it takes from the budget: 64 KiB.
    pub const FREE_PER_CONNECTION: usize = 64 * 1024;

    /// A budget of `limit` bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let budget = rpc_core::BufferBudget::new(256 << 20);
    /// assert_eq!(budget.limit(), 256 << 20);
    /// ```
    pub fn new(limit: usize) -> Self {
        BufferBudget {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// The limit, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(rpc_core::BufferBudget::new(10).limit(), 10);
    /// ```
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes taken now.
    ///
    /// # Examples
    ///
    /// ```
    /// let budget = rpc_core::BufferBudget::new(100);
    /// assert!(budget.try_take(40));
    /// assert_eq!(budget.in_use(), 40);
    /// ```
    pub fn in_use(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit under the limit; false (nothing taken)
    /// otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// let budget = rpc_core::BufferBudget::new(100);
    /// assert!(budget.try_take(100));
    /// assert!(!budget.try_take(1));
    /// ```
    pub fn try_take(&self, bytes: usize) -> bool {
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.inner.limit)
            })
            .is_ok()
    }

    /// Gives back `bytes` taken before.
    ///
    /// # Examples
    ///
    /// ```
    /// let budget = rpc_core::BufferBudget::new(100);
    /// assert!(budget.try_take(30));
    /// budget.give(30);
    /// assert_eq!(budget.in_use(), 0);
    /// ```
    pub fn give(&self, bytes: usize) {
        self.inner.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One connection's share of a budget: what it took beyond its free
/// allowance, given back as its need shrinks and when it is dropped.
#[derive(Debug, Default)]
pub(crate) struct Share {
    budget: Option<BufferBudget>,
    taken: usize,
}

impl Share {
    pub(crate) fn new(budget: Option<BufferBudget>) -> Self {
        Share { budget, taken: 0 }
    }

    /// Adjusts the share to `bytes` held now (beyond the free allowance);
    /// false when more was needed and the budget could not give it (the
    /// share is then left as it was).
    pub(crate) fn hold(&mut self, bytes: usize) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        let want = bytes.saturating_sub(BufferBudget::FREE_PER_CONNECTION);
        if want > self.taken {
            if !budget.try_take(want - self.taken) {
                return false;
            }
        } else {
            budget.give(self.taken - want);
        }
        self.taken = want;
        true
    }

    /// The limit of the budget, if any.
    pub(crate) fn limit(&self) -> u64 {
        self.budget.as_ref().map_or(0, |b| b.limit() as u64)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give(self.taken);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_takes_only_beyond_its_allowance_and_gives_back_on_drop() {
        let budget = BufferBudget::new(100_000);
        let free = BufferBudget::FREE_PER_CONNECTION;
        let mut a = Share::new(Some(budget.clone()));
        assert!(a.hold(free));
        assert_eq!(budget.in_use(), 0);
        assert!(a.hold(free + 60_000));
        assert_eq!(budget.in_use(), 60_000);
        let mut b = Share::new(Some(budget.clone()));
        assert!(!b.hold(free + 50_000), "60,000 + 50,000 is over 100,000");
        assert!(b.hold(free + 40_000));
        assert!(a.hold(10));
        assert_eq!(budget.in_use(), 40_000);
        drop(b);
        assert_eq!(budget.in_use(), 0);
        let mut none = Share::new(None);
        assert!(none.hold(usize::MAX), "no budget: no limit");
    }
}
