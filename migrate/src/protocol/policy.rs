//! When a source stops copying while the tree runs and freezes it.

/// When to stop copying while the tree runs and freeze it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Rounds at most, the first full copy included; 0 is stop-and-copy (freeze at once and
    /// copy everything while frozen).
    pub max_rounds: u32,
    /// Freeze once a round copies at most this many page bytes.
    pub stop_bytes: u64,
    /// Freeze once a round copies more than this share (in percent) of the previous one: the
    /// tree writes about as fast as we copy, more rounds would not shrink the last delta.
    pub min_shrink_percent: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_rounds: 8,
            stop_bytes: 4 << 20,
            min_shrink_percent: 80,
        }
    }
}

impl Policy {
    /// Whether to freeze now, given the page bytes of the rounds sent so far (the first is the
    /// full copy); otherwise another round.
    pub fn freeze_now(&self, rounds: &[u64]) -> bool {
        if rounds.len() >= usize::try_from(self.max_rounds).unwrap_or(usize::MAX) {
            return true;
        }
        let Some(&last) = rounds.last() else {
            return false;
        };
        if last <= self.stop_bytes {
            return true;
        }
        match rounds.len().checked_sub(2).map(|i| rounds[i]) {
            Some(before) => last * 100 > before * self.min_shrink_percent,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_stop_on_limit_size_or_no_shrink() {
        let p = Policy {
            max_rounds: 4,
            stop_bytes: 10,
            min_shrink_percent: 80,
        };
        assert!(!p.freeze_now(&[]));
        assert!(!p.freeze_now(&[1000]));
        assert!(p.freeze_now(&[1000, 10]), "small enough");
        assert!(!p.freeze_now(&[1000, 500]), "shrinking");
        assert!(p.freeze_now(&[1000, 900]), "not shrinking enough");
        assert!(p.freeze_now(&[1000, 500, 200, 100]), "round limit");
        let stop_and_copy = Policy { max_rounds: 0, ..p };
        assert!(stop_and_copy.freeze_now(&[]));
    }
}
