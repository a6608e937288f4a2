//! The membership core in the deterministic simulation (simulated clock, lossy network, no
//! sockets) at 100, 1,000 and 10,000 members: failure detection time, false death verdicts,
//! bytes per member and second, and what the simulation costs in time and memory. Times are
//! given as wall and CPU seconds: the simulation is one thread, so on a busy machine its CPU
//! time is what it would take alone.
//!
//! Run: `cargo bench -p ssi-core --bench membership_sim [-- --sizes 100,1000,10000
//! --trials 20,20,3 --loss 0.01,0.05 --seed 1 --bootstrap auto]`.
//!
//! For each size the members first meet with no loss: up to 2,000 members (`--bootstrap auto`)
//! they join one after the other through member 0 by the announce path (full-state feed in
//! datagrams, O(n²) datagrams in all); above, every member adopts the full membership through
//! `Membership::apply`, as a daemon does with its seed's snapshot over TCP, and probe data
//! spreads by publication. Then for each loss rate: a steady window (20 s, 10 s above 2,000
//! members) for bytes per member and second, then `trials` SIGKILL-like stops of random
//! members, each timed to the first `dead` verdict anywhere and to the moment every live member
//! has one. False deaths are `dead` verdicts against members that were running, counted over
//! the whole phase (per observer: one wrong verdict seen by 100 members counts 100).
//!
//! Simulating 10,000 members means 10⁸ member entries touched at random: the run is bound by
//! memory latency, not by computation.
//!
//! References, printed as ratios: the configured lower bound of a verdict,
//! `2 * probe_period + suspect_to_down` (a member must fail a probe and its retry, then stay
//! suspect at least that long once confirmed), and the smallest size measured in the same run
//! (how detection time and traffic scale).

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use ssi_core::membership::sim::{Bootstrap, Record, Sim, SimConfig};
use ssi_core::membership::MemberEvent;
use ssi_core::NodeIdentity;

struct Args {
    sizes: Vec<usize>,
    trials: Vec<usize>,
    losses: Vec<f64>,
    seed: u64,
    /// None: announce up to 2,000 members, snapshot above.
    bootstrap: Option<Bootstrap>,
}

/// Largest size that joins by the announce path with `--bootstrap auto`.
const ANNOUNCE_UP_TO: usize = 2000;

fn list<T: std::str::FromStr>(flag: &str, v: &str) -> Result<Vec<T>, String> {
    v.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| format!("{flag}: {x:?} is not a valid value"))
        })
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sizes: vec![100, 1000, 10_000],
        trials: vec![20, 20, 3],
        losses: vec![0.01, 0.05],
        seed: 1,
        bootstrap: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // cargo bench passes --bench to harness-less benchmarks.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag}: missing value"))?;
        match flag.as_str() {
            "--sizes" => a.sizes = list(&flag, &value)?,
            "--trials" => a.trials = list(&flag, &value)?,
            "--loss" => a.losses = list(&flag, &value)?,
            "--seed" => a.seed = list(&flag, &value)?.first().copied().unwrap_or(1),
            "--bootstrap" => {
                a.bootstrap = match value.as_str() {
                    "auto" => None,
                    "announce" => Some(Bootstrap::Announce),
                    "snapshot" => Some(Bootstrap::Snapshot),
                    v => {
                        return Err(format!(
                            "--bootstrap: {v:?} is not auto, announce or snapshot"
                        ))
                    }
                }
            }
            _ => {
                return Err(format!(
                    "unknown argument {flag:?} (expected --sizes, --trials, --loss, --seed, \
                     --bootstrap)"
                ))
            }
        }
    }
    if a.sizes.iter().any(|&n| !(3..=65535).contains(&n)) {
        return Err("--sizes: each size must be in 3..=65535".into());
    }
    if a.losses.iter().any(|l| !(0.0..0.5).contains(l)) {
        return Err("--loss: each rate must be in [0, 0.5)".into());
    }
    if a.trials.is_empty() || a.trials.contains(&0) {
        return Err("--trials: at least 1 per size".into());
    }
    Ok(a)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Wall and CPU time since it started.
struct Stopwatch {
    wall: Instant,
    cpu: f64,
}

fn cpu_s() -> f64 {
    procfs::process::Process::myself()
        .and_then(|p| p.stat())
        .map_or(f64::NAN, |s| {
            (s.utime + s.stime) as f64 / procfs::ticks_per_second() as f64
        })
}

impl Stopwatch {
    fn start() -> Self {
        Stopwatch {
            wall: Instant::now(),
            cpu: cpu_s(),
        }
    }

    /// (wall, CPU) seconds.
    fn elapsed(&self) -> (f64, f64) {
        (self.wall.elapsed().as_secs_f64(), cpu_s() - self.cpu)
    }
}

fn rss_mib() -> f64 {
    procfs::process::Process::myself()
        .and_then(|p| p.status())
        .ok()
        .and_then(|s| s.vmrss)
        .map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

/// Results of one loss rate at one size.
struct Phase {
    loss: f64,
    first: Vec<f64>,
    all: Vec<f64>,
    missed: usize,
    false_deaths: usize,
    member_hours: f64,
    bytes_per_member_s: f64,
    packets_per_member_s: f64,
    wall: (f64, f64),
}

struct SizeRun {
    n: usize,
    bootstrap: Bootstrap,
    join_sim_s: f64,
    join_wall: (f64, f64),
    rss_mib: f64,
    /// Share of (observer, member) pairs for which the observer holds probe data, sampled.
    info_coverage: f64,
    phases: Vec<Phase>,
}

const S: fn(u64) -> Duration = Duration::from_secs;

/// Runs in 100 ms steps until `done` or `limit` simulated time has passed.
fn run_until(sim: &mut Sim, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
    let end = sim.now() + limit;
    while sim.now() < end {
        sim.run_for(Duration::from_millis(100));
        if done(sim) {
            return true;
        }
    }
    false
}

fn everyone_joined(sim: &Sim) -> bool {
    let n = sim.len();
    (0..n).all(|i| sim.core(i).active_members() == n - 1)
}

/// Dead verdicts against identities that were not stopped, from `seen[from..]`.
fn false_deaths(sim: &Sim, from: usize, stopped: &[NodeIdentity]) -> usize {
    sim.seen[from..]
        .iter()
        .filter(|s| matches!(&s.event, MemberEvent::Dead(id) if !stopped.contains(id)))
        .count()
}

/// Share of pairs with probe data, over 20 observers.
fn info_coverage(sim: &Sim) -> f64 {
    let n = sim.len();
    let (mut known, mut all) = (0usize, 0usize);
    for observer in (0..n).step_by((n / 20).max(1)).filter(|&i| sim.is_up(i)) {
        for row in sim.core(observer).view().iter().filter(|r| !r.local) {
            all += 1;
            known += usize::from(row.name != "?");
        }
    }
    known as f64 / all.max(1) as f64
}

fn run_size(n: usize, trials: usize, args: &Args) -> SizeRun {
    let mut cfg = SimConfig::new(n, args.seed);
    cfg.publish_info = true;
    cfg.record = Record::Verdicts;
    cfg.gossip.expected_size = u32::try_from(n).unwrap_or(u32::MAX);
    cfg.bootstrap = args.bootstrap.unwrap_or(if n <= ANNOUNCE_UP_TO {
        Bootstrap::Announce
    } else {
        Bootstrap::Snapshot
    });
    // Joins arrive at 100 a second at most, one every probe period at least.
    let spacing = Duration::from_millis((10_000 / n as u64).clamp(10, 500));
    cfg.join_spacing = spacing;
    let bootstrap = cfg.bootstrap;
    let wall = Stopwatch::start();
    let mut sim = Sim::new(cfg);
    if bootstrap == Bootstrap::Announce {
        sim.run_for(spacing * n as u32);
    }
    let joined = run_until(&mut sim, S(600), everyone_joined);
    assert!(joined, "{n} members did not all join within 600 s");
    let join_sim_s = sim.now().as_secs_f64();
    // Let the join news and the first probe data spread.
    sim.run_for(S(5));
    let join_wall = wall.elapsed();
    let steady = S(if n <= ANNOUNCE_UP_TO { 20 } else { 10 });

    let mut rng = SmallRng::seed_from_u64(args.seed ^ 0x5eed);
    let mut stopped: Vec<NodeIdentity> = Vec::new();
    let mut phases = Vec::new();
    for &loss in &args.losses {
        let wall = Stopwatch::start();
        sim.set_loss(loss);
        let phase_start = sim.now();
        let seen_start = sim.seen.len();
        sim.run_for(S(5));
        let (b0, p0, t0) = (sim.bytes_sent, sim.packets_sent, sim.now());
        sim.run_for(steady);
        let secs = (sim.now() - t0).as_secs_f64();
        let live = (0..n).filter(|&i| sim.is_up(i)).count() as f64;
        let bytes_per_member_s = (sim.bytes_sent - b0) as f64 / live / secs;
        let packets_per_member_s = (sim.packets_sent - p0) as f64 / live / secs;
        let (mut first, mut all, mut missed) = (Vec::new(), Vec::new(), 0);
        for _ in 0..trials {
            let victim = loop {
                let v = rng.random_range(1..n);
                if sim.is_up(v) {
                    break v;
                }
            };
            let id = sim.core(victim).identity().clone();
            let observers = (0..n).filter(|&i| i != victim && sim.is_up(i)).count();
            let from = sim.seen.len();
            sim.kill(victim);
            stopped.push(id.clone());
            let killed_at = sim.now();
            let mut first_at = None;
            let mut knowers = std::collections::HashSet::new();
            let mut scanned = from;
            let done = run_until(&mut sim, S(60), |sim| {
                for s in &sim.seen[scanned..] {
                    if s.event == MemberEvent::Dead(id.clone()) {
                        first_at.get_or_insert(s.at);
                        knowers.insert(s.observer);
                    }
                }
                scanned = sim.seen.len();
                knowers.len() >= observers
            });
            match first_at {
                Some(t) => first.push((t - killed_at).as_secs_f64()),
                None => missed += 1,
            }
            if done {
                all.push((sim.now() - killed_at).as_secs_f64());
            }
            sim.run_for(S(2));
        }
        let member_hours = live * (sim.now() - phase_start).as_secs_f64() / 3600.0;
        first.sort_by(f64::total_cmp);
        all.sort_by(f64::total_cmp);
        phases.push(Phase {
            loss,
            first,
            all,
            missed,
            false_deaths: false_deaths(&sim, seen_start, &stopped),
            member_hours,
            bytes_per_member_s,
            packets_per_member_s,
            wall: wall.elapsed(),
        });
    }
    SizeRun {
        n,
        bootstrap,
        join_sim_s,
        join_wall,
        rss_mib: rss_mib(),
        info_coverage: info_coverage(&sim),
        phases,
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("membership_sim: {e}");
            std::process::exit(2);
        }
    };
    let g = ssi_core::config::GossipConfig::default();
    println!(
        "membership simulation: probe {} ms, rtt {} ms, suspect {} ms (x{} unconfirmed), gossip {} ms x{}, \
         latency 0.1-0.3 ms, seed {}",
        g.probe_period.as_millis(),
        g.probe_rtt.as_millis(),
        g.suspect_to_down.as_millis(),
        g.suspect_max_factor,
        g.gossip_interval.as_millis(),
        g.gossip_fanout,
        args.seed
    );
    let mut runs: Vec<SizeRun> = Vec::new();
    for (i, &n) in args.sizes.iter().enumerate() {
        let trials = args
            .trials
            .get(i)
            .or(args.trials.last())
            .copied()
            .unwrap_or(1);
        let run = run_size(n, trials, &args);
        let how = match run.bootstrap {
            Bootstrap::Announce => "joined one by one (announce)",
            Bootstrap::Snapshot => "adopted a full snapshot (apply)",
        };
        println!(
            "  {n:>6} members {how}: everyone knew everyone after {:.1} s simulated ({:.1} s wall, \
             {:.1} s CPU); at the end: RSS {:.0} MiB, probe data held for {:.1}% of members",
            run.join_sim_s,
            run.join_wall.0,
            run.join_wall.1,
            run.rss_mib,
            run.info_coverage * 100.0
        );
        runs.push(run);
    }
    println!();
    println!(
        "| members | loss | kills | first dead p50 / p99 | all know p50 / p99 | vs bound | vs {} | false deaths (per member-hour) | bytes/s/member | vs {} | datagrams/s/member | wall (CPU) |",
        runs[0].n, runs[0].n
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for run in &runs {
        let bound = (g.probe_period * 2 + g.suspect_to_down).as_secs_f64();
        for p in &run.phases {
            let reference = runs[0].phases.iter().find(|r| r.loss == p.loss);
            let p50 = percentile(&p.first, 50.0);
            let ref_p50 = reference.map_or(f64::NAN, |r| percentile(&r.first, 50.0));
            let ref_bytes = reference.map_or(f64::NAN, |r| r.bytes_per_member_s);
            println!(
                "| {} | {:.0}% | {}{} | {:.2} s / {:.2} s | {:.2} s / {:.2} s | {:.2}x | {:.2}x | {} ({:.3}) | {:.0} | {:.2}x | {:.1} | {:.1} s ({:.1} s) |",
                run.n,
                p.loss * 100.0,
                p.first.len(),
                if p.missed > 0 { format!(" ({} missed)", p.missed) } else { String::new() },
                p50,
                percentile(&p.first, 99.0),
                percentile(&p.all, 50.0),
                percentile(&p.all, 99.0),
                p50 / bound,
                p50 / ref_p50,
                p.false_deaths,
                p.false_deaths as f64 / p.member_hours,
                p.bytes_per_member_s,
                p.bytes_per_member_s / ref_bytes,
                p.packets_per_member_s,
                p.wall.0,
                p.wall.1,
            );
        }
    }
}
