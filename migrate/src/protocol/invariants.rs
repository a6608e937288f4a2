//! Invariants of the migration protocol, one per test, each checked on every run of the fault
//! matrix: for several seeds, a run without fault, then one run for every protocol step of it
//! and every kind of fault, the fault put in at that step ([`sim::fault_kinds`]: the source or
//! the target crashing, with or without a restart; cuts between them, short and long; the data
//! stream breaking; a message lost, delayed or repeated; the owner killing the process).
//!
//! `cargo test -p migrate` runs a few seeds (a few seconds); set `SSI_MIGRATION_SIM_SEEDS` to
//! run more (`SSI_MIGRATION_SIM_SEEDS=500 cargo test -p migrate --release protocol::invariants
//! -- --nocapture` prints the figures).

use std::sync::OnceLock;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::sim::{fault_kinds, Copy, Fault, Sim, SimConfig};
use super::{Outcome, TargetOutcome};

/// Seeds of a `cargo test` run.
const SEEDS: u64 = 6;

/// Figures of one pass over the fault matrix.
#[derive(Debug, Default)]
struct Figures {
    migrations: u64,
    faults: u64,
    steps: u64,
    moved: u64,
    stayed: u64,
    lost: u64,
    ended: u64,
}

impl Figures {
    fn count(&mut self, sim: &Sim) {
        self.migrations += 1;
        self.steps += sim.steps() as u64;
        match &sim.outcome {
            Some(Outcome::Moved) => self.moved += 1,
            Some(Outcome::Stayed(_)) => self.stayed += 1,
            Some(Outcome::Ended) => self.ended += 1,
            Some(Outcome::Lost(_)) => self.lost += 1,
            None => {}
        }
    }
}

/// The invariants, each with what broke it (first few), and the pass's figures.
#[derive(Debug, Default)]
struct Results {
    figures: Figures,
    broken: std::collections::BTreeMap<&'static str, (u64, Vec<String>)>,
}

impl Results {
    fn broke(&mut self, invariant: &'static str, what: String) {
        let (n, first) = self.broken.entry(invariant).or_default();
        *n += 1;
        if first.len() < 5 {
            first.push(what);
        }
    }

    fn assert_holds(&self, invariant: &str) {
        assert!(self.figures.faults > 0, "{:?}", self.figures);
        if let Some((n, first)) = self.broken.get(invariant) {
            panic!(
                "{invariant}: broken {n} time(s), first:\n{}",
                first.join("\n")
            );
        }
    }
}

fn seeds() -> u64 {
    std::env::var("SSI_MIGRATION_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS)
}

/// The fault matrix, run once for all the tests of this file.
fn results() -> &'static Results {
    static RESULTS: OnceLock<Results> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let started = Instant::now();
        let mut r = Results::default();
        for seed in 0..seeds() {
            let base = one_run(seed, None, &mut r);
            let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
            for at in 0..base {
                for fault in fault_kinds(&mut rng) {
                    one_run(seed, Some((at, fault)), &mut r);
                    r.figures.faults += 1;
                }
            }
        }
        let f = &r.figures;
        eprintln!(
            "migration simulation: {} migrations, {} with a fault, {} protocol steps, in {:.1?} \
             (moved {}, stayed {}, ended {}, lost {})",
            f.migrations,
            f.faults,
            f.steps,
            started.elapsed(),
            f.moved,
            f.stayed,
            f.ended,
            f.lost
        );
        r
    })
}

/// One migration of `seed`, with `fault` put in at its step; checks every invariant; returns
/// its number of steps.
fn one_run(seed: u64, fault: Option<(usize, Fault)>, r: &mut Results) -> usize {
    let mut sim = Sim::new(SimConfig::new(seed));
    if let Some((at, f)) = fault {
        sim.inject(at, f);
    }
    let what = |sim: &Sim| format!("seed {seed}, {fault:?}, at {:?}", sim.now());
    let mut during: Vec<(&'static str, String)> = Vec::new();
    sim.run(|sim| {
        if during.len() > 2 {
            return;
        }
        if running(sim) > 1 {
            during.push((TWO_COPIES, format!("{}: {:?}", what(sim), sim.copies())));
        }
        if let [.., a, b] = sim.consumed() {
            if a >= b {
                during.push((INPUT_ORDER, format!("{}: read {a} then {b}", what(sim))));
            }
        }
    });
    for (invariant, w) in during {
        r.broke(invariant, w);
    }
    let w = what(&sim);
    for (invariant, check) in END_CHECKS {
        if let Err(e) = check(&sim) {
            r.broke(invariant, format!("{w}: {e}"));
        }
    }
    r.figures.count(&sim);
    sim.steps()
}

const TWO_COPIES: &str = "the tree never runs on two nodes";
const INPUT_ORDER: &str = "input is never read twice or out of order";

type EndCheck = fn(&Sim) -> Result<(), String>;

const END_CHECKS: [(&str, EndCheck); 4] = [
    (
        "the tree ends on one node unless killed or lost",
        ends_on_one_node,
    ),
    ("nothing half-done is left", nothing_half_done),
    (
        "every input byte is read once when no node died",
        input_whole,
    ),
    ("the user is told what happened", user_told),
];

fn running(sim: &Sim) -> usize {
    sim.copies().iter().filter(|c| **c == Copy::Running).count()
}

/// A run in which the tree may be gone without its owner: a node died, or the two were cut
/// off from each other for longer than a target holds a tree for a source it sees down.
fn may_be_lost(sim: &Sim) -> bool {
    sim.crashed(0) || sim.crashed(1) || sim.longest_cut() >= sim.config().timeouts.hold
}

fn ends_on_one_node(sim: &Sim) -> Result<(), String> {
    let n = running(sim);
    let ok = if sim.owner_killed() {
        n == 0
    } else {
        n == 1 || may_be_lost(sim)
    };
    ok.then_some(()).ok_or_else(|| {
        format!(
            "{n} running (owner killed: {}); copies {:?}, told {:?}, target {:?}",
            sim.owner_killed(),
            sim.copies(),
            sim.outcome,
            sim.target_outcome
        )
    })
}

fn nothing_half_done(sim: &Sim) -> Result<(), String> {
    match sim
        .copies()
        .iter()
        .position(|c| !matches!(c, Copy::None | Copy::Running))
    {
        Some(i) => Err(format!(
            "node {i} is left with {:?} ({:?}, {:?})",
            sim.copies()[i],
            sim.outcome,
            sim.target_outcome
        )),
        None => Ok(()),
    }
}

fn input_whole(sim: &Sim) -> Result<(), String> {
    if sim.owner_killed() || may_be_lost(sim) {
        return Ok(());
    }
    let want: Vec<u32> = (0..sim.sent()).collect();
    if sim.consumed() == &want[..] {
        return Ok(());
    }
    let missing: Vec<u32> = want
        .iter()
        .filter(|b| !sim.consumed().contains(b))
        .copied()
        .collect();
    Err(format!(
        "read {} of {} bytes, missing {missing:?} ({:?})",
        sim.consumed().len(),
        want.len(),
        sim.outcome
    ))
}

fn user_told(sim: &Sim) -> Result<(), String> {
    if sim.crashed(0) {
        // the home finds out where the process is (see the runtime), not the source
        return Ok(());
    }
    let Some(told) = sim.outcome.clone() else {
        return Err("the source never told the user".into());
    };
    let [at_source, at_target] = sim.copies().map(|c| c == Copy::Running);
    let wrong = match &told {
        Outcome::Moved => at_source,
        Outcome::Stayed(_) | Outcome::Ended => at_target,
        // a target only cut off (not dead) may get the commit once the cut heals
        Outcome::Lost(_) => at_source || (at_target && sim.crashed(1)),
    };
    let moved_but_not_there = told == Outcome::Moved
        && !sim.owner_killed()
        && !may_be_lost(sim)
        && (!at_target || sim.target_outcome != Some(TargetOutcome::Running));
    if wrong || moved_but_not_there {
        return Err(format!("told {told:?}, copies {:?}", sim.copies()));
    }
    Ok(())
}

#[test]
fn the_tree_never_runs_on_two_nodes() {
    results().assert_holds(TWO_COPIES);
}

#[test]
fn input_is_never_read_twice_or_out_of_order() {
    results().assert_holds(INPUT_ORDER);
}

#[test]
fn the_tree_ends_on_one_node_unless_killed_or_lost() {
    results().assert_holds(END_CHECKS[0].0);
}

#[test]
fn nothing_half_done_is_left() {
    results().assert_holds(END_CHECKS[1].0);
}

#[test]
fn every_input_byte_is_read_once_when_no_node_died() {
    results().assert_holds(END_CHECKS[2].0);
}

#[test]
fn the_user_is_told_what_happened() {
    results().assert_holds(END_CHECKS[3].0);
}

#[test]
fn the_matrix_covers_every_outcome() {
    let f = &results().figures;
    assert!(f.migrations >= 1_000, "{f:?}");
    assert!(
        f.moved > 0 && f.stayed > 0 && f.ended > 0 && f.lost > 0,
        "{f:?}"
    );
}
