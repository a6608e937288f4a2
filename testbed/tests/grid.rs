//! The grid services in real daemons: a TES client (py-tes) submits tasks to one node's job
//! service; their executors run as cluster processes, placed by the scheduler on other nodes,
//! as the user's pool account; the tasks' state outlives the node that accepted them (which was
//! also the primary of the replicated grid state).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grid_node::credential::{CertAuthority, Subject};

mod common;
use common::{json, root_or_skip, ssi};

const POOL_UID: u32 = 64400;

/// The venv's python with py-tes (the one grid-node's test makes, shared through the target
/// directory), made here if missing; `None` when it cannot be had.
fn venv_python() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pytes-venv");
    let py = dir.join("bin/python");
    let ok = |py: &Path| {
        Command::new(py)
            .args([
                "-c",
                "import tes, importlib.metadata as m; assert m.version('py-tes') == '1.1.4'",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok(&py) {
        return Some(py);
    }
    let made = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    let installed = made
        && Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "py-tes==1.1.4"])
            .status()
            .is_ok_and(|s| s.success());
    (installed && ok(&py)).then_some(py)
}

fn grid_tables(ca: &Path, homes: &Path) -> String {
    format!(
        r#"
[grid]
listen = "{{ip}}:8080"
ca_cert = "{}"
create_accounts = false

[grid.tes.queues]
default = {{}}

[[grid.pool]]
vo = "atlas"
name_prefix = "atlas"
gid = {POOL_UID}
uid_first = {POOL_UID}
uid_last = {}
lease_secs = 3600
home_root = "{}"
"#,
        ca.display(),
        POOL_UID + 9,
        homes.display()
    )
}

fn client(
    tb: &testbed::Testbed,
    py: &Path,
    mode: &str,
    env: &[(&str, String)],
) -> serde_json::Value {
    let mut c = Command::new(py);
    c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grid_client.py"))
        .arg(mode);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run the client");
    if !out.status.success() {
        for n in 1..=tb.nodes() {
            let log = std::fs::read_to_string(tb.log(n)).unwrap_or_default();
            eprintln!("--- node {n} log:\n{log}");
        }
    }
    assert!(
        out.status.success(),
        "client {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client JSON")
}

#[test]
fn a_grid_client_submits_to_one_node_and_the_tasks_run_on_others_as_the_pool_account() {
    if !root_or_skip("hosting processes as pool accounts") {
        return;
    }
    let Some(py) = venv_python() else {
        eprintln!("skipped: no python venv with py-tes 1.1.4");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("work dir");
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let ca = CertAuthority::generate("ssi", "grid test ca", now, 1).expect("ca");
    let ca_file = dir.path().join("grid-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write ca");
    let tables = grid_tables(&ca_file, &dir.path().join("homes"));
    let mut tb = testbed::Testbed::up_with_tables(
        &dir.path().join("tb"),
        3,
        false,
        Default::default(),
        &tables,
    )
    .expect("testbed up");

    // The VO through the admin commands of one node; the others see it (one replicated state).
    let alice = Subject::simple("Grid", "people", "alice").to_string();
    for args in [
        vec!["vo", "create", "atlas"],
        vec!["vo", "add-user", "atlas", &alice],
    ] {
        let out = ssi(&tb, 3, &args);
        assert!(
            out.status.success(),
            "ssi {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let shown = json(&ssi(&tb, 2, &["vo", "show", "atlas"]));
    assert!(shown["members"][&alice].is_object(), "{shown}");
    let refused = ssi(&tb, 2, &["vo", "create", "atlas"]);
    assert!(!refused.status.success());

    // Round-robin placement, so that the three tasks land on three nodes.
    assert!(ssi(&tb, 1, &["sched", "set", "round-robin"])
        .status
        .success());
    let key = rcgen::KeyPair::generate().expect("key");
    let token = ca
        .issue_vo(
            &Subject::simple("Grid", "people", "alice"),
            &["/atlas".parse().expect("fqan")],
            &key.public_key_pem(),
            now,
            600,
        )
        .expect("credential")
        .token;
    let url = |n: usize| format!("http://{}:8080", tb.addr(n).ip());
    let (submit_url, read_url) = (url(1), url(3));
    let env = |extra: Option<(&'static str, String)>| {
        let mut e = vec![
            ("TES_SUBMIT", submit_url.clone()),
            ("TES_READ", read_url.clone()),
            ("WORK", work.display().to_string()),
            ("TOKEN", token.clone()),
        ];
        e.extend(extra);
        e
    };

    // While the tasks run, `ssi ps` shows their processes as the pool account.
    let watcher = {
        let (ssi_bin, sock) = (tb.bin("ssi"), tb.socket(2));
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(90);
            while Instant::now() < deadline {
                let out = Command::new(&ssi_bin)
                    .args(["ps", "--json"])
                    .env("SSI_SOCKET", &sock)
                    .output();
                if let Ok(o) = out {
                    let v: serde_json::Value =
                        serde_json::from_slice(&o.stdout).unwrap_or_default();
                    let ours = v.as_array().into_iter().flatten().any(|p| {
                        p["uid"] == POOL_UID
                            && p["command"].as_str().is_some_and(|c| c.contains("sleep 3"))
                    });
                    if ours {
                        return true;
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            false
        })
    };
    let tasks = client(&tb, &py, "submit", &env(None));
    assert!(
        watcher.join().expect("watcher"),
        "ssi ps never showed an executor as uid {POOL_UID}"
    );
    let tasks = tasks.as_array().expect("tasks").clone();
    let mut nodes = std::collections::BTreeSet::new();
    for (n, t) in tasks.iter().enumerate() {
        assert_eq!(t["state"], "COMPLETE", "{t}");
        let out = std::fs::read_to_string(work.join(format!("out{n}.txt"))).expect("stdout file");
        let mut lines = out.lines();
        let pid: i64 = lines.next().and_then(|l| l.parse().ok()).expect("pid line");
        assert_eq!(
            lines.next(),
            Some(POOL_UID.to_string().as_str()),
            "ran as the pool account"
        );
        nodes.insert(pid / 4096);
        let log = t["logs"].to_string();
        assert!(
            log.contains(&format!("node {}", pid / 4096)),
            "the log names the node: {log}"
        );
    }
    assert_eq!(nodes.len(), 3, "placed on every node: {nodes:?}");

    // Node 1 accepted the tasks and held the primary copy of the state: without it, node 3
    // still serves them.
    tb.kill(1).expect("kill node 1");
    let ids: Vec<String> = tasks
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_string())
        .collect();
    let read = client(
        &tb,
        &py,
        "read",
        &env(Some(("IDS", serde_json::to_string(&ids).expect("ids")))),
    );
    assert_eq!(
        read["states"],
        serde_json::json!(["COMPLETE", "COMPLETE", "COMPLETE"]),
        "{read}"
    );
    assert_eq!(read["listed"], 3, "{read}");
}
