//! End-to-end: signal dispositions, masks, pending signals, sigaltstack, interval and POSIX
//! timers.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn handlers_blocked_pending_altstack_itimers() {
    require_root!();
    roundtrip_checks(
        Command::new(build("signals", &[])),
        &[
            "handler",
            "ignored",
            "blocked",
            "pending",
            "pending-value",
            "altstack",
            "handler-runs-on-altstack",
            "itimer-real",
            "itimer-virtual",
            "ignored-still",
        ],
    );
}

#[test]
fn posix_timers_keep_their_ids_and_times() {
    require_root!();
    roundtrip_checks(
        Command::new(build("ptimers", &[])),
        &["disarmed", "one-shot", "gap", "periodic"],
    );
}
