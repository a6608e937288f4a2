//! What the testbed benchmarks share: compiling their C programs and asking a node through
//! the `ssi` CLI.

#![allow(dead_code)] // each benchmark uses a part of it

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use testbed::Testbed;

/// Compiles `testbed/SRC` (e.g. `tests/progs/burn.c`) with `cc -O2` into `dir`; returns the
/// executable.
pub fn cc(src: &str, dir: &Path) -> Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(src);
    let stem = src.file_stem().context("program name")?;
    let out = dir.join(stem);
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .with_context(|| format!("cannot run cc for {}", src.display()))?
        .success();
    ensure!(ok, "cc {} failed", src.display());
    Ok(out)
}

/// Runs `ssi ARGS` against node `node`; returns its standard output parsed as JSON (`Null`
/// when it is not JSON), or its standard error as the error.
pub fn ssi(tb: &Testbed, node: usize, args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new(tb.bin("ssi"))
        .env("SSI_SOCKET", tb.socket(node))
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "ssi {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}

/// The positional arguments given after `--` to `cargo bench` (cargo adds `--bench`).
pub fn positional() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect()
}

/// A comma-separated list of numbers, or `default` when absent.
pub fn list<T: std::str::FromStr + Clone>(arg: Option<&String>, default: &[T]) -> Vec<T> {
    arg.map_or_else(
        || default.to_vec(),
        |s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
    )
}

/// Whether we may run (root); prints why not otherwise.
pub fn root_or_skip(what: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        println!("skipped: {what} needs root");
    }
    root
}
