//! The one timer of a shard: a min-heap of session deadlines with lazy invalidation.
//!
//! Each slot has at most one armed deadline. Re-arming pushes a new heap entry and the old one
//! becomes stale; stale entries are skipped when they reach the top, and the heap is rebuilt if
//! they pile up. A deadline at or before `now` is due at once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::session_id::SessionKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct HeapEntry {
    at: Instant,
    slot: u32,
    generation: u16,
}

/// Earliest-deadline-first queue keyed by session slot.
#[derive(Debug, Default)]
pub struct DeadlineQueue {
    /// The shard whose sessions these are (named by every key popped).
    shard: u16,
    heap: BinaryHeap<Reverse<HeapEntry>>,
    armed: Vec<Option<(Instant, u16)>>,
    armed_count: usize,
}

impl DeadlineQueue {
    pub fn new(shard: u16) -> Self {
        DeadlineQueue {
            shard,
            ..Self::default()
        }
    }

    /// Arms (or re-arms) the deadline of `key`.
    pub fn schedule(&mut self, key: SessionKey, at: Instant) {
        let i = key.slot as usize;
        if self.armed.len() <= i {
            self.armed.resize(i + 1, None);
        }
        if self.armed[i] == Some((at, key.generation)) {
            return;
        }
        if self.armed[i].is_none() {
            self.armed_count += 1;
        }
        self.armed[i] = Some((at, key.generation));
        self.heap.push(Reverse(HeapEntry {
            at,
            slot: key.slot,
            generation: key.generation,
        }));
        if self.heap.len() > 4 * self.armed_count + 1024 {
            self.compact();
        }
    }

    /// Disarms `key` (its heap entries become stale).
    pub fn cancel(&mut self, key: SessionKey) {
        if let Some(a) = self.armed.get_mut(key.slot as usize) {
            if matches!(a, Some((_, g)) if *g == key.generation) {
                *a = None;
                self.armed_count -= 1;
            }
        }
    }

    fn is_current(&self, e: &HeapEntry) -> bool {
        self.armed.get(e.slot as usize).copied().flatten() == Some((e.at, e.generation))
    }

    /// The earliest armed deadline.
    pub fn peek_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.is_current(top) {
                return Some(top.at);
            }
            self.heap.pop();
        }
        None
    }

    /// Pops one key whose deadline is at or before `now`, disarming it.
    pub fn pop_due(&mut self, now: Instant) -> Option<SessionKey> {
        while let Some(Reverse(top)) = self.heap.peek().copied() {
            if !self.is_current(&top) {
                self.heap.pop();
                continue;
            }
            if top.at > now {
                return None;
            }
            self.heap.pop();
            self.armed[top.slot as usize] = None;
            self.armed_count -= 1;
            return Some(SessionKey {
                shard: self.shard,
                slot: top.slot,
                generation: top.generation,
            });
        }
        None
    }

    /// Number of armed deadlines.
    pub fn len(&self) -> usize {
        self.armed_count
    }

    pub fn is_empty(&self) -> bool {
        self.armed_count == 0
    }

    /// Rebuilds the heap from the armed deadlines alone, in the heap's own buffer: its capacity
    /// stays, so a shard that compacts under load does not reallocate.
    fn compact(&mut self) {
        let mut buf = std::mem::take(&mut self.heap).into_vec();
        buf.clear();
        let entries = self.armed.iter().enumerate().filter_map(|(slot, a)| {
            a.map(|(at, generation)| {
                Reverse(HeapEntry {
                    at,
                    slot: slot as u32,
                    generation,
                })
            })
        });
        buf.extend(entries);
        self.heap = BinaryHeap::from(buf);
    }

    /// The heap's allocated capacity (for tests).
    pub fn heap_capacity(&self) -> usize {
        self.heap.capacity()
    }

    /// Heap size, stale entries included (for tests and metrics).
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn k(slot: u32) -> SessionKey {
        SessionKey {
            shard: 0,
            slot,
            generation: 0,
        }
    }

    #[test]
    fn earliest_first_and_rearm() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut q = DeadlineQueue::new(0);
        q.schedule(k(1), ms(30));
        q.schedule(k(2), ms(10));
        q.schedule(k(1), ms(5)); // earlier re-arm makes the 30 ms entry stale
        assert_eq!(q.peek_deadline(), Some(ms(5)));
        assert_eq!(q.pop_due(ms(4)), None);
        assert_eq!(q.pop_due(ms(5)), Some(k(1))); // at or before now is due
        assert_eq!(q.pop_due(ms(40)), Some(k(2)));
        assert_eq!(q.pop_due(ms(40)), None); // the stale 30 ms entry is skipped
        assert!(q.is_empty());
    }

    #[test]
    fn compaction_keeps_the_heap_buffer_and_the_armed_deadlines() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut q = DeadlineQueue::new(0);
        // One session re-armed over and over leaves stale entries until the heap compacts.
        let mut peak = 0;
        for i in 0..5000u64 {
            q.schedule(k(3), ms(10_000 - i));
            q.schedule(k(4), ms(20_000));
            peak = peak.max(q.heap_capacity());
        }
        assert!(q.heap_len() < 1100, "compacted: {}", q.heap_len());
        assert!(q.heap_capacity() >= peak, "the buffer was kept");
        assert_eq!(q.pop_due(ms(30_000)), Some(k(3)));
        assert_eq!(q.pop_due(ms(30_000)), Some(k(4)));
        assert_eq!(q.pop_due(ms(30_000)), None);
    }

    #[test]
    fn cancel_and_generation() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new(0);
        q.schedule(k(1), t0);
        q.cancel(SessionKey {
            shard: 0,
            slot: 1,
            generation: 7,
        }); // wrong generation: no effect
        assert_eq!(q.len(), 1);
        q.cancel(k(1));
        assert_eq!(q.pop_due(t0), None);
    }

    proptest! {
        /// Against a reference model: pops come out in deadline order and only current entries.
        #[test]
        fn matches_model(ops in proptest::collection::vec((0u32..8, 0u64..100), 1..300)) {
            let t0 = Instant::now();
            let mut q = DeadlineQueue::new(0);
            let mut model: std::collections::HashMap<u32, u64> = Default::default();
            for (slot, at) in ops {
                q.schedule(k(slot), t0 + Duration::from_millis(at));
                model.insert(slot, at);
            }
            let mut expected: Vec<(u64, u32)> = model.iter().map(|(s, a)| (*a, *s)).collect();
            expected.sort();
            let mut got = Vec::new();
            while let Some(key) = q.pop_due(t0 + Duration::from_millis(1000)) {
                got.push((model[&key.slot], key.slot));
            }
            prop_assert_eq!(got.len(), expected.len());
            for w in got.windows(2) { prop_assert!(w[0].0 <= w[1].0); }
            prop_assert!(q.heap_len() <= 4 * 8 + 1024);
        }
    }
}
