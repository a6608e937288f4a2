//! End-to-end: signal dispositions, masks, pending signals, sigaltstack, interval timers.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn handlers_blocked_pending_altstack_itimers() {
    require_root!();
    let mut p = Prog::start(Command::new(build("signals", &[])));
    p.expect("ready");
    let (code, out) = roundtrip(p);
    println!("exit {code}:\n{out}");
    for c in [
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
    ] {
        assert!(out.contains(&format!("{c} ok")), "{c}: {out}");
    }
    assert_eq!(code, 0);
}
