//! `ssi-testbed`: boot, break and tear down ssi clusters on one machine.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ssi_core::view::MemberState;
use testbed::{wait_until, Testbed, SETTLE_TIMEOUT};

/// Boot N ssi nodes on this machine (loopback or network namespaces), break them, tear down.
#[derive(Debug, Parser)]
#[command(name = "ssi-testbed", version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start N nodes and wait until all see each other alive; writes DIR/env.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Testbed directory.
        #[arg(long)]
        dir: PathBuf,
        /// Put each node in its own network namespace on a bridge (root only).
        #[arg(long)]
        netns: bool,
    },
    /// Kill a node's daemon with SIGKILL (a crash).
    Kill {
        /// Testbed directory.
        #[arg(long)]
        dir: PathBuf,
        /// Node number.
        #[arg(long)]
        node: usize,
    },
    /// Stop a node's daemon with SIGTERM (a graceful leave).
    Stop {
        /// Testbed directory.
        #[arg(long)]
        dir: PathBuf,
        /// Node number.
        #[arg(long)]
        node: usize,
    },
    /// Start a stopped or killed node again and wait until it is alive everywhere.
    Start {
        /// Testbed directory.
        #[arg(long)]
        dir: PathBuf,
        /// Node number.
        #[arg(long)]
        node: usize,
    },
    /// Stop every node and remove the namespaces (logs stay in DIR).
    Down {
        /// Testbed directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// The guided tour: boot 3 nodes, show them, crash one, bring it back, tear down.
    Demo {
        /// Use network namespaces (root only).
        #[arg(long)]
        netns: bool,
    },
}

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
        Cmd::Up { nodes, dir, netns } => {
            let tb = Testbed::up(&dir, nodes, netns)?;
            println!(
                "{nodes} nodes up in {}; run: . {}/env && ssi nodes",
                tb.dir().display(),
                tb.dir().display()
            );
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
    let mut tb = Testbed::up(&dir, 3, netns)?;
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

    step("Tearing down");
    tb.down();
    let _ = std::fs::remove_dir_all(&dir);
    println!("done");
    Ok(())
}
