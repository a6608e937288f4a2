//! Figures of the file system for `ssi dfs status` and `ssi dfs df`.

use serde::{Deserialize, Serialize};

/// One node's storage and role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node id.
    pub node: u16,
    /// Raft role: leader, follower, learner, candidate or down.
    pub role: String,
    /// Bytes of the disk holding the data directory.
    pub capacity_bytes: u64,
    /// Bytes free there.
    pub free_bytes: u64,
    /// Bytes of chunk files.
    pub used_bytes: u64,
    /// Chunk files.
    pub chunk_files: u64,
    /// Last applied raft log index.
    pub applied: u64,
    /// Chunks this node copied to restore their replica count while it led.
    pub rereplicated: u64,
    /// Bytes so copied.
    pub rereplicated_bytes: u64,
}

/// The whole file system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The mount point.
    pub mount: String,
    /// The metadata leader, if any.
    pub leader: Option<u16>,
    /// Why the metadata did not answer (the file system then stops), if it did not.
    #[serde(default)]
    pub unavailable: Option<String>,
    /// Voters of the metadata.
    pub voters: Vec<u16>,
    /// Whether a voter change is under way (the joint configuration of Raft: until it ends,
    /// the old voters too must keep a majority).
    pub changing_voters: bool,
    /// Learners (nodes that replicate the metadata without voting).
    pub learners: Vec<u16>,
    /// Replicas wanted per chunk.
    pub replicas: u32,
    /// Inodes.
    pub inodes: u64,
    /// Bytes of file data (sizes summed).
    pub bytes: u64,
    /// Chunks.
    pub chunks: u64,
    /// Chunks with fewer alive replicas than wanted.
    pub under_replicated: u64,
    /// Chunks copied by re-replication (summed over the nodes that answered, since they
    /// started).
    pub rereplicated: u64,
    /// Bytes so copied.
    pub rereplicated_bytes: u64,
    /// Each node that answered.
    pub nodes: Vec<NodeStatus>,
}

/// What `ssi dfs scrub` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubReport {
    /// Replicas checked.
    pub checked: u64,
    /// Replicas whose checksum did not match.
    pub damaged: u64,
    /// Replicas missing.
    pub missing: u64,
    /// Replicas rewritten from a good copy.
    pub repaired: u64,
    /// Chunks with no good copy left.
    pub lost: u64,
}
