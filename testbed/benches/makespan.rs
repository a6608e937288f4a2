//! Makespan of a batch of CPU-bound jobs of uneven length on 3 testbed nodes, each limited to
//! 0.6 CPU (a cgroup per node, so that the nodes behave like three small machines on this
//! one): all on one node, static round-robin, least-loaded placement alone, and least-loaded
//! placement with re-balancing by live migration. Each run submits the jobs in a new shuffled
//! order (the same order for every strategy of that run). Reference: the ideal makespan, total
//! CPU work / total CPU of the nodes.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p testbed --bench makespan
//! [-- RUNS]` (default 5; root).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use testbed::stats::Spread;
use testbed::{NodeOptions, Testbed};

/// CPU milliseconds of each job: three long ones and six short ones.
const JOBS_MS: [u32; 9] = [4000, 3000, 2000, 500, 500, 500, 500, 500, 500];
const QUOTA: f64 = 0.6;

/// A way to place the batch: its `[sched]` lines, and `--node` for job `i` if forced.
struct Strategy {
    name: &'static str,
    sched: &'static [&'static str],
    node_of: fn(usize) -> Option<usize>,
}

const STRATEGIES: [Strategy; 4] = [
    Strategy {
        name: "all on node 1",
        sched: &["balance = false"],
        node_of: |_| Some(1),
    },
    Strategy {
        name: "static round-robin",
        sched: &["policy = \"round-robin\"", "balance = false"],
        node_of: |_| None,
    },
    Strategy {
        name: "least-loaded, no re-balancing",
        sched: &["policy = \"least-loaded\"", "balance = false"],
        node_of: |_| None,
    },
    Strategy {
        name: "least-loaded + re-balancing",
        sched: &[
            "policy = \"least-loaded\"",
            "balance = true",
            "balance_interval_ms = 500",
            "min_residence_ms = 1000",
            "balance_cooldown_ms = 1500",
        ],
        node_of: |_| None,
    },
];

fn moves(tb: &Testbed) -> usize {
    let docs = common::ssi(tb, 1, &["sched", "show", "--json"]).unwrap_or_default();
    docs.as_array().map_or(0, |a| {
        a.iter()
            .flat_map(|d| d["decisions"].as_array().cloned().unwrap_or_default())
            .filter(|d| d["kind"] == "move")
            .count()
    })
}

/// Runs the batch in `order` with strategy `s`; returns (makespan s, moves).
fn batch(s: &Strategy, order: &[u32], burn: &str, run: usize) -> Result<(f64, usize)> {
    let dir = std::env::temp_dir().join(format!("ssi-bench-makespan-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = NodeOptions {
        cpu_quota: Some(QUOTA),
        sched: s.sched.iter().map(|l| l.to_string()).collect(),
        ..Default::default()
    };
    let tb = Testbed::up_with(&dir, 3, false, opts)?;
    let t = Instant::now();
    let mut children = Vec::new();
    for (i, ms) in order.iter().enumerate() {
        let mut c = Command::new(tb.bin("ssi"));
        c.env("SSI_SOCKET", tb.socket(1)).arg("run");
        if let Some(n) = (s.node_of)(i) {
            c.args(["--node", &n.to_string()]);
        }
        c.args(["--", burn, &ms.to_string()]).stdout(Stdio::null());
        children.push(c.spawn()?);
        // Jobs arrive one after the other, as a script would submit them: placement counts
        // the previous one as pending load.
        std::thread::sleep(Duration::from_millis(50));
    }
    for mut c in children {
        let st = c.wait()?;
        ensure!(st.success(), "{}: a job failed: {st}", s.name);
    }
    let makespan = t.elapsed().as_secs_f64();
    let n = moves(&tb);
    drop(tb);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((makespan, n))
}

fn main() -> Result<()> {
    let runs: usize = common::positional()
        .first()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    if !common::root_or_skip("hosting processes") {
        return Ok(());
    }
    let work = std::env::temp_dir().join(format!("ssi-bench-burn-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let burn = common::cc("tests/progs/burn.c", &work)?;
    let burn = burn.to_str().unwrap_or_default().to_string();
    let total_s: f64 = JOBS_MS.iter().map(|&m| f64::from(m) / 1000.0).sum();
    let ideal = total_s / (3.0 * QUOTA);
    let mut rng = SmallRng::seed_from_u64(9);
    let mut results: Vec<(Vec<f64>, Vec<f64>)> =
        STRATEGIES.iter().map(|_| Default::default()).collect();
    let mut orders = Vec::new();
    for run in 0..runs {
        let mut order = JOBS_MS.to_vec();
        order.shuffle(&mut rng);
        for (s, (spans, mv)) in STRATEGIES.iter().zip(&mut results) {
            let (m, n) = batch(s, &order, &burn, run)?;
            spans.push(m);
            mv.push(n as f64);
        }
        orders.push(order);
    }
    println!(
        "makespan of {} CPU-bound jobs ({total_s:.1} CPU-s in all, uneven) on 3 nodes of {QUOTA} CPU \
         each, {runs} runs with shuffled orders; reference: ideal {ideal:.1} s",
        JOBS_MS.len()
    );
    for (i, o) in orders.iter().enumerate() {
        println!("run {}: job order (CPU ms) {o:?}", i + 1);
    }
    println!("| strategy | makespan s, median (min-max) | vs ideal | moves, median (min-max) |");
    println!("|---|---|---|---|");
    for (s, (spans, mv)) in STRATEGIES.iter().zip(&results) {
        if let (Some(m), Some(n)) = (Spread::of(spans), Spread::of(mv)) {
            println!(
                "| {} | {} | {:.2}x | {} |",
                s.name,
                m.show(1),
                m.median / ideal,
                n.show(0)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
