//! End-to-end: process attributes that a restore must bring back exactly.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn oom_score_sched_affinity_pdeathsig_subreaper_loginuid_dumpable() {
    require_root!();
    roundtrip_checks(
        Command::new(build("attrs", &[])),
        &[
            "oom-score-adj",
            "loginuid",
            "child-subreaper",
            "personality",
            "thp-disable",
            "membarrier",
            "dumpable",
            "main-thread",
            "second-thread",
            "child-exit",
        ],
    );
}
