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
    roundtrip_checks(
        cmd,
        &[
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
        ],
    );
    let data = std::fs::read(files.path().join("shared.bin")).unwrap();
    assert!(
        data.starts_with(b"written-after"),
        "write through the restored shared mapping reached the file"
    );
}

#[test]
fn locked_and_advised_mappings_keep_their_flags() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    roundtrip_checks(
        {
            let mut c = Command::new(build("memflags", &[]));
            c.arg(dir.path());
            c
        },
        &[
            "mlock",
            "mlock-onfault",
            "sequential",
            "random",
            "mergeable",
            "hugepage",
            "noreserve",
            "shared-may-write",
        ],
    );
}

#[test]
fn pages_shared_copy_on_write_with_the_parent_stay_shared() {
    require_root!();
    roundtrip_checks(
        Command::new(build("cow", &[])),
        &[
            "shared-before",
            "cow-shared",
            "cow-private",
            "contents",
            "droppable",
        ],
    );
}
