//! The benchmarked process (`progs/resident.c`): started, told to rewrite pages, killed.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use testbed::wait_until;

/// How long a process may take to fill 1 GiB or to go away.
const PATIENCE: Duration = Duration::from_secs(60);

/// Compiles `progs/resident.c` into `dir`.
pub fn build(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/dump_restore/progs/resident.c");
    let out = dir.join("resident");
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cc {} failed", src.display());
    out
}

/// A running `resident`.
pub struct Resident {
    child: Child,
    out: PathBuf,
    /// Where its area starts.
    pub addr: usize,
    /// The area's length in bytes.
    pub len: usize,
}

impl Resident {
    /// Starts one holding `mib` MiB (`reserve`: mapped, not touched), stdout to a file in
    /// `dir`; returns once it is ready.
    pub fn start(bin: &Path, dir: &Path, mib: usize, reserve: bool) -> Resident {
        let mut cmd = Command::new(bin);
        cmd.arg(mib.to_string());
        if reserve {
            cmd.arg("reserve");
        }
        let out = dir.join(format!("resident-{mib}-{}.out", reserve as u8));
        let file = File::create(&out).expect("create the process's stdout");
        // Its own process group, as a job of a shell (both checkpointers are told so).
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn resident");
        let mut r = Resident {
            child,
            out,
            addr: 0,
            len: 0,
        };
        let first = r.wait_lines(1).into_iter().next().unwrap_or_default();
        let mut f = first
            .split_whitespace()
            .map(|x| usize::from_str_radix(x, 16));
        match (f.next(), f.next()) {
            (Some(Ok(addr)), Some(Ok(len))) => (r.addr, r.len) = (addr, len),
            _ => panic!("resident: unexpected first line {first:?}"),
        }
        r
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn wait_lines(&self, n: usize) -> Vec<String> {
        let mut lines = Vec::new();
        let ok = wait_until(PATIENCE, || {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            lines = text.lines().map(str::to_string).collect();
            lines.len() >= n && text.ends_with('\n')
        });
        assert!(ok, "resident wrote fewer than {n} lines");
        lines
    }

    /// Has it rewrite a tenth of its pages; returns when it is done.
    pub fn rewrite_tenth(&self) {
        let before = self.wait_lines(1).len();
        kill(Pid::from_raw(self.pid()), Signal::SIGUSR1).expect("SIGUSR1");
        self.wait_lines(before + 1);
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills `pid` (a restored process, ours or CRIU's) and waits until it is gone, so that its
/// pid is free for the next restore.
pub fn kill_and_wait(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    // A child of ours must be reaped; CRIU's detached ones are reaped by init.
    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
    let gone = wait_until(PATIENCE, || !Path::new(&format!("/proc/{pid}")).exists());
    assert!(gone, "process {pid} did not go away");
}
