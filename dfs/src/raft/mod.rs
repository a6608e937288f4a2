//! The metadata replicated with Raft (`openraft`): the type configuration, the durable store
//! (redb) and the network between voters.
//!
//! ```text
//!  proposer --client_write(MetaOp)--> leader: append to redb log (fsync) --> followers
//!                                         (fsync each) --> committed --> apply to MetaState
//! ```
//!
//! Every append is a redb transaction committed with `Durability::Immediate` (fsync) before
//! openraft is told it is on disk; the vote likewise. The state machine is in memory and
//! rebuilt at start from the last snapshot (kept in redb) and the log after it.

pub mod network;
pub mod store;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::meta::{Errno, MetaOp, MetaReply};

/// The answer of the state machine to one log entry.
pub type Answer = Result<MetaReply, Errno>;

/// What a raft node is known by: the address of its DFS service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// `host:port` of the node's DFS service.
    pub addr: String,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)
    }
}

openraft::declare_raft_types!(
    /// The raft types of the DFS metadata.
    pub TypeConfig:
        D = MetaOp,
        R = Answer,
        NodeId = u64,
        Node = NodeAddr,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A raft node of the DFS metadata.
pub type Raft = openraft::Raft<TypeConfig>;

/// The raft configuration of the DFS: elections within about a second of a leader's death.
pub fn config() -> openraft::Config {
    openraft::Config {
        cluster_name: "ssi-dfs".into(),
        heartbeat_interval: 100,
        election_timeout_min: 600,
        election_timeout_max: 1000,
        install_snapshot_timeout: 5000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5000),
        max_in_snapshot_log_to_keep: 1000,
        ..Default::default()
    }
}
