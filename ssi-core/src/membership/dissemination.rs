//! Piggy-back queues: which items ride on the next datagram.
//!
//! One queue per kind of item (membership updates, probe data). An item is a member's slot,
//! not a message: what is sent is that member's state at sending time, so a newer claim about a
//! member replaces the older one still queued, and the queue never holds more than one item
//! per member. Items go out fewest-transmissions first and retire after a limit (λ·log n for
//! membership updates), which is what makes SWIM's dissemination bounded and epidemic.
//!
//! ```text
//!   push(slot) --> bucket[0] --taken--> bucket[1] --> ... --> bucket[limit-1] --> retired
//!   select(): scan bucket 0, 1, ... taking items while the datagram has room
//! ```
//!
//! Each push, take and retirement is O(1): buckets are FIFO lists of slots; a slot pushed again
//! while still queued is moved back to bucket 0 lazily (its stale copy is skipped when met).

use std::collections::VecDeque;

use super::table::Slot;

/// The slot that stands for this node itself (never a table slot).
pub const SELF: Slot = Slot::MAX;

const IDLE: u8 = u8::MAX;
const TAKEN: u8 = u8::MAX - 1;
/// Highest transmission limit (a count must stay below `TAKEN`).
pub const MAX_LIMIT: u8 = 250;

/// A piggy-back queue ordered by fewest transmissions.
#[derive(Debug, Default)]
pub struct Queue {
    buckets: Vec<VecDeque<Slot>>,
    /// Transmissions so far per slot, `IDLE` when not queued.
    sent: Vec<u8>,
    own: u8,
    live: usize,
    taken: Vec<(Slot, u8)>,
}

impl Queue {
    /// An empty queue.
    pub fn new() -> Self {
        Queue {
            own: IDLE,
            ..Queue::default()
        }
    }

    fn count(&mut self, slot: Slot) -> &mut u8 {
        if slot == SELF {
            return &mut self.own;
        }
        let i = usize::from(slot);
        if i >= self.sent.len() {
            self.sent.resize(i + 1, IDLE);
        }
        &mut self.sent[i]
    }

    fn bucket(&mut self, b: usize) -> &mut VecDeque<Slot> {
        if b >= self.buckets.len() {
            self.buckets.resize_with(b + 1, VecDeque::new);
        }
        &mut self.buckets[b]
    }

    /// Queues `slot` as fresh news (zero transmissions so far).
    pub fn push(&mut self, slot: Slot) {
        let c = self.count(slot);
        match *c {
            0 => return,
            IDLE => self.live += 1,
            _ => {}
        }
        *self.count(slot) = 0;
        self.bucket(0).push_back(slot);
    }

    /// Items still to send.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Offers queued items to `take`, fewest transmissions first, until it returns false (the
    /// datagram is full) or the queue is exhausted. Each item taken counts one transmission and
    /// retires once it reaches `limit` (at least 1). Returns how many were taken.
    pub fn select(&mut self, limit: u8, mut take: impl FnMut(Slot) -> bool) -> usize {
        let limit = limit.clamp(1, MAX_LIMIT);
        'scan: for b in 0..self.buckets.len() {
            while let Some(&slot) = self.buckets[b].front() {
                let c = *self.count(slot);
                if usize::from(c) != b {
                    // Stale copy: the item was pushed again or taken since.
                    self.buckets[b].pop_front();
                    continue;
                }
                if b >= usize::from(limit) {
                    // The limit went down (the cluster shrank): retire without sending.
                    self.buckets[b].pop_front();
                    *self.count(slot) = IDLE;
                    self.live -= 1;
                    continue;
                }
                if !take(slot) {
                    break 'scan;
                }
                self.buckets[b].pop_front();
                *self.count(slot) = TAKEN;
                self.taken.push((slot, c + 1));
            }
        }
        for b in &mut self.buckets {
            // A burst (a join, a bootstrap) must not leave its buffer behind for good.
            if b.is_empty() && b.capacity() > 64 {
                *b = VecDeque::new();
            }
        }
        let taken = std::mem::take(&mut self.taken);
        let n = taken.len();
        for &(slot, c) in &taken {
            if c >= limit {
                *self.count(slot) = IDLE;
                self.live -= 1;
            } else {
                *self.count(slot) = c;
                self.bucket(usize::from(c)).push_back(slot);
            }
        }
        self.taken = taken;
        self.taken.clear();
        n
    }
}

/// How many times each membership update is sent: `mult * ceil(log10(n + 1))` for a cluster of
/// `n` members (SWIM's λ·log n), at least 1.
pub fn retransmit_limit(mult: u32, n: usize) -> u8 {
    let log = ((n as f64) + 1.0).log10().ceil().max(1.0) as u32;
    u8::try_from(mult.saturating_mul(log))
        .unwrap_or(MAX_LIMIT)
        .clamp(1, MAX_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take_all(q: &mut Queue, limit: u8) -> Vec<Slot> {
        let mut got = Vec::new();
        q.select(limit, |s| {
            got.push(s);
            true
        });
        got
    }

    #[test]
    fn fewest_transmissions_go_first() {
        let mut q = Queue::new();
        q.push(1);
        q.push(2);
        assert_eq!(take_all(&mut q, 5), vec![1, 2]);
        q.push(3);
        // 3 has never been sent: it goes before 1 and 2, sent once each.
        let mut got = Vec::new();
        q.select(5, |s| {
            if got.len() == 2 {
                return false;
            }
            got.push(s);
            true
        });
        assert_eq!(got, vec![3, 1], "the refused item stays queued");
        assert_eq!(take_all(&mut q, 5), vec![2, 3, 1]);
    }

    #[test]
    fn an_item_retires_after_the_limit() {
        let mut q = Queue::new();
        q.push(7);
        q.push(SELF);
        for _ in 0..3 {
            assert_eq!(take_all(&mut q, 3), vec![7, SELF]);
        }
        assert!(q.is_empty());
        assert!(take_all(&mut q, 3).is_empty());
    }

    #[test]
    fn news_about_a_queued_member_restarts_its_count_without_duplicates() {
        let mut q = Queue::new();
        q.push(4);
        q.push(4);
        assert_eq!(q.len(), 1);
        assert_eq!(take_all(&mut q, 3), vec![4]);
        assert_eq!(take_all(&mut q, 3), vec![4]);
        q.push(4);
        // Sent twice, then refreshed: three more sends, never twice in one datagram.
        for _ in 0..3 {
            assert_eq!(take_all(&mut q, 3), vec![4]);
        }
        assert!(take_all(&mut q, 3).is_empty());
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_lower_limit_retires_items_already_sent_enough() {
        let mut q = Queue::new();
        q.push(1);
        for _ in 0..4 {
            take_all(&mut q, 9);
        }
        assert_eq!(q.len(), 1);
        assert!(take_all(&mut q, 2).is_empty());
        assert!(q.is_empty());
    }

    #[test]
    fn retransmissions_grow_with_log_n() {
        assert_eq!(retransmit_limit(3, 1), 3);
        assert_eq!(retransmit_limit(3, 9), 3);
        assert_eq!(retransmit_limit(3, 10), 6);
        assert_eq!(retransmit_limit(3, 100), 9);
        assert_eq!(retransmit_limit(3, 10_000), 15);
        assert_eq!(retransmit_limit(100, 10_000), MAX_LIMIT);
    }
}
