//! Resource limits of a process.
//!
//! Read and set by `prlimit64` injected into the process itself: from outside, changing the
//! limits of a process of another user needs CAP_SYS_RESOURCE, which root lacks here. Set
//! before the credentials, as raising a hard limit needs the restorer's privileges.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::persist::{Persist, ProcDump, ProcRestore};

/// Number of resources saved (`RLIMIT_CPU` .. `RLIMIT_RTTIME`).
const RLIMIT_COUNT: u64 = 16;

/// `(resource, soft, hard)` for every rlimit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rlimits(pub Vec<(u32, u64, u64)>);

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

impl Persist for Rlimits {
    type Saving<'a> = ProcDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut ProcDump<'_>) -> Result<Rlimits> {
        Rlimits::read(cx.par)
    }

    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        let scratch = cx.h.scratch_at()?;
        for &(res, soft, hard) in &self.0 {
            cx.h.task.put_words(0, &[soft, hard])?;
            cx.h.call(
                &format!("set rlimit {res} to {soft}/{hard}"),
                libc::SYS_prlimit64,
                [0, res as u64, scratch, 0, 0, 0],
            )?;
        }
        Ok(())
    }
}
