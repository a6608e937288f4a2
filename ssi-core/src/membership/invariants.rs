//! Invariants of the protocol, one per test, checked on every member's view every 100 ms of a
//! lossy simulation with crashes, restarts, leaves and a partition.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::sim::{Sim, SimConfig};
use super::MAX_PACKET;
use crate::node::NodeId;
use crate::view::{MemberState, NodeView};

const MEMBERS: usize = 24;
const MS: fn(u64) -> Duration = Duration::from_millis;

/// What happens, and when (ms): crashes, a quick restart, a slow one, leaves, a partition.
enum Churn {
    Kill(usize),
    Restart(usize),
    Leave(usize),
    Isolate(usize, bool),
}

const SCRIPT: &[(u64, Churn)] = &[
    (5_000, Churn::Kill(3)),
    (6_000, Churn::Leave(7)),
    (8_000, Churn::Isolate(11, true)),
    (9_000, Churn::Kill(15)),
    (9_300, Churn::Restart(15)),
    (16_000, Churn::Isolate(11, false)),
    (18_000, Churn::Restart(3)),
    (20_000, Churn::Leave(20)),
    (21_000, Churn::Kill(21)),
];
const CHURN_ENDS: u64 = 21_000;
const END: u64 = 45_000;

/// Runs the churn script with 5% loss, calling `check` every 100 ms of simulated time.
fn run(mut check: impl FnMut(&Sim)) -> Sim {
    let mut cfg = SimConfig::new(MEMBERS, 77);
    cfg.loss = 0.05;
    cfg.publish_info = true;
    let mut sim = Sim::new(cfg);
    let mut script = SCRIPT.iter().peekable();
    let mut t = 0;
    while t < END {
        t += 100;
        sim.run_until(MS(t));
        while let Some((_, what)) = script.next_if(|(at, _)| *at <= t) {
            match *what {
                Churn::Kill(i) => sim.kill(i),
                Churn::Restart(i) => sim.restart(i, 0),
                Churn::Leave(i) => sim.leave(i),
                Churn::Isolate(i, on) => sim.isolate(i, on),
            }
        }
        check(&sim);
    }
    sim
}

/// Every running member's view.
fn views(sim: &Sim) -> impl Iterator<Item = (usize, Vec<NodeView>)> + '_ {
    (0..sim.len())
        .filter(|&i| sim.is_up(i))
        .map(|i| (i, sim.core(i).view()))
}

#[test]
fn incarnation_never_decreases() {
    let mut highest: HashMap<(usize, NodeId, u64), u16> = HashMap::new();
    run(|sim| {
        for (observer, view) in views(sim) {
            for r in view {
                let h = highest.entry((observer, r.id, r.gen)).or_insert(0);
                assert!(
                    r.incarnation >= *h,
                    "member {observer}: node {} gen {} went from incarnation {h} to {}",
                    r.id,
                    r.gen,
                    r.incarnation
                );
                *h = r.incarnation;
            }
        }
    });
}

/// Within one run of the observer: a node declared dead itself forgets its own verdicts when it
/// renews (they were likely made while it was cut off) and starts its new run afresh.
#[test]
fn a_dead_identity_never_comes_back_alive() {
    let mut over: HashSet<(usize, u64, NodeId, u64)> = HashSet::new();
    run(|sim| {
        for (observer, view) in views(sim) {
            let run = sim.core(observer).identity().gen;
            for r in view.iter().filter(|r| !r.local) {
                let key = (observer, run, r.id, r.gen);
                if r.state.is_active() {
                    assert!(
                        !over.contains(&key),
                        "member {observer} (gen {run}): node {} gen {} is {} again",
                        r.id,
                        r.gen,
                        r.state
                    );
                } else {
                    over.insert(key);
                }
            }
        }
    });
}

#[test]
fn a_generation_never_goes_back() {
    let mut newest: HashMap<(usize, NodeId), u64> = HashMap::new();
    run(|sim| {
        for (observer, view) in views(sim) {
            for r in view {
                let g = newest.entry((observer, r.id)).or_insert(0);
                assert!(
                    r.gen >= *g,
                    "member {observer}: node {} back to gen {}",
                    r.id,
                    r.gen
                );
                *g = r.gen;
            }
        }
    });
}

#[test]
fn every_member_eventually_agrees_with_reality() {
    let sim = run(|_| {});
    const { assert!(END - CHURN_ENDS >= 20_000, "time to settle") };
    let truth = |i: usize| {
        if sim.is_up(i) {
            (sim.core(i).identity().gen, MemberState::Alive)
        } else if [7, 20].contains(&i) {
            (sim.core(i).identity().gen, MemberState::Left)
        } else {
            (sim.core(i).identity().gen, MemberState::Dead)
        }
    };
    for (observer, view) in views(&sim) {
        assert_eq!(view.len(), MEMBERS, "member {observer}");
        for (i, r) in view.iter().enumerate() {
            // A suspicion is a passing doubt, not a verdict: suspects count as alive.
            let state = match r.state {
                MemberState::Suspect => MemberState::Alive,
                s => s,
            };
            assert_eq!(
                (r.gen, state),
                truth(i),
                "member {observer} about node {}",
                r.id
            );
            assert_ne!(
                r.name, "?",
                "member {observer} lacks node {}'s probe data",
                r.id
            );
        }
    }
}

#[test]
fn no_datagram_exceeds_max_packet_or_is_refused() {
    let sim = run(|_| {});
    assert!(
        sim.largest_datagram <= MAX_PACKET,
        "{}",
        sim.largest_datagram
    );
    assert!(
        sim.largest_datagram > MAX_PACKET / 2,
        "feeds fill datagrams"
    );
    assert_eq!(sim.refused, 0);
}
