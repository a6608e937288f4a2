//! End-to-end: task states a restore must keep (stopped tasks).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_stopped_child_stays_stopped_until_continued() {
    require_root!();
    roundtrip_checks(
        Command::new(build("stopped", &[])),
        &["still-stopped", "continued", "exited"],
    );
}
