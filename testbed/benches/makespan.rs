//! Makespan of a batch of CPU-bound jobs of uneven length on 3 testbed nodes, each limited to
//! 0.6 CPU (a cgroup per node, so that the nodes behave like three small machines on this
//! one): all on one node, static round-robin, and least-loaded placement with re-balancing by
//! live migration. Reference: the ideal makespan, total CPU work / total CPU of the nodes.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p testbed --bench makespan`
//! (root).

use std::process::{Command, Stdio};
use std::time::Instant;

use testbed::{NodeOptions, Testbed};

/// CPU milliseconds of each job, uneven on purpose: the long ones land together under
/// round-robin.
const JOBS_MS: [u32; 9] = [4000, 500, 500, 3000, 500, 500, 2000, 500, 500];
const QUOTA: f64 = 0.6;

fn batch(
    name: &str,
    sched: &[&str],
    node_of: impl Fn(usize) -> Option<usize>,
    burn: &str,
) -> anyhow::Result<(f64, usize)> {
    let dir =
        std::env::temp_dir().join(format!("ssi-bench-makespan-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = NodeOptions {
        cpu_quota: Some(QUOTA),
        sched: sched.iter().map(|s| s.to_string()).collect(),
        ..NodeOptions::default()
    };
    let tb = Testbed::up_with(&dir, 3, false, opts)?;
    let t = Instant::now();
    let mut children = Vec::new();
    for (i, ms) in JOBS_MS.iter().enumerate() {
        let mut c = Command::new(tb.bin("ssi"));
        c.env("SSI_SOCKET", tb.socket(1)).arg("run");
        if let Some(n) = node_of(i) {
            c.args(["--node", &n.to_string()]);
        }
        c.args(["--", burn, &ms.to_string()]).stdout(Stdio::null());
        children.push(c.spawn()?);
        // Placement sees the previous job before the next one comes.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for mut c in children {
        let st = c.wait()?;
        anyhow::ensure!(st.success(), "{name}: a job failed: {st}");
    }
    let makespan = t.elapsed().as_secs_f64();
    let moves = Command::new(tb.bin("ssi"))
        .env("SSI_SOCKET", tb.socket(1))
        .args(["sched", "show", "--json"])
        .output()?;
    let docs: serde_json::Value = serde_json::from_slice(&moves.stdout).unwrap_or_default();
    let n_moves = docs
        .as_array()
        .map(|a| {
            a.iter()
                .flat_map(|d| d["decisions"].as_array().cloned().unwrap_or_default())
                .filter(|d| d["kind"] == "move")
                .count()
        })
        .unwrap_or(0);
    drop(tb);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((makespan, n_moves))
}

fn main() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: hosting processes needs root");
        return Ok(());
    }
    let work = std::env::temp_dir().join(format!("ssi-bench-burn-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let burn = work.join("burn");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/progs/burn.c");
    anyhow::ensure!(
        Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&burn)
            .arg(src)
            .status()?
            .success(),
        "cc burn.c failed"
    );
    let burn = burn.to_str().unwrap_or_default().to_string();
    let total_s: f64 = JOBS_MS.iter().map(|&m| f64::from(m) / 1000.0).sum();
    let ideal = total_s / (3.0 * QUOTA);
    let off = ["balance = false"];
    let rows = [
        ("all on node 1", batch("one", &off, |_| Some(1), &burn)?),
        (
            "static round-robin",
            batch(
                "rr",
                &["policy = \"round-robin\"", "balance = false"],
                |_| None,
                &burn,
            )?,
        ),
        (
            "least-loaded + re-balancing",
            batch(
                "balance",
                &[
                    "balance = true",
                    "balance_interval_ms = 500",
                    "min_residence_ms = 1000",
                    "balance_cooldown_ms = 1500",
                ],
                |_| None,
                &burn,
            )?,
        ),
    ];
    println!(
        "makespan of {} CPU-bound jobs ({:.1} CPU-s in all, uneven) on 3 nodes of {QUOTA} CPU each; \
         reference: ideal {ideal:.1} s",
        JOBS_MS.len(),
        total_s
    );
    println!(
        "{:<30} {:>10} {:>10} {:>7}",
        "strategy", "makespan", "vs ideal", "moves"
    );
    for (name, (m, moves)) in rows {
        println!("{name:<30} {m:>9.1}s {:>9.2}x {moves:>7}", m / ideal);
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
