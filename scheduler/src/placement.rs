//! Placement of a new process: the least-loaded node that fits.

use ssi_core::view::{MemberState, NodeView};
use ssi_core::NodeId;

/// A node as placement sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Node id.
    pub id: NodeId,
    /// CPUs.
    pub cpus: u32,
    /// Available memory, bytes.
    pub mem_free_bytes: u64,
    /// 1-minute load.
    pub load1: f64,
    /// Processes placed there recently that its probes may not show yet.
    pub pending: u32,
}

impl Candidate {
    /// Alive members of a cluster view, as candidates.
    pub fn from_view(view: &[NodeView]) -> Vec<Candidate> {
        view.iter()
            .filter(|n| n.state == MemberState::Alive)
            .map(|n| Candidate {
                id: n.id,
                cpus: n.cpus,
                mem_free_bytes: n.mem_free_bytes,
                load1: n.load1,
                pending: 0,
            })
            .collect()
    }

    /// Load per CPU, counting pending placements as one runnable task each.
    fn pressure(&self) -> f64 {
        (self.load1 + f64::from(self.pending)) / f64::from(self.cpus.max(1))
    }
}

/// What the new process needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// CPUs.
    pub cpus: Option<u32>,
    /// Memory, bytes.
    pub mem_bytes: Option<u64>,
}

/// The candidate with the least load per CPU among those with enough CPUs and memory; ties go
/// to the lowest node id. `None` when nothing fits.
pub fn least_loaded(candidates: &[Candidate], req: Request) -> Option<NodeId> {
    candidates
        .iter()
        .filter(|c| req.cpus.is_none_or(|n| c.cpus >= n))
        .filter(|c| req.mem_bytes.is_none_or(|m| c.mem_free_bytes >= m))
        .min_by(|a, b| a.pressure().total_cmp(&b.pressure()).then(a.id.cmp(&b.id)))
        .map(|c| c.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: u16, cpus: u32, load1: f64, pending: u32) -> Candidate {
        Candidate {
            id: NodeId(id),
            cpus,
            mem_free_bytes: 1 << 30,
            load1,
            pending,
        }
    }

    #[test]
    fn picks_least_load_per_cpu() {
        let c = [cand(1, 2, 1.5, 0), cand(2, 8, 4.0, 0), cand(3, 2, 1.2, 0)];
        assert_eq!(least_loaded(&c, Request::default()), Some(NodeId(2)));
    }

    #[test]
    fn pending_placements_spread_a_burst() {
        let mut c = vec![cand(1, 2, 0.0, 0), cand(2, 2, 0.0, 0)];
        let first = least_loaded(&c, Request::default()).expect("fits");
        c.iter_mut()
            .find(|x| x.id == first)
            .expect("present")
            .pending += 1;
        let second = least_loaded(&c, Request::default()).expect("fits");
        assert_ne!(first, second);
    }

    #[test]
    fn requirements_filter_nodes() {
        let c = [cand(1, 2, 0.0, 0), cand(2, 16, 9.0, 0)];
        let req = Request {
            cpus: Some(4),
            mem_bytes: None,
        };
        assert_eq!(least_loaded(&c, req), Some(NodeId(2)));
        let huge = Request {
            cpus: None,
            mem_bytes: Some(u64::MAX),
        };
        assert_eq!(least_loaded(&c, huge), None);
    }
}
