//! Helpers shared by the end-to-end tests: building the C test programs, running them in
//! their own process group, dumping and restoring them, and cleaning up on every path.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use checkpoint::{DirSink, DumpOptions, Image, RestoreOptions};

/// Skips the test (with a printed reason) when not root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: checkpoint/restore needs root");
            return;
        }
    };
}

/// Compiles `tests/progs/<name>.c` once per test binary; returns the executable.
pub fn build(name: &str, extra: &[&str]) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let key = format!("{name}{}", extra.join(""));
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = built.get(&key) {
        return p.clone();
    }
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/progs")
        .join(format!("{name}.c"));
    let out = dir.path().join(format!("{}-{}", name, built.len()));
    let st = Command::new("cc")
        .args(["-O1", "-g", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .args(extra)
        .arg("-lpthread")
        .status()
        .expect("run cc");
    assert!(st.success(), "cc failed for {name}");
    built.insert(key, out.clone());
    out
}

/// A running test program in its own process group, killed (whole group) on drop.
pub struct Prog {
    pub child: Option<Child>,
    pub pid: i32,
    pub stdin: Option<std::process::ChildStdin>,
    pub out: BufReader<std::process::ChildStdout>,
}

impl Prog {
    /// Starts `cmd` with piped stdin/stdout in a new process group. Its stderr is a pipe too,
    /// copied to the test's stderr: the test's own stderr may be a regular file that grows
    /// (CI logs), which the dump would save as a file and the restore refuse as changed.
    pub fn start(mut cmd: Command) -> Prog {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("spawn test program");
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut err, &mut std::io::stderr());
        });
        let pid = child.id() as i32;
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        Prog {
            child: Some(child),
            pid,
            stdin,
            out,
        }
    }

    /// Reads lines until one starts with `prefix` (fails after 20 s).
    pub fn expect(&mut self, prefix: &str) -> String {
        read_until(&mut self.out, prefix)
    }

    /// Waits for the (killed) process to be reaped, so that its pid is free; from then on
    /// the pid belongs to whatever is restored, and drop no longer kills it.
    pub fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for Prog {
    fn drop(&mut self) {
        if self.child.is_some() {
            kill_group(self.pid);
            self.reap();
        }
    }
}

/// Kills a process group and its leader.
pub fn kill_group(pid: i32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

pub fn read_until(r: &mut impl BufRead, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("read program output");
        assert!(
            n > 0,
            "program output ended before a line starting with {prefix:?}"
        );
        if line.starts_with(prefix) {
            return line.trim_end().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no line starting with {prefix:?}"
        );
    }
}

/// A restored tree: its stdin and stdout, killed on drop.
pub struct RestoredProg {
    pub restored: Option<checkpoint::Restored>,
    pub stdin: Option<std::fs::File>,
    pub out: BufReader<std::fs::File>,
    pub pids: Vec<i32>,
}

impl RestoredProg {
    /// Writes `s` to the restored program's stdin.
    pub fn send(&mut self, s: &str) {
        self.stdin
            .as_mut()
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    }

    /// Closes stdin, reads all output and waits for the root; returns (exit code, output).
    pub fn finish(mut self) -> (i32, String) {
        self.stdin.take();
        let mut s = String::new();
        self.out.read_to_string(&mut s).unwrap();
        let code = self.restored.take().unwrap().wait().unwrap();
        (code, s)
    }
}

impl Drop for RestoredProg {
    fn drop(&mut self) {
        for &p in &self.pids {
            kill_group(p);
        }
        if let Some(r) = self.restored.take() {
            let _ = r.wait();
        }
    }
}

fn pipe() -> (std::fs::File, std::fs::File) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (std::fs::File::from(r), std::fs::File::from(w))
}

/// Restores `img` with fresh pipes as its standard streams.
pub fn restore(img: &Image) -> checkpoint::Result<RestoredProg> {
    restore_with(img, RestoreOptions::default())
}

/// Restores `img` with `base` options and fresh pipes as its standard streams.
pub fn restore_with(img: &Image, base: RestoreOptions) -> checkpoint::Result<RestoredProg> {
    let (in_r, in_w) = pipe();
    let (out_r, out_w) = pipe();
    let opts = RestoreOptions {
        stdio: Some([in_r.as_raw_fd(), out_w.as_raw_fd(), 2]),
        ..base
    };
    let r = checkpoint::restore(img, &opts)?;
    // the root has its own fds, none of the restorer's
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{}/fd", r.root))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    fds.sort_unstable();
    let mut want: Vec<i32> = img
        .process(r.root)
        .unwrap()
        .fds
        .iter()
        .map(|f| f.fd)
        .collect();
    want.sort_unstable();
    assert_eq!(fds, want, "fds of restored pid {}", r.root);
    let pids = r.pids.clone();
    drop((in_r, out_w));
    Ok(RestoredProg {
        restored: Some(r),
        stdin: Some(in_w),
        out: BufReader::new(out_r),
        pids,
    })
}

/// Dumps `pid` into a fresh directory (the tree is killed) and loads the image.
pub fn dump_to_dir(pid: i32, opts: &DumpOptions) -> (tempfile::TempDir, Image) {
    let dir = tempfile::tempdir().unwrap();
    checkpoint::dump(pid, opts, None, &mut DirSink::new(dir.path()).unwrap()).expect("dump");
    let img = Image::load(dir.path()).expect("load image");
    (dir, img)
}

/// Waits until none of `pids` exists any more (killed processes are reaped by their parents
/// or by init asynchronously).
pub fn wait_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids
        .iter()
        .any(|&p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "dumped processes still exist: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Dump, reap, restore, send "go", collect output.
pub fn roundtrip(mut p: Prog) -> (i32, String) {
    let (_dir, img) = dump_to_dir(p.pid, &DumpOptions::default());
    p.reap();
    wait_gone(&img.inventory.pids);
    // zombies of a killed tree wait for pid 1 to reap them
    wait_gone(
        &img.inventory
            .zombies
            .iter()
            .map(|z| z.pid)
            .collect::<Vec<_>>(),
    );
    let mut r = restore(&img).expect("restore");
    drop(p);
    r.send("go\n");
    r.finish()
}

/// Starts `cmd`, dumps and restores it once it is ready, and checks that it exits 0 having
/// printed `<check> ok` for each of `checks`.
pub fn roundtrip_checks(cmd: Command, checks: &[&str]) {
    let mut p = Prog::start(cmd);
    p.expect("ready");
    let (code, out) = roundtrip(p);
    println!("exit {code}:\n{out}");
    for c in checks {
        assert!(out.contains(&format!("{c} ok")), "{c}: {out}");
    }
    assert_eq!(code, 0, "{out}");
}
