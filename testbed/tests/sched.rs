//! End-to-end tests of the global scheduler: policies switched live, an external policy and
//! its fallback, decisions visible in `ssi sched show`.

use std::time::{Duration, Instant};

use testbed::Testbed;

mod common;
use common::{json, root_or_skip, ssi, testbed};

/// Runs `sh -c 'echo $$'` through node `via` without `--node`; returns the node that ran it
/// (from the pid range: node N owns N*4096..N*4096+4095).
fn placed(tb: &Testbed, via: usize) -> i64 {
    let out = ssi(tb, via, &["run", "--", "sh", "-c", "echo $$"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("pid");
    pid / 4096
}

fn show(tb: &Testbed, via: usize) -> Vec<serde_json::Value> {
    json(&ssi(tb, via, &["sched", "show", "--json"]))
        .as_array()
        .expect("array")
        .clone()
}

#[test]
fn policy_switched_live_changes_placement_on_every_node() {
    if !root_or_skip("hosting processes") {
        return;
    }
    let (_d, tb) = testbed(3, false);
    let set = ssi(&tb, 2, &["sched", "set", "round-robin"]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    for doc in show(&tb, 3) {
        assert_eq!(doc["policy"], "round-robin", "every node switched: {doc}");
    }
    let got: Vec<i64> = (0..6).map(|_| placed(&tb, 1)).collect();
    assert_eq!(got, vec![1, 2, 3, 1, 2, 3]);
    // Each placement was recorded with its reason on the deciding node.
    let decisions = show(&tb, 1)[0]["decisions"]
        .as_array()
        .expect("decisions")
        .clone();
    let places: Vec<&serde_json::Value> =
        decisions.iter().filter(|d| d["kind"] == "place").collect();
    assert!(places.len() >= 6);
    assert!(places.iter().all(|d| d["reason"]
        .as_str()
        .is_some_and(|r| r.contains("round-robin chose node"))));

    let bad = ssi(&tb, 1, &["sched", "set", "fastest"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown policy"));
    assert_eq!(
        show(&tb, 2)[0]["policy"],
        "round-robin",
        "a refused policy changes nothing"
    );
}

#[test]
fn external_policy_decides_and_a_broken_one_falls_back_without_blocking() {
    if !root_or_skip("hosting processes") {
        return;
    }
    let (d, tb) = testbed(3, false);
    // An admin's policy in Python: always the node with the highest id that fits.
    let good = d.path().join("highest.py");
    std::fs::write(
        &good,
        "import sys, json\nfor line in sys.stdin:\n    q = json.loads(line)\n    ids = [n['id'] for n in q['nodes']]\n    print(json.dumps({'node': max(ids) if ids else None}), flush=True)\n",
    )
    .expect("write policy");
    let prog = "program=python3".to_string();
    let args = format!("args={}", good.display());
    let set = ssi(
        &tb,
        1,
        &[
            "sched", "set", "external", "--param", &prog, "--param", &args,
        ],
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    for _ in 0..3 {
        assert_eq!(placed(&tb, 1), 3);
    }

    // A policy that never answers: placements fall back to least-loaded within the timeout.
    let slow = d.path().join("slow.py");
    std::fs::write(&slow, "import time\ntime.sleep(3600)\n").expect("write policy");
    let args = format!("args={}", slow.display());
    let set = ssi(
        &tb,
        1,
        &[
            "sched",
            "set",
            "external",
            "--param",
            &prog,
            "--param",
            &args,
            "--param",
            "timeout_ms=300",
        ],
    );
    assert!(set.status.success());
    let t = Instant::now();
    placed(&tb, 1);
    // At most the start-up allowance of a fresh program, then the fallback.
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "placement blocked {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    placed(&tb, 1);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "placement blocked {:?}",
        t.elapsed()
    );
    let me = &show(&tb, 1)[0];
    let report = me["policy_report"].as_str().expect("report");
    assert!(report.contains("2 decided by least-loaded"), "{report}");
    let last = me["decisions"]
        .as_array()
        .expect("decisions")
        .last()
        .expect("one")
        .clone();
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("external policy failed") && r.contains("no answer")),
        "{last}"
    );
}

#[test]
fn an_overloaded_node_moves_work_to_idle_ones_on_its_own() {
    if !root_or_skip("hosting processes and migration") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let burn = common::compile("burn", dir.path());
    let opts = testbed::NodeOptions {
        cpu_quota: Some(0.5),
        sched: vec![
            "balance_interval_ms = 500".into(),
            "min_residence_ms = 1000".into(),
            "balance_cooldown_ms = 1500".into(),
        ],
        ..Default::default()
    };
    // In network namespaces, as the demo runs it: the nodes' CPU quota (cgroups) must work there.
    let tb = Testbed::up_with(&dir.path().join("tb"), 3, true, opts).expect("testbed");
    // Three CPU-bound jobs on one node of half a CPU.
    let jobs: Vec<_> = (0..3)
        .map(|_| {
            common::run_cmd(&tb, 1, 1, &[burn.to_str().expect("path"), "2500"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for j in jobs {
        let out = j.wait_with_output().expect("wait");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "done 2500\n");
    }
    let moves: Vec<serde_json::Value> = show(&tb, 2)
        .iter()
        .flat_map(|d| d["decisions"].as_array().cloned().unwrap_or_default())
        .filter(|d| d["kind"] == "move")
        .collect();
    assert!(
        !moves.is_empty(),
        "no process was moved off the overloaded node"
    );
    for m in &moves {
        assert_eq!(m["node"], 1, "only the overloaded node moves work: {m}");
        assert_ne!(m["to"], 1);
        assert!(
            m["reason"]
                .as_str()
                .is_some_and(|r| r.contains("node 1 load")),
            "{m}"
        );
    }
}

#[test]
fn placement_constraints_follow_gossiped_labels() {
    if !root_or_skip("hosting processes") {
        return;
    }
    let (_d, mut tb) = testbed(3, false);
    // Node 3 gets a label: restart it with one in its config.
    tb.kill(3).expect("stop node 3");
    let cfg = tb.node_dir(3).join("ssid.toml");
    let mut text = std::fs::read_to_string(&cfg).expect("config");
    text.push_str("[sched]\nlabels = [\"rack=b\"]\n");
    std::fs::write(&cfg, text).expect("write config");
    tb.start(3).expect("start node 3");
    let labelled = testbed::wait_until(Duration::from_secs(10), || {
        show(&tb, 1)[0]["view"]
            .as_array()
            .is_some_and(|v| v.iter().any(|n| n["id"] == 3 && n["labels"]["rack"] == "b"))
    });
    assert!(labelled, "node 1 never learned node 3's label");
    for _ in 0..3 {
        let out = ssi(
            &tb,
            1,
            &["run", "--constraint", "rack=b", "--", "sh", "-c", "echo $$"],
        );
        let pid: i64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("pid");
        assert_eq!(pid / 4096, 3);
    }
    let none = ssi(&tb, 2, &["run", "--constraint", "rack=z", "--", "true"]);
    assert_eq!(none.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no alive node fits"));
}

/// The node each of `gpids` runs on, from `ssi ps` through node `via`.
fn nodes_of(tb: &Testbed, via: usize, gpids: &[i64]) -> Vec<Option<i64>> {
    let ps = json(&ssi(tb, via, &["ps", "--json"]));
    let rows = ps.as_array().cloned().unwrap_or_default();
    gpids
        .iter()
        .map(|g| {
            rows.iter()
                .find(|p| p["gpid"] == *g)
                .and_then(|p| p["node"].as_i64())
        })
        .collect()
}

/// Re-balancing leaves a process alone while input is on its way into it (bytes in its stdin
/// pipe that it has not read), and moves it once it has read them.
#[test]
fn processes_with_unread_input_are_not_moved() {
    use std::io::{BufRead, Write};
    if !root_or_skip("hosting processes and migration") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    let opts = testbed::NodeOptions {
        cpu_quota: Some(0.5),
        sched: vec![
            "balance_interval_ms = 300".into(),
            "min_residence_ms = 500".into(),
            "balance_cooldown_ms = 500".into(),
        ],
        ..Default::default()
    };
    let tb = Testbed::up_with(&dir.path().join("tb"), 2, false, opts).expect("testbed");
    // Idle until its input is queued in its stdin pipe (so that it is no candidate before),
    // then busy until the file exists, then reads its input, says how much, and stays busy.
    let script = "import fcntl, os, struct, sys, termios, time\nprint(os.getpid(), flush=True)\nwhile struct.unpack('i', fcntl.ioctl(0, termios.FIONREAD, bytes(4)))[0] < 1000: time.sleep(0.01)\nprint('queued', flush=True)\nwhile not os.path.exists(sys.argv[1]): pass\nprint(len(sys.stdin.buffer.read(1000)), flush=True)\nwhile True: pass\n";
    let mut jobs: Vec<_> = (0..2)
        .map(|_| {
            common::run_cmd(
                &tb,
                1,
                1,
                &["python3", "-c", script, go.to_str().expect("path")],
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
        })
        .collect();
    // Input for both at once: a process is no candidate for its first 500 ms (residence),
    // and its input must be on its way before then (a python starting up is busy).
    for j in &mut jobs {
        j.stdin
            .as_mut()
            .expect("stdin")
            .write_all(&[b'x'; 1000])
            .expect("write input");
    }
    let mut outs = Vec::new();
    let mut gpids = Vec::new();
    for j in &mut jobs {
        let (mut line, mut out) = common::first_line(j);
        gpids.push(line.trim().parse::<i64>().expect("pid"));
        line.clear();
        out.read_line(&mut line).expect("read queued");
        assert_eq!(line, "queued\n");
        outs.push(out);
    }
    // Two busy processes on a node of half a CPU, an idle node beside it: without their unread
    // input, one would move within a second.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        assert_eq!(
            nodes_of(&tb, 2, &gpids),
            vec![Some(1), Some(1)],
            "a process with unread input moved"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::write(&go, b"").expect("create the go file");
    for out in &mut outs {
        let mut line = String::new();
        out.read_line(&mut line).expect("read count");
        assert_eq!(line.trim(), "1000", "all input arrived");
    }
    // A move is recorded once its migration is over (the copy on node 2 runs, the one on
    // node 1 is gone): only then are the processes killed, wherever they are.
    let moved = testbed::wait_until(Duration::from_secs(20), || {
        show(&tb, 1).iter().any(|d| {
            d["decisions"].as_array().is_some_and(|ds| {
                ds.iter()
                    .any(|x| x["kind"] == "move" && gpids.iter().any(|g| x["gpid"] == *g))
            })
        })
    });
    assert!(
        moved,
        "once its input is read, a process moves off the busy node"
    );
    assert!(nodes_of(&tb, 2, &gpids).contains(&Some(2)));
    for g in &gpids {
        let _ = ssi(&tb, 1, &["kill", "-s", "KILL", &g.to_string()]);
    }
    // Their clients end with them (never wait without a deadline: a hang is a failure).
    let ended = testbed::wait_until(Duration::from_secs(20), || {
        jobs.iter_mut()
            .all(|j| j.try_wait().ok().flatten().is_some())
    });
    for j in &mut jobs {
        let _ = j.kill();
        let _ = j.wait();
    }
    assert!(ended, "a killed process still runs");
}
