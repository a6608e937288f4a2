//! Suspicions in progress and how long each lasts (Lifeguard's dogpile).
//!
//! A suspected member is declared dead when its suspicion times out without a refutation. The
//! timeout starts at `max` and shrinks towards `min` as other members independently suspect it
//! too: `max - (max - min) * log(c + 1) / log(k + 1)` after `c` confirmations out of `k`
//! expected. A member suspected by one node with a bad network thus gets the long timeout,
//! while a member that really crashed (every prober fails) goes in the short one.
//!
//! `min` is `suspect_to_down`: confirmations come from other members' own failed probes, so a
//! confirmed suspect is most likely gone. `max` is `min * suspect_max_factor`, stretched by
//! `max(1, log10(n) / 2)`: an unconfirmed suspicion is most likely false, and the suspect's
//! refutation has to cross about log n gossip hops to reach everyone.

use std::collections::BTreeMap;
use std::time::Duration;

use super::message::{Accusers, MAX_ACCUSERS};
use super::table::Slot;

/// Confirmations after which the timeout reaches its minimum (besides the first accuser).
pub const CONFIRMATIONS: usize = MAX_ACCUSERS - 1;

/// One suspicion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suspicion {
    /// Generation suspected.
    pub gen: u64,
    /// Incarnation suspected.
    pub incarnation: u16,
    /// When it started (core clock).
    pub started: Duration,
    /// Who suspected it.
    pub accusers: Accusers,
    /// When it ends, given the confirmations so far.
    pub deadline: Duration,
    /// Whether the suspect was given its last chance (see `Membership::suspicion_timeout`).
    pub last_chance: bool,
}

/// Suspicion bounds for a cluster of `n` members (this node included).
pub fn bounds(suspect_to_down: Duration, max_factor: u32, n: usize) -> (Duration, Duration) {
    let scale = ((n.max(1) as f64).log10() / 2.0).max(1.0);
    let min = suspect_to_down;
    if max_factor <= 1 {
        // Lifeguard's dynamic timeout turned off: one timeout, confirmed or not.
        return (min, min);
    }
    (min, (min * max_factor).mul_f64(scale))
}

/// Lifeguard's suspicion timeout after `confirmations` out of `expected`.
pub fn timeout(min: Duration, max: Duration, confirmations: usize, expected: usize) -> Duration {
    if expected == 0 || confirmations >= expected {
        return min;
    }
    let frac = ((confirmations as f64) + 1.0).ln() / ((expected as f64) + 1.0).ln();
    max.saturating_sub((max - min).mul_f64(frac)).max(min)
}

/// Suspicions in progress, by slot.
#[derive(Debug, Default)]
pub struct Suspicions {
    map: BTreeMap<Slot, Suspicion>,
}

impl Suspicions {
    /// The suspicion of `slot`, if any.
    pub fn get(&self, slot: Slot) -> Option<&Suspicion> {
        self.map.get(&slot)
    }

    /// Starts (or restarts) the suspicion of `slot`.
    pub fn start(&mut self, slot: Slot, s: Suspicion) {
        self.map.insert(slot, s);
    }

    /// Records that `slot` was given its last chance.
    pub fn give_last_chance(&mut self, slot: Slot) {
        if let Some(s) = self.map.get_mut(&slot) {
            s.last_chance = true;
        }
    }

    /// Ends the suspicion of `slot`.
    pub fn end(&mut self, slot: Slot) {
        self.map.remove(&slot);
    }

    /// Adds `accusers` to the suspicion of `slot`; returns the new deadline if any accuser was
    /// new, or `None` if nothing changed.
    pub fn confirm(
        &mut self,
        slot: Slot,
        accusers: &Accusers,
        min: Duration,
        max: Duration,
        expected: usize,
    ) -> Option<Duration> {
        let s = self.map.get_mut(&slot)?;
        if !s.accusers.merge(accusers) {
            return None;
        }
        let c = s.accusers.len().saturating_sub(1);
        s.deadline = s.deadline.min(s.started + timeout(min, max, c, expected));
        Some(s.deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeId;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_timeout_shrinks_with_confirmations() {
        let (min, max) = (MS(1000), MS(3000));
        assert_eq!(timeout(min, max, 0, 2), max);
        let one = timeout(min, max, 1, 2);
        assert!(one > min && one < max, "{one:?}");
        assert_eq!(timeout(min, max, 2, 2), min);
        assert_eq!(timeout(min, max, 5, 2), min);
        assert_eq!(timeout(min, max, 0, 0), min, "nobody else can confirm");
    }

    #[test]
    fn only_the_maximum_grows_with_log_n_above_100_members() {
        let base = MS(500);
        assert_eq!(bounds(base, 6, 3), (base, MS(3000)));
        assert_eq!(bounds(base, 6, 100), (base, MS(3000)));
        assert_eq!(bounds(base, 6, 10_000), (base, MS(6000)));
        assert_eq!(bounds(base, 1, 10_000), (base, base));
    }

    #[test]
    fn only_new_accusers_confirm() {
        let mut s = Suspicions::default();
        let (min, max) = (MS(1000), MS(3000));
        s.start(
            4,
            Suspicion {
                gen: 1,
                incarnation: 0,
                started: MS(500),
                accusers: Accusers::one(NodeId(1)),
                deadline: MS(3500),
                last_chance: false,
            },
        );
        assert_eq!(s.confirm(4, &Accusers::one(NodeId(1)), min, max, 2), None);
        let d = s
            .confirm(4, &Accusers::one(NodeId(2)), min, max, 2)
            .expect("new");
        assert!(d < MS(3500) && d > MS(1500), "{d:?}");
        let d = s
            .confirm(4, &Accusers::one(NodeId(3)), min, max, 2)
            .expect("new");
        assert_eq!(d, MS(1500));
        assert_eq!(s.confirm(9, &Accusers::one(NodeId(3)), min, max, 2), None);
    }
}
