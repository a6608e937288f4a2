//! Invariants of the protocol, one per test, checked on every member's view every 100 ms of a
//! lossy simulation with crashes, restarts, leaves and a partition.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::sim::{Sim, SimConfig};
use super::{MemberEvent, MAX_PACKET};
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

/// Members stopped (killed, left) or cut off at some point of the script.
fn stopped_or_cut_off() -> HashSet<usize> {
    SCRIPT
        .iter()
        .filter_map(|(_, c)| match *c {
            Churn::Kill(i) | Churn::Leave(i) | Churn::Isolate(i, true) => Some(i),
            _ => None,
        })
        .collect()
}

/// Confirmations make suspicions short, so they must only ever come from probes that really
/// failed: at 5% loss no running, connected member is declared dead by a connected one.
#[test]
fn only_stopped_or_cut_off_members_are_declared_dead() {
    let sim = run(|_| {});
    let gone = stopped_or_cut_off();
    let cut: HashSet<usize> = SCRIPT
        .iter()
        .filter_map(|(_, c)| match *c {
            Churn::Isolate(i, true) => Some(i),
            _ => None,
        })
        .collect();
    for s in sim.seen.iter().filter(|s| !cut.contains(&s.observer)) {
        if let MemberEvent::Dead(id) = &s.event {
            let index = usize::from(id.id.0) - 1;
            assert!(
                gone.contains(&index),
                "member {} declared running member {index} dead at {:?}",
                s.observer,
                s.at
            );
        }
    }
}

/// A crash is confirmed by others' probes and declared dead by every running member within
/// 3 s: well below the longest (unconfirmed) suspicion, so the fast path must have worked.
#[test]
fn every_crash_is_known_to_every_member_within_3_s() {
    let mut crashes = Vec::new();
    let sim = run(|sim| {
        for &(at, ref c) in SCRIPT {
            if let Churn::Kill(i) = *c {
                if sim.now() == MS(at) {
                    crashes.push((at, sim.core(i).identity().clone()));
                }
            }
        }
    });
    assert_eq!(crashes.len(), 3);
    let cut = stopped_or_cut_off();
    for (at, victim) in crashes {
        let index = usize::from(victim.id.0) - 1;
        // Member 15 restarts 300 ms after its crash: its old run may be replaced first.
        if index == 15 {
            continue;
        }
        for observer in (0..MEMBERS).filter(|o| !cut.contains(o) && *o != index) {
            let dead = sim
                .seen
                .iter()
                .find(|s| s.observer == observer && s.event == MemberEvent::Dead(victim.clone()));
            let took = dead.map(|s| s.at - MS(at));
            assert!(
                took.is_some_and(|t| t <= MS(3000)),
                "member {observer} learnt of member {index}'s crash after {took:?}"
            );
        }
    }
}
