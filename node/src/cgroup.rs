//! A CPU limit for everything a node hosts: one cgroup per node, created at start and holding
//! the node's namespace init (so every process of the node, helpers and restored trees
//! included).
//!
//! This is how nodes that share one kernel (the testbed) each behave like a machine with its
//! own CPUs. cgroup v2 (`cpu.max`) is used where the unified hierarchy has the cpu controller,
//! else cgroup v1 (`cpu.cfs_quota_us` under /sys/fs/cgroup/cpu). The path is written to
//! `<state dir>/cgroup` so that tools can clean up after a crash.

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
