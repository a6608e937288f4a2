//! End-to-end: file descriptors of every supported kind, cwd, umask, rlimits.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn files_pipes_fifos_socketpairs_eventfd_cwd_umask_rlimits() {
    require_root!();
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().canonicalize().unwrap();
    let mut cmd = Command::new(build("files", &[]));
    cmd.arg(&dir);
    roundtrip_checks(
        cmd,
        &[
            "reg-offset",
            "dup-shares-offset",
            "append",
            "dir",
            "devnull",
            "devzero",
            "urandom",
            "cloexec-clear",
            "child",
            "pipe-bytes",
            "pipe-nonblock",
            "fifo-bytes",
            "socketpair-bytes",
            "eventfd",
            "cwd",
            "umask",
            "rlimits",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("log.txt")).unwrap(),
        "one\ntwo\n"
    );
}

#[test]
fn epoll_timerfd_signalfd() {
    require_root!();
    roundtrip_checks(
        Command::new(build("events", &[])),
        &[
            "epoll-pipe",
            "epoll-timerfd",
            "timerfd-interval",
            "signalfd",
            "epoll-del",
            "epoll-closed-fd",
            "epoll-same-number",
        ],
    );
}

#[test]
fn root_directory() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("marker"), b"m").unwrap();
    let mut cmd = Command::new(build("chroot", &["-static"]));
    cmd.arg(dir.path());
    let mut p = Prog::start(cmd);
    p.expect("ready");
    let (code, out) = roundtrip(p);
    println!("exit {code}:\n{out}");
    assert!(out.contains("root ok"), "{out}");
    assert!(out.contains("cwd ok"), "{out}");
    assert_eq!(code, 0);
}

#[test]
fn posix_ofd_and_flock_locks_are_held_again() {
    require_root!();
    let files = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(build("locks", &[]));
    cmd.arg(files.path());
    roundtrip_checks(
        cmd,
        &[
            "posix-write",
            "posix-read-to-eof",
            "ofd-read",
            "flock-write",
        ],
    );
}

#[test]
fn file_owners_and_their_signal() {
    require_root!();
    roundtrip_checks(
        Command::new(build("owner", &[])),
        &["pipe-owner", "socket-owner", "sigio"],
    );
}

#[test]
fn deleted_files_memfds_and_pipes_with_a_closed_end() {
    require_root!();
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().canonicalize().unwrap();
    let mut cmd = Command::new(build("ghost", &[]));
    cmd.arg(&dir);
    roundtrip_checks(
        cmd,
        &[
            "ghost-stat",
            "ghost-name",
            "ghost-pos",
            "ghost-data",
            "ghost-hole",
            "ghost-times",
            "memfd-exec",
            "ghost-same-inode",
            "ghost-child",
            "tmpfile",
            "pipe-no-writer",
            "pipe-no-reader",
            "memfd",
            "child",
        ],
    );
}

#[test]
fn pidfds_of_the_tree() {
    require_root!();
    roundtrip_checks(
        Command::new(build("pidfds", &[])),
        &["self", "live-flags", "live-kill", "zombie"],
    );
}

#[test]
fn inotify_watches() {
    require_root!();
    let files = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(build("inotify", &[]));
    cmd.arg(files.path().canonicalize().unwrap());
    roundtrip_checks(cmd, &["watches", "events", "nonblock"]);
}

#[test]
fn unix_sockets_alone_half_closed_and_with_messages_queued() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(build("unixsock", &[]));
    cmd.arg(dir.path().canonicalize().unwrap());
    roundtrip_checks(
        cmd,
        &[
            "listening",
            "abstract",
            "unconnected",
            "removed",
            "closed-peer",
            "datagrams",
            "seqpacket",
        ],
    );
}

#[test]
fn tcp_sockets_without_a_connection_and_socket_options() {
    require_root!();
    roundtrip_checks(
        Command::new(build("tcplisten", &[])),
        &[
            "listen4-port",
            "listen4-options",
            "listen4-accepts",
            "listen6",
            "bound",
            "unbound",
            "unix-option",
        ],
    );
}

#[test]
fn tcp_connection_inside_the_tree_with_bytes_queued_both_ways() {
    require_root!();
    roundtrip_checks(
        Command::new(build("tcpconn", &[])),
        &["queued-to-parent", "rest-sent", "go", "talk-on", "child"],
    );
}

#[test]
fn tcp_connections_restored_closed_on_request() {
    require_root!();
    let mut p = Prog::start(Command::new(build("tcpclosed", &[])));
    p.expect("ready");
    let (_dir, img) = dump_to_dir(p.pid, &checkpoint::DumpOptions::default());
    p.reap();
    wait_gone(&img.inventory.pids);
    let opts = checkpoint::RestoreOptions {
        tcp_close: true,
        ..Default::default()
    };
    let mut r = restore_with(&img, opts).expect("restore");
    drop(p);
    r.send("go\n");
    let (code, out) = r.finish();
    for c in ["client-closed", "server-closed", "listener"] {
        assert!(out.contains(&format!("{c} ok")), "{c}: {out}");
    }
    assert_eq!(code, 0, "{out}");
}
