//! Placement decisions per second with 100 and 10,000 simulated nodes, for each built-in
//! policy; reference: one plain scan of the same samples (reading each node's load once), the
//! least work any placement over all nodes must do.
//!
//! Run: `cargo bench -p scheduler --bench placement`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use scheduler::{registry, NodeSample, Request};
use ssi_core::NodeId;

fn samples(n: usize, rng: &mut SmallRng) -> Vec<NodeSample> {
    (0..n)
        .map(|i| NodeSample {
            id: NodeId(u16::try_from(i + 1).unwrap_or(u16::MAX)),
            name: format!("n{i}"),
            cpus: rng.random_range(1..=64),
            mem_total_bytes: 64 << 30,
            mem_free_bytes: rng.random_range(0..64u64 << 30),
            load: rng.random_range(0.0..64.0),
            procs: rng.random_range(0..500),
            labels: BTreeMap::new(),
            pending: 0,
        })
        .collect()
}

/// Calls `f` repeatedly for about `budget`; returns calls per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let mut rng = SmallRng::seed_from_u64(7);
    let req = Request::default();
    println!("placement decisions per second (one decision = one choice among all nodes)");
    println!(
        "{:>7} {:<14} {:>14} {:>12}",
        "nodes", "policy", "decisions/s", "vs scan"
    );
    for n in [100usize, 10_000] {
        let nodes = samples(n, &mut rng);
        let budget = Duration::from_millis(500);
        let scan = rate(budget, || {
            let m = nodes.iter().map(|s| s.load).fold(f64::MAX, f64::min);
            std::hint::black_box(m);
        });
        println!("{n:>7} {:<14} {scan:>14.0} {:>11.2}x", "(scan)", 1.0);
        for mut p in registry::builtins() {
            let name = p.name().to_string();
            let r = rate(budget, || {
                std::hint::black_box(p.place(&nodes, &req));
            });
            println!("{n:>7} {name:<14} {r:>14.0} {:>11.2}x", r / scan);
        }
    }
}
