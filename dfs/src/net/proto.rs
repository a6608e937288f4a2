//! Messages of the DFS service.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::chunks::Health;
use crate::meta::{Errno, Ino, MetaOp, MetaRead, MetaReply};
use crate::raft::TypeConfig;
use crate::status::NodeStatus;

/// A request to a node's DFS service.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Raft: replicate entries.
    Append(AppendEntriesRequest<TypeConfig>),
    /// Raft: ask for a vote.
    Vote(VoteRequest<u64>),
    /// Raft: a piece of a snapshot.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// Propose a change (to the leader).
    Write(MetaOp),
    /// Ask a question (to the leader).
    Read(MetaRead),
    /// Publish what this node wrote to an open file and has not published yet (another node
    /// opens it or asks its size).
    Publish {
        /// Inode.
        ino: u64,
    },
    /// Store a chunk version durably, dropping versions other than it and `keep`.
    PutChunk {
        /// Inode.
        ino: Ino,
        /// Chunk index.
        idx: u64,
        /// Version.
        version: u64,
        /// Versions to keep besides it (the committed one).
        keep: Vec<u64>,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Send a chunk version if it is here and matches `crc`.
    GetChunk {
        /// Inode.
        ino: Ino,
        /// Chunk index.
        idx: u64,
        /// Version.
        version: u64,
        /// Expected crc32c.
        crc: u32,
    },
    /// Copy a chunk version from one of `from` (re-replication, repair).
    Fetch {
        /// Inode.
        ino: Ino,
        /// Chunk index.
        idx: u64,
        /// Version.
        version: u64,
        /// Expected crc32c.
        crc: u32,
        /// Nodes to copy from, in order.
        from: Vec<u16>,
    },
    /// Whether a chunk version is here and intact.
    Check {
        /// Inode.
        ino: Ino,
        /// Chunk index.
        idx: u64,
        /// Version.
        version: u64,
        /// Expected crc32c.
        crc: u32,
    },
    /// This node's storage and raft figures.
    Status,
}

/// An answer of a node's DFS service.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// To `Append`.
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// To `Vote`.
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// To `Snapshot`.
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// To `Write` and `Read`.
    Meta(Result<MetaReply, Errno>),
    /// This node does not lead; the leader if known.
    NotLeader(Option<u64>),
    /// A chunk's bytes, or `None` if absent or damaged here.
    Chunk(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// Done.
    Ok,
    /// To `Check`.
    Checked(Health),
    /// To `Fetch`: bytes copied.
    Fetched(u64),
    /// To `Status`.
    Status(NodeStatus),
    /// The request failed (one line).
    Error(String),
    /// Storing a chunk failed with this errno (a full disk: `ENOSPC`), and why.
    Refused(i32, String),
}
