//! End-to-end: task states a restore must keep (stopped tasks, zombies).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_stopped_child_stays_stopped_until_continued() {
    require_root!();
    roundtrip_checks(
        Command::new(build("stopped", &[])),
        &["still-stopped", "stop-reported", "continued", "exited"],
    );
}

#[test]
fn zombies_come_back_with_their_status_and_group() {
    require_root!();
    roundtrip_checks(
        Command::new(build("zombies", &[])),
        &["leader-group", "statuses"],
    );
}
