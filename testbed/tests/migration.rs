//! End-to-end tests of live migration and cluster checkpoint/restart: real programs, real
//! daemons, real pid namespaces. Each program checks nothing itself; its output is the proof:
//! a counter that continues without gap or repeat, under the same pid.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::Duration;

use testbed::{wait_until, Testbed};

mod common;
use common::{
    compile, first_line, json, log_tails, root_or_skip, run_cmd, ssi, ssi_cmd, testbed, SETTLE,
};

/// Starts `ssi run --node NODE -- ARGS` through node `via`; returns the client.
fn run_via(tb: &Testbed, via: usize, node: usize, args: &[&str]) -> Child {
    run_cmd(tb, via, node, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssi run")
}

/// The pid the test programs print as the second field of their lines.
fn pid_field(line: &str) -> i64 {
    line.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// The next line of `out` if one comes within `limit` (the reader is given up otherwise).
fn line_within(mut out: BufReader<std::process::ChildStdout>, limit: Duration) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(limit).ok()
}

fn migrate(tb: &Testbed, via: usize, gpid: i64, to: usize) -> std::process::Output {
    ssi(
        tb,
        via,
        &[
            "migrate",
            &gpid.to_string(),
            "--to",
            &to.to_string(),
            "--json",
        ],
    )
}

/// Reads the rest of a counter's output, waits for its client to succeed, and checks that the
/// output (after `first`) holds every number 0..count once, in order, all under pid `gpid`.
fn finish_counter(
    mut client: Child,
    mut out: BufReader<std::process::ChildStdout>,
    first: &str,
    count: usize,
    gpid: i64,
) {
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read");
    let status = client.wait().expect("wait");
    assert!(status.success(), "client: {status}");
    let all: Vec<String> = std::iter::once(first.trim_end().to_string())
        .chain(rest.lines().map(str::to_string))
        .collect();
    assert_eq!(all.len(), count, "lines: {all:?}");
    for (i, line) in all.iter().enumerate() {
        assert_eq!(line, &format!("{i} {gpid}"), "line {i}");
    }
}

fn host_of(tb: &Testbed, via: usize, gpid: i64) -> Option<i64> {
    json(&ssi(tb, via, &["ps", "--json"]))
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["gpid"].as_i64() == Some(gpid))
        .and_then(|p| p["node"].as_i64())
}

fn counter_migrates(netns: bool) {
    let (d, tb) = testbed(3, netns);
    let counter = compile("counter", d.path());
    let mut client = run_via(&tb, 3, 1, &[counter.to_str().expect("path"), "150", "20"]);
    let (first, out) = first_line(&mut client);
    let gpid = pid_field(&first);
    assert!(
        (4096..=8191).contains(&gpid),
        "started on node 1 with a pid of its range"
    );
    let m = migrate(&tb, 3, gpid, 2);
    assert!(
        m.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&m.stderr)
    );
    let report = json(&m);
    assert_eq!(report["from"], 1);
    assert_eq!(report["to"], 2);
    assert!(report["downtime_micros"].as_u64() > Some(0));
    assert_eq!(host_of(&tb, 1, gpid), Some(2), "ps shows it on node 2");
    finish_counter(client, out, &first, 150, gpid);
}

#[test]
fn counting_program_migrates_without_gap_repeat_or_pid_change() {
    if !root_or_skip("migration") {
        return;
    }
    counter_migrates(false);
}

#[test]
fn migration_across_network_namespaces() {
    if !root_or_skip("network namespaces") {
        return;
    }
    counter_migrates(true);
}

/// A shell loop forks and reaps a `sleep` every few milliseconds, so the tree changes between
/// pre-copy rounds (children born, exited, reaped) and may be caught with a child at the freeze.
#[test]
fn shell_loop_with_short_lived_children_migrates() {
    if !root_or_skip("migration") {
        return;
    }
    let (_d, tb) = testbed(2, false);
    let script = "i=0; while [ $i -lt 100 ]; do echo \"$i $$\"; i=$((i+1)); sleep 0.02; done";
    let mut client = run_via(&tb, 1, 1, &["sh", "-c", script]);
    let (first, out) = first_line(&mut client);
    let gpid = pid_field(&first);
    // Several times there and back, each with pre-copy rounds, while it keeps forking.
    for to in [2, 1, 2] {
        let m = migrate(&tb, 1, gpid, to);
        assert!(
            m.status.success(),
            "migrate to {to}: {}",
            String::from_utf8_lossy(&m.stderr)
        );
        assert_eq!(host_of(&tb, 1, gpid), Some(to as i64));
    }
    finish_counter(client, out, &first, 100, gpid);
}

#[test]
fn tree_with_a_pipe_inside_migrates_whole() {
    if !root_or_skip("migration") {
        return;
    }
    let (d, tb) = testbed(2, false);
    let prog = compile("pipeline", d.path());
    let mut client = run_via(&tb, 1, 1, &[prog.to_str().expect("path"), "120"]);
    let (first, mut out) = first_line(&mut client);
    let fields: Vec<i64> = first
        .split_whitespace()
        .map(|f| f.parse().expect("number"))
        .collect();
    let (child, parent) = (fields[1], fields[2]);
    let m = migrate(&tb, 1, parent, 2);
    assert!(
        m.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&m.stderr)
    );
    let report = json(&m);
    let pids: Vec<i64> = report["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .filter_map(|p| p.as_i64())
        .collect();
    assert_eq!(pids, vec![parent, child]);
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read");
    assert!(client.wait().expect("wait").success());
    let all: Vec<String> = std::iter::once(first.trim_end().to_string())
        .chain(rest.lines().map(str::to_string))
        .collect();
    assert_eq!(all.len(), 120);
    for (i, line) in all.iter().enumerate() {
        // Every number crossed the pipe once, in order, with the bytes in flight kept.
        assert_eq!(line, &format!("{i} {child} {parent}"));
    }
}

#[test]
fn killing_the_source_node_after_migration_leaves_the_process_running() {
    if !root_or_skip("migration") {
        return;
    }
    let (d, mut tb) = testbed(3, false);
    let counter = compile("counter", d.path());
    let mut client = run_via(&tb, 3, 1, &[counter.to_str().expect("path"), "120", "20"]);
    let (first, out) = first_line(&mut client);
    let gpid = pid_field(&first);
    let m = migrate(&tb, 3, gpid, 2);
    assert!(
        m.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&m.stderr)
    );
    tb.kill(1).expect("kill the source node");
    finish_counter(client, out, &first, 120, gpid);
}

#[test]
fn killing_the_source_node_during_migration_fails_cleanly() {
    if !root_or_skip("migration") {
        return;
    }
    let (d, mut tb) = testbed(3, false);
    let hog = compile("memhog", d.path());
    let mut client = run_via(&tb, 3, 1, &[hog.to_str().expect("path"), "768", "0"]);
    let (ready, _out) = first_line(&mut client);
    assert_eq!(ready, "ready\n");
    let gpid = json(&ssi(&tb, 3, &["ps", "--json"]))
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["command"].as_str().is_some_and(|c| c.contains("memhog")))
        .and_then(|p| p["gpid"].as_i64())
        .expect("memhog listed");
    let mut mig = ssi_cmd(&tb, 3, &["migrate", &gpid.to_string(), "--to", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn migrate");
    // Kill the source once the copy is under way.
    std::thread::sleep(Duration::from_millis(300));
    tb.kill(1).expect("kill node 1");
    let done = wait_until(Duration::from_secs(60), || {
        mig.try_wait().ok().flatten().is_some()
    });
    assert!(done, "ssi migrate hangs after its source died");
    let mig = mig.wait_with_output().expect("migrate output");
    assert!(
        !mig.status.success(),
        "migration cannot succeed without its source"
    );
    let err = String::from_utf8_lossy(&mig.stderr);
    assert!(
        err.contains(&format!("process {gpid} is lost with node 1")),
        "ssi migrate says what became of the process: {err}"
    );
    assert!(
        wait_until(SETTLE, || client.try_wait().ok().flatten().is_some()),
        "client hangs"
    );
    assert_eq!(client.wait().expect("wait").code(), Some(255));
    // Every surviving node lists it as lost with node 1, until its owner has seen it listed.
    let row = |via: usize| {
        json(&ssi(&tb, via, &["ps", "--json"]))
            .as_array()
            .expect("array")
            .iter()
            .find(|p| p["gpid"] == gpid)
            .cloned()
    };
    let mut seen = None;
    assert!(
        wait_until(SETTLE, || {
            seen = row(2);
            seen.is_some()
        }),
        "node 2 does not list the lost process\n{}",
        log_tails(&tb, 3, 30)
    );
    let seen = seen.expect("row");
    assert_eq!(seen["state"], "lost", "{seen}");
    assert_eq!(seen["node"], 1, "{seen}");
    assert_eq!(row(3), None, "listed again after its owner saw it");
    // Nothing half-restored is left on the target.
    let on_target = || {
        json(&ssi(&tb, 2, &["ps", "--json"]))
            .as_array()
            .expect("array")
            .iter()
            .filter(|p| p["node"] == 2)
            .count()
    };
    assert!(
        wait_until(SETTLE, || on_target() == 0),
        "leftovers on node 2"
    );
}

#[test]
fn failed_migration_leaves_the_process_running_and_says_why() {
    if !root_or_skip("migration") {
        return;
    }
    let (_d, tb) = testbed(2, false);
    // A TCP socket cannot be migrated: the dump refuses before freezing anything.
    let script = "import socket,time,os\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\nfor i in range(60):\n  print(i, os.getpid(), flush=True)\n  time.sleep(0.05)\n";
    let mut client = run_via(&tb, 1, 1, &["python3", "-c", script]);
    let (first, out) = first_line(&mut client);
    let gpid = pid_field(&first);
    let m = migrate(&tb, 1, gpid, 2);
    assert_eq!(m.status.code(), Some(1));
    let err = String::from_utf8_lossy(&m.stderr);
    assert!(err.contains("socket") && err.contains("runs on"), "{err}");
    assert_eq!(host_of(&tb, 1, gpid), Some(1));
    finish_counter(client, out, &first, 60, gpid);
}

#[test]
fn checkpoint_on_one_node_and_restart_on_another() {
    if !root_or_skip("checkpoint") {
        return;
    }
    let (d, tb) = testbed(2, false);
    let counter = compile("counter", d.path());
    let image = d.path().join("image");
    let mut client = run_via(&tb, 1, 1, &[counter.to_str().expect("path"), "80", "20"]);
    let (first, mut out) = first_line(&mut client);
    let gpid = pid_field(&first);
    std::thread::sleep(Duration::from_millis(300));
    let c = ssi(
        &tb,
        2,
        &[
            "checkpoint",
            &gpid.to_string(),
            "--dir",
            image.to_str().expect("path"),
        ],
    );
    assert!(
        c.status.success(),
        "checkpoint: {}",
        String::from_utf8_lossy(&c.stderr)
    );
    let mut before = String::new();
    out.read_to_string(&mut before).expect("read");
    // The checkpoint stopped the process: its client sees it killed.
    assert_eq!(client.wait().expect("wait").code(), Some(137));
    let restarted = ssi(
        &tb,
        2,
        &[
            "restart",
            "--dir",
            image.to_str().expect("path"),
            "--node",
            "2",
        ],
    );
    assert!(
        restarted.status.success(),
        "restart: {}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    let after = String::from_utf8_lossy(&restarted.stdout);
    // Lines may repeat across the cut (printed after the image was taken, before the kill) but
    // none may be missing, and the restarted run ends the count under the same pid.
    let seen: Vec<String> = std::iter::once(first.trim_end().to_string())
        .chain(before.lines().map(str::to_string))
        .collect();
    let resumed: Vec<&str> = after.lines().collect();
    let resume_at: usize = resumed[0]
        .split_whitespace()
        .next()
        .expect("n")
        .parse()
        .expect("n");
    assert!(
        resume_at <= seen.len(),
        "no gap: resumed at {resume_at} after {}",
        seen.len()
    );
    for (k, line) in resumed.iter().enumerate() {
        assert_eq!(*line, format!("{} {gpid}", resume_at + k));
    }
    assert_eq!(resume_at + resumed.len(), 80);
}

/// The pid (in the root namespace) of a helper of node `n` (on the target of a migration, its
/// incoming-migration helper), if one runs: a grandchild of the node's ssid (under its
/// namespace init) running `ssid helper`.
fn migrate_in_helper(tb: &Testbed, n: usize) -> Option<i32> {
    let ssid = tb.pid(n)?.as_raw();
    let parent = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let is_helper = cmdline.split(|&b| b == 0).nth(1) == Some(&b"helper"[..]);
        (is_helper && parent(parent(pid)?)? == ssid).then_some(pid)
    })
}

/// The target's helper dies at three points of the copy (with the debug build, all during
/// pre-copy): the process runs on at the source, once, and nothing is left on the target; a
/// later migration of the same process to the same node works. (The case of an answer lost
/// after the last image: `migrate/tests/target_faults.rs` and the protocol simulation,
/// `migrate::protocol::sim`.)
#[test]
fn a_target_helper_killed_mid_migration_leaves_the_process_at_the_source() {
    if !root_or_skip("migration") {
        return;
    }
    let (d, tb) = testbed(2, false);
    let hog = compile("memhog", d.path());
    let mut client = run_via(&tb, 1, 1, &[hog.to_str().expect("path"), "192", "10"]);
    let (ready, mut out) = first_line(&mut client);
    assert_eq!(ready, "ready\n");
    let gpid = json(&ssi(&tb, 1, &["ps", "--json"]))
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["command"].as_str().is_some_and(|c| c.contains("memhog")))
        .and_then(|p| p["gpid"].as_i64())
        .expect("memhog listed");
    let on = |n: i64| {
        json(&ssi(&tb, 1, &["ps", "--json"]))
            .as_array()
            .expect("array")
            .iter()
            .filter(|p| p["node"] == n && p["gpid"] == gpid)
            .count()
    };
    let mut tick = String::new();
    for delay_ms in [0u64, 150, 400] {
        let mig = ssi_cmd(&tb, 1, &["migrate", &gpid.to_string(), "--to", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn migrate");
        let mut helper = None;
        assert!(
            wait_until(SETTLE, || {
                helper = migrate_in_helper(&tb, 2);
                helper.is_some()
            }),
            "no migrate-in helper on node 2"
        );
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(helper.expect("helper")),
            nix::sys::signal::Signal::SIGKILL,
        );
        let mig = mig.wait_with_output().expect("migrate output");
        let err = String::from_utf8_lossy(&mig.stderr);
        if mig.status.success() {
            // the copy ended before the kill: bring it back for the next round
            let back = migrate(&tb, 1, gpid, 1);
            assert!(
                back.status.success(),
                "{}",
                String::from_utf8_lossy(&back.stderr)
            );
            continue;
        }
        assert!(
            err.contains("runs on at the source"),
            "{delay_ms} ms: {err}"
        );
        // Once, at the source, still ticking.
        assert_eq!((on(1), on(2)), (1, 0), "{delay_ms} ms: {err}");
        for _ in 0..2 {
            tick.clear();
            out.read_line(&mut tick).expect("read tick");
            assert!(tick.starts_with("tick "), "{tick:?}");
        }
    }
    // The last killed helper's half-restored copy on node 2 may still be dying: until it is
    // gone its pid is taken there, which the migration reports (the process runs on at node 1).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let m = migrate(&tb, 1, gpid, 2);
        let err = String::from_utf8_lossy(&m.stderr).to_string();
        if m.status.success() {
            break;
        }
        assert!(
            err.contains("is in use") && std::time::Instant::now() < deadline,
            "{err}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!((on(1), on(2)), (0, 1));
    tick.clear();
    out.read_line(&mut tick).expect("read tick");
    assert!(tick.starts_with("tick "), "{tick:?}");
    let _ = ssi(&tb, 1, &["kill", "-s", "KILL", &gpid.to_string()]);
    let _ = client.wait();
}

/// Input a process has not read when it moves goes with it, in order, and so does the end of
/// its input: what was in its stdin pipe, what was queued for it, and (when the session's home
/// is the node it leaves) what its client sent meanwhile. Two sessions: one whose home is the
/// source node, with more input than a pipe holds, and one whose home is another node.
#[test]
fn unread_input_and_its_end_move_with_the_process() {
    use std::io::Write;
    if !root_or_skip("migration") {
        return;
    }
    let (d, tb) = testbed(3, false);
    let go = d.path().join("go");
    // Says its pid, waits (idle) until `want` bytes are in its stdin pipe (or the pipe is
    // full), says so, waits for the go file, then reads its input to the end and says how much
    // it got and its digest.
    let script = "import fcntl, hashlib, os, struct, sys, termios, time\nprint('0', os.getpid(), flush=True)\nwant = int(sys.argv[2])\nwhile struct.unpack('i', fcntl.ioctl(0, termios.FIONREAD, bytes(4)))[0] < want: time.sleep(0.01)\nprint('queued', flush=True)\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)\ndata = sys.stdin.buffer.read()\nprint(len(data), hashlib.sha256(data).hexdigest(), flush=True)\n";
    let go_s = go.to_str().expect("path");
    let pattern = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 7 % 251) as u8).collect() };
    let mut sessions = Vec::new();
    // (home node, input size, bytes that must be in the pipe before it moves)
    for (via, size, want) in [(1usize, 300_000usize, "60000"), (2, 50_000, "50000")] {
        let mut client = run_cmd(&tb, via, 1, &["python3", "-c", script, go_s, want])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ssi run");
        let data = pattern(size);
        let mut stdin = client.stdin.take().expect("stdin");
        // the end of the input comes when the writer is done
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let (first, mut out) = first_line(&mut client);
        let gpid = pid_field(&first);
        let mut line = String::new();
        out.read_line(&mut line).expect("read queued");
        assert_eq!(line, "queued\n");
        sessions.push((client, out, gpid, size, writer));
    }
    for (_, _, gpid, _, _) in &sessions {
        let m = migrate(&tb, 1, *gpid, 3);
        assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
        let report = json(&m);
        assert_eq!(report["lost_input_bytes"], 0, "{report}");
    }
    std::fs::write(&go, b"").expect("go");
    for (mut client, out, gpid, size, writer) in sessions {
        writer.join().expect("writer");
        // a program still waiting for input or its end would never answer
        let line = line_within(out, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("process {gpid}: its input or its end did not arrive"));
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(pattern(size)))
        };
        assert_eq!(line, format!("{size} {digest}\n"), "process {gpid}");
        assert!(client.wait().expect("wait").success());
        assert_eq!(host_of(&tb, 1, gpid), None, "process {gpid} ended");
    }
}

/// Input that keeps coming while the process moves arrives whole and in order: a slow reader
/// fed 3 MiB, moved in the middle, once with the session's home on the source node and once
/// on another node.
#[test]
fn input_streaming_during_a_move_arrives_whole_and_in_order() {
    use std::io::Write;
    if !root_or_skip("migration") {
        return;
    }
    let (_d, tb) = testbed(3, false);
    // Reads 4 KiB every 2 ms (about 2 MB/s), says when it has read 256 KiB, and at the end
    // says how much it read and its digest.
    let script = "import hashlib, sys, time\nprint('0', __import__('os').getpid(), flush=True)\nh = hashlib.sha256(); n = 0; said = False\nwhile True:\n    b = sys.stdin.buffer.read1(4096)\n    if not b: break\n    h.update(b); n += len(b)\n    if n >= 262144 and not said:\n        print('reading', flush=True); said = True\n    time.sleep(0.002)\nprint(n, h.hexdigest(), flush=True)\n";
    let size = 3 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i * 13 % 251) as u8).collect();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&data))
    };
    for via in [1usize, 2] {
        let mut client = run_cmd(&tb, via, 1, &["python3", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ssi run");
        let mut stdin = client.stdin.take().expect("stdin");
        let input = data.clone();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let (first, mut out) = first_line(&mut client);
        let gpid = pid_field(&first);
        let mut line = String::new();
        out.read_line(&mut line).expect("read reading");
        assert_eq!(line, "reading\n");
        let m = migrate(&tb, 1, gpid, 3);
        assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
        assert_eq!(json(&m)["lost_input_bytes"], 0);
        writer.join().expect("writer");
        let line = line_within(out, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("home {via}: the input or its end did not arrive"));
        assert_eq!(line, format!("{size} {digest}\n"), "home on node {via}");
        assert!(client.wait().expect("wait").success());
    }
}

/// A process killed while it migrates is gone afterwards, wherever the migration got to: the
/// kill reaches the source copy, and one sent while the tree was already running on the target
/// is passed on to it.
#[test]
fn a_process_killed_during_its_migration_is_gone_everywhere() {
    if !root_or_skip("migration") {
        return;
    }
    let (d, tb) = testbed(2, false);
    let hog = compile("memhog", d.path());
    for rounds in ["0", "8"] {
        let mut client = run_via(&tb, 1, 1, &[hog.to_str().expect("path"), "256", "5"]);
        let (ready, _out) = first_line(&mut client);
        assert_eq!(ready, "ready\n");
        let gpid = json(&ssi(&tb, 1, &["ps", "--json"]))
            .as_array()
            .expect("array")
            .iter()
            .filter(|p| p["command"].as_str().is_some_and(|c| c.contains("memhog")))
            .filter_map(|p| p["gpid"].as_i64())
            .max()
            .expect("memhog listed");
        let mut mig = ssi_cmd(
            &tb,
            1,
            &[
                "migrate",
                &gpid.to_string(),
                "--to",
                "2",
                "--precopy-rounds",
                rounds,
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn migrate");
        std::thread::sleep(Duration::from_millis(200));
        let k = ssi(&tb, 1, &["kill", "-s", "KILL", &gpid.to_string()]);
        let done = wait_until(Duration::from_secs(60), || {
            mig.try_wait().ok().flatten().is_some()
        });
        if !done {
            let _ = mig.kill();
        }
        let _ = mig.wait();
        assert!(
            done,
            "rounds {rounds}: ssi migrate hangs after its process was killed\n{}",
            log_tails(&tb, 2, 40)
        );
        // the kill may come too late for the source copy (`ssi kill` finds it gone): then the
        // process is on node 2 and is killed there now
        if !k.status.success() {
            let _ = ssi(&tb, 2, &["kill", "-s", "KILL", &gpid.to_string()]);
        }
        let gone = wait_until(SETTLE, || host_of(&tb, 1, gpid).is_none());
        assert!(
            gone,
            "rounds {rounds}: process {gpid} runs on after its kill (kill: {}; ps: {})\n{}",
            String::from_utf8_lossy(&k.stderr),
            String::from_utf8_lossy(&ssi(&tb, 1, &["ps", "--json"]).stdout),
            log_tails(&tb, 2, 40)
        );
        let ended = wait_until(SETTLE, || client.try_wait().ok().flatten().is_some());
        if !ended {
            let _ = client.kill();
        }
        let _ = client.wait();
        assert!(
            ended,
            "rounds {rounds}: the client of a killed process hangs"
        );
    }
}

/// While a tree moves, every node lists it once: as `migrating`, with its source as its node
/// and its target as `to`; then once, running on the target.
#[test]
fn a_migrating_process_is_listed_once() {
    if !root_or_skip("migration") {
        return;
    }
    let (d, tb) = testbed(2, false);
    let hog = compile("memhog", d.path());
    let mut client = run_via(&tb, 1, 1, &[hog.to_str().expect("path"), "384", "10"]);
    let (ready, _out) = first_line(&mut client);
    assert_eq!(ready, "ready\n");
    let rows = |via: usize, gpid: i64| -> Vec<serde_json::Value> {
        json(&ssi(&tb, via, &["ps", "--json"]))
            .as_array()
            .expect("array")
            .iter()
            .filter(|p| p["gpid"] == gpid)
            .cloned()
            .collect()
    };
    let gpid = json(&ssi(&tb, 1, &["ps", "--json"]))
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["command"].as_str().is_some_and(|c| c.contains("memhog")))
        .and_then(|p| p["gpid"].as_i64())
        .expect("memhog listed");
    let mut mig = ssi_cmd(&tb, 1, &["migrate", &gpid.to_string(), "--to", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn migrate");
    let mut migrating = None;
    let done = wait_until(Duration::from_secs(120), || {
        for via in [1, 2] {
            let r = rows(via, gpid);
            assert!(
                r.len() <= 1,
                "listed {} times via node {via}: {r:?}",
                r.len()
            );
            if let Some(p) = r.first().filter(|p| p["state"] == "migrating") {
                migrating = Some(p.clone());
            }
        }
        mig.try_wait().ok().flatten().is_some()
    });
    if !done {
        let _ = mig.kill();
    }
    let mig = mig.wait_with_output().expect("migrate output");
    assert!(done, "ssi migrate hangs");
    assert!(
        mig.status.success(),
        "{}",
        String::from_utf8_lossy(&mig.stderr)
    );
    let p = migrating.expect("never listed as migrating while it moved");
    assert_eq!((&p["node"], &p["to"]), (&1.into(), &2.into()), "{p}");
    for via in [1, 2] {
        let r = rows(via, gpid);
        assert_eq!(r.len(), 1, "via node {via}: {r:?}");
        assert_eq!(r[0]["node"], 2, "via node {via}: {r:?}");
    }
    let _ = ssi(&tb, 1, &["kill", "-s", "KILL", &gpid.to_string()]);
    let _ = client.wait();
}
