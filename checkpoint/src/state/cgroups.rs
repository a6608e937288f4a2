//! Control groups: which cgroup of each hierarchy a process and each of its threads are in.
//!
//! Only memberships that differ from the dumper's own are kept: a tree in the dumper's cgroups
//! comes back in the restorer's (so that a tree dumped and restored by node daemons lands in
//! the node's cgroup), a tree elsewhere comes back where it was. The restorer writes each pid
//! to the `cgroup.procs` of its cgroup and each thread that is in another cgroup than its
//! process to `tasks` (cgroup v1) or `cgroup.threads` (cgroup v2), finding each hierarchy
//! where it is mounted (/proc/self/mountinfo). The cgroups themselves are not made: a cgroup
//! that is gone, or a hierarchy mounted nowhere, fails the restore before anything is created.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::persist::{Persist, ProcDump, ProcRestore};

/// One line of /proc/PID/cgroup: a hierarchy and the cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The hierarchy's controllers as the kernel lists them (`cpu,cpuacct`, `name=x`; empty
    /// for cgroup v2).
    pub controllers: String,
    /// Path of the cgroup from the hierarchy's root.
    pub path: String,
}

/// The cgroups of a process and of its threads that differ from the dumper's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroups {
    /// The process' cgroups that are not the dumper's.
    pub process: Vec<Membership>,
    /// Threads in other cgroups than their process: tid and those cgroups.
    pub threads: Vec<(i32, Vec<Membership>)>,
}

/// Parses /proc/.../cgroup.
fn read(path: &str) -> Result<Vec<Membership>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_id, ctl, p) = (it.next()?, it.next()?, it.next()?);
            Some(Membership {
                controllers: ctl.to_string(),
                path: p.to_string(),
            })
        })
        .collect())
}

/// Memberships of `of` that are not in `base`.
fn differing(of: &[Membership], base: &[Membership]) -> Vec<Membership> {
    of.iter().filter(|m| !base.contains(m)).cloned().collect()
}

impl Persist for Cgroups {
    type Saving<'a> = ProcDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut ProcDump<'_>) -> Result<Cgroups> {
        let mine = read("/proc/self/cgroup")?;
        let main = read(&format!("/proc/{}/cgroup", cx.pid))?;
        let mut threads = Vec::new();
        for &tid in cx.tids.iter().filter(|&&t| t != cx.pid) {
            let t = read(&format!("/proc/{}/task/{tid}/cgroup", cx.pid))?;
            let d = differing(&t, &main);
            if !d.is_empty() {
                threads.push((tid, d));
            }
        }
        Ok(Cgroups {
            process: differing(&main, &mine),
            threads,
        })
    }

    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        let pid = cx.p.pid;
        let mounts = mounts()?;
        for m in &self.process {
            enter(&mounts, m, pid, "cgroup.procs", pid)?;
        }
        for (tid, ms) in &self.threads {
            for m in ms {
                let file = if m.controllers.is_empty() {
                    "cgroup.threads"
                } else {
                    "tasks"
                };
                enter(&mounts, m, *tid, file, pid)?;
            }
        }
        Ok(())
    }
}

/// Refuses, before anything is restored, a cgroup of the image that is not there.
pub(crate) fn check(pid: i32, c: &Cgroups) -> Result<()> {
    let mounts = mounts()?;
    let all = c.process.iter().chain(c.threads.iter().flat_map(|t| &t.1));
    for m in all {
        dir(&mounts, m, pid)?;
    }
    Ok(())
}

/// A mounted cgroup hierarchy: its controllers (or v2), the cgroup at the mount's root, and
/// where it is mounted.
struct Mount {
    v2: bool,
    options: Vec<String>,
    root: String,
    at: PathBuf,
}

/// The cgroup hierarchies mounted in the restorer's mount namespace.
fn mounts() -> Result<Vec<Mount>> {
    let path = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (Some(fstype), Some(sopts)) = (f.get(sep + 1), f.get(sep + 3)) else {
            continue;
        };
        if *fstype != "cgroup" && *fstype != "cgroup2" {
            continue;
        }
        let (Some(root), Some(at)) = (f.get(3), f.get(4)) else {
            continue;
        };
        out.push(Mount {
            v2: *fstype == "cgroup2",
            options: sopts.split(',').map(str::to_string).collect(),
            root: unescape(root),
            at: PathBuf::from(unescape(at)),
        });
    }
    Ok(out)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(d.iter().fold(0u8, |a, c| a.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of cgroup `m` under one of `mounts`, which must exist.
fn dir(mounts: &[Mount], m: &Membership, pid: i32) -> Result<PathBuf> {
    let v2 = m.controllers.is_empty();
    let want: Vec<&str> = m.controllers.split(',').filter(|c| !c.is_empty()).collect();
    let hierarchy = mounts
        .iter()
        .filter(|h| h.v2 == v2 && want.iter().all(|c| h.options.iter().any(|o| o == c)));
    let mut found_hierarchy = false;
    for h in hierarchy {
        found_hierarchy = true;
        let Some(rest) = rel(&m.path, &h.root) else {
            continue;
        };
        if rest.split('/').any(|c| c == "..") {
            continue;
        }
        let d = h.at.join(rest);
        if d.is_dir() {
            return Ok(d);
        }
    }
    let name = if v2 { "cgroup2" } else { &m.controllers };
    let why = if found_hierarchy {
        "is gone"
    } else {
        "is in a hierarchy mounted nowhere here"
    };
    Err(Error::Conflict(format!(
        "pid {pid}: cgroup {name}:{} {why} (cgroups are not made again)",
        m.path
    )))
}

/// `path` relative to the mount root `root`, if it is under it.
fn rel<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(root.trim_end_matches('/'))?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    Some(rest.trim_start_matches('/'))
}

/// Moves task `id` (of process `pid`) into cgroup `m` by writing it to `file` there.
fn enter(mounts: &[Mount], m: &Membership, id: i32, file: &str, pid: i32) -> Result<()> {
    let path = dir(mounts, m, pid)?.join(file);
    std::fs::write(&path, id.to_string()).map_err(|e| Error::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_under_the_mount_root() {
        assert_eq!(rel("/a/b", "/"), Some("a/b"));
        assert_eq!(rel("/a/b", "/a"), Some("b"));
        assert_eq!(rel("/a", "/a"), Some(""));
        assert_eq!(rel("/ab", "/a"), None);
        assert_eq!(rel("/b", "/a"), None);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/x\\y"), r"/x\\y");
    }

    #[test]
    fn only_memberships_not_shared_with_the_base_are_kept() {
        let m = |c: &str, p: &str| Membership {
            controllers: c.into(),
            path: p.into(),
        };
        let base = vec![m("", "/s"), m("name=x", "/")];
        let of = vec![m("", "/s"), m("name=x", "/sub")];
        assert_eq!(differing(&of, &base), vec![m("name=x", "/sub")]);
    }
}
