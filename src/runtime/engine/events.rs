//! The engine's events by instant: what comes first is taken first, events
//! of one instant in the order they were scheduled.
//!
//! A campaign parks most of its contacts for hours (a retry, the next
//! callable window), so the queue holds up to a million events, most of
//! them far ahead. A binary heap of them was the simulation's largest cost
//! (each pop walks twenty levels of a 32 MB array). Here events are kept by
//! minute: the minutes ahead are unsorted lists, and only the minute being
//! taken is sorted, once, when its turn comes. Events scheduled into a
//! minute already under way (a call's end a few seconds ahead, a wall
//! clock's events) go to a small heap beside it.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use chrono::{DateTime, Utc};

/// The width of a span of the queue, in seconds.
const SPAN_SECONDS: i64 = 60;

struct Entry<E> {
    at: DateTime<Utc>,
    seq: u64,
    event: E,
}

impl<E> Entry<E> {
    fn key(&self) -> (DateTime<Utc>, u64) {
        (self.at, self.seq)
    }
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

fn span(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(SPAN_SECONDS)
}

pub(super) struct Events<E> {
    /// The span being taken, sorted: every event in it is before `horizon`.
    current: VecDeque<Entry<E>>,
    /// Events scheduled before `horizon` after the span was sorted.
    late: BinaryHeap<Reverse<Entry<E>>>,
    /// Spans from `horizon` on, each in the order scheduled.
    ahead: BTreeMap<i64, Vec<Entry<E>>>,
    /// The first span not taken yet.
    horizon: i64,
    seq: u64,
    len: usize,
}

impl<E: Copy> Events<E> {
    pub(super) fn new() -> Self {
        Events {
            current: VecDeque::new(),
            late: BinaryHeap::new(),
            ahead: BTreeMap::new(),
            horizon: i64::MIN,
            seq: 0,
            len: 0,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn push(&mut self, at: DateTime<Utc>, event: E) {
        self.seq += 1;
        let entry = Entry {
            at,
            seq: self.seq,
            event,
        };
        self.len += 1;
        let s = span(at);
        if s < self.horizon {
            self.late.push(Reverse(entry));
        } else {
            self.ahead.entry(s).or_default().push(entry);
        }
    }

    /// The instant of the first event.
    pub(super) fn next_at(&mut self) -> Option<DateTime<Utc>> {
        self.take_span();
        match (self.current.front(), self.late.peek()) {
            (Some(a), Some(Reverse(b))) => Some(a.at.min(b.at)),
            (Some(a), None) => Some(a.at),
            (None, Some(Reverse(b))) => Some(b.at),
            (None, None) => None,
        }
    }

    /// The first event, if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: DateTime<Utc>) -> Option<E> {
        self.take_span();
        let from_current = match (self.current.front(), self.late.peek()) {
            (Some(a), Some(Reverse(b))) => a < b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let at = if from_current {
            self.current.front().map(|e| e.at)
        } else {
            self.late.peek().map(|Reverse(e)| e.at)
        };
        if at.is_some_and(|at| at > now) {
            return None;
        }
        self.len -= 1;
        let entry = if from_current {
            self.current.pop_front()
        } else {
            self.late.pop().map(|Reverse(e)| e)
        };
        entry.map(|e| e.event)
    }

    /// Once the span being taken and the late events are all taken, sorts
    /// the next span and makes it the current one.
    fn take_span(&mut self) {
        if !self.current.is_empty() || !self.late.is_empty() {
            return;
        }
        let Some((s, mut entries)) = self.ahead.pop_first() else {
            return;
        };
        // Mostly in order already (scheduled in sequence): the sort finds
        // the runs.
        entries.sort();
        self.current = VecDeque::from(entries);
        self.horizon = s + 1;
        // The late heap held a busy minute's events: give its room back.
        if self.late.capacity() > 4096 {
            self.late.shrink_to(1024);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap()
    }

    proptest! {
        /// Whatever is pushed when, events come out as a heap of (instant,
        /// order scheduled) gives them: by instant, then first scheduled first,
        /// never before they are due.
        #[test]
        fn events_come_out_in_the_order_of_a_heap(
            steps in proptest::collection::vec((0i64..400_000, 0u8..4, 0i64..200_000), 1..400),
        ) {
            let mut events = Events::new();
            let mut heap = BinaryHeap::new();
            let mut seq = 0u64;
            let mut now = t0();
            for (i, (offset_ms, pops, advance_ms)) in steps.into_iter().enumerate() {
                // Some events before `now` (a wall clock's late ones).
                let at = now + Duration::milliseconds(offset_ms - 20_000);
                events.push(at, i);
                seq += 1;
                heap.push(Reverse((at, seq, i)));
                for _ in 0..pops {
                    let expected = match heap.peek() {
                        Some(Reverse((at, _, e))) if *at <= now => Some(*e),
                        _ => None,
                    };
                    prop_assert_eq!(events.next_at(), heap.peek().map(|Reverse((at, ..))| *at));
                    prop_assert_eq!(events.pop_due(now), expected);
                    if expected.is_some() {
                        heap.pop();
                    }
                }
                now += Duration::milliseconds(advance_ms);
                prop_assert_eq!(events.len(), heap.len());
            }
            // Drain: the rest in order.
            while let Some(Reverse((at, _, e))) = heap.pop() {
                prop_assert_eq!(events.next_at(), Some(at));
                prop_assert_eq!(events.pop_due(at), Some(e));
            }
            prop_assert!(events.is_empty());
            prop_assert_eq!(events.next_at(), None);
        }
    }

    #[test]
    fn a_minute_far_ahead_waits_behind_an_earlier_late_event() {
        let mut events = Events::new();
        events.push(t0() + Duration::hours(1), 'a');
        // Taking a look loads the hour ahead's minute.
        assert_eq!(events.next_at(), Some(t0() + Duration::hours(1)));
        events.push(t0() + Duration::seconds(30), 'b');
        events.push(t0() + Duration::seconds(30), 'c');
        assert_eq!(events.next_at(), Some(t0() + Duration::seconds(30)));
        assert_eq!(events.pop_due(t0()), None);
        let later = t0() + Duration::hours(2);
        assert_eq!(events.pop_due(later), Some('b'));
        assert_eq!(events.pop_due(later), Some('c'));
        assert_eq!(events.pop_due(later), Some('a'));
        assert_eq!(events.pop_due(later), None);
    }
}
