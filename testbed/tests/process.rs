//! End-to-end tests of the process space: `ssi run`, `ps`, `kill`, `attach`, global pids,
//! and what happens when a node dies. Real daemons, real processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use ssi_core::view::MemberState;
use testbed::{wait_until, Testbed};

mod common;
use common::{json, root_or_skip, run_cmd, ssi, ssi_cmd, testbed, SETTLE};

fn ps(tb: &Testbed, node: usize) -> Vec<serde_json::Value> {
    json(&ssi(tb, node, &["ps", "--json"]))
        .as_array()
        .expect("array")
        .clone()
}

fn find(list: &[serde_json::Value], gpid: i64) -> Option<serde_json::Value> {
    list.iter()
        .find(|p| p["gpid"].as_i64() == Some(gpid))
        .cloned()
}

/// A pseudo-random, reproducible byte pattern.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn remote_run_carries_binary_stdin_and_large_output() {
    if !root_or_skip("hosting processes") {
        return;
    }
    let (_d, tb) = testbed(3, false);
    let data = pattern(6 << 20);
    let mut child = run_cmd(&tb, 1, 2, &["cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn ssi run");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&input).expect("write stdin"));
    let mut echoed = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut echoed)
        .expect("read stdout");
    writer.join().expect("writer");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "output differs from input");

    // Fast output, far more than any buffer: every line arrives, in order.
    let out = ssi(&tb, 3, &["run", "--node", "1", "--", "seq", "1", "1000000"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1_000_000);
    assert_eq!(lines[999_999], "1000000");
}

#[test]
fn exit_codes_and_spawn_errors_come_back_like_a_shell() {
    if !root_or_skip("hosting processes") {
        return;
    }
    let (_d, tb) = testbed(2, false);
    let code = |args: &[&str]| ssi(&tb, 1, args).status.code();
    assert_eq!(
        code(&["run", "--node", "2", "--", "sh", "-c", "exit 7"]),
        Some(7)
    );
    assert_eq!(
        code(&["run", "--node", "2", "--", "sh", "-c", "kill -TERM $$"]),
        Some(143)
    );
    let missing = ssi(&tb, 1, &["run", "--node", "2", "--", "no-such-command-x"]);
    assert_eq!(missing.status.code(), Some(127));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("no-such-command-x") && err.contains("node 2"),
        "{err}"
    );
    assert_eq!(
        code(&["run", "--node", "2", "--", "/etc/hostname"]),
        Some(126)
    );
    let unknown = ssi(&tb, 1, &["run", "--node", "9", "--", "true"]);
    assert_eq!(unknown.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown node 9"));
}

#[test]
fn environment_and_working_directory_are_carried_over() {
    if !root_or_skip("hosting processes") {
        return;
    }
    let (d, tb) = testbed(2, false);
    let out = ssi_cmd(
        &tb,
        1,
        &[
            "run",
            "--node",
            "2",
            "--",
            "sh",
            "-c",
            "pwd; echo $SSI_TEST_VAR",
        ],
    )
    .current_dir(d.path())
    .env("SSI_TEST_VAR", "carried")
    .output()
    .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    let cwd = d.path().canonicalize().expect("canonical");
    assert_eq!(text, format!("{}\ncarried\n", cwd.display()));
}

#[test]
fn ctrl_c_on_the_client_reaches_the_remote_program() {
    if !root_or_skip("hosting processes") {
        return;
    }
    let (_d, tb) = testbed(2, false);
    let script = "trap 'echo got INT; exit 5' INT; echo ready; while :; do sleep 0.05; done";
    let mut child = run_cmd(&tb, 1, 2, &["sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().expect("line").expect("read"), "ready");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal client");
    assert_eq!(lines.next().expect("line").expect("read"), "got INT");
    assert_eq!(child.wait().expect("wait").code(), Some(5));
}

#[test]
fn global_pid_is_getpid_and_ps_and_kill_work_from_any_node() {
    if !root_or_skip("hosting processes") {
        return;
    }
    let (_d, tb) = testbed(3, false);
    let out = ssi(
        &tb,
        1,
        &[
            "run",
            "--detach",
            "--node",
            "3",
            "--",
            "sh",
            "-c",
            "echo $$; exec sleep 60",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gpid: i64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("gpid");
    // Node 3 owns pids 12288..=16383.
    assert!((12288..=16383).contains(&gpid), "gpid {gpid}");
    // Its own getpid(), printed before exec, is the global pid.
    let mut attached = ssi_cmd(&tb, 2, &["attach", &gpid.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("attach");
    let first = BufReader::new(attached.stdout.take().expect("stdout"))
        .lines()
        .next()
        .expect("line")
        .expect("read");
    assert_eq!(first.parse::<i64>().expect("number"), gpid);

    for observer in 1..=3 {
        // Between its first line and `sleep` waiting, the shell may still be running or
        // executing: wait for the sleep.
        let asleep = |p: &serde_json::Value| {
            p["state"] == "sleeping"
                && p["command"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("sleep"))
        };
        assert!(
            wait_until(SETTLE, || find(&ps(&tb, observer), gpid)
                .is_some_and(|p| asleep(&p))),
            "not seen asleep from node {observer}"
        );
        let p = find(&ps(&tb, observer), gpid).expect("listed on every node");
        assert_eq!(p["node"], 3);
        assert_eq!(p["state"], "sleeping");
        assert_eq!(p["user"], "root");
        assert!(p["command"].as_str().expect("cmd").starts_with("sleep 60"));
        assert!(p["rss_bytes"].as_u64() > Some(0));
    }
    let killed = ssi(&tb, 2, &["kill", "-s", "KILL", &gpid.to_string()]);
    // The attached client ends with the process (killed: 128 + 9).
    assert_eq!(attached.wait().expect("attach exits").code(), Some(137));
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    assert!(
        wait_until(SETTLE, || find(&ps(&tb, 1), gpid).is_none()),
        "still listed"
    );
    let again = ssi(&tb, 1, &["kill", &gpid.to_string()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains(&format!("no process {gpid}")));
}

#[test]
fn detached_output_is_kept_for_attach_with_the_exit_status() {
    if !root_or_skip("hosting processes") {
        return;
    }
    let (_d, tb) = testbed(2, false);
    let out = ssi(
        &tb,
        2,
        &[
            "run",
            "--detach",
            "--node",
            "1",
            "--",
            "sh",
            "-c",
            "echo one; echo two >&2; sleep 0.3; exit 4",
        ],
    );
    let gpid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let att = ssi(&tb, 2, &["attach", &gpid]);
    assert_eq!(String::from_utf8_lossy(&att.stdout), "one\n");
    assert_eq!(String::from_utf8_lossy(&att.stderr), "two\n");
    assert_eq!(att.status.code(), Some(4));
}

fn lost_when_host_dies(netns: bool) {
    let (_d, mut tb) = testbed(3, netns);
    let mut client = ssi_cmd(
        &tb,
        1,
        &[
            "run",
            "--node",
            "3",
            "--",
            "sh",
            "-c",
            "echo up; exec sleep 60",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let mut out = BufReader::new(client.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert_eq!(line, "up\n");
    // The shell has printed but may not have exec'd the sleep yet (a loaded machine).
    let sleeping = |listed: &[serde_json::Value]| {
        listed
            .iter()
            .find(|p| {
                p["node"] == 3
                    && p["command"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("sleep 60"))
            })
            .and_then(|p| p["gpid"].as_i64())
    };
    let mut listed = Vec::new();
    let found = wait_until(SETTLE, || {
        listed = ps(&tb, 1);
        sleeping(&listed).is_some()
    });
    let gpid = sleeping(&listed)
        .filter(|_| found)
        .unwrap_or_else(|| panic!("the process is not listed: {listed:?}"));
    assert!(
        (12288..=16383).contains(&gpid),
        "gpid {gpid} outside node 3's range"
    );
    tb.kill(3).expect("kill node 3");
    let exited = wait_until(SETTLE, || client.try_wait().ok().flatten().is_some());
    assert!(exited, "the client hangs after its node died");
    let status = client.wait().expect("wait");
    assert_eq!(status.code(), Some(255));
    let mut err = String::new();
    client
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(err.contains("node 3") && err.contains("lost"), "{err}");
    tb.wait_all_see(&[1, 2], &[3], MemberState::Dead, SETTLE)
        .expect("node 3 dead");
    let p = find(&ps(&tb, 1), gpid).expect("still listed");
    assert_eq!(p["state"], "lost");
}

#[test]
fn processes_of_a_dead_node_are_lost_and_their_clients_exit_255() {
    if !root_or_skip("hosting processes") {
        return;
    }
    lost_when_host_dies(false);
}

#[test]
fn across_network_namespaces_runs_and_losses_work_too() {
    if !root_or_skip("network namespaces") {
        return;
    }
    {
        let (_d, tb) = testbed(3, true);
        let out = ssi(&tb, 1, &["run", "--node", "2", "--", "sh", "-c", "echo $$"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid: i64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("pid");
        assert!((8192..=12287).contains(&pid));
    }
    lost_when_host_dies(true);
}

#[test]
fn a_program_started_on_a_node_dies_with_it() {
    if !root_or_skip("hosting processes") {
        return;
    }
    let (_d, mut tb) = testbed(2, false);
    let out = ssi(
        &tb,
        1,
        &["run", "--detach", "--node", "2", "--", "sleep", "60"],
    );
    assert!(out.status.success());
    let before = count_sleepers();
    tb.kill(2).expect("kill node 2");
    // The namespace init dies with its daemon and takes every process of the node along.
    assert!(wait_until(Duration::from_secs(5), || count_sleepers() < before));
}

/// Processes named `sleep` on the machine. Their `comm` files only: unlike pgrep (which reads
/// `stat`), that never waits on another test's process stuck in `execve` under a tracer.
fn count_sleepers() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c == "sleep\n"))
        .count()
}
