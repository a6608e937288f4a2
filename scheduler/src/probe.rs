//! Probes the scheduler adds to what every node gossips (`ssi_core::probe`: CPUs, memory,
//! runnable threads, load averages): measures of the processes a node hosts, read from procfs
//! over the hosted pids so that nodes sharing one kernel (the testbed) each see their own.
//!
//! | name | measures |
//! |---|---|
//! | `cpu` | CPU time per second used by hosted processes, in CPUs (2.0 = two busy CPUs) |

use std::collections::HashMap;

use procfs::process::Process;

/// One probe.
pub trait Probe: Send + std::fmt::Debug {
    /// Its name.
    fn name(&self) -> &str;
    /// Measures, given the hosted pids (as /proc sees them) and the seconds since the last call.
    fn measure(&mut self, hosted: &[i32], dt_s: f64) -> f64;
}

/// CPU use of the hosted processes, per process and in total.
#[derive(Debug, Default)]
pub struct CpuProbe {
    ticks: HashMap<i32, u64>,
    /// CPUs-worth each pid used over the last interval.
    pub per_pid: HashMap<i32, f64>,
}

impl Probe for CpuProbe {
    fn name(&self) -> &str {
        "cpu"
    }
    fn measure(&mut self, hosted: &[i32], dt_s: f64) -> f64 {
        let tps = procfs::ticks_per_second() as f64;
        let mut now = HashMap::new();
        self.per_pid.clear();
        let mut total = 0.0;
        for &pid in hosted {
            let Ok(stat) = Process::new(pid).and_then(|p| p.stat()) else {
                continue;
            };
            let t = stat.utime + stat.stime;
            if let Some(&before) = self.ticks.get(&pid) {
                if dt_s > 0.0 {
                    let used = t.saturating_sub(before) as f64 / tps / dt_s;
                    self.per_pid.insert(pid, used);
                    total += used;
                }
            }
            now.insert(pid, t);
        }
        self.ticks = now;
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu_seconds() -> f64 {
        use nix::sys::resource::{getrusage, UsageWho};
        let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        secs(u.user_time()) + secs(u.system_time())
    }

    #[test]
    fn cpu_probe_agrees_with_getrusage() {
        let me = i32::try_from(std::process::id()).expect("pid");
        let mut p = CpuProbe::default();
        p.measure(&[me], 0.0);
        let (t, c0) = (std::time::Instant::now(), cpu_seconds());
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let dt = t.elapsed().as_secs_f64();
        let used = p.measure(&[me], dt);
        let truth = (cpu_seconds() - c0) / dt;
        // procfs counts in ticks of 10 ms: allow two ticks either way.
        assert!(
            (used - truth).abs() <= 0.02 / dt + 0.02,
            "probe {used}, getrusage {truth}"
        );
        assert!(p.per_pid.contains_key(&me));
    }
}
