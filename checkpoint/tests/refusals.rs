//! End-to-end: what must be refused, and refused before anything is frozen or created.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::Command;

use checkpoint::{AfterDump, DirSink, DumpOptions, Error, Image, StreamSink};
use common::*;

/// Polls until the process is neither stopped nor traced. Its state letter is not checked: a
/// process let go (or never frozen) may be running (`R`) or sleeping (`S`), whatever the load.
fn wait_running_untraced(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while matches!(proc_state(pid), ('T' | 't', _) | (_, 1..)) {
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} is {:?}",
            proc_state(pid)
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn proc_state(pid: i32) -> (char, i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap()
        .trim()
        .chars()
        .next()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let tracer = status
        .lines()
        .find(|l| l.starts_with("TracerPid:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (state, tracer)
}

#[test]
fn unsupported_fds_are_refused_before_freezing() {
    require_root!();
    for (kind, want) in [
        (
            "tcp",
            "is a TCP connection to a socket outside the tree (not restored yet): not supported",
        ),
        ("udp", "is a UDP socket: not supported"),
        (
            "inotify",
            "is an inotify instance with 16 bytes of events not read: not supported",
        ),
        ("netlink", "is a netlink socket: not supported"),
        ("memfd", "is memfd x that is also mapped: not supported"),
    ] {
        let mut cmd = Command::new(build("unsupported", &[]));
        cmd.arg(kind);
        // a listener outside the tree for the connection of "tcp"
        let outside = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        cmd.arg(outside.local_addr().unwrap().port().to_string());
        let mut p = Prog::start(cmd);
        let line = p.expect("ready");
        let fd = line.rsplit("fd=").next().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let err = checkpoint::dump(
            p.pid,
            &DumpOptions::default(),
            None,
            &mut DirSink::new(dir.path()).unwrap(),
        )
        .expect_err("dump must refuse");
        let msg = err.to_string();
        println!("{kind}: {msg}");
        assert!(matches!(err, Error::Unsupported { .. }));
        assert_eq!(msg, format!("pid {}: fd {fd} {want}", p.pid));
        wait_running_untraced(p.pid);
        p.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        assert_eq!(p.expect("alive"), "alive ok");
    }
}

#[test]
fn process_state_a_restore_would_lose_is_refused() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let gone_s = gone.to_str().unwrap().to_string();
    for (kind, want) in [
        (
            "thread-creds",
            "has other credentials than its process: not supported".to_string(),
        ),
        (
            "deadline",
            "runs under SCHED_DEADLINE: not supported".to_string(),
        ),
        (
            "root-pdeathsig",
            "which would follow the restorer instead of its parent: not supported".to_string(),
        ),
        (
            "deleted-cwd",
            format!("its working directory {gone_s} was deleted: not supported"),
        ),
        (
            "netns",
            "it is in another net namespace than the root of the tree: not supported".to_string(),
        ),
        ("mseal", "is sealed (mseal): not supported".to_string()),
        (
            "aio",
            "is an AIO ring (io_setup): not supported".to_string(),
        ),
        (
            "lease",
            "holds a lease (F_SETLEASE): not supported".to_string(),
        ),
        (
            "clone-files",
            "(CLONE_FILES): not supported".to_string(),
        ),
        (
            "zombie-group",
            "whose leader is not in the tree: not supported".to_string(),
        ),
        (
            "session-member",
            "of another process of the tree (not restored yet): not supported".to_string(),
        ),
        (
            "scm-rights",
            "with file descriptors or credentials in flight (SCM_RIGHTS, SCM_CREDENTIALS): not supported"
                .to_string(),
        ),
        (
            "owner-outside",
            format!(
                "sends SIGIO to pid {}, outside the tree: not supported",
                std::process::id()
            ),
        ),
    ] {
        let mut cmd = Command::new(build("refused", &[]));
        cmd.arg(kind).arg(&gone);
        let _ = std::fs::remove_file(&gone);
        let mut p = Prog::start(cmd);
        let line = p.expect("ready");
        let named = line.rsplit("pid=").next().unwrap().to_string();
        let err = checkpoint::dump(
            p.pid,
            &DumpOptions::default(),
            None,
            &mut DirSink::new(dir.path().join(kind)).unwrap(),
        )
        .expect_err("dump must refuse");
        let msg = err.to_string();
        println!("{kind}: {msg}");
        assert!(matches!(err, Error::Unsupported { .. }), "{kind}: {msg}");
        assert!(
            msg.starts_with(&format!("pid {named}: ")) && msg.ends_with(&want),
            "{kind}: {msg}"
        );
        wait_running_untraced(p.pid);
        p.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        assert_eq!(p.expect("alive"), "alive ok", "{kind}");
    }
}

#[test]
fn socket_leading_outside_the_tree_is_refused_before_freezing() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outside.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut cmd = Command::new(build("unsupported", &[]));
    cmd.arg("unix").arg(&path);
    let mut p = Prog::start(cmd);
    let line = p.expect("ready");
    let _peer = listener.accept().unwrap();
    let fd = line.rsplit("fd=").next().unwrap().to_string();
    let err = checkpoint::dump(
        p.pid,
        &DumpOptions::default(),
        None,
        &mut DirSink::new(dir.path().join("img")).unwrap(),
    )
    .expect_err("dump must refuse");
    assert_eq!(
        err.to_string(),
        format!(
            "pid {}: fd {fd} is a Unix socket leading outside the tree (only the root's standard streams may): not supported",
            p.pid
        )
    );
    wait_running_untraced(p.pid);
    p.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(p.expect("alive"), "alive ok");
}

#[test]
fn corrupt_truncated_and_wrong_version_images_are_refused() {
    require_root!();
    let mut p = Prog::start(Command::new(build("simple", &[])));
    p.expect("ready");
    let dir = tempfile::tempdir().unwrap();
    let opts = DumpOptions {
        after: AfterDump::Resume,
        ..Default::default()
    };
    checkpoint::dump(p.pid, &opts, None, &mut DirSink::new(dir.path()).unwrap()).unwrap();
    assert!(Image::load(dir.path()).is_ok());
    let pages = dir.path().join(format!("pages-{}.rec", p.pid));
    let procf = dir.path().join(format!("proc-{}.rec", p.pid));
    let inv = dir.path().join("inventory.rec");
    let orig_pages = std::fs::read(&pages).unwrap();
    let orig_proc = std::fs::read(&procf).unwrap();
    let orig_inv = std::fs::read(&inv).unwrap();

    let mut bad = orig_pages.clone();
    let at = bad.len() / 2;
    bad[at] ^= 1;
    std::fs::write(&pages, &bad).unwrap();
    let e = Image::load(dir.path()).unwrap_err().to_string();
    println!("{e}");
    assert!(
        e.contains("payload checksum mismatch") && e.contains("pages-"),
        "{e}"
    );
    std::fs::write(&pages, &orig_pages).unwrap();

    std::fs::write(&procf, &orig_proc[..orig_proc.len() - 20]).unwrap();
    let e = Image::load(dir.path()).unwrap_err().to_string();
    println!("{e}");
    assert!(e.contains("truncated") && e.contains("proc-"), "{e}");
    std::fs::write(&procf, &orig_proc).unwrap();

    let mut v = orig_inv.clone();
    v[4] = 7; // version 7, header checksum fixed so that only the version is wrong
    let h = crc32fast::hash(&v[0..40]);
    v[40..44].copy_from_slice(&h.to_le_bytes());
    std::fs::write(&inv, &v).unwrap();
    let e = Image::load(dir.path()).unwrap_err().to_string();
    println!("{e}");
    assert!(e.contains("format version 7 not supported"), "{e}");
    std::fs::write(&inv, &orig_inv).unwrap();

    std::fs::remove_file(&pages).unwrap();
    let e = Image::load(dir.path()).unwrap_err().to_string();
    println!("{e}");
    assert!(e.contains("pages-") && e.contains("No such file"), "{e}");
    std::fs::write(&pages, &orig_pages).unwrap();

    // a good image whose pid is taken (the original still runs): refused, nothing created
    let img = Image::load(dir.path()).unwrap();
    let e = restore(&img)
        .err()
        .expect("restore must refuse")
        .to_string();
    assert_eq!(e, format!("pid {} is in use", p.pid));
    p.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(p.expect("heap"), "heap ok", "the original is untouched");
}

#[test]
fn stream_image_roundtrip_and_stream_corruption() {
    require_root!();
    let mut p = Prog::start(Command::new(build("simple", &[])));
    p.expect("ready");
    let mut sink = StreamSink::new(Vec::new());
    checkpoint::dump(p.pid, &DumpOptions::default(), None, &mut sink).unwrap();
    let bytes = sink.into_inner();
    p.reap();
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 100] ^= 0xff;
    let e = Image::read_stream(&bad[..], None).unwrap_err().to_string();
    assert!(e.contains("<stream>") && e.contains("checksum"), "{e}");
    let e = Image::read_stream(&bytes[..n - 10], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
    let img = Image::read_stream(&bytes[..], None).unwrap();
    // a loaded image writes the same records back: stream -> directory -> stream
    let dir = tempfile::tempdir().unwrap();
    img.write_to(&mut DirSink::new(dir.path()).unwrap())
        .unwrap();
    let from_dir = Image::load(dir.path()).unwrap();
    let mut again = StreamSink::new(Vec::new());
    from_dir.write_to(&mut again).unwrap();
    assert_eq!(
        again.into_inner(),
        bytes,
        "stream, directory and stream again are the same records"
    );
    let img = Image::read_stream(&bytes[..], None).unwrap();
    wait_gone(&img.inventory.pids);
    let mut r = restore(&img).unwrap();
    r.send("go\n");
    let (code, out) = r.finish();
    assert!(
        out.contains("heap ok") && out.contains("counter 42"),
        "{out}"
    );
    assert_eq!(code, 0);
}

#[test]
fn changed_file_is_refused_unless_allowed() {
    require_root!();
    let files = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(build("memory", &[]));
    cmd.arg(files.path());
    let mut p = Prog::start(cmd);
    p.expect("ready");
    let (_dir, img) = dump_to_dir(p.pid, &DumpOptions::default());
    p.reap();
    wait_gone(&img.inventory.pids);
    let path = files.path().join("private.bin");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"more")
        .unwrap();
    let e = restore(&img)
        .err()
        .expect("restore must refuse")
        .to_string();
    assert_eq!(
        e,
        format!(
            "{}: size is 65540 but was 65536 when dumped (mapped file changed)",
            path.display()
        )
    );
    assert!(
        img.inventory
            .pids
            .iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()),
        "nothing created"
    );
    let (in_r, in_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    use std::os::fd::AsRawFd;
    let opts = checkpoint::RestoreOptions {
        stdio: Some([in_r.as_raw_fd(), out_w.as_raw_fd(), 2]),
        allow_changed_files: true,
        ..Default::default()
    };
    let r = checkpoint::restore(&img, &opts).expect("allowed");
    drop((in_r, out_w));
    std::fs::File::from(in_w).write_all(b"go\n").unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(out_r), &mut out).unwrap();
    assert_eq!(r.wait().unwrap(), 0);
    assert!(out.contains("private-file ok"), "{out}");
}

#[test]
fn leave_running_and_keep_frozen() {
    require_root!();
    // leave running: the original carries on
    let mut p = Prog::start(Command::new(build("simple", &[])));
    p.expect("ready");
    let dir = tempfile::tempdir().unwrap();
    let opts = DumpOptions {
        after: AfterDump::Resume,
        ..Default::default()
    };
    checkpoint::dump(p.pid, &opts, None, &mut DirSink::new(dir.path()).unwrap()).unwrap();
    wait_running_untraced(p.pid);
    p.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(p.expect("counter"), "counter 42");
    drop(p);

    // leave stopped: SIGSTOP, no tracer; SIGCONT lets it go on
    let mut p = Prog::start(Command::new(build("simple", &[])));
    p.expect("ready");
    let dir = tempfile::tempdir().unwrap();
    let opts = DumpOptions {
        after: AfterDump::Stop,
        ..Default::default()
    };
    checkpoint::dump(p.pid, &opts, None, &mut DirSink::new(dir.path()).unwrap()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while proc_state(p.pid) != ('T', 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            proc_state(p.pid)
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.pid),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    p.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(p.expect("counter"), "counter 42");
    drop(p);

    // keep frozen: stopped under ptrace until the caller decides, then killed and restored
    let mut p = Prog::start(Command::new(build("simple", &[])));
    p.expect("ready");
    let dir = tempfile::tempdir().unwrap();
    let opts = DumpOptions {
        after: AfterDump::KeepFrozen,
        ..Default::default()
    };
    let out = checkpoint::dump(p.pid, &opts, None, &mut DirSink::new(dir.path()).unwrap()).unwrap();
    let frozen = out.frozen.expect("frozen tree handed back");
    let (state, tracer) = proc_state(p.pid);
    assert_eq!(state, 't');
    assert_eq!(tracer, nix::unistd::gettid().as_raw());
    let img = Image::load(dir.path()).unwrap();
    frozen.kill().unwrap();
    p.reap();
    wait_gone(&img.inventory.pids);
    let mut r = restore(&img).unwrap();
    r.send("go\n");
    let (code, out) = r.finish();
    assert!(out.contains("counter 42"), "{out}");
    assert_eq!(code, 0);
}
