//! Launch latency and throughput of `ssi run -- /bin/true` on 3 loopback testbed nodes,
//! against plain local fork/exec of `/bin/true` measured in the same run.
//!
//! - Latency: one launch at a time, `ITERATIONS` per run: local fork/exec, the `ssi` client
//!   alone (`ssi --version`: a fork/exec of the client, no daemon), `ssi run` placed on the
//!   client's node, `ssi run --node 2` (remote).
//! - Throughput: `C` concurrent clients (8, 16, 32) launching for `SECONDS`, every launch
//!   remote (client `i` asks node `i % 3 + 1` to run on the next node), against `C` threads
//!   doing local fork/exec for as long; the two alternate within each run.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p testbed --bench launch
//! [-- ITERATIONS CLIENTS SECONDS RUNS]` (defaults 100, 8,16,32, 5, 5). Root (the nodes host
//! processes).

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testbed::stats::{percentile, Spread};
use testbed::Testbed;

fn quiet(mut c: Command) -> bool {
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn local_true() -> bool {
    quiet(Command::new("/bin/true"))
}

fn ssi_true(tb: &Testbed, via: usize, node: Option<usize>) -> bool {
    let mut c = Command::new(tb.bin("ssi"));
    c.env("SSI_SOCKET", tb.socket(via)).arg("run");
    if let Some(n) = node {
        c.args(["--node", &n.to_string()]);
    }
    c.args(["--", "/bin/true"]);
    quiet(c)
}

/// p50 and p99 in ms of `n` launches by `f`, one at a time.
fn latency(n: usize, f: &dyn Fn() -> bool) -> (f64, f64) {
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            assert!(f(), "a launch failed");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (percentile(&v, 50.0), percentile(&v, 99.0))
}

/// Launches per second by `clients` threads calling `f(client)` for `secs`; failures abort.
fn throughput(clients: usize, secs: u64, f: &(dyn Fn(usize) -> bool + Sync)) -> f64 {
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    std::thread::scope(|s| {
        for c in 0..clients {
            let (done, failed) = (&done, &failed);
            s.spawn(move || {
                while Instant::now() < deadline {
                    let n = if f(c) { done } else { failed };
                    n.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let failed = failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} launches failed");
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn latencies(tb: &Testbed, iters: usize, runs: usize) {
    let kinds: [(&str, &dyn Fn() -> bool); 4] = [
        ("local fork/exec of /bin/true (reference)", &local_true),
        ("`ssi --version` (the client alone)", &|| {
            let mut c = Command::new(tb.bin("ssi"));
            c.arg("--version");
            quiet(c)
        }),
        ("`ssi run`, placed on the client's node", &|| {
            ssi_true(tb, 1, Some(1))
        }),
        ("`ssi run --node 2` (remote)", &|| ssi_true(tb, 1, Some(2))),
    ];
    let mut p50 = vec![Vec::new(); kinds.len()];
    let mut p99 = vec![Vec::new(); kinds.len()];
    for _ in 0..runs {
        for (i, (_, f)) in kinds.iter().enumerate() {
            let (a, b) = latency(iters, *f);
            p50[i].push(a);
            p99[i].push(b);
        }
    }
    println!("latency, {runs} runs of {iters} launches each; ms, median of the runs (min-max)");
    println!("| | p50 | p99 | p50 vs local |");
    println!("|---|---|---|---|");
    let reference = Spread::of(&p50[0]);
    for (i, (name, _)) in kinds.iter().enumerate() {
        if let (Some(a), Some(b), Some(r)) = (Spread::of(&p50[i]), Spread::of(&p99[i]), reference) {
            println!(
                "| {name} | {} | {} | {:.1}x |",
                a.show(2),
                b.show(2),
                a.ratio_to(&r)
            );
        }
    }
}

fn main() -> anyhow::Result<()> {
    let a = common::positional();
    let iters: usize = a.first().and_then(|x| x.parse().ok()).unwrap_or(100);
    let client_counts: Vec<usize> = common::list(a.get(1), &[8, 16, 32]);
    let secs: u64 = a.get(2).and_then(|x| x.parse().ok()).unwrap_or(5);
    let runs: usize = a.get(3).and_then(|x| x.parse().ok()).unwrap_or(5);
    if !common::root_or_skip("ssid hosting processes") {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("ssi-bench-launch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tb = Testbed::up(&dir, 3, false)?;
    latencies(&tb, iters, runs);

    println!("\nthroughput, {runs} runs of {secs} s each; launches/s, median (min-max)");
    println!("| clients | local fork/exec, concurrent (reference) | `ssi run`, remote | ratio |");
    println!("|---|---|---|---|");
    for &clients in &client_counts {
        let (mut local, mut remote) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            local.push(throughput(clients, secs, &|_| local_true()));
            remote.push(throughput(clients, secs, &|c| {
                ssi_true(&tb, c % 3 + 1, Some((c + 1) % 3 + 1))
            }));
        }
        if let (Some(l), Some(r)) = (Spread::of(&local), Spread::of(&remote)) {
            println!(
                "| {clients} | {} | {} | {:.2}x |",
                l.show(0),
                r.show(0),
                r.ratio_to(&l)
            );
        }
    }
    drop(tb);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
