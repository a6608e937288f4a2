//! `ssi dump` and `ssi restore` draw a progress bar on a terminal (here a pty made by
//! script(1)) and print only their summary line into a pipe.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

const SSI: &str = env!("CARGO_BIN_EXE_ssi");

/// A program holding 192 MiB of written memory, with no descriptors but its stdio, which are
/// on /dev/null once it said "ready".
const HOG: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    /* descriptors inherited from the test harness would lead outside the tree */
    for (int fd = 3; fd < 1024; fd++) close(fd);
    size_t n = 192u << 20;
    char *p = malloc(n);
    if (!p) return 1;
    /* through a volatile pointer: the compiler must not drop stores nobody reads */
    for (size_t i = 0; i < n; i += 4096) ((volatile char *)p)[i] = (char)(i >> 12);
    printf("ready\n");
    fflush(stdout);
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; fd++) dup2(null, fd);
    close(null);
    for (;;) pause();
}
"#;

/// Kills a process (and its group) when dropped, and reaps it when it is our child (this test
/// is a child subreaper: a tree restored with --detach is ours once ssi exits), so that its
/// pid is free for the next restore.
struct Killed(i32);

impl Drop for Killed {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

/// Starts the hog in a process group of its own; returns its pid once it is ready.
fn start_hog(dir: &Path) -> (std::process::Child, Killed) {
    let src = dir.join("hog.c");
    std::fs::write(&src, HOG).expect("write hog.c");
    let bin = dir.join("hog");
    let st = Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(st.success(), "cc hog.c");
    let mut child = Command::new(&bin)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start hog");
    let guard = Killed(child.id() as i32);
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read ready");
    assert_eq!(line, "ready\n");
    (child, guard)
}

/// Runs `ssi ARGS` with stdout a pipe; returns what it printed.
fn in_pipe(args: &[&str]) -> String {
    let out = Command::new(SSI)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ssi");
    assert!(
        out.status.success(),
        "ssi {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs `ssi ARGS` on a pty (script(1)); returns everything written to the terminal.
fn on_terminal(args: &[&str], dir: &Path) -> String {
    let line = std::iter::once(SSI)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let typescript = dir.join("typescript");
    let st = Command::new("script")
        .args(["-q", "-e", "-c", &line])
        .arg(&typescript)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run script");
    assert!(st.success(), "{line} on a pty: {st}");
    String::from_utf8_lossy(&std::fs::read(&typescript).expect("typescript")).into_owned()
}

/// The pid in `restored tree PID (...)`.
fn restored_pid(out: &str) -> i32 {
    out.split_whitespace()
        .nth(2)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}"))
}

#[test]
fn bars_on_a_terminal_summary_lines_in_a_pipe() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: checkpoint and restore need root");
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut hog, _guard) = start_hog(tmp.path());
    let pid = hog.id().to_string();
    let img = tmp.path().join("img");
    let img = img.to_str().expect("utf-8 path");

    // in a pipe: the summary line alone, no escape sequences
    let out = in_pipe(&[
        "dump",
        "--pid",
        &pid,
        "--dir",
        &format!("{img}-pipe"),
        "--leave-running",
    ]);
    assert!(out.starts_with("dumped 1 process of tree"), "{out:?}");
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(!out.contains('\x1b'), "escape sequences in a pipe: {out:?}");

    // on a terminal: the bar (phase, bytes), cleared before the summary line
    let screen = on_terminal(&["dump", "--pid", &pid, "--dir", img], tmp.path());
    assert!(screen.contains("saving memory"), "no bar: {screen:?}");
    assert!(screen.contains("MiB"), "no byte counts: {screen:?}");
    assert!(screen.contains("dumped 1 process of tree"), "{screen:?}");
    let _ = hog.wait();

    let out = in_pipe(&["restore", "--dir", img, "--detach"]);
    let restored = Killed(restored_pid(&out));
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(!out.contains('\x1b'), "escape sequences in a pipe: {out:?}");
    drop(restored);

    let screen = on_terminal(&["restore", "--dir", img, "--detach"], tmp.path());
    // the bar redraws with carriage returns: the summary follows the last one on its line
    let summary = screen
        .rsplit_once("restored tree")
        .map(|(_, rest)| format!("restored tree{rest}"))
        .unwrap_or_else(|| panic!("no summary: {screen:?}"));
    let _restored = Killed(restored_pid(&summary));
    assert!(screen.contains("restoring memory"), "no bar: {screen:?}");
}
