//! `ssi-testbed`: boot, break and tear down ssi clusters on one machine.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use ssi_core::view::MemberState;
use testbed::args::{Args, Cmd};
use testbed::{wait_until, Testbed, SETTLE_TIMEOUT};

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ssi-testbed: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    match args.command {
        Cmd::Up {
            nodes,
            dir,
            netns,
            cpu_quota,
            http,
            dfs,
            private_mounts,
        } => {
            let opts = testbed::NodeOptions {
                cpu_quota,
                http,
                dfs: dfs.then(Vec::new),
                private_mounts,
                ..Default::default()
            };
            let tb = Testbed::up_with(&dir, nodes, netns, opts)?;
            println!(
                "{nodes} nodes up in {}; run: . {}/env && ssi nodes",
                tb.dir().display(),
                tb.dir().display()
            );
            for n in 1..=nodes {
                if let Some(a) = tb.http_addr(n) {
                    println!("node {n} metrics: http://{a}/metrics");
                }
            }
            tb.detach();
        }
        Cmd::Kill { dir, node } => Testbed::open(&dir)?.kill(node)?,
        Cmd::Stop { dir, node } => Testbed::open(&dir)?.stop(node)?,
        Cmd::Start { dir, node } => Testbed::open(&dir)?.start(node)?,
        Cmd::Down { dir } => Testbed::open(&dir)?.down(),
        Cmd::Demo { netns } => demo(netns)?,
    }
    Ok(())
}

fn step(title: &str) {
    println!("\n=== {title}");
}

/// Runs `ssi ARGS` against node `n` and prints what it prints.
fn ssi(tb: &Testbed, n: usize, args: &[&str]) -> Result<()> {
    println!("$ ssi {}", args.join(" "));
    let status = Command::new(tb.bin("ssi"))
        .args(args)
        .env("SSI_SOCKET", tb.socket(n))
        .status()
        .context("cannot run ssi")?;
    anyhow::ensure!(status.success(), "ssi {} failed: {status}", args.join(" "));
    Ok(())
}

fn demo(netns: bool) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("ssi-demo-{}", std::process::id()));
    let mode = if netns {
        "network namespaces"
    } else {
        "loopback"
    };
    step(&format!(
        "Booting 3 ssi nodes ({mode}) in {}",
        dir.display()
    ));
    let t = Instant::now();
    // Each node gets half a CPU (a cgroup, root only) so that the three behave like small
    // machines of their own, and re-balances quickly.
    let opts = if nix::unistd::geteuid().is_root() {
        testbed::NodeOptions {
            cpu_quota: Some(0.5),
            sched: vec![
                "balance_interval_ms = 500".into(),
                "min_residence_ms = 1500".into(),
                "balance_cooldown_ms = 1500".into(),
            ],
            ..Default::default()
        }
    } else {
        testbed::NodeOptions::default()
    };
    let mut tb = Testbed::up_with(&dir, 3, netns, opts)?;
    println!(
        "all 3 nodes see each other alive after {:.2} s",
        t.elapsed().as_secs_f64()
    );

    step("The nodes, as node 1 sees them");
    ssi(&tb, 1, &["nodes"])?;
    step("The cluster as one machine");
    ssi(&tb, 1, &["info"])?;

    step("Crashing node 3 (SIGKILL)");
    let t = Instant::now();
    tb.kill(3)?;
    let mut seen = [None, None];
    let all = wait_until(SETTLE_TIMEOUT, || {
        for (i, o) in [1usize, 2].iter().enumerate() {
            if seen[i].is_none() && tb.state_seen(*o, 3) == Some(MemberState::Dead) {
                seen[i] = Some(t.elapsed());
            }
        }
        seen.iter().all(Option::is_some)
    });
    anyhow::ensure!(
        all,
        "node 3 was not declared dead within {SETTLE_TIMEOUT:?}"
    );
    for (i, d) in seen.iter().enumerate() {
        if let Some(d) = d {
            println!(
                "node {} declared node 3 dead after {:.2} s",
                i + 1,
                d.as_secs_f64()
            );
        }
    }
    ssi(&tb, 1, &["nodes"])?;

    step("Restarting node 3");
    let t = Instant::now();
    tb.start(3)?;
    println!(
        "node 3 alive on every node after {:.2} s",
        t.elapsed().as_secs_f64()
    );
    ssi(&tb, 2, &["info"])?;

    if nix::unistd::geteuid().is_root() {
        processes(&tb, &dir)?;
    } else {
        step("Skipping the process part: hosting processes needs root");
    }

    step("Tearing down");
    tb.down();
    let _ = std::fs::remove_dir_all(&dir);
    println!("done");
    Ok(())
}

/// A counter that prints its pid: the proof that a process moved without noticing.
const COUNTER: &str = "import os, time\nfor i in range(10000):\n    print(f'count {i}  (my pid is {os.getpid()})', flush=True)\n    time.sleep(0.2)\n";

/// Reads and shows `n` lines of a program's output.
fn show_lines(out: &mut impl BufRead, n: usize) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for _ in 0..n {
        let mut line = String::new();
        out.read_line(&mut line).context("read program output")?;
        print!("  | {line}");
        lines.push(line);
    }
    Ok(lines)
}

fn processes(tb: &Testbed, dir: &std::path::Path) -> Result<()> {
    step("Running a program somewhere: ssi run");
    ssi(
        tb,
        1,
        &[
            "run",
            "--node",
            "2",
            "--",
            "sh",
            "-c",
            "echo \"hello from pid $$, on node 2\"",
        ],
    )?;
    ssi(
        tb,
        1,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo \"placed by the scheduler, pid $$\"",
        ],
    )?;

    step("A counter on node 1, followed from node 3");
    let mut client = Command::new(tb.bin("ssi"))
        .args(["run", "--node", "1", "--", "python3", "-c", COUNTER])
        .env("SSI_SOCKET", tb.socket(3))
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run ssi")?;
    let mut out = BufReader::new(client.stdout.take().context("no stdout")?);
    let first = show_lines(&mut out, 5)?;
    let gpid = first[0]
        .rsplit("pid is ")
        .next()
        .and_then(|s| s.trim().trim_end_matches(')').parse::<i32>().ok())
        .context("cannot read the counter's pid")?;
    ssi(tb, 3, &["ps"])?;

    step(&format!(
        "Live migration of {gpid} to node 2 while it counts"
    ));
    ssi(tb, 3, &["migrate", &gpid.to_string(), "--to", "2"])?;
    show_lines(&mut out, 5)?;
    ssi(tb, 3, &["ps"])?;

    step("Checkpoint on node 2, restart on node 3");
    let image = dir.join("counter-image");
    let image = image.to_str().context("path")?;
    ssi(tb, 3, &["checkpoint", &gpid.to_string(), "--dir", image])?;
    let _ = client.wait();
    ssi(
        tb,
        3,
        &["restart", "--dir", image, "--node", "3", "--detach"],
    )?;
    let mut attach = Command::new(tb.bin("ssi"))
        .args(["attach", &gpid.to_string()])
        .env("SSI_SOCKET", tb.socket(1))
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run ssi attach")?;
    let mut out = BufReader::new(attach.stdout.take().context("no stdout")?);
    show_lines(&mut out, 5)?;
    ssi(tb, 1, &["kill", &gpid.to_string()])?;
    let _ = attach.wait();

    step("Uneven load: three busy loops started on node 1 (half a CPU)");
    let mut loops = Vec::new();
    for _ in 0..3 {
        let out = Command::new(tb.bin("ssi"))
            .args([
                "run",
                "--node",
                "1",
                "--detach",
                "--",
                "sh",
                "-c",
                "while :; do :; done",
            ])
            .env("SSI_SOCKET", tb.socket(1))
            .output()
            .context("cannot run ssi")?;
        loops.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    ssi(tb, 1, &["ps"])?;
    println!(
        "(node 1 has 3 runnable processes for 1 CPU; the others are idle: waiting for it to act)"
    );
    let spread = wait_until(std::time::Duration::from_secs(20), || {
        let out = Command::new(tb.bin("ssi"))
            .args(["ps", "--json"])
            .env("SSI_SOCKET", tb.socket(1))
            .output();
        out.ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| {
                v.as_array().map(|a| {
                    let nodes: std::collections::BTreeSet<i64> =
                        a.iter().filter_map(|p| p["node"].as_i64()).collect();
                    nodes.len() >= 3
                })
            })
            .unwrap_or(false)
    });
    step(if spread {
        "Re-balanced: the busy loops moved by live migration"
    } else {
        "Not re-balanced within 20 s (see the decisions below)"
    });
    ssi(tb, 1, &["ps"])?;
    ssi(tb, 1, &["sched", "show"])?;
    for g in &loops {
        ssi(tb, 1, &["kill", "-s", "KILL", g])?;
    }
    mpi(tb, dir)
}

/// The MPI program of the demo (also used by the MPI end-to-end test).
const MPI_RING: &str = include_str!("../tests/progs/mpi_ring.c");

/// Whether `prog` is on the PATH.
fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(prog).is_file()))
}

fn mpi(tb: &Testbed, dir: &std::path::Path) -> Result<()> {
    if !on_path("mpicc") || !on_path("mpirun") {
        step("Skipping the MPI part: mpicc/mpirun not found (scripts/setup.sh installs Open MPI)");
        return Ok(());
    }
    let src = dir.join("mpi_ring.c");
    let prog = dir.join("mpi_ring");
    std::fs::write(&src, MPI_RING).context("write mpi_ring.c")?;
    let built = Command::new("mpicc")
        .arg("-O2")
        .arg("-o")
        .arg(&prog)
        .arg(&src)
        .status()
        .context("cannot run mpicc")?;
    anyhow::ensure!(built.success(), "mpicc failed: {built}");
    // One rank per CPU of the cluster: `ssi mpirun` gives mpirun one slot per CPU of each node.
    let nodes = Command::new(tb.bin("ssi"))
        .args(["info", "--json"])
        .env("SSI_SOCKET", tb.socket(1))
        .output()
        .context("cannot run ssi")?;
    let cpus = serde_json::from_slice::<serde_json::Value>(&nodes.stdout)
        .ok()
        .and_then(|v| v["cpus"].as_u64())
        .context("cannot read the cluster's CPUs from ssi info --json")?;
    let prog = prog.to_str().context("path")?;
    step(&format!(
        "An MPI job over the cluster, no hostfile: ssi mpirun -np {cpus} (a ring and an allreduce)"
    ));
    ssi(tb, 1, &["mpirun", "-np", &cpus.to_string(), prog])
}
