//! Who restarts a fault-tolerant tree whose node died: a decision without I/O, from one
//! node's view of the membership and the tree's owner as its directory says.
//!
//! Every alive node looks at every protected tree each second. The lowest alive node id of
//! a node's view acts for a tree whose owner is dead (or left); two nodes whose views differ
//! may both act, and then the exclusive claim of the next epoch (see `store`) lets one
//! through. A node that starts again finds the trees it owned in its previous run gone with
//! that run: it acts for them itself, on its first look, under the same claim.

use ssi_core::view::{MemberState, NodeView};
use ssi_core::NodeId;

use super::store::Owner;

/// What a node does about one tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: its owner lives, or another node acts.
    Nothing,
    /// Claim `epoch` and restart the tree from its last complete checkpoint.
    Restart {
        /// The epoch to claim.
        epoch: u64,
    },
}

/// What node `me` does about a tree owned by `owner`, given its membership `view`.
/// `own_orphan`: the tree names this node as owner but this run of the node does not host it
/// (it belonged to an earlier run).
pub fn decide(me: NodeId, view: &[NodeView], owner: Owner, own_orphan: bool) -> Action {
    let restart = Action::Restart {
        epoch: owner.epoch + 1,
    };
    if owner.node == me {
        return if own_orphan { restart } else { Action::Nothing };
    }
    let gone = view
        .iter()
        .any(|n| n.id == owner.node && matches!(n.state, MemberState::Dead | MemberState::Left));
    let lowest_alive = view
        .iter()
        .filter(|n| n.state.is_active())
        .map(|n| n.id)
        .min();
    if gone && lowest_alive == Some(me) {
        restart
    } else {
        Action::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(states: &[(u16, MemberState)]) -> Vec<NodeView> {
        states
            .iter()
            .map(|&(id, state)| NodeView {
                id: NodeId(id),
                name: String::new(),
                addr: String::new(),
                state,
                incarnation: 0,
                gen: 0,
                probe: ssi_core::probe::ProbeData::default(),
                local: false,
            })
            .collect()
    }

    fn owner(node: u16, epoch: u64) -> Owner {
        Owner {
            epoch,
            node: NodeId(node),
            gen: 0,
        }
    }

    #[test]
    fn only_the_lowest_alive_node_acts_for_a_dead_owner() {
        let v = view(&[
            (1, MemberState::Alive),
            (2, MemberState::Alive),
            (3, MemberState::Dead),
        ]);
        assert_eq!(
            decide(NodeId(1), &v, owner(3, 0), false),
            Action::Restart { epoch: 1 }
        );
        assert_eq!(decide(NodeId(2), &v, owner(3, 0), false), Action::Nothing);
        // the lowest is dead itself: the next one acts
        let v = view(&[
            (1, MemberState::Dead),
            (2, MemberState::Suspect),
            (3, MemberState::Dead),
        ]);
        assert_eq!(
            decide(NodeId(2), &v, owner(3, 4), false),
            Action::Restart { epoch: 5 }
        );
        assert_eq!(
            decide(NodeId(2), &v, owner(1, 0), false),
            Action::Restart { epoch: 1 }
        );
    }

    #[test]
    fn a_live_or_suspected_owner_keeps_its_tree() {
        for s in [MemberState::Alive, MemberState::Suspect] {
            let v = view(&[(1, MemberState::Alive), (3, s)]);
            assert_eq!(decide(NodeId(1), &v, owner(3, 2), false), Action::Nothing);
        }
        let v = view(&[(1, MemberState::Alive), (3, MemberState::Left)]);
        assert_eq!(
            decide(NodeId(1), &v, owner(3, 2), false),
            Action::Restart { epoch: 3 }
        );
        // an owner this node has never seen is not taken for dead
        let v = view(&[(1, MemberState::Alive)]);
        assert_eq!(decide(NodeId(1), &v, owner(9, 0), false), Action::Nothing);
    }

    #[test]
    fn a_node_takes_back_what_its_earlier_run_owned() {
        let v = view(&[(1, MemberState::Alive), (3, MemberState::Alive)]);
        assert_eq!(
            decide(NodeId(3), &v, owner(3, 1), true),
            Action::Restart { epoch: 2 }
        );
        assert_eq!(decide(NodeId(3), &v, owner(3, 1), false), Action::Nothing);
        assert_eq!(decide(NodeId(1), &v, owner(3, 1), true), Action::Nothing);
    }
}
