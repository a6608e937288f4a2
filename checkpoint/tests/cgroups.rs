//! End-to-end: a process in another cgroup than the dumper comes back in it; a cgroup removed
//! since the dump fails the restore before anything is created.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use checkpoint::DumpOptions;
use common::*;

/// A cgroup v2 made for one test, removed on drop (once its processes are gone).
struct Cgroup(PathBuf);

impl Cgroup {
    /// Makes `NAME-PID` at the root of the cgroup v2 hierarchy, or `None` (with a printed
    /// reason) where none is mounted.
    fn make(name: &str) -> Option<Cgroup> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = info.lines().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            (f.get(sep + 1) == Some(&"cgroup2") && f[3] == "/").then(|| PathBuf::from(f[4]))
        });
        let Some(root) = root else {
            eprintln!("skipped: no cgroup v2 hierarchy mounted");
            return None;
        };
        let p = root.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&p).unwrap();
        Some(Cgroup(p))
    }

    fn enter(&self, pid: i32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    /// Removes it, waiting (with a deadline) for its dead processes to leave.
    fn remove(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match std::fs::remove_dir(&self.0) {
                Ok(()) => return true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => return false,
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The cgroup v2 path of `pid`.
fn cgroup_of(pid: i32) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_process_comes_back_in_its_cgroup() {
    require_root!();
    let Some(cg) = Cgroup::make("ssi-ckpt-cg") else {
        return;
    };
    let mut p = Prog::start(Command::new(build("simple", &[])));
    p.expect("ready");
    cg.enter(p.pid);
    let want = format!("/{}", cg.0.file_name().unwrap().to_str().unwrap());
    assert_eq!(cgroup_of(p.pid), want);
    let (_dir, img) = dump_to_dir(p.pid, &DumpOptions::default());
    p.reap();
    wait_gone(&img.inventory.pids);
    let mut r = restore(&img).expect("restore");
    drop(p);
    let got = cgroup_of(r.pids[0]);
    r.send("go\n");
    let (code, out) = r.finish();
    assert_eq!(got, want, "cgroup of the restored process");
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_cgroup_gone_since_the_dump_fails_the_restore() {
    require_root!();
    let Some(cg) = Cgroup::make("ssi-ckpt-cg-gone") else {
        return;
    };
    let mut p = Prog::start(Command::new(build("simple", &[])));
    p.expect("ready");
    cg.enter(p.pid);
    let (_dir, img) = dump_to_dir(p.pid, &DumpOptions::default());
    p.reap();
    wait_gone(&img.inventory.pids);
    assert!(cg.remove(), "cgroup still busy after its process died");
    let err = restore(&img).err().expect("restore refused");
    assert!(err.to_string().contains("is gone"), "{err}");
    assert!(
        !Path::new(&format!("/proc/{}", img.inventory.root_pid)).exists(),
        "nothing is left of a failed restore"
    );
}
