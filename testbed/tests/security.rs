//! A local user against the root daemons: the attacks of docs/SECURITY.md, tried through `ssi`
//! as an unprivileged user the test creates, each refused with a one-line error and nothing
//! written outside the user's files; and the same user's own checkpoint, restart, migrate and
//! kill still work, and their programs get their limits.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{compile, json, root_or_skip, ssi, testbed, SETTLE};
use testbed::wait_until;
use testbed::Testbed;

/// The unprivileged user the attacks run as (created if missing, kept: other runs reuse it).
const USER: &str = "ssi-sec-test";

/// uid and gid of [`USER`], created first if need be.
fn test_user() -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, USER]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let st = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ])
            .status()
            .expect("run useradd");
        assert!(st.success() || id("-u").is_some(), "useradd {USER} failed");
    }
    (id("-u").expect("uid"), id("-g").expect("gid"))
}

/// `ssi ARGS` against node `node` as [`USER`] (setpriv: real and effective ids, groups from
/// the group database), in `cwd`.
fn as_user(tb: &Testbed, node: usize, cwd: &Path, args: &[&str]) -> Output {
    let (uid, gid) = test_user();
    Command::new("setpriv")
        .args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &gid.to_string(),
            "--init-groups",
            "--",
        ])
        .arg(tb.bin("ssi"))
        .args(args)
        .env("SSI_SOCKET", tb.socket(node))
        .current_dir(cwd)
        .output()
        .expect("run setpriv")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` failed with a one-line error containing `want`.
fn refused(out: &Output, what: &str, want: &str) {
    let err = text(out);
    eprintln!("{what}: {}", err.trim_end());
    assert!(!out.status.success(), "{what}: not refused");
    assert!(err.contains(want), "{what}: {err:?} does not say {want:?}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: not one line: {err:?}"
    );
}

/// Starts `args` detached on node 1 as [`USER`]; its global pid.
fn start_as_user(tb: &Testbed, cwd: &Path, args: &[&str]) -> String {
    let mut a = vec!["run", "--detach", "--node", "1", "--"];
    a.extend_from_slice(args);
    let out = as_user(tb, 1, cwd, &a);
    assert!(out.status.success(), "run: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The `ssi ps` entry of `gpid`, if it exists.
fn process(tb: &Testbed, gpid: &str) -> Option<serde_json::Value> {
    json(&ssi(tb, 1, &["ps", "--json"]))
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["gpid"].as_i64().map(|g| g.to_string()).as_deref() == Some(gpid))
        .cloned()
}

/// Every file under `dir` (itself included), with its mode and owner.
fn tree_of(dir: &Path) -> Vec<(PathBuf, u32, u32)> {
    let mut out = Vec::new();
    let meta = std::fs::symlink_metadata(dir).expect("stat");
    out.push((dir.to_path_buf(), meta.mode() & 0o7777, meta.uid()));
    if meta.is_dir() {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            out.extend(tree_of(&e.path()));
        }
    }
    out
}

/// The pid in this machine's namespace of the process of `uid` with global pid `gpid` whose
/// command line names `program` (a path unique to this test).
fn host_pid(gpid: &str, uid: u32, program: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |name: &str| -> Vec<String> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|l| l.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let nspid = field("NSpid:");
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if nspid.len() > 1
            && nspid.last().map(String::as_str) == Some(gpid)
            && field("Uid:").first() == Some(&uid.to_string())
            && String::from_utf8_lossy(&cmdline).contains(program)
        {
            return Some(pid);
        }
    }
    None
}

/// `ssi restart` of the image in `dir` on node 2, detached.
fn restart_of(dir: &str) -> [&str; 6] {
    ["restart", "--dir", dir, "--node", "2", "--detach"]
}

/// Copies the image directory `from` to `to`, owned by [`USER`].
fn copy_image(from: &Path, to: &Path) {
    std::fs::create_dir(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("cp");
    }
    give(to);
}

/// Makes `path` owned by [`USER`].
fn give(path: &Path) {
    let (uid, gid) = test_user();
    for (p, _, _) in tree_of(path) {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).expect("chown");
    }
}

#[test]
fn a_local_user_cannot_cross_into_root_and_keeps_their_own_rights() {
    if !root_or_skip("the attacks of a local user") {
        return;
    }
    let (uid, _) = test_user();
    let (d, tb) = testbed(2, false);
    // The user reaches the sockets, binaries and programs, and nothing else of the testbed.
    for p in [
        d.path().to_path_buf(),
        tb.dir().to_path_buf(),
        tb.node_dir(1),
        tb.node_dir(2),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o711)).expect("chmod");
    }
    let counter = compile("counter", d.path());
    let counter = counter.to_str().expect("path");
    let home = d.path().join("home");
    std::fs::create_dir(&home).expect("mkdir");
    give(&home);
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let victim = d.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write");

    let gpid = start_as_user(&tb, &home, &[counter, "100000", "50"]);

    // 0. The program runs in a cgroup of the user's, on the node that started it.
    let users = std::fs::read_to_string(tb.node_dir(1).join("cgroup-users")).expect("cgroups");
    let user_cgroup = Path::new(users.trim()).join(format!("user-{uid}"));
    let pid = host_pid(&gpid, uid, counter).expect("the user's program");
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let v2 = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line");
    assert!(
        v2.ends_with(&format!("/user-{uid}")) && user_cgroup.is_dir(),
        "{gpid} runs in {v2}, not in {}",
        user_cgroup.display()
    );

    // 1. A link planted where the image goes: the dump refuses it, the target is untouched and
    //    the process runs on.
    let trap = home.join("trap");
    std::fs::create_dir(&trap).expect("mkdir");
    std::os::unix::fs::symlink(&victim, trap.join(format!("pages-{gpid}.rec"))).expect("ln");
    std::os::unix::fs::symlink(&victim, trap.join("inventory.rec")).expect("ln");
    give(&trap);
    let out = as_user(
        &tb,
        2,
        &home,
        &["checkpoint", &gpid, "--dir", trap.to_str().expect("p")],
    );
    refused(&out, "checkpoint through a link", "exists already");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        "precious\n"
    );
    assert!(
        process(&tb, &gpid).is_some(),
        "a refused checkpoint killed {gpid}"
    );

    // 2. A directory only root may write to: the image is written as the user, so not there.
    let locked = d.path().join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    let inside = locked.join("img");
    let out = as_user(
        &tb,
        1,
        &home,
        &["checkpoint", &gpid, "--dir", inside.to_str().expect("p")],
    );
    refused(
        &out,
        "checkpoint into root's directory",
        "Permission denied",
    );
    assert!(!inside.exists(), "root's directory was written to");

    // 3. A set-user-id program the user started: not dumpable, other ids. No checkpoint, no
    //    migration, no signal through ssi.
    let suid = d.path().join("suid-counter");
    std::fs::copy(counter, &suid).expect("cp");
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let sgpid = start_as_user(&tb, &home, &[suid.to_str().expect("p"), "100000", "50"]);
    let img = home.join("suid-img");
    let out = as_user(
        &tb,
        1,
        &home,
        &["checkpoint", &sgpid, "--dir", img.to_str().expect("p")],
    );
    refused(&out, "checkpoint of a set-uid process", "permission denied");
    assert!(!img.exists());
    refused(
        &as_user(&tb, 1, &home, &["migrate", &sgpid, "--to", "2"]),
        "migrate set-uid",
        "permission denied",
    );
    refused(
        &as_user(&tb, 1, &home, &["kill", &sgpid]),
        "kill set-uid",
        "permission denied",
    );
    refused(
        &as_user(&tb, 1, &home, &["attach", &sgpid]),
        "attach to set-uid",
        "permission denied",
    );
    assert!(
        ssi(&tb, 1, &["kill", "-s", "KILL", &sgpid])
            .status
            .success(),
        "root may kill it"
    );

    // 4. The user's own checkpoint works: an image they own, 0700 and 0600.
    let own = home.join("own");
    let out = as_user(
        &tb,
        2,
        &home,
        &["checkpoint", &gpid, "--dir", own.to_str().expect("p")],
    );
    assert!(out.status.success(), "own checkpoint: {}", text(&out));
    for (p, mode, owner) in tree_of(&own) {
        assert_eq!(owner, uid, "{} not the user's", p.display());
        let want = if p == own { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} mode {mode:o}", p.display());
    }
    assert!(
        wait_until(SETTLE, || process(&tb, &gpid).is_none()),
        "{gpid} not stopped by its checkpoint"
    );
    assert!(
        wait_until(SETTLE, || !user_cgroup.exists()),
        "{} not removed once empty",
        user_cgroup.display()
    );

    // 5. The image edited, or not sealed by a node: refused to the user, and to root, naming
    //    the part. A byte flipped in any part, the seal included:
    for part in std::fs::read_dir(&own).expect("read_dir").flatten() {
        let name = part.file_name().to_string_lossy().into_owned();
        let flipped = home.join(format!("flipped-{name}"));
        copy_image(&own, &flipped);
        let mut bytes = std::fs::read(flipped.join(&name)).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(flipped.join(&name), bytes).expect("write");
        let out = as_user(&tb, 1, &home, &restart_of(flipped.to_str().expect("p")));
        refused(&out, &format!("restart with {name} altered"), &name);
        assert!(
            text(&out).contains("altered") || text(&out).contains("seal does not match"),
            "{name}: {}",
            text(&out)
        );
    }
    // ... an image asking for root, written without a seal, or with the genuine seal
    let forged = home.join("forged");
    let mut image = checkpoint::Image::load(&own).expect("load");
    for p in &mut image.processes {
        p.creds.uids = [0; 4];
        p.creds.caps = [u64::MAX >> 23; 5];
    }
    image
        .write_to(&mut checkpoint::DirSink::new(&forged).expect("sink"))
        .expect("write");
    give(&forged);
    let out = as_user(&tb, 1, &home, &restart_of(forged.to_str().expect("p")));
    refused(&out, "restart of an unsealed image", "not sealed");
    let out = ssi(&tb, 1, &restart_of(forged.to_str().expect("p")));
    refused(&out, "root restarting an unsealed image", "not sealed");
    std::fs::copy(own.join("seal"), forged.join("seal")).expect("cp");
    give(&forged);
    let out = as_user(&tb, 1, &home, &restart_of(forged.to_str().expect("p")));
    refused(
        &out,
        "restart of an image asking for root, with the genuine seal",
        "altered",
    );
    assert!(process(&tb, &gpid).is_none(), "a forged image was restored");
    // Root's parts in a directory the user may change: the user could swap a part in.
    let swapped = home.join("swapped");
    std::fs::create_dir(&swapped).expect("mkdir");
    for e in std::fs::read_dir(&own).expect("read_dir").flatten() {
        std::fs::copy(e.path(), swapped.join(e.file_name())).expect("cp");
    }
    give(&swapped);
    for e in std::fs::read_dir(&swapped).expect("read_dir").flatten() {
        std::os::unix::fs::lchown(e.path(), Some(0), Some(0)).expect("chown");
    }
    let swapped = swapped.to_str().expect("p");
    let out = ssi(
        &tb,
        1,
        &["restart", "--dir", swapped, "--node", "2", "--detach"],
    );
    refused(
        &out,
        "root's image in the user's directory",
        "others may change",
    );

    // 6. The genuine image restarts, as the user, on the other node; they migrate it back and
    //    kill it.
    let out = as_user(
        &tb,
        1,
        &home,
        &[
            "restart",
            "--dir",
            own.to_str().expect("p"),
            "--node",
            "2",
            "--detach",
        ],
    );
    assert!(out.status.success(), "own restart: {}", text(&out));
    let p = process(&tb, &gpid).expect("restarted");
    assert_eq!(
        (p["uid"].as_u64(), p["node"].as_u64()),
        (Some(u64::from(uid)), Some(2))
    );
    let out = as_user(&tb, 1, &home, &["migrate", &gpid, "--to", "1"]);
    assert!(out.status.success(), "own migrate: {}", text(&out));
    assert!(
        as_user(&tb, 2, &home, &["kill", "-s", "KILL", &gpid])
            .status
            .success(),
        "own kill"
    );
    assert!(
        wait_until(SETTLE, || process(&tb, &gpid).is_none()),
        "{gpid} still runs"
    );
}

#[test]
fn a_helper_that_does_not_report_in_time_is_killed_and_the_request_fails() {
    if !root_or_skip("a checkpoint helper past its deadline") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let tb = Testbed::up_with_tables(
        &d.path().join("tb"),
        1,
        false,
        Default::default(),
        "[limits]\nhelper_timeout_ms = 1\n",
    )
    .expect("testbed up");
    let counter = compile("counter", d.path());
    let counter = counter.to_str().expect("path");
    let out = ssi(&tb, 1, &["run", "--detach", "--", counter, "100000", "50"]);
    assert!(out.status.success(), "run: {}", text(&out));
    let gpid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let img = d.path().join("img");
    let out = ssi(
        &tb,
        1,
        &["checkpoint", &gpid, "--dir", img.to_str().expect("p")],
    );
    refused(
        &out,
        "checkpoint past the deadline",
        "did not finish within 1 ms",
    );
    // The process was let go: it runs on, neither stopped nor traced. (`ssi run --detach`
    // answers once the process exists, maybe before it has exec'd the counter: look for it
    // with a deadline.)
    let mut found = None;
    wait_until(SETTLE, || {
        found = host_pid(&gpid, 0, counter);
        found.is_some()
    });
    let pid = found.expect("still there");
    let running = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |f: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(f))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        !field("State:").starts_with('t')
            && !field("State:").starts_with('T')
            && field("TracerPid:") == "0"
    };
    assert!(wait_until(SETTLE, running), "{gpid} left stopped or traced");
    assert!(process(&tb, &gpid).is_some(), "{gpid} is gone");
}
