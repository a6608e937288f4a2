//! Launch time of an MPI job with `ssi mpirun` on a 3-node testbed (network namespaces), against
//! plain local `mpirun` on this machine, measured in the same run: from the command's start to
//! its exit, for a program that only does MPI_Init and MPI_Finalize.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p testbed --bench mpirun
//! [-- RANKS RUNS]` (defaults 16 and 7). Root, Open MPI installed (scripts/setup.sh).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use testbed::stats::Spread;
use testbed::Testbed;

fn mpicc(dir: &Path) -> Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/progs/mpi_init.c");
    let out = dir.join("mpi_init");
    let st = Command::new("mpicc")
        .arg("-O2")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .context("cannot run mpicc (scripts/setup.sh installs libopenmpi-dev)")?;
    ensure!(st.success(), "mpicc {} failed", src.display());
    Ok(out)
}

/// Runs `cmd` to its end; returns the seconds it took.
fn timed(mut cmd: Command, what: &str) -> Result<f64> {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(secs)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let ranks: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(16);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(7).max(1);
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: the testbed's network namespaces and ssid's hosting need root");
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("ssi-bench-mpirun-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let prog = mpicc(&dir)?;
    let tb = Testbed::up(&dir.join("tb"), 3, true)?;
    let np = ranks.to_string();
    // More ranks than CPUs: both sides oversubscribe, with the same options.
    let common = ["--oversubscribe", "-np", &np];
    let local = || {
        let mut c = Command::new("mpirun");
        c.arg("--allow-run-as-root")
            .args(common)
            .arg(&prog)
            .current_dir(&dir);
        c
    };
    let ssi = || {
        let mut c = Command::new(tb.bin("ssi"));
        c.env("SSI_SOCKET", tb.socket(1))
            .arg("mpirun")
            .args(common)
            .arg(&prog)
            .current_dir(&dir);
        c
    };
    // One of each to warm caches, then alternate so that drift hits both alike.
    timed(local(), "mpirun")?;
    timed(ssi(), "ssi mpirun")?;
    let (mut l, mut s) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        l.push(timed(local(), "mpirun")?);
        s.push(timed(ssi(), "ssi mpirun")?);
    }
    let (ls, ss) = (
        Spread::of(&l).context("no run")?,
        Spread::of(&s).context("no run")?,
    );
    println!("launch of an MPI_Init/MPI_Finalize program, -np {ranks}, {runs} runs each (seconds)");
    println!("| | median (min-max) | vs local |");
    println!("|---|---|---|");
    for (name, v) in [
        ("`mpirun`, local (reference)", ls),
        ("`ssi mpirun`, 3 netns testbed nodes", ss),
    ] {
        println!("| {name} | {} | {:.2}x |", v.show(3), v.ratio_to(&ls));
    }
    drop(tb);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
