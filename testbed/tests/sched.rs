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
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("pid");
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
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    for doc in show(&tb, 3) {
        assert_eq!(doc["policy"], "round-robin", "every node switched: {doc}");
    }
    let got: Vec<i64> = (0..6).map(|_| placed(&tb, 1)).collect();
    assert_eq!(got, vec![1, 2, 3, 1, 2, 3]);
    // Each placement was recorded with its reason on the deciding node.
    let decisions = show(&tb, 1)[0]["decisions"].as_array().expect("decisions").clone();
    let places: Vec<&serde_json::Value> =
        decisions.iter().filter(|d| d["kind"] == "place").collect();
    assert!(places.len() >= 6);
    assert!(places.iter().all(|d| d["reason"].as_str().is_some_and(|r| r.contains("round-robin chose node"))));

    let bad = ssi(&tb, 1, &["sched", "set", "fastest"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown policy"));
    assert_eq!(show(&tb, 2)[0]["policy"], "round-robin", "a refused policy changes nothing");
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
    let set = ssi(&tb, 1, &["sched", "set", "external", "--param", &prog, "--param", &args]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
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
        &["sched", "set", "external", "--param", &prog, "--param", &args, "--param", "timeout_ms=300"],
    );
    assert!(set.status.success());
    let t = Instant::now();
    placed(&tb, 1);
    // At most the start-up allowance of a fresh program, then the fallback.
    assert!(t.elapsed() < Duration::from_secs(5), "placement blocked {:?}", t.elapsed());
    let t = Instant::now();
    placed(&tb, 1);
    assert!(t.elapsed() < Duration::from_secs(5), "placement blocked {:?}", t.elapsed());
    let me = &show(&tb, 1)[0];
    let report = me["policy_report"].as_str().expect("report");
    assert!(report.contains("2 decided by least-loaded"), "{report}");
    let last = me["decisions"].as_array().expect("decisions").last().expect("one").clone();
    assert!(
        last["reason"].as_str().is_some_and(|r| r.contains("external policy failed") && r.contains("no answer")),
        "{last}"
    );
}
