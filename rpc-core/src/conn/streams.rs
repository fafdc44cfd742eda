//! The streams of the calls on one connection: what each receiving end has
//! buffered and granted, and what credit each sending end has left.
//!
//! Owns: the credit accounting of both directions, and the check that the
//! remote never sends beyond the credit this side granted (which is what
//! bounds a slow consumer's memory). A stream is named by its call id and
//! its [`Way`]: the ends this side receives (`inlets`) and the ends it sends
//! (`outlets`) are kept apart, since `(Down, 5)` received is this side's
//! call 5 while `(Down, 5)` sent answers the remote's call 5.
//!
//! Plain `&mut self` state, unit-tested below without a socket; `conn` keeps
//! it behind one mutex, never held while a frame is queued or a task woken:
//! each verb hands back what to send or whom to wake.

use std::collections::{HashMap, VecDeque};
use std::task::Waker;

use bytes::Bytes;

use super::inbound::SeededIds;
use crate::error::RpcError;
use crate::wire::{Way, INITIAL_CREDIT};

/// A receiving end.
struct Inlet {
    /// Items and the size of the frame each came in.
    items: VecDeque<(Bytes, usize)>,
    /// Bytes the sender may still send: granted minus received. The sender
    /// sends only while its credit (never more than this) is above zero.
    allowance: i64,
    /// Bytes granted and not yet consumed: what this end may have to hold.
    outstanding: i64,
    /// How the stream ended, once it has; handed out after the items.
    end: Option<Result<(), RpcError>>,
    waker: Option<Waker>,
}

/// A sending end.
struct Outlet {
    credit: i64,
    /// The receiver stopped reading: send nothing more.
    stopped: bool,
    waker: Option<Waker>,
}

/// What a receiving end has for its consumer.
#[derive(Debug, PartialEq)]
pub(crate) enum Taken {
    /// Items were handed over.
    Items,
    /// The stream ended: cleanly (`Ok`) or with an error.
    End(Result<(), RpcError>),
    /// Nothing yet: the waker is registered.
    Wait,
}

/// What a receiving end yields next, one item at a time (the tests' view).
#[cfg(test)]
#[derive(Debug, PartialEq)]
enum Next {
    /// An item's bytes; and, when the consumer has used up half the window,
    /// the credit to grant the sender now.
    Item(Bytes, Option<u32>),
    /// The stream ended: cleanly (`Ok`) or with an error.
    End(Result<(), RpcError>),
    /// Nothing yet: the waker is registered.
    Wait,
}

/// A stream frame from the remote, as the reader hands it over: the frames
/// of one read are applied together, under one lock.
#[derive(Debug)]
pub(crate) enum Event {
    /// An item arrived (`size`: its whole frame, length prefix included).
    Item {
        way: Way,
        id: u64,
        item: Bytes,
        size: usize,
    },
    /// The stream ended.
    End {
        way: Way,
        id: u64,
        end: Result<(), RpcError>,
    },
    /// The receiver granted credit.
    Credit { way: Way, id: u64, bytes: u32 },
    /// The callee stopped reading the caller's stream of call `id`.
    Stop { id: u64 },
}

/// Why a frame from the remote is refused.
#[derive(Debug, PartialEq)]
pub(crate) enum Violation {
    /// An item beyond the credit granted.
    OverCredit { id: u64, way: Way },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::OverCredit { id, way } => write!(
                f,
                "an item of stream {way:?} of call {id} was sent beyond the credit granted"
            ),
        }
    }
}

/// The table.
pub(crate) struct StreamTable {
    inlets: HashMap<(Way, u64), Inlet, SeededIds>,
    outlets: HashMap<(Way, u64), Outlet, SeededIds>,
    /// The window each receiving end keeps granted, in bytes.
    window: u32,
    /// Open ends that belong to the remote's calls (`Down` outlets, `Up`
    /// inlets): the streams the remote has open on this side.
    served: usize,
    /// Set once the connection ended: every stream ends with it.
    closed: Option<RpcError>,
}

impl StreamTable {
    pub(crate) fn new(window: u32) -> Self {
        StreamTable {
            inlets: HashMap::default(),
            outlets: HashMap::default(),
            window: window.max(1),
            served: 0,
            closed: None,
        }
    }

    /// Opens a receiving end. A `Down` stream starts with the protocol's
    /// [`INITIAL_CREDIT`] already granted; an `Up` one with nothing, and
    /// the returned credit is the first grant to send. `None` once closed.
    pub(crate) fn open_inlet(&mut self, way: Way, id: u64) -> Option<u32> {
        if self.closed.is_some() {
            return None;
        }
        let granted = match way {
            Way::Down => i64::from(INITIAL_CREDIT),
            Way::Up => i64::from(self.window),
        };
        self.served += usize::from(way == Way::Up);
        self.inlets.insert(
            (way, id),
            Inlet {
                items: VecDeque::new(),
                allowance: granted,
                outstanding: granted,
                end: None,
                waker: None,
            },
        );
        Some(match way {
            Way::Down => 0,
            Way::Up => self.window,
        })
    }

    /// Opens a sending end with the credit the protocol starts it with.
    /// False once closed, or if that end is open already.
    pub(crate) fn open_outlet(&mut self, way: Way, id: u64) -> bool {
        if self.closed.is_some() || self.outlets.contains_key(&(way, id)) {
            return false;
        }
        let credit = match way {
            Way::Down => i64::from(INITIAL_CREDIT),
            Way::Up => 0,
        };
        self.served += usize::from(way == Way::Down);
        self.outlets.insert(
            (way, id),
            Outlet {
                credit,
                stopped: false,
                waker: None,
            },
        );
        true
    }

    /// Streams the remote's calls have open on this side: the ones this
    /// side returns to them and the ones of theirs it reads.
    pub(crate) fn serving(&self) -> usize {
        self.served
    }

    /// An item arrived (`size`: its whole frame, length prefix included).
    /// Who to wake, or the violation; an item for no open end is dropped.
    pub(crate) fn received(
        &mut self,
        way: Way,
        id: u64,
        item: Bytes,
        size: usize,
    ) -> Result<Option<Waker>, Violation> {
        let Some(inlet) = self.inlets.get_mut(&(way, id)) else {
            return Ok(None);
        };
        if inlet.end.is_some() {
            return Ok(None);
        }
        if inlet.allowance <= 0 {
            return Err(Violation::OverCredit { id, way });
        }
        inlet.allowance -= size as i64;
        inlet.items.push_back((item, size));
        Ok(inlet.waker.take())
    }

    /// Applies the stream frames of one read, in order; who to wake goes
    /// to `wake`. The first violation stops there.
    pub(crate) fn apply_all(
        &mut self,
        events: &mut Vec<Event>,
        wake: &mut Vec<Waker>,
    ) -> Result<(), Violation> {
        for event in events.drain(..) {
            let woken = match event {
                Event::Item {
                    way,
                    id,
                    item,
                    size,
                } => self.received(way, id, item, size)?,
                Event::End { way, id, end } => self.ended(way, id, end),
                Event::Credit { way, id, bytes } => self.credit(way, id, bytes),
                Event::Stop { id } => self.stop(Way::Up, id),
            };
            wake.extend(woken);
        }
        Ok(())
    }

    /// The stream ended (cleanly, or with an error from the sender or the
    /// call). Who to wake.
    pub(crate) fn ended(&mut self, way: Way, id: u64, end: Result<(), RpcError>) -> Option<Waker> {
        let inlet = self.inlets.get_mut(&(way, id))?;
        if inlet.end.is_none() {
            inlet.end = Some(end);
        }
        inlet.waker.take()
    }

    /// Hands every item a receiving end holds to its consumer (into
    /// `into`), or says how it ended, or registers the waker. The items
    /// still count against the window until [`consumed`](Self::consumed).
    pub(crate) fn take(
        &mut self,
        way: Way,
        id: u64,
        waker: &Waker,
        into: &mut VecDeque<(Bytes, usize)>,
    ) -> Taken {
        let Some(inlet) = self.inlets.get_mut(&(way, id)) else {
            return Taken::End(Ok(()));
        };
        if !inlet.items.is_empty() {
            if into.is_empty() {
                std::mem::swap(&mut inlet.items, into);
            } else {
                into.append(&mut inlet.items);
            }
            return Taken::Items;
        }
        if let Some(end) = inlet.end.take() {
            inlet.end = Some(Ok(()));
            return Taken::End(end);
        }
        if let Some(e) = &self.closed {
            return Taken::End(Err(e.clone()));
        }
        match &inlet.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => inlet.waker = Some(waker.clone()),
        }
        Taken::Wait
    }

    /// The consumer used up `bytes` of items (their frames' sizes). The
    /// credit to grant the sender now, when half the window is used up.
    pub(crate) fn consumed(&mut self, way: Way, id: u64, bytes: usize) -> Option<u32> {
        let window = i64::from(self.window);
        let inlet = self.inlets.get_mut(&(way, id))?;
        inlet.outstanding -= bytes as i64;
        // `outstanding` is below zero when the sender went past its
        // credit by its last item (as it may): the grant makes up for that
        // too, or the credit would shrink by the overshoot on every round
        // until the sender waited for a grant that never comes.
        (inlet.outstanding <= window / 2).then(|| {
            let more = window - inlet.outstanding;
            inlet.outstanding = window;
            inlet.allowance += more;
            u32::try_from(more).unwrap_or(u32::MAX)
        })
    }

    /// One item at a time, as a consumer that reports each one sees it.
    #[cfg(test)]
    fn next(&mut self, way: Way, id: u64, waker: &Waker) -> Next {
        let mut one = VecDeque::new();
        match self.take(way, id, waker, &mut one) {
            Taken::Items => {
                let (item, size) = one.pop_front().expect("an item");
                // Put the rest back in front.
                if let Some(inlet) = self.inlets.get_mut(&(way, id)) {
                    while let Some(rest) = one.pop_back() {
                        inlet.items.push_front(rest);
                    }
                }
                Next::Item(item, self.consumed(way, id, size))
            }
            Taken::End(end) => Next::End(end),
            Taken::Wait => Next::Wait,
        }
    }

    /// The consumer let go of a receiving end. Whether it had not ended
    /// (the sender should then be told to stop).
    pub(crate) fn close_inlet(&mut self, way: Way, id: u64) -> bool {
        match self.inlets.remove(&(way, id)) {
            Some(inlet) => {
                self.served -= usize::from(way == Way::Up);
                inlet.end.is_none() && self.closed.is_none()
            }
            None => false,
        }
    }

    /// The receiver granted more credit. Who to wake.
    pub(crate) fn credit(&mut self, way: Way, id: u64, bytes: u32) -> Option<Waker> {
        let outlet = self.outlets.get_mut(&(way, id))?;
        outlet.credit = outlet.credit.saturating_add(i64::from(bytes));
        outlet.waker.take()
    }

    /// The receiver stopped reading. Who to wake.
    pub(crate) fn stop(&mut self, way: Way, id: u64) -> Option<Waker> {
        let outlet = self.outlets.get_mut(&(way, id))?;
        outlet.stopped = true;
        outlet.waker.take()
    }

    /// The credit a sending end has now: `Some(n)` with `n > 0`, or
    /// `Some(0)` when it must wait (the waker is registered), or `None`
    /// never again (the receiver stopped, or the end is gone).
    pub(crate) fn may_send(&mut self, way: Way, id: u64, waker: &Waker) -> Option<usize> {
        if self.closed.is_some() {
            return None;
        }
        let outlet = self.outlets.get_mut(&(way, id))?;
        if outlet.stopped {
            return None;
        }
        if outlet.credit > 0 {
            return Some(usize::try_from(outlet.credit).unwrap_or(usize::MAX));
        }
        match &outlet.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => outlet.waker = Some(waker.clone()),
        }
        Some(0)
    }

    /// Items of `size` bytes were queued.
    pub(crate) fn sent(&mut self, way: Way, id: u64, size: usize) {
        if let Some(outlet) = self.outlets.get_mut(&(way, id)) {
            outlet.credit -= size as i64;
        }
    }

    /// The sending end is done.
    pub(crate) fn close_outlet(&mut self, way: Way, id: u64) {
        if self.outlets.remove(&(way, id)).is_some() {
            self.served -= usize::from(way == Way::Down);
        }
    }

    /// The connection ended: every open stream ends with `error`. Who to
    /// wake.
    pub(crate) fn close(&mut self, error: RpcError) -> Vec<Waker> {
        let mut wake = Vec::new();
        for inlet in self.inlets.values_mut() {
            if inlet.end.is_none() {
                inlet.end = Some(Err(error.clone()));
            }
            wake.extend(inlet.waker.take());
        }
        for outlet in self.outlets.values_mut() {
            wake.extend(outlet.waker.take());
        }
        self.closed = Some(error);
        wake
    }

    /// Open ends, both ways.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.inlets.len(), self.outlets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DisconnectReason;

    fn item(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    #[test]
    fn a_sender_past_its_credit_is_a_violation() {
        let mut t = StreamTable::new(1000);
        assert_eq!(t.open_inlet(Way::Up, 1), Some(1000));
        // 600 + 600 bytes: the second goes out while 400 are left (> 0).
        assert!(t.received(Way::Up, 1, item(596), 600).is_ok());
        assert!(t.received(Way::Up, 1, item(596), 600).is_ok());
        assert_eq!(
            t.received(Way::Up, 1, item(1), 5).unwrap_err(),
            Violation::OverCredit {
                id: 1,
                way: Way::Up
            }
        );
    }

    #[test]
    fn consuming_half_the_window_grants_it_back() {
        let mut t = StreamTable::new(1000);
        t.open_inlet(Way::Up, 1);
        let w = Waker::noop();
        for _ in 0..4 {
            t.received(Way::Up, 1, item(196), 200).unwrap();
        }
        assert_eq!(t.next(Way::Up, 1, w), Next::Item(item(196), None));
        assert_eq!(t.next(Way::Up, 1, w), Next::Item(item(196), None));
        // 600 consumed: 400 outstanding, under half: grant 600.
        assert_eq!(t.next(Way::Up, 1, w), Next::Item(item(196), Some(600)));
        assert_eq!(t.next(Way::Up, 1, w), Next::Item(item(196), None));
        assert_eq!(t.next(Way::Up, 1, w), Next::Wait);
        // The sender had 200 left and got 600: 800 more are allowed.
        for _ in 0..4 {
            t.received(Way::Up, 1, item(196), 200).unwrap();
        }
        assert!(t.received(Way::Up, 1, item(1), 5).is_err());
    }

    /// A sender and a receiver in lockstep, with items larger than the
    /// window (every item overshoots the credit): the stream never stalls.
    #[test]
    fn items_larger_than_the_window_never_stall_the_stream() {
        for (window, item_size) in [(1000u32, 1010usize), (1000, 333), (65536, 65546), (10, 7)] {
            let mut receiver = StreamTable::new(window);
            let mut sender = StreamTable::new(window);
            receiver.open_inlet(Way::Up, 1);
            sender.open_outlet(Way::Up, 1);
            sender.credit(Way::Up, 1, window);
            let w = Waker::noop();
            for round in 0..100_000 {
                // The sender sends all it may, the receiver takes it all in
                // and consumes it, and its grants reach the sender.
                let mut sent = 0;
                while sender.may_send(Way::Up, 1, w).is_some_and(|c| c > 0) {
                    sender.sent(Way::Up, 1, item_size);
                    receiver
                        .received(Way::Up, 1, Bytes::new(), item_size)
                        .unwrap();
                    sent += 1;
                }
                assert!(sent > 0, "stalled at round {round} ({window}, {item_size})");
                while let Next::Item(_, grant) = receiver.next(Way::Up, 1, w) {
                    if let Some(bytes) = grant {
                        sender.credit(Way::Up, 1, bytes);
                    }
                }
            }
        }
    }

    #[test]
    fn a_down_stream_starts_with_the_initial_credit_on_both_ends() {
        let mut t = StreamTable::new(1 << 20);
        assert_eq!(t.open_inlet(Way::Down, 7), Some(0));
        assert!(t.open_outlet(Way::Down, 7));
        let w = Waker::noop();
        assert_eq!(t.may_send(Way::Down, 7, w), Some(INITIAL_CREDIT as usize));
        t.sent(Way::Down, 7, INITIAL_CREDIT as usize);
        assert_eq!(t.may_send(Way::Down, 7, w), Some(0));
        t.credit(Way::Down, 7, 1);
        assert_eq!(t.may_send(Way::Down, 7, w), Some(1));
        t.stop(Way::Down, 7);
        assert_eq!(t.may_send(Way::Down, 7, w), None);
    }

    #[test]
    fn an_up_sender_waits_for_the_first_grant() {
        let mut t = StreamTable::new(1000);
        t.open_outlet(Way::Up, 3);
        assert_eq!(t.may_send(Way::Up, 3, Waker::noop()), Some(0));
        t.credit(Way::Up, 3, 1000);
        assert_eq!(t.may_send(Way::Up, 3, Waker::noop()), Some(1000));
    }

    #[test]
    fn items_come_before_the_end_and_closing_ends_everything() {
        let mut t = StreamTable::new(1000);
        let w = Waker::noop();
        t.open_inlet(Way::Down, 1);
        t.open_inlet(Way::Down, 2);
        t.open_outlet(Way::Up, 1);
        t.received(Way::Down, 1, item(3), 7).unwrap();
        t.ended(Way::Down, 1, Ok(()));
        assert!(matches!(t.next(Way::Down, 1, w), Next::Item(..)));
        assert_eq!(t.next(Way::Down, 1, w), Next::End(Ok(())));
        assert_eq!(t.next(Way::Down, 1, w), Next::End(Ok(())));
        let gone = RpcError::ConnectionClosed(DisconnectReason::ClosedByPeer);
        t.close(gone.clone());
        assert_eq!(t.next(Way::Down, 2, w), Next::End(Err(gone)));
        assert_eq!(t.may_send(Way::Up, 1, w), None);
        assert_eq!(t.open_inlet(Way::Down, 9), None);
        assert!(!t.close_inlet(Way::Down, 2), "nothing to stop once closed");
    }

    #[test]
    fn items_for_no_open_end_are_dropped_and_ends_are_removed() {
        let mut t = StreamTable::new(1000);
        assert!(matches!(t.received(Way::Up, 5, item(1), 5), Ok(None)));
        t.open_inlet(Way::Up, 5);
        t.open_outlet(Way::Down, 5);
        assert_eq!(t.serving(), 2);
        assert!(t.close_inlet(Way::Up, 5), "not ended: tell the sender");
        t.close_outlet(Way::Down, 5);
        t.close_outlet(Way::Down, 5);
        assert_eq!(t.len(), (0, 0));
        assert_eq!(t.serving(), 0);
    }
}
