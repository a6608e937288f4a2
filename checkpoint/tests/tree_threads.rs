//! End-to-end: process trees (pids, parents, groups, sessions) and threads.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn tree_with_children_grandchildren_groups_and_sessions() {
    require_root!();
    let mut p = Prog::start(Command::new(build("tree", &[])));
    let line = p.expect("ready");
    let (code, out) = roundtrip(p);
    println!("{line}\nexit {code}:\n{out}");
    for who in ["A1 ", "A ", "B ", "root "] {
        let l = out
            .lines()
            .find(|l| l.starts_with(who))
            .unwrap_or_else(|| panic!("no {who}line: {out}"));
        assert!(l.ends_with(" ok"), "{l}");
    }
    assert!(out.contains("A1-exit 0"), "{out}");
    assert!(out.contains("children ok"), "{out}");
    assert_eq!(code, 0);
}

#[test]
fn threads_registers_xstate_tls_sigmask_rseq() {
    require_root!();
    let mut p = Prog::start(Command::new(build("threads", &[])));
    let line = p.expect("ready");
    let tids: Vec<String> = line.split_whitespace().skip(2).map(String::from).collect();
    let (code, out) = roundtrip(p);
    println!("{line}\nexit {code}:\n{out}");
    assert!(
        out.contains(&format!("thread0 tid={} ok", tids[0])),
        "{out}"
    );
    assert!(
        out.contains(&format!("thread1 tid={} ok", tids[1])),
        "{out}"
    );
    assert!(
        out.contains(&format!("spinner tid={} ok", tids[2])),
        "{out}"
    );
    for c in ["main-tls ok", "main-rseq ok", "joined ok"] {
        assert!(out.contains(c), "{c}: {out}");
    }
    assert_eq!(code, 0);
}
