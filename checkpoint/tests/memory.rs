//! End-to-end: every kind of memory mapping.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

#[test]
fn anon_shared_file_private_file_shared_guard_brk_vdso() {
    require_root!();
    let files = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(build("memory", &[]));
    cmd.arg(files.path());
    let mut p = Prog::start(cmd);
    p.expect("ready");
    let (code, out) = roundtrip(p);
    println!("exit {code}:\n{out}");
    for c in [
        "private-file",
        "shared-anon",
        "shared-file",
        "read-only-data",
        "read-only-prot",
        "guard",
        "brk",
        "vdso-address",
        "vdso-clock",
        "dontfork",
    ] {
        assert!(out.contains(&format!("{c} ok")), "{c}: {out}");
    }
    assert_eq!(code, 0);
    let data = std::fs::read(files.path().join("shared.bin")).unwrap();
    assert!(
        data.starts_with(b"written-after"),
        "write through the restored shared mapping reached the file"
    );
}

#[test]
fn locked_and_advised_mappings_keep_their_flags() {
    require_root!();
    let mut p = Prog::start(Command::new(build("memflags", &[])));
    p.expect("ready");
    let (code, out) = roundtrip(p);
    println!("exit {code}:\n{out}");
    for c in [
        "mlock",
        "mlock-onfault",
        "sequential",
        "random",
        "mergeable",
        "hugepage",
        "noreserve",
    ] {
        assert!(out.contains(&format!("{c} ok")), "{c}: {out}");
    }
    assert_eq!(code, 0);
}
