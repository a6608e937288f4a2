//! Live migration (pre-copy, the default) against plain stop-and-copy measured in the same run,
//! of a program that dirties pages spread over all its memory at a set rate
//! (`benches/progs/writer.c`): 256 MiB and 1 GiB, at 0, 50, 200 and 800 MB/s.
//!
//! Each run moves the program from node 1 to node 2 with pre-copy and back with stop-and-copy
//! (`--precopy-rounds 0`), then leaves it alone on node 1 for as long as the pre-copy took.
//! For each of the three windows the program reports the largest gap it saw between two of its
//! ~1 ms ticks: the downtime as the application sees it (the window without migration shows
//! what this machine's scheduling alone costs). Beside it, the downtime the daemon reports
//! (`ssi migrate --json`: from the freeze on the source until the source learns the program
//! runs on the target).
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p testbed --bench migration
//! [-- SIZES_MIB RATES_MB_S RUNS]` (defaults 256,1024 0,50,200,800 5). Root.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use common::ssi;
use testbed::stats::Spread;
use testbed::{wait_until, Testbed};

/// What the daemon reports of one migration.
struct Moved {
    total_s: f64,
    downtime_ms: f64,
    mib_sent: f64,
    rounds: f64,
}

fn migrate(tb: &Testbed, gpid: i64, to: usize, precopy: bool) -> Result<Moved> {
    let (g, t) = (gpid.to_string(), to.to_string());
    let mut args = vec!["migrate", &g, "--to", &t, "--json"];
    if !precopy {
        args.extend(["--precopy-rounds", "0"]);
    }
    let rep = ssi(tb, 1, &args)?;
    let num = |k: &str| {
        rep[k]
            .as_f64()
            .ok_or_else(|| anyhow!("migrate: no {k} in {rep}"))
    };
    Ok(Moved {
        total_s: num("total_micros")? / 1e6,
        downtime_ms: num("downtime_micros")? / 1e3,
        mib_sent: num("bytes_sent")? / f64::from(1 << 20),
        rounds: rep["rounds"].as_array().map_or(0, Vec::len) as f64,
    })
}

/// What the program reports of one window.
struct Window {
    max_gap_ms: f64,
    mb_per_s: f64,
}

/// The running writer, asked for reports by SIGUSR1 through `ssi kill`.
struct Writer<'a> {
    tb: &'a Testbed,
    gpid: i64,
    report: PathBuf,
    seq: u64,
}

impl Writer<'_> {
    /// Ends the current window (started by the previous call) and starts the next.
    fn window(&mut self) -> Result<Window> {
        ssi(self.tb, 1, &["kill", "-s", "USR1", &self.gpid.to_string()])?;
        let want = format!("report {} ", self.seq);
        let mut text = String::new();
        let came = wait_until(Duration::from_secs(30), || {
            text = std::fs::read_to_string(&self.report).unwrap_or_default();
            text.starts_with(&want)
        });
        ensure!(came, "the writer did not report (last: {text:?})");
        self.seq += 1;
        let f: Vec<&str> = text.split_whitespace().collect();
        let field = |k: &str| -> Result<f64> {
            let i = f.iter().position(|x| *x == k).context(k.to_string())?;
            f.get(i + 1)
                .and_then(|v| v.parse().ok())
                .context(k.to_string())
        };
        Ok(Window {
            max_gap_ms: field("max_gap_us")? / 1e3,
            mb_per_s: field("dirtied_mb")? / field("seconds")?,
        })
    }
}

/// All runs of one size and rate.
#[derive(Default)]
struct Runs {
    pre: Vec<Moved>,
    pre_gap: Vec<f64>,
    stop: Vec<Moved>,
    stop_gap: Vec<f64>,
    idle_gap: Vec<f64>,
    rate: Vec<f64>,
}

fn start<'t>(
    tb: &'t Testbed,
    writer: &Path,
    dir: &Path,
    mib: u64,
    rate: u64,
) -> Result<Writer<'t>> {
    let report = dir.join(format!("report-{mib}-{rate}"));
    let (m, r) = (mib.to_string(), rate.to_string());
    let prog = writer.to_str().unwrap_or_default();
    let rep = report.to_str().unwrap_or_default();
    let out = ssi(
        tb,
        1,
        &["run", "--detach", "--node", "1", "--", prog, &m, &r, rep],
    )?;
    // `run --detach` prints a bare number, which parses as JSON.
    let gpid = out.as_i64().context("ssi run --detach gave no gpid")?;
    let want = mib << 20;
    let ready = wait_until(Duration::from_secs(120), || {
        ssi(tb, 1, &["ps", "--json"]).ok().is_some_and(|v| {
            v.as_array().is_some_and(|a| {
                a.iter().any(|p| {
                    p["gpid"].as_i64() == Some(gpid) && p["rss_bytes"].as_u64().unwrap_or(0) >= want
                })
            })
        })
    });
    ensure!(ready, "writer of {mib} MiB never became resident");
    Ok(Writer {
        tb,
        gpid,
        report,
        seq: 0,
    })
}

fn measure(w: &mut Writer<'_>, runs: usize) -> Result<Runs> {
    let mut r = Runs::default();
    w.window()?;
    for _ in 0..runs {
        let pre = migrate(w.tb, w.gpid, 2, true)?;
        r.pre_gap.push(w.window()?.max_gap_ms);
        let window = Duration::from_secs_f64(pre.total_s);
        r.pre.push(pre);
        r.stop.push(migrate(w.tb, w.gpid, 1, false)?);
        r.stop_gap.push(w.window()?.max_gap_ms);
        // The same program left alone as long as the pre-copy took: the gaps this machine
        // causes without any migration.
        std::thread::sleep(window);
        let idle = w.window()?;
        r.idle_gap.push(idle.max_gap_ms);
        r.rate.push(idle.mb_per_s);
    }
    Ok(r)
}

fn print(mib: u64, rate: u64, r: &Runs) -> Option<()> {
    let s = |v: Vec<f64>| Spread::of(&v);
    let m = |v: &[Moved], f: fn(&Moved) -> f64| s(v.iter().map(f).collect());
    let pre_down = m(&r.pre, |x| x.downtime_ms)?;
    let stop_down = m(&r.stop, |x| x.downtime_ms)?;
    let pre_gap = s(r.pre_gap.clone())?;
    println!(
        "| {mib} | {rate} ({:.0}) | {} | {} | {} | {:.0} | {:.0} | {} | {} | {:.2} | {} |",
        s(r.rate.clone())?.median,
        m(&r.pre, |x| x.total_s)?.show(2),
        pre_down.show(0),
        pre_gap.show(0),
        m(&r.pre, |x| x.mib_sent)?.median,
        m(&r.pre, |x| x.rounds)?.median,
        stop_down.show(0),
        s(r.stop_gap.clone())?.show(0),
        pre_down.ratio_to(&stop_down),
        s(r.idle_gap.clone())?.show(1),
    );
    Some(())
}

fn main() -> Result<()> {
    let a = common::positional();
    let sizes: Vec<u64> = common::list(a.first(), &[256, 1024]);
    let rates: Vec<u64> = common::list(a.get(1), &[0, 50, 200, 800]);
    let runs: usize = a.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    if !common::root_or_skip("migration") {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("ssi-bench-mig-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let writer = common::cc("benches/progs/writer.c", &dir)?;
    let tb = Testbed::up(&dir.join("tb"), 2, false)?;
    println!("migration of a program dirtying pages spread over its memory, 2 loopback nodes, {runs} runs: median (min-max)");
    println!("| MiB | dirty MB/s set (achieved) | pre-copy total s | downtime, daemon ms | largest tick gap, program ms | MiB sent | rounds | stop-and-copy downtime, daemon ms | largest tick gap, program ms | downtime pre/stop | no migration: largest tick gap ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &mib in &sizes {
        for &rate in &rates {
            let mut w = start(&tb, &writer, &dir, mib, rate)?;
            let r = measure(&mut w, runs);
            let _ = ssi(&tb, 1, &["kill", "-s", "KILL", &w.gpid.to_string()]);
            print(mib, rate, &r?);
        }
    }
    drop(tb);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
