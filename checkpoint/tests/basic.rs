//! End-to-end: one single-threaded process, dumped to a directory and restored.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn single_process_memory_and_blocked_read() {
    require_root!();
    let mut p = Prog::start(Command::new(build("simple", &[])));
    let line = p.expect("ready");
    let pid = p.pid;
    assert!(line.starts_with(&format!("ready {pid}")));
    let (code, out) = roundtrip(p);
    println!("exit {code}: {out}");
    assert!(out.contains(&format!("pid {pid} ppid-ok 1")), "{out}");
    assert!(out.contains("heap ok"), "{out}");
    assert!(out.contains("anon ok"), "{out}");
    assert!(out.contains("counter 42"), "{out}");
    assert!(out.contains("malloc ok"), "{out}");
    assert_eq!(code, 0);
}
