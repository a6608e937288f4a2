//! End-to-end: a dump and a restore report their progress (phases in order, bytes of memory
//! up to the total) through the callback of their options.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use checkpoint::{DirSink, DumpOptions, Image, Phase, Progress, RestoreOptions};
use common::*;

type Seen = Arc<Mutex<Vec<(Phase, u64, u64)>>>;

fn recorder() -> (Progress, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let p = Progress::new(move |ph, done, total| s.lock().unwrap().push((ph, done, total)));
    (p, seen)
}

/// Checks the shape of a run of reports; returns the total.
fn check(what: &str, seen: &Seen) -> u64 {
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.first(),
        Some(&(Phase::Preparing, 0, 0)),
        "{what}: {seen:?}"
    );
    let Some(&(Phase::Finishing, done, total)) = seen.last() else {
        panic!("{what}: does not end with Finishing: {seen:?}");
    };
    assert_eq!(done, total, "{what}");
    let memory: Vec<_> = seen.iter().filter(|s| s.0 == Phase::Memory).collect();
    assert!(!memory.is_empty(), "{what}: no memory phase: {seen:?}");
    assert!(
        memory
            .windows(2)
            .all(|w| w[0].1 <= w[1].1 && w[1].1 <= total && w[1].2 == total),
        "{what}: bytes go backwards or past the total: {seen:?}"
    );
    total
}

#[test]
fn dump_and_restore_report_phases_and_bytes() {
    require_root!();
    // 9 MiB of written memory: several reports, one per MiB
    let mut p = Prog::start(Command::new(build("simple", &[])));
    p.expect("ready");
    let (progress, seen) = recorder();
    let dir = tempfile::tempdir().unwrap();
    let opts = DumpOptions {
        progress: Some(progress),
        ..Default::default()
    };
    let out =
        checkpoint::dump(p.pid, &opts, None, &mut DirSink::new(dir.path()).unwrap()).expect("dump");
    let total = check("dump", &seen);
    // the total counts shared memory objects whole; what is written skips their holes
    assert!(
        total >= out.page_bytes && out.page_bytes > 0,
        "{total} {}",
        out.page_bytes
    );

    p.reap();
    let img = Image::load(dir.path()).unwrap();
    wait_gone(&img.inventory.pids);
    let (progress, seen) = recorder();
    let opts = RestoreOptions {
        progress: Some(progress),
        ..Default::default()
    };
    let restored = checkpoint::restore(&img, &opts).expect("restore");
    for &pid in &restored.pids {
        kill_group(pid);
    }
    let _ = restored.wait();
    drop(p);
    assert_eq!(check("restore", &seen), out.page_bytes);
}
