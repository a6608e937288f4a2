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
