//! Three machines set up as an admin would: `ssi cluster init` on node 1, `ssi cluster join
//! TOKEN` on nodes 2 and 3 (each in its own network namespace, with files of its own), and
//! the cluster forms. Reused, expired and tampered tokens are refused with one line, and
//! leave nothing on the refused node.

use std::os::unix::fs::MetadataExt;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ssi_core::view::MemberState;
use testbed::{wait_until, NodeOptions, Testbed};

mod common;
use common::{json, root_or_skip, ssi, SETTLE};

/// `ssi cluster ARGS --config CONFIG` run inside node `n`'s network namespace.
fn cluster(tb: &Testbed, n: usize, args: &[&str]) -> Output {
    tb.command_on(n, &tb.bin("ssi"))
        .arg("cluster")
        .args(args)
        .arg("--config")
        .arg(tb.node_dir(n).join("ssid.toml"))
        .output()
        .expect("run ssi cluster")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Checks that `out` failed with exactly one line on stderr that contains `needle`.
fn refused(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("ssi: error:"), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// The files a join writes on node `n`, none of which a refused join may leave.
fn no_secrets(tb: &Testbed, n: usize) {
    for f in ["node.pem", "node.key", "ca.pem", "cluster.key"] {
        let p = tb.node_dir(n).join(f);
        assert!(!p.exists(), "a refused join left {}", p.display());
    }
}

/// A copy of `token` with the hex digit at `at` (counted from the start) changed.
fn flip(token: &str, at: usize) -> String {
    let mut b = token.as_bytes().to_vec();
    b[at] = if b[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).expect("ascii")
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("meta").mode() & 0o777
}

#[test]
fn init_and_join_form_a_cluster_and_bad_tokens_are_refused() {
    if !root_or_skip("network namespaces") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let options = NodeOptions {
        bootstrap: true,
        ..NodeOptions::default()
    };
    let mut tb = Testbed::prepare(&dir.path().join("tb"), 3, true, options, "").expect("prepare");

    // Node 1: the cluster's secrets and a token; its daemon starts and admits nodes.
    let init = cluster(&tb, 1, &["init", "--ttl", "10m"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let token = stdout(&init);
    assert_eq!(token.lines().count(), 1, "{token}");
    let n1 = tb.node_dir(1);
    assert_eq!(mode(&n1.join("ca.key")), 0o600);
    assert_eq!(mode(&n1.join("cluster.key")), 0o600);
    let store = std::fs::read_to_string(n1.join("join-tokens.toml")).expect("token store");
    let secret = token.split('-').nth(2).expect("secret part");
    assert!(
        !store.contains(secret),
        "the store holds the secret: {store}"
    );
    tb.start(1).expect("start node 1");

    // Tampered tokens: another secret is unknown; another CA fingerprint is caught before
    // the secret is sent. Neither uses up the real token.
    let secret_at = token.find(secret).expect("secret offset");
    refused(
        &cluster(&tb, 2, &["join", &flip(&token, secret_at)]),
        "token unknown here",
    );
    let fp_at = token.rfind('-').expect("fingerprint") + 1;
    refused(
        &cluster(&tb, 2, &["join", &flip(&token, fp_at + 5)]),
        "its cluster CA is not the one the token names",
    );
    refused(
        &cluster(&tb, 2, &["join", &token[..token.len() / 2]]),
        "join token",
    );
    no_secrets(&tb, 2);

    // Node 2 joins with the token; its key was made there, its files are private.
    let join = cluster(&tb, 2, &["join", &token]);
    assert!(
        join.status.success(),
        "{}",
        String::from_utf8_lossy(&join.stderr)
    );
    let n2 = tb.node_dir(2);
    assert_eq!(mode(&n2.join("node.key")), 0o600);
    assert_eq!(mode(&n2.join("cluster.key")), 0o600);
    assert!(!n2.join("ca.key").exists(), "the CA key left node 1");
    assert_eq!(
        std::fs::read(n2.join("cluster.key")).expect("key 2"),
        std::fs::read(n1.join("cluster.key")).expect("key 1")
    );
    assert_eq!(
        std::fs::read(n2.join("ca.pem")).expect("ca 2"),
        std::fs::read(n1.join("ca.pem")).expect("ca 1")
    );
    tb.start(2).expect("start node 2");

    // The same token again: used.
    refused(
        &cluster(&tb, 3, &["join", &token]),
        "token already used (by node n2)",
    );
    // A token past its time: expired.
    let before = unix_secs();
    let short = cluster(&tb, 1, &["token", "--ttl", "1s"]);
    assert!(
        short.status.success(),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );
    // Expiry is kept in whole seconds: past it once the clock is 2 s beyond the token's start.
    assert!(wait_until(Duration::from_secs(5), || unix_secs() > before + 2));
    refused(
        &cluster(&tb, 3, &["join", &stdout(&short)]),
        "token expired",
    );
    no_secrets(&tb, 3);

    // A fresh token for node 3; then all three see each other, and a program runs on node 2
    // through node 3 (TLS between daemons with the certificates the joins issued).
    let fresh = cluster(&tb, 1, &["token"]);
    assert!(
        fresh.status.success(),
        "{}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    let join = cluster(&tb, 3, &["join", &stdout(&fresh)]);
    assert!(
        join.status.success(),
        "{}",
        String::from_utf8_lossy(&join.stderr)
    );
    tb.start(3).expect("start node 3");
    tb.wait_all_see(&[1, 2, 3], &[1, 2, 3], MemberState::Alive, SETTLE)
        .expect("all alive");
    let rows = json(&ssi(&tb, 3, &["nodes", "--json"]));
    assert_eq!(rows.as_array().map(Vec::len), Some(3), "{rows}");
    let out = ssi(&tb, 3, &["run", "--node", "2", "--", "hostname"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "n2");
}
