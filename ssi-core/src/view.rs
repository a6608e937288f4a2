//! The cluster-wide view: one row per node, and the cluster summed up as one machine.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::node::NodeId;
use crate::probe::ProbeData;

/// What the cluster believes of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed probes; it has `suspect_to_down` to refute before it is declared dead. Counted
    /// as alive meanwhile, as SWIM does.
    Suspect,
    /// Declared dead by the cluster.
    Dead,
    /// Left on purpose (graceful shutdown).
    Left,
}

impl MemberState {
    /// Alive or suspect: still a member.
    pub fn is_active(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }

    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        }
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node as `ssi nodes` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Node id.
    pub id: NodeId,
    /// Node name ("?" until its first report arrives).
    pub name: String,
    /// Gossip/RPC address.
    pub addr: String,
    /// Membership state.
    pub state: MemberState,
    /// SWIM incarnation number (raised by the node to refute suspicion).
    pub incarnation: u16,
    /// Generation of the node's current run.
    pub gen: u64,
    /// What the node last reported of itself (CPUs, memory, load, labels).
    pub probe: ProbeData,
    /// Whether this row is the node answering.
    pub local: bool,
}

/// The cluster as one SMP machine: figures summed over alive (and suspect) nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Alive or suspect nodes.
    pub nodes_alive: u32,
    /// Of those, suspect ones.
    pub nodes_suspect: u32,
    /// Nodes known dead.
    pub nodes_dead: u32,
    /// Nodes that left.
    pub nodes_left: u32,
    /// CPUs, memory, loads and processes summed over alive and suspect nodes (no labels).
    pub total: ProbeData,
}

impl ClusterInfo {
    /// Sums `nodes` into one machine.
    pub fn sum(nodes: &[NodeView]) -> Self {
        let mut c = ClusterInfo::default();
        for n in nodes {
            match n.state {
                MemberState::Dead => c.nodes_dead += 1,
                MemberState::Left => c.nodes_left += 1,
                MemberState::Alive | MemberState::Suspect => {
                    c.nodes_alive += 1;
                    if n.state == MemberState::Suspect {
                        c.nodes_suspect += 1;
                    }
                    c.total.add(&n.probe);
                }
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u16, state: MemberState) -> NodeView {
        NodeView {
            id: NodeId(id),
            name: format!("n{id}"),
            addr: String::new(),
            state,
            incarnation: 0,
            gen: 1,
            probe: ProbeData {
                cpus: 2,
                mem_total_bytes: 100,
                mem_free_bytes: 40,
                load1: 0.5,
                load5: 0.25,
                load15: 0.0,
                ssi_procs: 1,
                runnable: 0.0,
                labels: Default::default(),
            },
            local: false,
        }
    }

    #[test]
    fn only_active_nodes_are_summed() {
        let c = ClusterInfo::sum(&[
            row(1, MemberState::Alive),
            row(2, MemberState::Suspect),
            row(3, MemberState::Dead),
            row(4, MemberState::Left),
        ]);
        assert_eq!(c.nodes_alive, 2);
        assert_eq!(c.nodes_suspect, 1);
        assert_eq!((c.nodes_dead, c.nodes_left), (1, 1));
        assert_eq!(c.total.cpus, 4);
        assert_eq!(c.total.mem_total_bytes, 200);
        assert_eq!(c.total.mem_free_bytes, 80);
        assert!((c.total.load1 - 1.0).abs() < 1e-9);
        assert_eq!(c.total.ssi_procs, 2);
    }

    #[test]
    fn states_serialize_lowercase() {
        let json = serde_json::to_string(&row(1, MemberState::Suspect)).expect("json");
        assert!(json.contains("\"state\":\"suspect\""), "{json}");
    }
}
