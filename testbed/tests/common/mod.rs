//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output};
use std::time::Duration;

use testbed::Testbed;

pub mod dfs;

/// How long the cluster may take to agree on something.
pub const SETTLE: Duration = Duration::from_secs(20);

/// A testbed of `nodes` nodes in a fresh temporary directory (removed with the first value).
pub fn testbed(nodes: usize, netns: bool) -> (tempfile::TempDir, Testbed) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tb = Testbed::up(&dir.path().join("tb"), nodes, netns).expect("testbed up");
    (dir, tb)
}

/// `ssi ARGS` against node `node`.
pub fn ssi_cmd(tb: &Testbed, node: usize, args: &[&str]) -> Command {
    let mut c = Command::new(tb.bin("ssi"));
    c.args(args).env("SSI_SOCKET", tb.socket(node));
    c
}

/// `ssi run --node NODE -- ARGS` through node `via`, not started yet (stdio as the caller sets).
pub fn run_cmd(tb: &Testbed, via: usize, node: usize, args: &[&str]) -> Command {
    let n = node.to_string();
    let mut a = vec!["run", "--node", &n, "--"];
    a.extend_from_slice(args);
    ssi_cmd(tb, via, &a)
}

/// Reads the first line of a client's output (its program has started); the rest follows on
/// the returned reader.
pub fn first_line(
    child: &mut std::process::Child,
) -> (String, BufReader<std::process::ChildStdout>) {
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read first line");
    (line, out)
}

/// Runs `ssi ARGS` against node `node` and collects its output.
pub fn ssi(tb: &Testbed, node: usize, args: &[&str]) -> Output {
    ssi_cmd(tb, node, args).output().expect("run ssi")
}

/// Parses a successful command's stdout as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "ssi failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// Whether this test can run privileged parts; prints why not.
pub fn root_or_skip(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: {what} needs root");
    false
}

/// Compiles `tests/progs/NAME.c` into `dir` with cc; returns the binary's path.
pub fn compile(name: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/progs")
        .join(format!("{name}.c"));
    let out = dir.join(name);
    let st = Command::new("cc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(st.success(), "cc {} failed", src.display());
    out
}

/// The last `lines` lines of every node's log, for a failing assertion to show what the
/// daemons did.
pub fn log_tails(tb: &Testbed, nodes: usize, lines: usize) -> String {
    let mut out = String::new();
    for n in 1..=nodes {
        let text = std::fs::read_to_string(tb.log(n)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- node {n} log ---\n"));
        for l in &all[all.len().saturating_sub(lines)..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}
