//! The one error type of `ssi-core`.

use std::io;
use std::path::PathBuf;

use crate::node::NodeId;

/// Everything that can fail in the cluster fabric.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written; nothing was changed by the failed call.
    #[error("{path}: {source}")]
    Io {
        /// The file or socket path involved.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// A network operation failed.
    #[error("{what}: {source}")]
    Net {
        /// What was attempted, naming the peer or address.
        what: String,
        /// What the kernel said.
        source: io::Error,
    },
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(String),
    /// A key or certificate file is unusable (unreadable, malformed, or readable by others).
    #[error("{path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A peer failed authentication (it does not hold the cluster key) or we failed its.
    #[error("authentication with {peer} failed: {reason}")]
    Auth {
        /// The peer address.
        peer: String,
        /// What went wrong.
        reason: String,
    },
    /// A message could not be decoded or had an unknown version.
    #[error("malformed message from {peer}: {reason}")]
    Malformed {
        /// Where it came from.
        peer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A peer closed the connection or did not answer in time.
    #[error("{peer}: {reason}")]
    Peer {
        /// The peer.
        peer: String,
        /// What happened.
        reason: String,
    },
    /// The cluster refused this node from joining (for example, its id is in use).
    #[error("join refused by {peer}: {reason}")]
    JoinRefused {
        /// The seed that refused.
        peer: String,
        /// Its reason.
        reason: String,
    },
    /// A join token is malformed.
    #[error("join token: {0}")]
    Token(String),
    /// A node id is not known to the cluster.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// The membership protocol rejected an operation; membership state is unchanged.
    #[error("membership: {0}")]
    Membership(String),
    /// Reading /proc failed.
    #[error("probe: {0}")]
    Probe(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a network error with what was attempted.
    pub fn net(what: impl Into<String>, source: io::Error) -> Self {
        Error::Net {
            what: what.into(),
            source,
        }
    }
}

/// Result alias of `ssi-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
