//! End-to-end tests of processes and the DFS on a testbed whose nodes share nothing but it
//! (network and mount namespaces of their own): a process's open files on the DFS follow it
//! when it migrates or restarts on another node; a file only the source node has is refused
//! with its name, and the process runs on where it was.

mod common;

use std::io::Read;
use std::process::{Child, Stdio};

use common::dfs::{private_testbed, sh_in};
use common::{compile, first_line, json, root_or_skip, run_cmd, ssi, SETTLE};
use testbed::{wait_until, Testbed};

/// Records the copier reads, and how many it copies.
const RECORDS: usize = 400;

/// Starts `ssi run --node NODE -- ARGS` through node `node`; gives the client.
fn run_on(tb: &Testbed, node: usize, args: &[&str]) -> Child {
    run_cmd(tb, node, node, args)
        // The program starts in the client's directory; this checkout may be under /tmp,
        // which each node has its own of: start it where every node has the same directory.
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssi run")
}

/// The global pid in a copier's line `<i> <pid>`.
fn pid_of(line: &str) -> i64 {
    line.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// The node that runs `gpid`, as node `via` sees it.
fn host_of(tb: &Testbed, via: usize, gpid: i64) -> Option<i64> {
    json(&ssi(tb, via, &["ps", "--json"]))
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["gpid"].as_i64() == Some(gpid))
        .and_then(|p| p["node"].as_i64())
}

/// Checks a copier's output file, read on node `n`: lines `<i> <gpid> <record i>` for
/// every i in 0..count, once each, in order.
fn check_copy(tb: &Testbed, n: usize, out: &str, count: usize, gpid: i64) {
    let text = sh_in(tb, n, "/", &format!("cat {out}"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), count, "{out} on node {n}: {text}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("{i} {gpid} {i:07}"), "{out} line {i}");
    }
}

/// Checks a copier's stdout (first line, then the rest of the client's output): `<i> <gpid>`
/// for 0..count.
fn check_stdout(first: &str, rest: &str, count: usize, gpid: i64) {
    let all: Vec<&str> = std::iter::once(first.trim_end())
        .chain(rest.lines())
        .collect();
    assert_eq!(all.len(), count, "stdout: {all:?}");
    for (i, line) in all.iter().enumerate() {
        assert_eq!(*line, format!("{i} {gpid}"), "stdout line {i}");
    }
}

/// Waits for `client` to end and gives its remaining stdout and its stderr.
fn finish(mut client: Child, mut out: impl Read) -> (std::process::ExitStatus, String, String) {
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read stdout");
    let mut err = String::new();
    if let Some(mut e) = client.stderr.take() {
        e.read_to_string(&mut err).expect("read stderr");
    }
    (client.wait().expect("wait"), rest, err)
}

/// Puts the copier and its input on the DFS, from node 1.
fn stage(tb: &Testbed, build: &std::path::Path) {
    let copier = compile("copier", build);
    sh_in(
        tb,
        1,
        "/",
        &format!(
            "mkdir -p /mnt/ssi/job && cp {} /mnt/ssi/job/ && seq -f %07g 0 {} > /mnt/ssi/job/in",
            copier.display(),
            RECORDS - 1
        ),
    );
}

#[test]
fn open_files_on_the_dfs_follow_a_process_to_another_node() {
    if !root_or_skip("network and mount namespaces, migration") {
        return;
    }
    let (_one, dir, tb) = private_testbed(2);
    stage(&tb, &tb.node_dir(1));
    let _ = dir;
    // Migration: the program, its input (at its offset) and its output (appended, neither
    // synced nor closed before the move) are on the DFS.
    let count = 150;
    let mut client = run_on(
        &tb,
        1,
        &[
            "/mnt/ssi/job/copier",
            "/mnt/ssi/job/in",
            "/mnt/ssi/job/out",
            &count.to_string(),
            "20",
        ],
    );
    let (first, out) = first_line(&mut client);
    let gpid = pid_of(&first);
    let m = ssi(
        &tb,
        1,
        &["migrate", &gpid.to_string(), "--to", "2", "--json"],
    );
    assert!(
        m.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&m.stderr)
    );
    assert_eq!(host_of(&tb, 1, gpid), Some(2));
    let (status, rest, err) = finish(client, out);
    assert!(status.success(), "copier: {status}: {err}");
    check_stdout(&first, &rest, count, gpid);
    check_copy(&tb, 1, "/mnt/ssi/job/out", count, gpid);

    // Checkpoint on node 2 into the DFS (the default directory), restart on node 1 from there.
    let mut client = run_on(
        &tb,
        2,
        &[
            "/mnt/ssi/job/copier",
            "/mnt/ssi/job/in",
            "/mnt/ssi/job/out2",
            &count.to_string(),
            "20",
        ],
    );
    let (first, mut out) = first_line(&mut client);
    let gpid = pid_of(&first);
    let c = ssi(&tb, 2, &["checkpoint", &gpid.to_string()]);
    assert!(
        c.status.success(),
        "checkpoint: {}",
        String::from_utf8_lossy(&c.stderr)
    );
    // "checkpointed 1 process (... MiB of memory) to DIR; stopped"
    let said = String::from_utf8_lossy(&c.stdout).into_owned();
    let image = said
        .split(" to ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no directory in {said:?}"))
        .to_string();
    assert!(
        image.starts_with(&format!("/mnt/ssi/checkpoints/{gpid}-")),
        "{said}"
    );
    let mut before = String::new();
    out.read_to_string(&mut before).expect("read");
    assert_eq!(
        client.wait().expect("wait").code(),
        Some(137),
        "stopped by the checkpoint"
    );
    let r = ssi(&tb, 1, &["restart", "--dir", &image, "--node", "1"]);
    assert!(
        r.status.success(),
        "restart: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    // The output file says it all: each record copied once, in order, under one pid.
    check_copy(&tb, 2, "/mnt/ssi/job/out2", count, gpid);
}

#[test]
fn a_file_only_the_source_node_has_is_refused_by_name() {
    if !root_or_skip("network and mount namespaces, migration") {
        return;
    }
    let (_one, _dir, tb) = private_testbed(2);
    stage(&tb, &tb.node_dir(1));
    // The input is in node 1's own /tmp, which node 2 does not have.
    sh_in(&tb, 1, "/", "cp /mnt/ssi/job/in /tmp/local-in");
    let count = 100;
    let mut client = run_on(
        &tb,
        1,
        &[
            "/mnt/ssi/job/copier",
            "/tmp/local-in",
            "/mnt/ssi/job/out",
            &count.to_string(),
            "20",
        ],
    );
    let (first, out) = first_line(&mut client);
    let gpid = pid_of(&first);
    let m = ssi(&tb, 1, &["migrate", &gpid.to_string(), "--to", "2"]);
    assert!(!m.status.success(), "migrated with a file node 2 lacks");
    let err = String::from_utf8_lossy(&m.stderr);
    assert!(
        err.contains("/tmp/local-in") && err.contains("runs on"),
        "{err}"
    );
    assert_eq!(host_of(&tb, 1, gpid), Some(1));

    // A checkpoint of it on the DFS restarts on node 1 but is refused on node 2.
    let c = ssi(
        &tb,
        1,
        &[
            "checkpoint",
            &gpid.to_string(),
            "--dir",
            "/mnt/ssi/ckpt",
            "--leave-running",
        ],
    );
    assert!(
        c.status.success(),
        "checkpoint: {}",
        String::from_utf8_lossy(&c.stderr)
    );
    let r = ssi(
        &tb,
        2,
        &["restart", "--dir", "/mnt/ssi/ckpt", "--node", "2"],
    );
    assert!(!r.status.success(), "restarted without its input");
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("/tmp/local-in"), "{err}");
    let on_2 = || {
        json(&ssi(&tb, 2, &["ps", "--json"]))
            .as_array()
            .expect("array")
            .iter()
            .filter(|p| p["node"] == 2)
            .count()
    };
    assert!(wait_until(SETTLE, || on_2() == 0), "leftovers on node 2");
    // The original ran on throughout, undisturbed.
    let (status, rest, err) = finish(client, out);
    assert!(status.success(), "copier: {status}: {err}");
    check_stdout(&first, &rest, count, gpid);
    check_copy(&tb, 2, "/mnt/ssi/job/out", count, gpid);
    // Node 2's own file of that name, same size and content, is another file: refused too
    // (the original has ended: its output is checked above).
    sh_in(&tb, 2, "/", "cp /mnt/ssi/job/in /tmp/local-in");
    let r = ssi(
        &tb,
        2,
        &["restart", "--dir", "/mnt/ssi/ckpt", "--node", "2"],
    );
    assert!(!r.status.success(), "restarted with another node's file");
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("/tmp/local-in") && err.contains("another file of that name"),
        "{err}"
    );
}
