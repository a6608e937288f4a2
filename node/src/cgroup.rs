//! A CPU limit for everything a node hosts: one cgroup per node, created at start and holding
//! the node's namespace init (so every process of the node, helpers and restored trees
//! included).
//!
//! This is how nodes that share one kernel (the testbed) each behave like a machine with its
//! own CPUs. cgroup v2 (`cpu.max`) is used where the unified hierarchy has the cpu controller,
//! else cgroup v1 (`cpu.cfs_quota_us` under /sys/fs/cgroup/cpu). The path is written to
//! `<state dir>/cgroup` so that tools can clean up after a crash.
//!
//! Inside, the programs a user starts run in a cgroup of that user's ([`UserCgroups`]; its
//! place is written to `<state dir>/cgroup-users`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const PERIOD_US: u64 = 100_000;

/// A node's cgroup.
#[derive(Debug)]
pub struct NodeCgroup {
    path: PathBuf,
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value)
        .with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

impl NodeCgroup {
    /// Creates the cgroup `name` limited to `cpus` CPUs' worth of time.
    pub fn create(name: &str, cpus: f64) -> Result<NodeCgroup> {
        if !(cpus.is_finite() && cpus > 0.0) {
            bail!("cpu_quota {cpus} must be above 0");
        }
        let quota = ((cpus * PERIOD_US as f64) as u64).max(1000);
        let v2 = Path::new("/sys/fs/cgroup");
        let v2_cpu = std::fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu"));
        let (path, file, value) = if v2_cpu {
            let _ = write(&v2.join("cgroup.subtree_control"), "+cpu");
            (v2.join(name), "cpu.max", format!("{quota} {PERIOD_US}"))
        } else {
            let v1 = Path::new("/sys/fs/cgroup/cpu");
            if !v1.join("cpu.cfs_quota_us").exists() {
                bail!("no cgroup cpu controller found (neither v2 with cpu nor v1 /sys/fs/cgroup/cpu)");
            }
            (v1.join(name), "cpu.cfs_quota_us", quota.to_string())
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create cgroup {}", path.display()))?;
        write(&path.join(file), &value)?;
        Ok(NodeCgroup { path })
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves process `pid` (and its future children) into the cgroup.
    pub fn add(&self, pid: u32) -> Result<()> {
        write(&self.path.join("cgroup.procs"), &pid.to_string())
    }

    /// Removes the cgroup once empty (best effort: it is kept if processes remain).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// One cgroup per user for the programs this node starts for them (`ssi run`), created when
/// their first program starts and removed once empty.
///
/// They live in the cgroup v2 hierarchy (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
/// hybrid system): under the node's own cgroup when that is a v2 one (so its CPU limit holds
/// for them), else in a cgroup `NAME` under the one `ssid` runs in. Each user's is
/// `user-UID`, owned by root: the user's processes are grouped for accounting and limits, and
/// can move nowhere else.
#[derive(Debug)]
pub struct UserCgroups {
    base: PathBuf,
    /// Users with a program starting: their cgroup is not removed meanwhile.
    starting: std::sync::Mutex<std::collections::HashMap<u32, usize>>,
}

/// Keeps a user's cgroup from being removed while a program of theirs starts into it.
#[derive(Debug)]
pub struct Joining<'a> {
    cgroups: &'a UserCgroups,
    uid: u32,
    /// The cgroup's `cgroup.procs`.
    pub procs: PathBuf,
}

impl Drop for Joining<'_> {
    fn drop(&mut self) {
        let mut s = self.cgroups.lock();
        if let Some(n) = s.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                s.remove(&self.uid);
            }
        }
    }
}

/// The root of the cgroup v2 hierarchy, if mounted where systems put it.
fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.subtree_control").exists())
}

/// This process's cgroup in the v2 hierarchy (its `0::` line), relative to the root.
fn own_v2_cgroup() -> Result<PathBuf> {
    let all =
        std::fs::read_to_string("/proc/self/cgroup").context("cannot read /proc/self/cgroup")?;
    let line = all
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .context("no cgroup v2 line in /proc/self/cgroup")?;
    Ok(PathBuf::from(line.trim_start_matches('/')))
}

impl UserCgroups {
    /// Sets up the place of the users' cgroups: under `node` if it is a v2 cgroup, else in a
    /// new cgroup `name` under this process's own.
    pub fn create(node: Option<&NodeCgroup>, name: &str) -> Result<UserCgroups> {
        let root = v2_root().context("no cgroup v2 hierarchy under /sys/fs/cgroup")?;
        let base = match node {
            Some(n) if n.path().starts_with(&root) && root.join("cgroup.controllers").exists() => {
                n.path().to_path_buf()
            }
            _ => {
                let parent = root.join(own_v2_cgroup()?);
                remove_stale(&parent);
                let base = parent.join(name);
                std::fs::create_dir_all(&base)
                    .with_context(|| format!("cannot create cgroup {}", base.display()))?;
                base
            }
        };
        Ok(UserCgroups {
            base,
            starting: Default::default(),
        })
    }

    /// Where the users' cgroups are.
    pub fn base(&self) -> &Path {
        &self.base
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u32, usize>> {
        self.starting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cgroup of `uid`, created if missing; it stays while the value lives.
    pub fn join(&self, uid: u32) -> Result<Joining<'_>> {
        *self.lock().entry(uid).or_default() += 1;
        let joining = Joining {
            cgroups: self,
            uid,
            procs: self.base.join(format!("user-{uid}")).join("cgroup.procs"),
        };
        let dir = self.base.join(format!("user-{uid}"));
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                Err(e).with_context(|| format!("cannot create cgroup {}", dir.display()))
            }
            _ => Ok(joining),
        }
    }

    /// Removes the users' cgroups that are empty (rmdir fails on one with processes).
    pub fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.base) else {
            return;
        };
        let starting = self.lock();
        for e in entries.flatten() {
            let name = e.file_name();
            let uid = name
                .to_str()
                .and_then(|n| n.strip_prefix("user-"))
                .and_then(|u| u.parse::<u32>().ok());
            if uid.is_some_and(|u| !starting.contains_key(&u)) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }

    /// Removes every empty user cgroup, and the place made for them if this made it.
    pub fn remove(&self, node: Option<&NodeCgroup>) {
        self.prune();
        if node.is_none_or(|n| n.path() != self.base) {
            let _ = std::fs::remove_dir(&self.base);
        }
    }
}

/// Removes the users' cgroups left under `parent` by daemons that are gone (killed before
/// they could): `ssi-node*-PID` with no process `PID`, and only empty cgroups in them.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let pid = name
            .to_str()
            .filter(|n| n.starts_with("ssi-node"))
            .and_then(|n| n.rsplit('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(users) = std::fs::read_dir(e.path()) {
            for u in users.flatten() {
                if u.file_name().to_string_lossy().starts_with("user-") {
                    let _ = std::fs::remove_dir(u.path());
                }
            }
        }
        let _ = std::fs::remove_dir(e.path());
    }
}
