//! Re-balancing: each node, on its own, moves one of its processes to a less loaded node when
//! it is overloaded.
//!
//! A node acts only when it has more runnable work than CPUs, and only when the move makes the
//! busier of the two nodes clearly less busy: the larger pressure (load per CPU) of the pair
//! after the move must be below the larger before by at least `threshold`. A process is moved
//! only after `min_residence_s` on its node, and a node moves at most one process per
//! `cooldown_s`: together these keep a process from ping-ponging.

use serde::{Deserialize, Serialize};
use ssi_core::NodeId;

use crate::sample::NodeSample;
pub use ssi_core::sched::BalanceConfig;

/// A process of this node, as the balancer sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalProc {
    /// Global pid (root of its tree).
    pub gpid: i32,
    /// CPUs-worth it (and its tree) wants: what moves with it.
    pub cpu: f64,
    /// Seconds since it started or arrived here.
    pub resident_s: f64,
}

/// A decision to move a process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// The process.
    pub gpid: i32,
    /// Where to.
    pub to: NodeId,
    /// Why, in one line (figures included).
    pub reason: String,
}

/// The balancer of one node.
#[derive(Debug, Default)]
pub struct Balancer {
    /// Its knobs.
    pub config: BalanceConfig,
    last_move_s: Option<f64>,
}

impl Balancer {
    /// A balancer with `config`.
    pub fn new(config: BalanceConfig) -> Balancer {
        Balancer {
            config,
            last_move_s: None,
        }
    }

    /// Looks at the cluster at time `now_s` and maybe decides one move of a `local` process.
    /// `force` skips the cooldown (`ssi sched balance --now`).
    pub fn decide(
        &mut self,
        me: NodeId,
        nodes: &[NodeSample],
        local: &[LocalProc],
        now_s: f64,
        force: bool,
    ) -> Option<Move> {
        if !force {
            if !self.config.enabled {
                return None;
            }
            if self
                .last_move_s
                .is_some_and(|t| now_s - t < self.config.cooldown_s)
            {
                return None;
            }
        }
        let mine = nodes.iter().find(|n| n.id == me)?;
        let cpus = f64::from(mine.cpus.max(1));
        if mine.load <= cpus + 0.25 {
            return None;
        }
        let target = nodes
            .iter()
            .filter(|n| n.id != me)
            .min_by(|a, b| a.pressure().total_cmp(&b.pressure()).then(a.id.cmp(&b.id)))?;
        let tcpus = f64::from(target.cpus.max(1));
        let before = mine.pressure().max(target.pressure());
        let mut best: Option<(&LocalProc, f64)> = None;
        for p in local
            .iter()
            .filter(|p| p.resident_s >= self.config.min_residence_s)
        {
            let c = p.cpu.clamp(0.0, 1.0 * cpus);
            if c < 0.1 {
                continue;
            }
            let after = ((mine.load + f64::from(mine.pending) - c) / cpus)
                .max((target.load + f64::from(target.pending) + c) / tcpus);
            if before - after >= self.config.threshold && best.is_none_or(|(_, a)| after < a) {
                best = Some((p, after));
            }
        }
        let (p, after) = best?;
        self.last_move_s = Some(now_s);
        Some(Move {
            gpid: p.gpid,
            to: target.id,
            reason: format!(
                "node {me} load {:.2} on {} CPU(s) (pressure {:.2}); node {} pressure {:.2}; \
                 moving {} (wanting {:.2} CPU) brings the busier of the two to {:.2}",
                mine.load,
                mine.cpus,
                mine.pressure(),
                target.id,
                target.pressure(),
                p.gpid,
                p.cpu,
                after
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::node;

    fn busy(gpid: i32) -> LocalProc {
        LocalProc {
            gpid,
            cpu: 1.0,
            resident_s: 60.0,
        }
    }

    #[test]
    fn an_overloaded_node_sends_work_to_an_idle_one() {
        let nodes = [node(1, 1, 3.0), node(2, 1, 0.0), node(3, 1, 1.0)];
        let mut b = Balancer::default();
        let m = b
            .decide(
                NodeId(1),
                &nodes,
                &[busy(4096), busy(4097), busy(4098)],
                100.0,
                false,
            )
            .expect("a move");
        assert_eq!(m.to, NodeId(2));
        assert!(m.reason.contains("node 1 load 3.00"), "{}", m.reason);
    }

    #[test]
    fn balanced_or_underloaded_nodes_do_nothing() {
        let mut b = Balancer::default();
        let even = [node(1, 1, 1.0), node(2, 1, 1.0)];
        assert!(b.decide(NodeId(1), &even, &[busy(1)], 0.0, false).is_none());
        let light = [node(1, 4, 2.0), node(2, 4, 0.0)];
        assert!(b
            .decide(NodeId(1), &light, &[busy(1), busy(2)], 0.0, false)
            .is_none());
    }

    #[test]
    fn a_move_that_only_swaps_the_imbalance_is_not_made() {
        // 2 busy here, 1 busy there, one CPU each: moving one just swaps the roles.
        let nodes = [node(1, 1, 2.0), node(2, 1, 1.0)];
        let mut b = Balancer::default();
        assert!(b
            .decide(NodeId(1), &nodes, &[busy(1), busy(2)], 0.0, false)
            .is_none());
    }

    #[test]
    fn newcomers_stay_and_moves_are_spaced() {
        let nodes = [node(1, 1, 3.0), node(2, 1, 0.0)];
        let mut b = Balancer::default();
        let fresh = LocalProc {
            gpid: 9,
            cpu: 1.0,
            resident_s: 1.0,
        };
        assert!(b.decide(NodeId(1), &nodes, &[fresh], 0.0, false).is_none());
        assert!(b
            .decide(NodeId(1), &nodes, &[busy(1)], 10.0, false)
            .is_some());
        assert!(
            b.decide(NodeId(1), &nodes, &[busy(2)], 11.0, false)
                .is_none(),
            "cooldown"
        );
        assert!(
            b.decide(NodeId(1), &nodes, &[busy(2)], 11.0, true)
                .is_some(),
            "forced"
        );
        assert!(b
            .decide(NodeId(1), &nodes, &[busy(3)], 20.0, false)
            .is_some());
    }

    #[test]
    fn disabled_balancer_only_acts_when_forced() {
        let nodes = [node(1, 1, 3.0), node(2, 1, 0.0)];
        let mut b = Balancer::new(BalanceConfig {
            enabled: false,
            ..BalanceConfig::default()
        });
        assert!(b
            .decide(NodeId(1), &nodes, &[busy(1)], 50.0, false)
            .is_none());
        assert!(b
            .decide(NodeId(1), &nodes, &[busy(1)], 50.0, true)
            .is_some());
    }
}
