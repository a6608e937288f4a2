//! What a node's scheduler shows of itself (`ssi sched show`), typed, as it crosses the RPC
//! and the control socket: its policy and filters, its balancing knobs, the nodes as its
//! policy sees them, and its recent decisions. The `scheduler` crate decides with these
//! samples; the daemon fills the status; the CLI prints it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::SchedConfig;
use crate::node::NodeId;
use crate::view::{MemberState, NodeView};

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

/// Re-balancing knobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BalanceConfig {
    /// Whether nodes re-balance on their own.
    pub enabled: bool,
    /// Seconds between two looks at the load.
    pub interval_s: f64,
    /// How much (in load per CPU) the busier node of a pair must gain for a move.
    pub threshold: f64,
    /// Seconds a process stays on a node before it may move again.
    pub min_residence_s: f64,
    /// Seconds between two moves from one node (lets probes catch up with the last move).
    pub cooldown_s: f64,
}

impl From<&SchedConfig> for BalanceConfig {
    fn from(c: &SchedConfig) -> Self {
        BalanceConfig {
            enabled: c.balance,
            interval_s: c.balance_interval.as_secs_f64(),
            threshold: c.balance_threshold,
            min_residence_s: c.min_residence.as_secs_f64(),
            cooldown_s: c.balance_cooldown.as_secs_f64(),
        }
    }
}

impl Default for BalanceConfig {
    /// The defaults of the `[sched]` config table.
    fn default() -> Self {
        BalanceConfig::from(&SchedConfig::default())
    }
}

/// What a scheduler decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionKind {
    /// A node was chosen for a new process (or none fitted).
    Place,
    /// The placement policy was changed.
    Policy,
    /// A process was moved to re-balance the load.
    Move,
    /// A re-balancing move was tried and failed (the process runs on where it was).
    MoveFailed,
}

impl DecisionKind {
    /// The name as in JSON and in `ssi sched show`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Place => "place",
            DecisionKind::Policy => "policy",
            DecisionKind::Move => "move",
            DecisionKind::MoveFailed => "move-failed",
        }
    }
}

impl fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decision of a node's scheduler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When (Unix ms).
    pub at_ms: u64,
    /// The node that decided.
    pub node: NodeId,
    /// What was decided.
    pub kind: DecisionKind,
    /// The process, when there is one.
    pub gpid: Option<i32>,
    /// The node chosen.
    pub to: Option<NodeId>,
    /// Why, in one line.
    pub reason: String,
}

/// A node's scheduler as `ssi sched show` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchedStatus {
    /// The node.
    pub node: NodeId,
    /// Placement policy.
    pub policy: String,
    /// Its parameters.
    pub params: BTreeMap<String, String>,
    /// How the policy has been doing (external policies).
    pub policy_report: Option<String>,
    /// Load filters.
    pub filters: Vec<String>,
    /// Re-balancing knobs.
    pub balance: BalanceConfig,
    /// The nodes as this node's policy sees them now (filters applied).
    pub view: Vec<NodeSample>,
    /// Recent decisions, oldest first.
    pub decisions: Vec<Decision>,
}

/// One node's answer to a scheduler request (`ssi sched show | set | balance`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SchedAnswer {
    /// Its scheduler, after the request.
    Status(SchedStatus),
    /// The request failed on that node (or the node did not answer).
    Failed {
        /// The node.
        node: NodeId,
        /// Why, in one line.
        error: String,
    },
}

impl SchedAnswer {
    /// The node that answered.
    pub fn node(&self) -> NodeId {
        match self {
            SchedAnswer::Status(s) => s.node,
            SchedAnswer::Failed { node, .. } => *node,
        }
    }
}
