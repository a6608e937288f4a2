//! Node identity: the admin-chosen node id and the identity a running daemon gossips.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A node id, set by the admin, unique in the cluster, in `1..=65535`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u16);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The identity of one run of a node's daemon, as carried in every gossip message.
///
/// `gen` tells runs of the same node apart: a daemon that restarts (or renews itself after a
/// false death verdict) gets a higher `gen`, so the cluster replaces the old identity with the
/// new one instead of refusing it as already dead. The node id is the SWIM "address": two
/// identities with the same node id are the same member, and the higher `gen` wins.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The admin-chosen node id.
    pub id: NodeId,
    /// Where the node listens: UDP for gossip, TCP for RPC, same port.
    pub addr: SocketAddr,
    /// Generation of this run; higher wins over lower for the same node id.
    pub gen: u64,
}

impl fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} at {} (gen {})", self.id, self.addr, self.gen)
    }
}
