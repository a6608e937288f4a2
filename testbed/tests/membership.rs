//! End-to-end membership tests with real `ssid` daemons on this machine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use ssi_core::view::MemberState;
use testbed::{wait_until, Testbed};

mod common;
use common::{json, ssi, testbed, SETTLE};

/// An address next to node 1's that no node uses.
fn spare_addr(tb: &Testbed, host: u8) -> SocketAddr {
    let IpAddr::V4(ip) = tb.addr(1).ip() else {
        panic!("ipv4 testbed")
    };
    let o = ip.octets();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], host)), 7700)
}

/// Runs `ssid` with `args` and checks that it succeeds.
fn ssid_ok(tb: &Testbed, args: &[&std::ffi::OsStr]) {
    let out = Command::new(tb.bin("ssid"))
        .args(args)
        .output()
        .expect("run ssid");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ssid {args:?}: {err}");
}

/// Runs an extra ssid that is expected to be refused, with the cluster key `key` and a node
/// certificate it gets from the CA in `ca` (as an admin would give it); returns its output.
fn run_refused_daemon(
    tb: &Testbed,
    dir: &Path,
    id: u16,
    addr: SocketAddr,
    key: &Path,
    ca: &Path,
) -> Output {
    std::fs::create_dir_all(dir).expect("mkdir");
    ssid_ok(
        tb,
        &[
            "--issue-cert".as_ref(),
            dir.as_os_str(),
            "--ca".as_ref(),
            ca.as_os_str(),
        ],
    );
    let mut child = Command::new(tb.bin("ssid"))
        .arg("--id")
        .arg(id.to_string())
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--seed")
        .arg(tb.addr(1).to_string())
        .arg("--state-dir")
        .arg(dir)
        .arg("--cluster-key-file")
        .arg(key)
        .arg("--ca-file")
        .arg(ca.join("ca.pem"))
        .arg("--node-cert-file")
        .arg(dir.join("node.pem"))
        .arg("--node-key-file")
        .arg(dir.join("node.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssid");
    let exited = wait_until(SETTLE, || child.try_wait().ok().flatten().is_some());
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait");
    assert!(exited, "the refused daemon kept running");
    out
}

fn log_of(tb: &Testbed, node: usize) -> String {
    std::fs::read_to_string(tb.log(node)).expect("read log")
}

#[test]
fn cluster_forms_and_cli_reports_nodes_and_info_as_json() {
    let (_dir, tb) = testbed(3, false);
    let nodes = json(&ssi(&tb, 2, &["nodes", "--json"]));
    let rows = nodes.as_array().expect("array");
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["id"], i + 1);
        assert_eq!(row["state"], "alive");
        assert_eq!(row["addr"], tb.addr(i + 1).to_string());
        for key in ["name", "cpus", "mem_total_bytes", "mem_free_bytes", "load1"] {
            assert!(!row[key].is_null(), "row {i} lacks {key}: {row}");
        }
    }
    // Probe data arrives shortly after the join, on every node.
    let named = wait_until(SETTLE, || {
        (1..=3).all(|via| {
            let rows = json(&ssi(&tb, via, &["nodes", "--json"]));
            rows.as_array()
                .is_some_and(|r| r.iter().all(|n| n["cpus"].as_u64() > Some(0)))
        })
    });
    assert!(named, "probe data did not spread");
    let rows = json(&ssi(&tb, 3, &["nodes", "--json"]));
    let cpus: u64 = rows
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["cpus"].as_u64().expect("cpus"))
        .sum();
    let mem: u64 = rows
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["mem_total_bytes"].as_u64().expect("mem"))
        .sum();
    assert_eq!(rows[0]["name"], "n1");

    let info = json(&ssi(&tb, 1, &["info", "--json"]));
    assert_eq!(info["nodes_alive"], 3);
    assert_eq!(info["cpus"].as_u64(), Some(cpus));
    assert_eq!(info["mem_total_bytes"].as_u64(), Some(mem));
    assert!(info["mem_free_bytes"].as_u64() <= Some(mem));
    assert!(info["load1"].is_number());

    let table = ssi(&tb, 1, &["nodes"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("STATE") && text.contains("alive"), "{text}");
}

#[test]
fn crash_is_detected_everywhere_and_restart_rejoins() {
    let (_dir, mut tb) = testbed(3, false);
    let gen_before = tb.view(1).expect("view")[2].gen;
    tb.kill(3).expect("kill");
    tb.wait_all_see(&[1, 2], &[3], MemberState::Dead, SETTLE)
        .expect("death detected");
    let info = json(&ssi(&tb, 1, &["info", "--json"]));
    assert_eq!(info["nodes_alive"], 2);
    assert_eq!(info["nodes_dead"], 1);

    tb.start(3).expect("restart");
    tb.wait_all_see(&[1, 2, 3], &[1, 2, 3], MemberState::Alive, SETTLE)
        .expect("rejoined");
    let gen_after = tb.view(1).expect("view")[2].gen;
    assert!(
        gen_after > gen_before,
        "a restarted node runs under a new generation"
    );
}

#[test]
fn graceful_leave_shows_left_not_dead() {
    let (_dir, mut tb) = testbed(3, false);
    tb.stop(2).expect("stop");
    tb.wait_all_see(&[1, 3], &[2], MemberState::Left, SETTLE)
        .expect("left seen");
    assert!(
        !tb.socket(2).exists(),
        "a daemon that stops removes its control socket"
    );
    let info = json(&ssi(&tb, 3, &["info", "--json"]));
    assert_eq!(info["nodes_left"], 1);
    assert_eq!(info["nodes_dead"], 0);
}

#[test]
fn duplicate_node_id_is_refused_on_both_sides() {
    let (dir, tb) = testbed(2, false);
    let key = tb.dir().join("cluster.key");
    let (addr, ca) = (spare_addr(&tb, 200), tb.ca_dir());
    let out = run_refused_daemon(&tb, &dir.path().join("dup"), 2, addr, &key, &ca);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("node id 2 is already alive"),
        "joiner says: {err}"
    );
    assert!(
        log_of(&tb, 1).contains("refused join"),
        "seed logs the refusal"
    );
    // The real node 2 is untouched.
    tb.wait_all_see(&[1, 2], &[1, 2], MemberState::Alive, SETTLE)
        .expect("still alive");
    let rows = tb.view(1).expect("view");
    assert_eq!(rows[1].addr, tb.addr(2).to_string());
}

#[test]
fn node_of_another_cluster_ca_is_refused_and_learns_nothing() {
    let (dir, tb) = testbed(2, false);
    let bad_key = dir.path().join("bad.key");
    ssid_ok(&tb, &["--gen-key".as_ref(), bad_key.as_os_str()]);
    let other_ca = dir.path().join("other-ca");
    ssid_ok(&tb, &["--init-ca".as_ref(), other_ca.as_os_str()]);
    let intruder = spare_addr(&tb, 201);
    let out = run_refused_daemon(
        &tb,
        &dir.path().join("intruder"),
        9,
        intruder,
        &bad_key,
        &other_ca,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not from our cluster CA"),
        "intruder says: {err}"
    );
    assert!(!err.contains("join accepted"), "{err}");
    // The seed logs once it has read the intruder's alert, which may be after the intruder
    // exits.
    assert!(
        wait_until(SETTLE, || log_of(&tb, 1).contains("another cluster CA")),
        "seed logs the refusal"
    );

    // Forged gossip is dropped and logged, and changes nothing.
    let sock = UdpSocket::bind(SocketAddr::new(intruder.ip(), 0)).expect("bind");
    sock.send_to(&[1u8; 80], tb.addr(1)).expect("send");
    let logged = wait_until(SETTLE, || {
        log_of(&tb, 1).contains("dropped gossip datagram")
    });
    assert!(logged, "forged datagram not reported");
    let rows = tb.view(1).expect("view");
    assert_eq!(rows.len(), 2, "the intruder is not a member: {rows:?}");
}

#[test]
fn ssid_refuses_a_key_others_may_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("cluster.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").expect("write key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = Command::new(testbed::find_bin_dir().expect("bins").join("ssid"))
        .args([
            "--id",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--advertise",
            "127.0.0.1:1",
        ])
        .arg("--state-dir")
        .arg(dir.path())
        .arg("--cluster-key-file")
        .arg(&key)
        .output()
        .expect("run ssid");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster.key") && err.contains("mode 0644") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn cli_without_daemon_names_the_socket_and_exits_1() {
    let out = Command::new(testbed::find_bin_dir().expect("bins").join("ssi"))
        .args(["--socket", "/nonexistent/ssid.sock", "nodes"])
        .output()
        .expect("run ssi");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/ssid.sock") && err.contains("is ssid running"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn network_namespace_cluster_detects_death_and_cleans_up() {
    if !common::root_or_skip("network namespaces") {
        return;
    }
    let (_dir, mut tb) = testbed(3, true);
    assert!(tb.addr(1).to_string().starts_with("10.77."));
    let ns = tb.netns(2).expect("namespace");
    tb.kill(2).expect("kill");
    tb.wait_all_see(&[1, 3], &[2], MemberState::Dead, SETTLE)
        .expect("death detected");
    tb.start(2).expect("restart");
    tb.down();
    let list = testbed::netns::ip(&["netns", "list"]).expect("ip netns");
    assert!(
        !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns.as_str())),
        "{list}"
    );
}
