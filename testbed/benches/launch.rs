//! Launch latency and throughput of `ssi run`, against a plain local fork/exec measured in the
//! same run.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p testbed --bench launch
//! [-- ITERATIONS CLIENTS SECONDS]` (defaults 200, 16, 10). Root (the nodes host processes).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testbed::Testbed;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn time_n(n: usize, mut f: impl FnMut()) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn ssi_true(tb: &Testbed, via: usize, node: Option<usize>) -> bool {
    let mut c = Command::new(tb.bin("ssi"));
    c.env("SSI_SOCKET", tb.socket(via)).arg("run");
    if let Some(n) = node {
        c.args(["--node", &n.to_string()]);
    }
    c.args(["--", "/bin/true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let iters: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200);
    let clients: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: ssid needs root to host processes");
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("ssi-bench-launch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tb = Testbed::up(&dir, 3, false)?;

    let local = time_n(iters, || {
        let _ = Command::new("/bin/true").status();
    });
    let here = time_n(iters, || assert!(ssi_true(&tb, 1, Some(1))));
    let remote = time_n(iters, || assert!(ssi_true(&tb, 1, Some(2))));

    println!("launch latency of /bin/true, {iters} runs each, 3 loopback nodes (ms)");
    println!(
        "{:<34} {:>8} {:>8} {:>14}",
        "", "p50", "p99", "p50 vs local"
    );
    let row = |name: &str, v: &[f64]| {
        println!(
            "{name:<34} {:>8.2} {:>8.2} {:>13.1}x",
            percentile(v, 50.0),
            percentile(v, 99.0),
            percentile(v, 50.0) / percentile(&local, 50.0)
        );
    };
    row("local fork/exec (reference)", &local);
    row("ssi run, placed on this node", &here);
    row("ssi run --node 2 (remote)", &remote);

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    std::thread::scope(|s| {
        for c in 0..clients {
            let (tb, done, failed) = (&tb, done.clone(), failed.clone());
            s.spawn(move || {
                while Instant::now() < deadline {
                    if ssi_true(tb, 1 + c % 3, None) {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let t = Instant::now();
    let n_local = {
        let mut n = 0u64;
        while t.elapsed() < Duration::from_secs(2) {
            let _ = Command::new("/bin/true").status();
            n += 1;
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    let rate = done.load(Ordering::Relaxed) as f64 / secs as f64;
    println!(
        "\nthroughput: {clients} concurrent clients on 3 nodes, scheduler placement, {secs} s: \
         {rate:.0} launches/s ({} failed); local fork/exec, one after another: {n_local:.0}/s ({:.2}x)",
        failed.load(Ordering::Relaxed),
        rate / n_local
    );
    drop(tb);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
