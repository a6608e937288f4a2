//! Live migration against plain stop-and-copy, measured in the same run: processes of 64 MiB,
//! 256 MiB and 1 GiB, idle or rewriting 10% of their memory all the time.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p testbed --bench migration
//! [-- SIZES_MIB RUNS]` (defaults 64,256,1024 and 3). Root.

use std::process::Command;
use std::time::Duration;

use testbed::{wait_until, Testbed};

fn ssi(tb: &Testbed, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(tb.bin("ssi"))
        .env("SSI_SOCKET", tb.socket(1))
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "ssi {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Sample {
    total_s: f64,
    downtime_ms: f64,
    mib_sent: f64,
    rounds: usize,
}

fn migrate(tb: &Testbed, gpid: i64, to: usize, rounds: Option<u32>) -> anyhow::Result<Sample> {
    let (g, t) = (gpid.to_string(), to.to_string());
    let mut args = vec!["migrate", &g, "--to", &t, "--json"];
    let r;
    if let Some(n) = rounds {
        r = n.to_string();
        args.extend(["--precopy-rounds", &r]);
    }
    let rep = ssi(tb, &args)?;
    let num = |k: &str| rep[k].as_f64().unwrap_or(f64::NAN);
    Ok(Sample {
        total_s: num("total_micros") / 1e6,
        downtime_ms: num("downtime_micros") / 1e3,
        mib_sent: num("bytes_sent") / (1 << 20) as f64,
        rounds: rep["rounds"].as_array().map_or(0, Vec::len),
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let sizes: Vec<u64> = args
        .first()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![64, 256, 1024]);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: migration needs root");
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("ssi-bench-mig-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let hog = dir.join("memhog");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/progs/memhog.c");
    anyhow::ensure!(
        Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&hog)
            .arg(src)
            .status()?
            .success(),
        "cc memhog failed"
    );
    let tb = Testbed::up(&dir.join("tb"), 2, false)?;
    println!("live migration (pre-copy) vs stop-and-copy, 2 loopback nodes, median of {runs} runs");
    println!(
        "{:>6} {:>8} | {:>7} {:>9} {:>9} {:>7} | {:>7} {:>9} {:>9} | {:>9}",
        "MiB",
        "load",
        "total s",
        "down ms",
        "MiB sent",
        "rounds",
        "total s",
        "down ms",
        "MiB sent",
        "down ratio"
    );
    for &mib in &sizes {
        for rewrite in [0u32, 10] {
            let out = ssi(
                &tb,
                &[
                    "run",
                    "--detach",
                    "--node",
                    "1",
                    "--",
                    hog.to_str().unwrap_or_default(),
                    &mib.to_string(),
                    &rewrite.to_string(),
                ],
            );
            // `run --detach` prints a bare number, which parses as JSON.
            let gpid = out?.as_i64().ok_or_else(|| anyhow::anyhow!("no gpid"))?;
            // Ready once its memory is resident.
            let want = mib << 20;
            let ready = wait_until(Duration::from_secs(120), || {
                ssi(&tb, &["ps", "--json"]).ok().is_some_and(|v| {
                    v.as_array().is_some_and(|a| {
                        a.iter().any(|p| {
                            p["gpid"].as_i64() == Some(gpid)
                                && p["rss_bytes"].as_u64().unwrap_or(0) >= want
                        })
                    })
                })
            });
            anyhow::ensure!(ready, "memhog {mib} MiB never became resident");
            let (mut pre, mut stop) = (Vec::new(), Vec::new());
            // There and back: pre-copy to node 2, stop-and-copy back to node 1.
            for _ in 0..runs {
                pre.push(migrate(&tb, gpid, 2, None)?);
                stop.push(migrate(&tb, gpid, 1, Some(0))?);
            }
            let _ = ssi(&tb, &["kill", "-s", "KILL", &gpid.to_string()]);
            let m = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
            let pre_down = m(&pre, |s| s.downtime_ms);
            let stop_down = m(&stop, |s| s.downtime_ms);
            println!(
                "{:>6} {:>8} | {:>7.2} {:>9.1} {:>9.1} {:>7.0} | {:>7.2} {:>9.1} {:>9.1} | {:>9.2}",
                mib,
                if rewrite == 0 { "idle" } else { "10% rw" },
                m(&pre, |s| s.total_s),
                pre_down,
                m(&pre, |s| s.mib_sent),
                m(&pre, |s| s.rounds as f64),
                m(&stop, |s| s.total_s),
                stop_down,
                m(&stop, |s| s.mib_sent),
                pre_down / stop_down
            );
        }
    }
    drop(tb);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
