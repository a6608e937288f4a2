//! Global pids: how the pid space of a pid namespace is split between nodes.
//!
//! Each daemon runs the processes it hosts in a pid namespace of its own and creates each one
//! with an exact pid (clone3 `set_tid`), so `getpid()` inside a program is its global pid, and
//! stays so after migration or restart on any node (the target recreates the same pid in its
//! own namespace).
//!
//! The kernel allows pids below 4,194,304 (2^22) in a namespace. That space is split statically:
//! the low 12 bits are a per-node index, the high 10 bits the node id, so node `N` owns the
//! 4,096 pids `[N * 4096, N * 4096 + 4095]`:
//!
//! ```text
//!   gpid = node_id << 12 | index        node 1: 4096..=8191   node 2: 8192..=12287 ...
//! ```
//!
//! Hence at most 1,023 nodes (ids 1..=1023) can host processes, each with up to 4,096 pids in
//! use at once (threads count: a thread id is a pid). Range 0 (pids 1..=4095) belongs to no node:
//! it holds each namespace's init (pid 1). A node keeps a pid it gave out reserved while the
//! process lives anywhere in the cluster, so a migrated process never meets its pid twice.

use crate::node::NodeId;

/// Bits of a pid that index within a node's range.
pub const INDEX_BITS: u32 = 12;
/// Pids per node.
pub const PIDS_PER_NODE: u32 = 1 << INDEX_BITS;
/// Highest node id that can own a pid range.
pub const MAX_NODE: u16 = (((1u32 << 22) >> INDEX_BITS) - 1) as u16;

/// The pid range owned by one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PidRange {
    /// First pid.
    pub first: i32,
    /// Last pid (inclusive).
    pub last: i32,
}

impl PidRange {
    /// The range of node `id`, if it can own one.
    pub fn of(id: NodeId) -> Option<PidRange> {
        if id.0 == 0 || id.0 > MAX_NODE {
            return None;
        }
        let first = i32::from(id.0) << INDEX_BITS;
        Some(PidRange {
            first,
            last: first + (PIDS_PER_NODE as i32) - 1,
        })
    }

    /// Whether `pid` is in this range.
    pub fn contains(&self, pid: i32) -> bool {
        (self.first..=self.last).contains(&pid)
    }
}

/// The node whose range holds `gpid`.
pub fn owner(gpid: i32) -> Option<NodeId> {
    if gpid < PIDS_PER_NODE as i32 || gpid >= 1 << 22 {
        return None;
    }
    u16::try_from(gpid >> INDEX_BITS).ok().map(NodeId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_disjoint_and_fit_the_kernel_limit() {
        let r1 = PidRange::of(NodeId(1)).expect("node 1");
        assert_eq!((r1.first, r1.last), (4096, 8191));
        let r2 = PidRange::of(NodeId(2)).expect("node 2");
        assert_eq!(r2.first, r1.last + 1);
        let top = PidRange::of(NodeId(MAX_NODE)).expect("last node");
        assert_eq!(top.last, (1 << 22) - 1);
        assert!(PidRange::of(NodeId(MAX_NODE + 1)).is_none());
        assert!(PidRange::of(NodeId(0)).is_none());
    }

    #[test]
    fn owner_inverts_ranges() {
        assert_eq!(owner(4096), Some(NodeId(1)));
        assert_eq!(owner(8191), Some(NodeId(1)));
        assert_eq!(owner(8192), Some(NodeId(2)));
        assert_eq!(owner(1), None);
        assert_eq!(owner(1 << 22), None);
    }
}
