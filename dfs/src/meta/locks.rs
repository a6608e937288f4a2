//! POSIX record locks (and flock, seen by FUSE as whole-file record locks) of the cluster.
//!
//! A lock belongs to an owner: the node that asked and the kernel's lock owner there (a
//! process's file table for `fcntl` locks, an open file description for `flock`). Locks of one
//! owner never conflict with each other; setting a range replaces what that owner held on it,
//! splitting or merging its locks as POSIX says.

use serde::{Deserialize, Serialize};

/// Who holds a lock: a node and the kernel's lock owner on that node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LockOwner {
    /// The node whose kernel asked.
    pub node: u16,
    /// The kernel's owner id there.
    pub owner: u64,
}

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// Shared (`F_RDLCK`).
    Read,
    /// Exclusive (`F_WRLCK`).
    Write,
}

/// One held lock over the bytes `start..=end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Holder.
    pub owner: LockOwner,
    /// Read or write.
    pub kind: LockKind,
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive; `u64::MAX` for "to the end of the file").
    pub end: u64,
    /// Process id the holder reported, for `F_GETLK` (meaningful on its node only).
    pub pid: u32,
}

impl Lock {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }

    /// Whether this lock stops `other` from being taken.
    pub fn conflicts(&self, other: &Lock) -> bool {
        self.owner != other.owner
            && self.overlaps(other.start, other.end)
            && (self.kind == LockKind::Write || other.kind == LockKind::Write)
    }
}

/// The first lock of `held` that stops `want`, if any.
pub fn conflict<'a>(held: &'a [Lock], want: &Lock) -> Option<&'a Lock> {
    held.iter().find(|l| l.conflicts(want))
}

/// Removes `owner`'s locks over `start..=end`, splitting those that stick out.
pub fn unlock(held: &mut Vec<Lock>, owner: LockOwner, start: u64, end: u64) {
    let mut kept = Vec::with_capacity(held.len() + 1);
    for l in held.drain(..) {
        if l.owner != owner || !l.overlaps(start, end) {
            kept.push(l);
            continue;
        }
        if l.start < start {
            kept.push(Lock {
                end: start - 1,
                ..l
            });
        }
        if l.end > end {
            kept.push(Lock {
                start: end + 1,
                ..l
            });
        }
    }
    *held = kept;
}

/// Takes `want` unless another owner's lock conflicts (then that lock is returned and nothing
/// changes). The owner's own locks on the range are replaced, and touching locks of the same
/// kind merged.
pub fn set(held: &mut Vec<Lock>, want: Lock) -> Result<(), Lock> {
    if let Some(c) = conflict(held, &want) {
        return Err(*c);
    }
    unlock(held, want.owner, want.start, want.end);
    let mut merged = want;
    held.retain(|l| {
        let touches = l.owner == merged.owner
            && l.kind == merged.kind
            && l.start <= merged.end.saturating_add(1)
            && merged.start <= l.end.saturating_add(1);
        if touches {
            merged.start = merged.start.min(l.start);
            merged.end = merged.end.max(l.end);
        }
        !touches
    });
    held.push(merged);
    held.sort_by_key(|l| (l.start, l.owner));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lk(node: u16, kind: LockKind, start: u64, end: u64) -> Lock {
        Lock {
            owner: LockOwner { node, owner: 1 },
            kind,
            start,
            end,
            pid: 1,
        }
    }

    #[test]
    fn readers_share_writers_exclude() {
        let mut held = Vec::new();
        set(&mut held, lk(1, LockKind::Read, 0, 99)).expect("first reader");
        set(&mut held, lk(2, LockKind::Read, 50, 149)).expect("second reader");
        let err = set(&mut held, lk(3, LockKind::Write, 140, 200)).expect_err("writer");
        assert_eq!(err.owner.node, 2);
        set(&mut held, lk(3, LockKind::Write, 150, 200)).expect("beyond the readers");
    }

    #[test]
    fn unlocking_the_middle_splits_and_same_kind_merges() {
        let mut held = Vec::new();
        set(&mut held, lk(1, LockKind::Write, 0, 99)).expect("lock");
        unlock(&mut held, LockOwner { node: 1, owner: 1 }, 40, 59);
        assert_eq!(held.len(), 2);
        assert_eq!((held[0].start, held[0].end), (0, 39));
        assert_eq!((held[1].start, held[1].end), (60, 99));
        set(&mut held, lk(1, LockKind::Write, 40, 59)).expect("refill");
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!((held[0].start, held[0].end), (0, 99));
    }

    #[test]
    fn an_owner_converts_its_own_lock() {
        let mut held = Vec::new();
        set(&mut held, lk(1, LockKind::Read, 0, u64::MAX)).expect("read");
        set(&mut held, lk(1, LockKind::Write, 10, 19)).expect("upgrade a range");
        assert_eq!(held.len(), 3, "{held:?}");
        assert!(held
            .iter()
            .any(|l| l.kind == LockKind::Write && l.start == 10 && l.end == 19));
        assert!(set(&mut held, lk(2, LockKind::Read, 0, 9)).is_ok());
        assert!(set(&mut held, lk(2, LockKind::Read, 0, 10)).is_err());
    }
}
