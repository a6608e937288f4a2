//! End-to-end test of `/metrics`: two nodes with an HTTP endpoint; a program is launched on
//! node 1 and migrated to node 2; the scraped text is parsed with the OpenMetrics parser of the
//! Prometheus Python client (Debian's python3-prometheus-client, which scripts/setup.sh
//! installs), and the samples must show the cluster and the migration.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use testbed::{wait_until, NodeOptions, Testbed};

/// `GET path` over HTTP/1.1; returns the status line, the headers and the body.
fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header and a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

/// One sample: name, labels, value.
type Sample = (String, serde_json::Map<String, serde_json::Value>, f64);

/// `text` parsed by the Prometheus client's OpenMetrics parser (which refuses what the format
/// does not allow).
fn parse(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = "
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
print(json.dumps([[s.name, s.labels, s.value]
                  for f in text_string_to_metric_families(sys.stdin.read())
                  for s in f.samples]))
";
    // Debian's python, which the package installs for (not one first on PATH)
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed the parser");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(|x| x.as_str()) == Some(*v))
        })
        .map(|s| s.2)
}

#[test]
fn metrics_parse_and_show_the_cluster_and_a_migration() {
    if !root_or_skip("hosting processes") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = NodeOptions {
        http: true,
        ..Default::default()
    };
    let tb = Testbed::up_with(&dir.path().join("tb"), 2, false, opts).expect("testbed up");
    let (n1, n2) = (
        tb.http_addr(1).expect("node 1 endpoint"),
        tb.http_addr(2).expect("node 2 endpoint"),
    );

    let out = ssi(
        &tb,
        1,
        &["run", "--detach", "--node", "1", "--", "sleep", "600"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gpid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = ssi(&tb, 1, &["migrate", &gpid, "--to", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (status, headers, body) = get(n1, "/metrics");
    assert!(status.ends_with("200 OK"), "{status}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{headers}"
    );
    let s = parse(&body);
    let save = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("metrics-node1.txt");
    std::fs::write(&save, &body).expect("save the scrape");
    eprintln!("saved {}", save.display());
    let v = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels);
    assert_eq!(v("ssi_nodes", &[("state", "alive")]), Some(2.0), "{body}");
    assert_eq!(v("ssi_nodes", &[("state", "dead")]), Some(0.0), "{body}");
    for node in ["1", "2"] {
        assert!(v("ssi_node_cpus", &[("node", node)]) >= Some(1.0), "{body}");
        assert!(
            v("ssi_node_memory_total_bytes", &[("node", node)]) > Some(0.0),
            "{body}"
        );
        assert!(v("ssi_node_load1", &[("node", node)]).is_some(), "{body}");
    }
    assert_eq!(v("ssi_launches_total", &[]), Some(1.0), "{body}");
    assert_eq!(
        v("ssi_migrations_total", &[("result", "ok")]),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        v("ssi_migration_downtime_seconds_count", &[]),
        Some(1.0),
        "{body}"
    );
    let downtime = v("ssi_migration_downtime_seconds_sum", &[]).expect("downtime sum");
    assert!(downtime > 0.0 && downtime < 60.0, "downtime {downtime} s");
    assert!(
        v("ssi_migration_sent_bytes_total", &[]) > Some(0.0),
        "{body}"
    );
    assert!(
        v("ssi_gossip_bytes_total", &[("direction", "sent")]) > Some(0.0),
        "{body}"
    );
    assert!(
        v("ssi_gossip_packets_total", &[("direction", "received")]) > Some(0.0),
        "{body}"
    );
    // the process left node 1 for node 2
    assert_eq!(v("ssi_processes", &[("state", "sleeping")]), None, "{body}");

    let hosted = wait_until(SETTLE, || {
        let (_, _, body) = get(n2, "/metrics");
        value(&parse(&body), "ssi_processes", &[("state", "sleeping")]) == Some(1.0)
    });
    assert!(hosted, "node 2 does not count the migrated process");
    let (status, _, _) = get(n2, "/");
    assert!(status.ends_with("404 Not Found"), "{status}");
    let _ = ssi(&tb, 1, &["kill", "-s", "KILL", &gpid]);
}
