//! Errors of the file system library.

use std::path::PathBuf;

/// What went wrong in the DFS.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory of the node's data could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The replicated store (redb) failed.
    #[error("metadata store {path}: {reason}")]
    Store {
        /// Its file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Another node could not be reached or answered wrongly.
    #[error("node {node}: {reason}")]
    Peer {
        /// Node id.
        node: u16,
        /// What failed.
        reason: String,
    },
    /// Another node's disk refused a chunk (full, read-only): its errno is the writer's.
    #[error("node {node}: {reason}")]
    Refused {
        /// Node id.
        node: u16,
        /// The errno it answered.
        errno: i32,
        /// What failed there.
        reason: String,
    },
    /// The metadata service is not available (no leader, shutting down).
    #[error("metadata service: {0}")]
    Raft(String),
    /// Mounting or unmounting failed.
    #[error("mount {}: {reason}", path.display())]
    Mount {
        /// Mount point.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// The errno a FUSE request failing with this error answers.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            Error::Refused { errno, .. } => *errno,
            _ => libc::EIO,
        }
    }
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
