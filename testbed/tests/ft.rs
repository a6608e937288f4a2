//! End-to-end test of fault tolerance (`ssi run --ft`) on a testbed whose nodes share nothing
//! but the DFS: a counter checkpointed every second on node 3 runs on elsewhere, with the same
//! global pid, after node 3 is killed (its daemon and every process of it); the `ssi run`
//! client on node 1 keeps printing; node 3 coming back does not run it again.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{ChildStdout, Stdio};

use common::dfs::{private_testbed, sh_in};
use common::{compile, json, log_tails, root_or_skip, ssi, ssi_cmd, SETTLE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use testbed::{wait_until, Testbed};

/// Lines the counter prints, one every `PERIOD_MS`.
const COUNT: i64 = 300;
const PERIOD_MS: i64 = 100;

/// The row of `gpid` in `ssi ps --json` through node `via`.
fn row(tb: &Testbed, via: usize, gpid: i64) -> Option<serde_json::Value> {
    let out = ssi(tb, via, &["ps", "--json"]);
    if !out.status.success() {
        return None;
    }
    json(&out)
        .as_array()?
        .iter()
        .find(|p| p["gpid"].as_i64() == Some(gpid))
        .cloned()
}

/// `(i, pid)` of a counter line.
fn parse(line: &str) -> (i64, i64) {
    let mut w = line.split_whitespace().map(|x| x.parse::<i64>().ok());
    match (w.next().flatten(), w.next().flatten()) {
        (Some(i), Some(p)) => (i, p),
        _ => panic!("not a counter line: {line:?}"),
    }
}

/// Reads counter lines until one reaches `i` or more; every line read.
fn read_until(out: &mut BufReader<ChildStdout>, i: i64) -> Vec<(i64, i64)> {
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).expect("read") > 0,
            "output ended: {seen:?}"
        );
        let l = parse(&line);
        seen.push(l);
        if l.0 >= i {
            return seen;
        }
    }
}

/// Puts the counter on the DFS and starts it with `--ft --checkpoint-every 1s` on node 3,
/// from a client on node 1.
fn start_counter(tb: &Testbed) -> std::process::Child {
    let counter = compile("counter", &tb.node_dir(1));
    sh_in(
        tb,
        1,
        "/",
        &format!(
            "mkdir -p /mnt/ssi/job && cp {} /mnt/ssi/job/",
            counter.display()
        ),
    );
    let (count, period) = (COUNT.to_string(), PERIOD_MS.to_string());
    ssi_cmd(
        tb,
        1,
        &[
            "run",
            "--node",
            "3",
            "--ft",
            "--checkpoint-every",
            "1s",
            "--",
            "/mnt/ssi/job/counter",
            &count,
            &period,
        ],
    )
    .current_dir("/")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn ssi run")
}

#[test]
fn a_fault_tolerant_process_runs_on_elsewhere_when_its_node_dies() {
    if !root_or_skip("network and mount namespaces, checkpoint/restart") {
        return;
    }
    let (_one, _dir, mut tb) = private_testbed(3);
    let mut client = start_counter(&tb);
    let mut out = BufReader::new(client.stdout.take().expect("stdout"));
    let mut lines = read_until(&mut out, 0);
    let gpid = lines[0].1;

    // Checkpoints are taken and shown, incremental after the first.
    let ckpt = |tb: &Testbed| row(tb, 1, gpid).and_then(|r| r["ft"]["last_checkpoint_ms"].as_u64());
    assert!(
        wait_until(SETTLE, || ckpt(&tb).is_some()),
        "no checkpoint listed: {:?}\n{}",
        row(&tb, 1, gpid),
        log_tails(&tb, 3, 30)
    );
    let first = ckpt(&tb).expect("one");
    assert!(
        wait_until(SETTLE, || ckpt(&tb) > Some(first)),
        "a second checkpoint"
    );
    let r = row(&tb, 1, gpid).expect("row");
    assert_eq!(r["node"], 3, "{r}");
    assert!(r["ft"]["freeze_us"].as_u64() > Some(0), "{r}");
    assert!(r["ft"]["bytes"].as_u64() > Some(0), "{r}");
    lines.extend(read_until(&mut out, 40));
    let before_kill = lines.last().expect("lines").0;

    // Node 3 dies with its processes: the counter comes back on node 1 or 2, same gpid.
    tb.kill(3).expect("kill node 3");
    let elsewhere = |tb: &Testbed| {
        row(tb, 1, gpid).filter(|r| {
            r["node"] != 3 && r["state"] != "lost" && !r["ft"]["restarted_from_ms"].is_null()
        })
    };
    assert!(
        wait_until(SETTLE * 3, || elsewhere(&tb).is_some()),
        "not restarted: {:?}\n{}",
        row(&tb, 1, gpid),
        log_tails(&tb, 2, 40)
    );
    let r = elsewhere(&tb).expect("row");
    let table = String::from_utf8_lossy(&ssi(&tb, 1, &["ps"]).stdout).into_owned();
    assert!(
        table
            .lines()
            .any(|l| l.contains(&gpid.to_string()) && l.contains("restarted")),
        "{table}"
    );

    // The node that comes back does not run its old copy: the counter runs once, elsewhere.
    tb.start(3).expect("start node 3");
    let hosted_on_3 = || {
        json(&ssi(&tb, 1, &["ps", "--json"]))
            .as_array()
            .expect("array")
            .iter()
            .filter(|p| p["node"] == 3)
            .count()
    };
    assert!(
        wait_until(SETTLE, || hosted_on_3() == 0),
        "node 3 hosts something"
    );
    let again = row(&tb, 1, gpid).expect("still listed");
    assert_eq!(again["node"], r["node"], "it stays where it was restarted");

    // The original client printed on to the end: every number, from the same pid, going back
    // once to the checkpoint the restart came from (at-least-once output).
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read rest");
    let mut err = String::new();
    if let Some(mut e) = client.stderr.take() {
        e.read_to_string(&mut err).expect("stderr");
    }
    let status = client.wait().expect("wait");
    assert!(status.success(), "client: {status}: {err}");
    lines.extend(rest.lines().map(parse));
    assert!(lines.iter().all(|&(_, p)| p == gpid), "one pid: {lines:?}");
    let mut back = 0;
    for w in lines.windows(2) {
        let (a, b) = (w[0].0, w[1].0);
        assert!(b <= a + 1, "a gap after {a}: {b}");
        if b <= a {
            back += 1;
            // it went back to a checkpoint taken at most ~3 s before the kill
            assert!(a - b < 60, "went back from {a} to {b}");
        }
    }
    assert!(back <= 1, "went back {back} times: {lines:?}");
    assert!(before_kill >= 40);
    assert_eq!(lines.last().map(|l| l.0), Some(COUNT - 1));
    // Its checkpoints are removed once it ended.
    assert!(
        wait_until(SETTLE, || sh_in(&tb, 1, "/", "ls /mnt/ssi/.ssi-ft")
            .trim()
            .is_empty()),
        "checkpoints left: {}",
        sh_in(&tb, 1, "/", "ls -R /mnt/ssi/.ssi-ft")
    );
}

/// A node declared dead while it was only frozen finds, once it runs again, that its tree was
/// restarted elsewhere under a later epoch: it kills its stale copy instead of letting it run.
#[test]
fn a_node_that_comes_back_kills_its_stale_copy() {
    if !root_or_skip("network and mount namespaces, checkpoint/restart") {
        return;
    }
    let (_one, _dir, tb) = private_testbed(3);
    let mut client = start_counter(&tb);
    let mut out = BufReader::new(client.stdout.take().expect("stdout"));
    let gpid = read_until(&mut out, 0)[0].1;
    let ckpt = || row(&tb, 1, gpid).and_then(|r| r["ft"]["last_checkpoint_ms"].as_u64());
    assert!(wait_until(SETTLE, || ckpt().is_some()), "no checkpoint");
    read_until(&mut out, 30);
    // Node 3's daemon stops (its processes run on): it is declared dead, the tree restarted.
    let ssid = tb.pid(3).expect("node 3 runs");
    kill(ssid, Signal::SIGSTOP).expect("SIGSTOP node 3");
    let resumed = scopeguard(ssid);
    let elsewhere =
        || row(&tb, 1, gpid).filter(|r| r["node"] != 3 && !r["ft"]["restarted_from_ms"].is_null());
    assert!(
        wait_until(SETTLE * 3, || elsewhere().is_some()),
        "not restarted: {:?}\n{}",
        row(&tb, 1, gpid),
        log_tails(&tb, 2, 30)
    );
    // Some(true) while node 3 lists the gpid as its own, None while it does not answer.
    let stale_runs = || {
        let out = ssi(&tb, 3, &["ps", "--json"]);
        out.status.success().then(|| {
            json(&out)
                .as_array()
                .expect("array")
                .iter()
                .any(|p| p["gpid"].as_i64() == Some(gpid) && p["node"] == 3)
        })
    };
    drop(resumed); // SIGCONT
    let killed = || {
        std::fs::read_to_string(tb.log(3))
            .unwrap_or_default()
            // killed by the fence, or ended on its own first (e.g. SIGPIPE once its client
            // followed the copy restarted elsewhere): either way not resumed
            .contains("the stale copy here")
    };
    assert!(
        wait_until(SETTLE * 2, killed),
        "node 3 did not kill its stale copy\n{}",
        log_tails(&tb, 3, 30)
    );
    assert!(
        wait_until(SETTLE, || stale_runs() == Some(false)),
        "node 3 still lists its stale copy: {:?}",
        stale_runs()
    );
    assert!(elsewhere().is_some(), "the restarted copy runs on");
    let _ = client.kill();
    let _ = client.wait();
}

/// Sends SIGCONT to a stopped daemon when dropped (also when the test fails).
struct Resume(Pid);

fn scopeguard(pid: Pid) -> Resume {
    Resume(pid)
}

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}
