//! Limits of a process: its resource limits and the OOM killer's adjustment (oom_score_adj).
//!
//! Resource limits are read and set by `prlimit64` injected into the process itself: from
//! outside, changing the limits of a process of another user needs CAP_SYS_RESOURCE, which
//! root lacks here. oom_score_adj is written by the process to its own /proc/self file (the
//! restorer may run in a pid namespace without a /proc of its own). Both are set before the
//! credentials: raising a hard limit needs the restorer's privileges, and a process that is
//! not dumpable cannot open its own /proc files once it is no longer root.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::persist::{Persist, ProcDump, ProcRestore};

/// Number of resources saved (`RLIMIT_CPU` .. `RLIMIT_RTTIME`).
const RLIMIT_COUNT: u64 = 16;

/// Limits of a process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// `(resource, soft, hard)` for every rlimit.
    pub rlimits: Rlimits,
    /// /proc/PID/oom_score_adj.
    pub oom_score_adj: i32,
}

/// `(resource, soft, hard)` for every rlimit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rlimits(pub Vec<(u32, u64, u64)>);

/// The oom_score_adj of `pid`.
pub(crate) fn oom_score_adj(pid: i32) -> Result<i32> {
    read_adj(format!("/proc/{pid}/oom_score_adj"))
}

fn read_adj(path: String) -> Result<i32> {
    let s = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    s.trim()
        .parse()
        .map_err(|_| Error::io(path, std::io::Error::other("not a number")))
}

impl Rlimits {
    /// Reads every limit by injected calls.
    pub(crate) fn read(par: &mut crate::dump::parasite::Parasite) -> Result<Rlimits> {
        let mut out = Vec::new();
        let scratch = par.scratch();
        for r in 0..RLIMIT_COUNT {
            par.call("prlimit64", libc::SYS_prlimit64, [0, r, 0, scratch, 0, 0])?;
            let w = par.read_words(0, 2)?;
            out.push((r as u32, w[0], w[1]));
        }
        Ok(Rlimits(out))
    }

    /// The `(soft, hard)` limit of `resource`.
    pub(crate) fn get(&self, resource: u32) -> Option<(u64, u64)> {
        self.0
            .iter()
            .find(|r| r.0 == resource)
            .map(|&(_, s, h)| (s, h))
    }
}

impl Persist for Limits {
    type Saving<'a> = ProcDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut ProcDump<'_>) -> Result<Limits> {
        Ok(Limits {
            rlimits: Rlimits::read(cx.par)?,
            oom_score_adj: oom_score_adj(cx.pid)?,
        })
    }

    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        let t = &mut cx.h.task;
        let scratch = t.scratch_at()?;
        for &(res, soft, hard) in &self.rlimits.0 {
            t.put_words(0, &[soft, hard])?;
            t.call(
                &format!("set rlimit {res} to {soft}/{hard}"),
                libc::SYS_prlimit64,
                [0, res as u64, scratch, 0, 0, 0],
            )?;
        }
        // Written only when it differs from the one the process inherited from this restorer:
        // a process restored with a user's ids may not be able to open its own /proc file for
        // writing, and an equal value needs no write.
        if read_adj("/proc/self/oom_score_adj".into())? == self.oom_score_adj {
            return Ok(());
        }
        t.write_proc_self("oom_score_adj", &self.oom_score_adj.to_string())
    }
}
