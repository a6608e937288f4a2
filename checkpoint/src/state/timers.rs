//! Timers of a process: the three interval timers (`setitimer`). POSIX timers (`timer_create`)
//! are refused before anything is frozen.
//!
//! Interval timers are set last of all the process' state: `ITIMER_REAL` runs from the moment
//! it is set.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::persist::{Persist, ProcDump, ProcRestore};

/// Timer state of a process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`: `(interval, value)` in microseconds.
    pub itimers: [(u64, u64); 3],
}

/// Refuses, before anything is frozen, timers a restore would not bring back.
pub(crate) fn check(pid: i32) -> Result<()> {
    if std::fs::read_to_string(format!("/proc/{pid}/timers")).is_ok_and(|t| !t.trim().is_empty()) {
        return Err(Error::unsupported(
            pid,
            "the process has POSIX timers (timer_create)",
        ));
    }
    Ok(())
}

impl Persist for Timers {
    type Saving<'a> = ProcDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut ProcDump<'_>) -> Result<Timers> {
        let mut itimers = [(0, 0); 3];
        let scratch = cx.par.scratch();
        for (which, slot) in itimers.iter_mut().enumerate() {
            cx.par.call(
                "getitimer",
                libc::SYS_getitimer,
                [which as u64, scratch, 0, 0, 0, 0],
            )?;
            let w = cx.par.read_words(0, 4)?;
            *slot = (w[0] * 1_000_000 + w[1], w[2] * 1_000_000 + w[3]);
        }
        Ok(Timers { itimers })
    }

    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        let scratch = cx.h.scratch_at()?;
        for (which, &(interval, value)) in self.itimers.iter().enumerate() {
            if interval == 0 && value == 0 {
                continue;
            }
            cx.h.task.put_words(
                0,
                &[
                    interval / 1_000_000,
                    interval % 1_000_000,
                    value / 1_000_000,
                    value % 1_000_000,
                ],
            )?;
            cx.h.call(
                "setitimer",
                libc::SYS_setitimer,
                [which as u64, scratch, 0, 0, 0, 0],
            )?;
        }
        Ok(())
    }
}
