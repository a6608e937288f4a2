//! End-to-end: process attributes that a restore must bring back exactly.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn oom_score_sched_affinity_pdeathsig_subreaper_loginuid_dumpable() {
    require_root!();
    let mut p = Prog::start(Command::new(build("attrs", &[])));
    p.expect("ready");
    let (code, out) = roundtrip(p);
    println!("exit {code}:\n{out}");
    for c in [
        "oom-score-adj",
        "loginuid",
        "child-subreaper",
        "personality",
        "thp-disable",
        "dumpable",
        "main-thread",
        "second-thread",
        "child-exit",
    ] {
        assert!(out.contains(&format!("{c} ok")), "{c}: {out}");
    }
    assert_eq!(code, 0);
}
