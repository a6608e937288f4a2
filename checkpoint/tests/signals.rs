//! End-to-end: signal dispositions, masks, pending signals, sigaltstack, interval timers.

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
