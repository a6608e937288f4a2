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

impl foca::Identity for NodeIdentity {
    type Addr = NodeId;

    fn renew(&self) -> Option<Self> {
        // A node wrongly declared dead (e.g. a long pause) comes back at once under a new
        // generation instead of staying out of the cluster.
        Some(Self {
            gen: self.gen + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> NodeId {
        self.id
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.gen > adversary.gen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn ident(id: u16, gen: u64) -> NodeIdentity {
        NodeIdentity {
            id: NodeId(id),
            addr: "127.0.0.1:7000".parse().expect("addr"),
            gen,
        }
    }

    #[test]
    fn renewed_identity_wins_over_the_old_one() {
        let old = ident(3, 10);
        let new = old.renew().expect("renews");
        assert_eq!(new.addr(), old.addr());
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }
}
