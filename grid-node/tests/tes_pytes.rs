//! The job service against a real TES client nobody here wrote: `py-tes` 1.1.4 from the Python
//! package registry, installed into a virtual environment under the target directory. The
//! service runs in this test with a local runner whose executors are real processes (as pool
//! accounts when the test runs as root); the Python side is `tests/pytes_client.py`.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grid_node::accounts::{OnExpiry, PoolConfig};
use grid_node::credential::{CertAuthority, Subject, TrustAnchors};
use grid_node::policy::PolicyEngine;
use grid_node::resources::LocalHost;
use grid_node::store::MemStore;
use grid_node::tes::api::{router, ApiState};
use grid_node::tes::{LocalRunner, TaskService, TesConfig};
use grid_node::vo::{Fqan, VoRegistry};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The venv's python with py-tes, made once per target directory; `None` when it cannot be had.
fn venv_python() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pytes-venv");
    let py = dir.join("bin/python");
    let ok = |py: &Path| {
        std::process::Command::new(py)
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
    let made = std::process::Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    let installed = made
        && std::process::Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "py-tes==1.1.4"])
            .status()
            .is_ok_and(|s| s.success());
    (installed && ok(&py)).then_some(py)
}

fn pool(vo: &str, first: u32, home: &Path) -> PoolConfig {
    PoolConfig {
        vo: vo.into(),
        name_prefix: vo.into(),
        gid: first,
        uid_first: first,
        uid_last: first + 9,
        lease_secs: 3600,
        home_root: home.into(),
        on_expiry: OnExpiry::Archive,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_tes_drives_the_service() {
    let Some(python) = venv_python() else {
        eprintln!("skipped: no python venv with py-tes 1.1.4 (python3 -m venv and pip install py-tes==1.1.4 failed)");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let src = work.path().join("source.txt");
    std::fs::write(&src, "four five\n").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();

    // VOs, members, the CA and the service.
    let store = Arc::new(MemStore::new());
    let vos = VoRegistry::new(&*store);
    vos.create("atlas").await.unwrap();
    vos.create("cms").await.unwrap();
    // cms members use their own queue only, so "default" is atlas's alone.
    vos.set_queues("cms", &["cms-queue"]).await.unwrap();
    let subject = |cn: &str| Subject::simple("Grid", "people", cn);
    for (vo, cn, role) in [
        ("atlas", "alice", None),
        ("atlas", "admin", Some("admin")),
        ("atlas", "mallory", None),
        ("cms", "bob", None),
    ] {
        vos.add_user(vo, &subject(cn).to_string(), None, role)
            .await
            .unwrap();
    }
    let t = now();
    let ca = CertAuthority::generate("ssi", "test cluster ca", t, 1).unwrap();
    let trust = Arc::new(TrustAnchors::new(ca.cert_pem(), &[]).unwrap());
    let token = |vo: &str, cn: &str, at: i64, life: i64| {
        let fqans: Vec<Fqan> =
            futures::executor::block_on(vos.member(vo, &subject(cn).to_string()))
                .unwrap()
                .fqans
                .into_iter()
                .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        ca.issue_vo(&subject(cn), &fqans, &key.public_key_pem(), at, life)
            .unwrap()
            .token
    };
    let homes = work.path().join("homes");
    let pools = vec![pool("atlas", 64000, &homes), pool("cms", 64100, &homes)];
    let service = TaskService::new(
        store.clone(),
        Arc::new(LocalRunner::default()),
        Arc::new(PolicyEngine::new().unwrap()),
        pools,
        TesConfig {
            queues: [
                ("default".to_string(), Default::default()),
                ("cms-queue".to_string(), Default::default()),
            ]
            .into(),
            ..TesConfig::default()
        },
    );
    let state = Arc::new(ApiState {
        service,
        trust,
        max_body: 4 << 20,
        resources: Arc::new(LocalHost::default()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });

    let mpi = which("mpirun");
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/pytes_client.py"
    ))
    .env("TES_URL", format!("http://{addr}"))
    .env("WORK", work.path())
    .env("MPI", if mpi { "1" } else { "0" })
    .env("TOKEN_ALICE", token("atlas", "alice", t, 600))
    .env("TOKEN_ADMIN", token("atlas", "admin", t, 600))
    .env("TOKEN_MALLORY", token("atlas", "mallory", t, 600))
    .env("TOKEN_BOB", token("cms", "bob", t, 600))
    .env("TOKEN_EXPIRED", token("atlas", "alice", t - 7200, 60))
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("client timed out")
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    server.abort();
    assert!(out.status.success(), "py-tes client failed");
    if !mpi {
        eprintln!("note: mpirun not installed, the MPI task was not run");
    }

    // The executors ran as alice's pool account, and so were its files written.
    let uid: u32 = std::fs::read_to_string(work.path().join("results/uid.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let owner = std::fs::metadata(work.path().join("results/all.txt"))
        .unwrap()
        .uid();
    if nix::unistd::geteuid().is_root() {
        assert_eq!((uid, owner), (64000, 64000));
    } else {
        eprintln!("note: not root, executors ran as this user ({uid})");
    }
}

fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}
