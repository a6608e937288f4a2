//! Resource probes of a node: CPUs, memory, load, hosted processes, read from procfs.
//!
//! With [`ProbeScope::Host`] the load averages are the kernel's (/proc/loadavg). With
//! [`ProbeScope::Hosted`] (nodes sharing one kernel, as on the testbed) they are computed the
//! way the kernel computes its own, but over the threads of the processes this node hosts only.
//! CPU count and memory figures are always the host's: on the testbed every node reports the
//! same ones.

use procfs::process::Process;
use procfs::Current;
use serde::{Deserialize, Serialize};

use crate::config::ProbeScope;
use crate::error::{Error, Result};

/// What a node reports about itself in gossip.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeData {
    /// Online CPUs (host-wide).
    pub cpus: u32,
    /// Total memory in bytes (host-wide).
    pub mem_total_bytes: u64,
    /// Available memory in bytes (MemAvailable, host-wide).
    pub mem_free_bytes: u64,
    /// 1-minute load average.
    pub load1: f64,
    /// 5-minute load average.
    pub load5: f64,
    /// 15-minute load average.
    pub load15: f64,
    /// Processes this node hosts for the cluster.
    pub ssi_procs: u32,
    /// Hosted threads running or waiting for a CPU, now: the demand for CPU, which the
    /// scheduler compares with `cpus`.
    pub runnable: f64,
    /// Admin-set labels of the node.
    pub labels: std::collections::BTreeMap<String, String>,
}

impl ProbeData {
    /// Adds `other`'s figures to these (labels are a node's own and are not summed).
    pub fn add(&mut self, other: &ProbeData) {
        self.cpus += other.cpus;
        self.mem_total_bytes += other.mem_total_bytes;
        self.mem_free_bytes += other.mem_free_bytes;
        self.load1 += other.load1;
        self.load5 += other.load5;
        self.load15 += other.load15;
        self.ssi_procs += other.ssi_procs;
        self.runnable += other.runnable;
    }
}

/// Samples probes; keeps the state the hosted load averages need between samples.
#[derive(Debug)]
pub struct Prober {
    scope: ProbeScope,
    cpus: Option<u32>,
    load: LoadAverages,
}

impl Prober {
    /// A prober for `scope`; `cpus` overrides the CPU count the machine has.
    pub fn new(scope: ProbeScope, cpus: Option<u32>) -> Self {
        Prober {
            scope,
            cpus,
            load: LoadAverages::default(),
        }
    }

    /// Takes one sample. `hosted` are the pids of the processes this node hosts; `elapsed_s` is
    /// the time since the previous sample (it weighs the hosted load averages).
    pub fn sample(&mut self, hosted: &[i32], elapsed_s: f64) -> Result<ProbeData> {
        let cpus = match self.cpus {
            Some(c) => c as usize,
            None => procfs::CpuInfo::current()
                .map_err(|e| Error::Probe(format!("/proc/cpuinfo: {e}")))?
                .num_cores(),
        };
        let mem =
            procfs::Meminfo::current().map_err(|e| Error::Probe(format!("/proc/meminfo: {e}")))?;
        let threads: Vec<(u32, u32)> = hosted.iter().map(|&pid| thread_states(pid)).collect();
        let running: u32 = threads.iter().map(|t| t.0).sum();
        let (load1, load5, load15) = match self.scope {
            ProbeScope::Host => {
                let l = procfs::LoadAverage::current()
                    .map_err(|e| Error::Probe(format!("/proc/loadavg: {e}")))?;
                (two_places(l.one), two_places(l.five), two_places(l.fifteen))
            }
            ProbeScope::Hosted => {
                let active: u32 = threads.iter().map(|t| t.0 + t.1).sum();
                self.load.update(f64::from(active), elapsed_s);
                (self.load.one, self.load.five, self.load.fifteen)
            }
        };
        Ok(ProbeData {
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            mem_total_bytes: mem.mem_total,
            mem_free_bytes: mem.mem_available.unwrap_or(mem.mem_free),
            load1,
            load5,
            load15,
            ssi_procs: u32::try_from(hosted.len()).unwrap_or(u32::MAX),
            runnable: f64::from(running),
            labels: Default::default(),
        })
    }
}

/// /proc/loadavg has two decimals; keep them instead of the f32 noise beyond.
fn two_places(x: f32) -> f64 {
    (f64::from(x) * 100.0).round() / 100.0
}

/// Threads of `pid` running or runnable (`R`), and in uninterruptible sleep (`D`): both count
/// towards the load, as for the kernel's load average. A process that is gone counts zero.
fn thread_states(pid: i32) -> (u32, u32) {
    let Ok(tasks) = Process::new(pid).and_then(|p| p.tasks()) else {
        return (0, 0);
    };
    let (mut r, mut d) = (0, 0);
    for task in tasks.flatten() {
        match task.stat().map(|s| s.state) {
            Ok('R') => r += 1,
            Ok('D') => d += 1,
            _ => {}
        }
    }
    (r, d)
}

/// Exponentially-damped moving averages of a count over 1, 5 and 15 minutes.
#[derive(Debug, Default, Clone, PartialEq)]
struct LoadAverages {
    one: f64,
    five: f64,
    fifteen: f64,
}

impl LoadAverages {
    fn update(&mut self, active: f64, elapsed_s: f64) {
        let damp = |avg: &mut f64, window_s: f64| {
            let w = (-elapsed_s / window_s).exp();
            *avg = *avg * w + active * (1.0 - w);
        };
        damp(&mut self.one, 60.0);
        damp(&mut self.five, 300.0);
        damp(&mut self.fifteen, 900.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_sample_reads_real_figures() {
        let p = Prober::new(ProbeScope::Host, None)
            .sample(&[], 1.0)
            .expect("sample");
        assert!(p.cpus >= 1);
        assert!(p.mem_total_bytes > 0);
        assert!(p.mem_free_bytes <= p.mem_total_bytes);
        assert_eq!(p.ssi_procs, 0);
    }

    #[test]
    fn hosted_load_follows_hosted_threads_only() {
        let mut prober = Prober::new(ProbeScope::Hosted, Some(3));
        let idle = prober.sample(&[], 5.0).expect("sample");
        assert_eq!(idle.load1, 0.0);
        // This test thread is running while it samples itself.
        let me = i32::try_from(std::process::id()).expect("pid");
        let mut last = idle;
        for _ in 0..12 {
            last = prober.sample(&[me], 5.0).expect("sample");
        }
        assert_eq!(last.ssi_procs, 1);
        assert!(last.runnable >= 1.0, "this thread runs while it samples");
        assert_eq!(last.cpus, 3, "the configured count wins");
        assert!(last.load1 > 0.5, "load1 {}", last.load1);
        assert!(last.load1 > last.load5 && last.load5 > last.load15);
    }

    #[test]
    fn damping_converges_to_the_count() {
        let mut l = LoadAverages::default();
        for _ in 0..5000 {
            l.update(2.0, 5.0);
        }
        assert!((l.one - 2.0).abs() < 1e-6);
        assert!((l.fifteen - 2.0).abs() < 1e-3);
    }
}
