//! What policies see of the cluster: one sample per alive node, from the gossiped probe data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use ssi_core::view::{MemberState, NodeView};
use ssi_core::NodeId;

/// One alive node as placement and balancing see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSample {
    /// Node id.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// CPUs it offers.
    pub cpus: u32,
    /// Total memory, bytes.
    pub mem_total_bytes: u64,
    /// Available memory, bytes.
    pub mem_free_bytes: u64,
    /// Load: threads it hosts that run or wait for a CPU (after filters).
    pub load: f64,
    /// Processes it hosts.
    pub procs: u32,
    /// Admin-set labels (`rack = "a"`), for placement constraints.
    pub labels: BTreeMap<String, String>,
    /// Processes placed there recently that its probes may not show yet.
    pub pending: u32,
}

impl NodeSample {
    /// Samples of the alive members of a cluster view.
    pub fn from_view(view: &[NodeView]) -> Vec<NodeSample> {
        view.iter()
            .filter(|n| n.state == MemberState::Alive)
            .map(|n| NodeSample {
                id: n.id,
                name: n.name.clone(),
                cpus: n.probe.cpus,
                mem_total_bytes: n.probe.mem_total_bytes,
                mem_free_bytes: n.probe.mem_free_bytes,
                load: n.probe.runnable,
                procs: n.probe.ssi_procs,
                labels: n.probe.labels.clone(),
                pending: 0,
            })
            .collect()
    }

    /// Load per CPU, counting each pending placement as one runnable task.
    pub fn pressure(&self) -> f64 {
        (self.load + f64::from(self.pending)) / f64::from(self.cpus.max(1))
    }
}

/// What a new process needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// CPUs.
    pub cpus: Option<u32>,
    /// Memory, bytes.
    pub mem_bytes: Option<u64>,
    /// Labels the node must carry (`key`, `value`).
    pub constraints: Vec<(String, String)>,
}

impl Request {
    /// Whether `n` has what the request needs.
    pub fn fits(&self, n: &NodeSample) -> bool {
        self.cpus.is_none_or(|c| n.cpus >= c)
            && self.mem_bytes.is_none_or(|m| n.mem_free_bytes >= m)
            && self
                .constraints
                .iter()
                .all(|(k, v)| n.labels.get(k) == Some(v))
    }
}

#[cfg(test)]
pub(crate) fn node(id: u16, cpus: u32, load: f64) -> NodeSample {
    NodeSample {
        id: NodeId(id),
        name: format!("n{id}"),
        cpus,
        mem_total_bytes: 8 << 30,
        mem_free_bytes: 4 << 30,
        load,
        procs: 0,
        labels: BTreeMap::new(),
        pending: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_filter_on_cpus_memory_and_labels() {
        let mut n = node(1, 4, 0.0);
        n.labels.insert("rack".into(), "a".into());
        let mut r = Request::default();
        assert!(r.fits(&n));
        r.constraints.push(("rack".into(), "a".into()));
        assert!(r.fits(&n));
        r.constraints.push(("gpu".into(), "yes".into()));
        assert!(!r.fits(&n));
        let big = Request {
            cpus: Some(8),
            ..Request::default()
        };
        assert!(!big.fits(&n));
        let mem = Request {
            mem_bytes: Some(5 << 30),
            ..Request::default()
        };
        assert!(!mem.fits(&n));
    }
}
