//! The Debian package, installed and used: builds it from the debug binaries of this worktree
//! (`scripts/package.sh --debug`, which installs cargo-deb when missing), then runs
//! `install-in-overlay.sh`, which installs it with `dpkg -i` into a copy-on-write view of this
//! machine, verifies the systemd unit and boots two `ssid` from the installed files with the
//! unit's own start and stop command lines (see the script for what cannot run here).
//!
//! Needs root and the debug binaries (`cargo build --workspace --bins`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs `cmd`, printing its output; panics naming `what` when it fails.
fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{what}:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed: {}", out.status);
    stdout
}

#[test]
fn package_installs_and_boots_ssid_with_the_units_command_lines() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: installing a package and hosting processes need root");
        return;
    }
    let root = workspace();
    let out = tempfile::tempdir().expect("tempdir");
    run(
        "scripts/package.sh --debug",
        Command::new(root.join("scripts/package.sh"))
            .arg("--debug")
            .arg(out.path()),
    );
    let debs: Vec<PathBuf> = std::fs::read_dir(out.path())
        .expect("read output dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    let [deb] = debs.as_slice() else {
        panic!(
            "expected one .deb in {}, found {debs:?}",
            out.path().display()
        );
    };
    let info = run(
        "dpkg-deb --field",
        Command::new("dpkg-deb").arg("--field").arg(deb),
    );
    for field in ["Package: ssi", "Section: admin", "Depends: libc6"] {
        assert!(
            info.contains(field),
            "{field} missing from the control file:\n{info}"
        );
    }
    let log = run(
        "install-in-overlay.sh",
        Command::new(root.join("packaging/tests/install-in-overlay.sh")).arg(deb),
    );
    assert!(log.contains(", 0 failed"), "{log}");
}
