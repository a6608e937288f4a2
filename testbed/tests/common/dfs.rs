//! Helpers of the DFS end-to-end tests: testbeds with the DFS, waiting for it, running
//! commands inside a node.

use std::path::Path;
use std::time::Duration;

use testbed::{wait_until, NodeOptions, Testbed};

use super::{json, ssi, SETTLE};

/// How long the file system may take to elect, replace a voter or re-replicate.
pub const HEAL: Duration = Duration::from_secs(60);

/// One DFS testbed at a time: several in parallel on two cores starve raft's heartbeats
/// and turn failovers into timeouts.
pub static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A testbed of `nodes` nodes serving the DFS (they share this machine's files too), once
/// every node's DFS is ready; the guard keeps other DFS testbeds of this binary waiting.
pub fn dfs_testbed(
    nodes: usize,
) -> (
    std::sync::MutexGuard<'static, ()>,
    tempfile::TempDir,
    Testbed,
) {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = NodeOptions {
        dfs: Some(Vec::new()),
        ..NodeOptions::default()
    };
    let tb = Testbed::up_with(&dir.path().join("tb"), nodes, false, opts).expect("testbed up");
    for n in 1..=nodes {
        wait_ready(&tb, n, nodes.min(3), nodes);
    }
    (guard, dir, tb)
}

/// `ssi dfs status --json` on node `n`, if it answers.
pub fn status(tb: &Testbed, n: usize) -> Option<serde_json::Value> {
    let out = ssi(tb, n, &["dfs", "status", "--json"]);
    out.status.success().then(|| json(&out))
}

/// Whether node `n`'s mount answers, looked at from inside the node.
pub fn mount_answers(tb: &Testbed, n: usize) -> bool {
    tb.command_in(n, Path::new("ls"))
        .map(|mut c| {
            c.arg(tb.dfs_mount(n))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or(false)
}

/// Waits until node `n` sees a leader, `voters` voters, `alive` nodes holding the whole
/// metadata log, and its mount answers.
pub fn wait_ready(tb: &Testbed, n: usize, voters: usize, alive: usize) {
    let ok = wait_until(SETTLE * 3, || {
        status(tb, n).is_some_and(|s| {
            let applied: Vec<u64> = s["nodes"]
                .as_array()
                .map(|a| a.iter().filter_map(|n| n["applied"].as_u64()).collect())
                .unwrap_or_default();
            let max = applied.iter().copied().max().unwrap_or(0);
            s["leader"].is_u64()
                && s["voters"].as_array().map(Vec::len) == Some(voters)
                && s["changing_voters"] == false
                && applied.len() >= alive
                && applied.iter().all(|a| a + 16 >= max)
        }) && mount_answers(tb, n)
    });
    assert!(ok, "node {n}: dfs not ready: {:?}", status(tb, n));
}

/// Runs `sh -c SCRIPT` in node `n`'s namespaces, in directory `wd`; gives its stdout.
pub fn sh_in(tb: &Testbed, n: usize, wd: &str, script: &str) -> String {
    let out = tb
        .command_in(n, Path::new("sh"))
        .expect("node runs")
        .args(["-c", &format!("cd {wd} && {script}")])
        .env("SSI_SOCKET", tb.socket(n))
        .output()
        .expect("run in node");
    assert!(
        out.status.success(),
        "node {n}: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A testbed of `nodes` nodes in network and mount namespaces of their own: they share only
/// the DFS (at the same path on every node).
pub fn private_testbed(
    nodes: usize,
) -> (
    std::sync::MutexGuard<'static, ()>,
    tempfile::TempDir,
    Testbed,
) {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = NodeOptions {
        dfs: Some(Vec::new()),
        private_mounts: true,
        ..NodeOptions::default()
    };
    let tb = Testbed::up_with(&dir.path().join("tb"), nodes, true, opts).expect("testbed up");
    for n in 1..=nodes {
        wait_ready(&tb, n, nodes.min(3), nodes);
    }
    (guard, dir, tb)
}
