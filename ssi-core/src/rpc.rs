//! Messages daemons exchange over their authenticated TCP connections.

use serde::{Deserialize, Serialize};

use crate::membership::MemberRecord;
use crate::node::NodeIdentity;

/// A request from one daemon to another.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    /// A starting node asks to join the cluster through this seed.
    Join {
        /// Who asks.
        identity: NodeIdentity,
        /// Its name, for messages.
        name: String,
    },
}

/// An answer to an [`RpcRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    /// Welcome: here is the seed's identity and all it knows of the cluster.
    JoinAccepted {
        /// The seed.
        seed: NodeIdentity,
        /// The seed's membership state.
        members: Vec<MemberRecord>,
    },
    /// The join was refused; the joining node must not start.
    JoinRefused {
        /// Why, in one line.
        reason: String,
    },
    /// The request failed on the answering node.
    Error {
        /// What went wrong, in one line.
        message: String,
    },
}
