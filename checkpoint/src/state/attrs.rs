//! Process attributes set with `personality` and `prctl`: execution domain, no_new_privs, the
//! dumpable flag. A process under seccomp is refused before anything is frozen.
//!
//! Restored after the credentials: a change of credentials resets the dumpable flag and the
//! parent-death signal.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::persist::{Persist, ProcDump, ProcRestore};

/// Attributes of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    /// `personality(0xffffffff)`.
    pub personality: u32,
    /// `PR_GET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// `PR_GET_DUMPABLE`.
    pub dumpable: i32,
}

impl Default for Attrs {
    /// What a fresh process has (a pre-dump saves no attributes).
    fn default() -> Attrs {
        Attrs {
            personality: 0,
            no_new_privs: false,
            dumpable: 1,
        }
    }
}

/// Refuses, before anything is frozen, attributes a restore would not bring back.
pub(crate) fn check(pid: i32, status: &procfs::process::Status) -> Result<()> {
    if status.seccomp.unwrap_or(0) != 0 {
        return Err(Error::unsupported(pid, "the process uses seccomp"));
    }
    Ok(())
}

fn prctl_get(cx: &mut ProcDump<'_>, what: &str, option: i32) -> Result<u64> {
    cx.par
        .call(what, libc::SYS_prctl, [option as u64, 0, 0, 0, 0, 0])
}

impl Persist for Attrs {
    type Saving<'a> = ProcDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut ProcDump<'_>) -> Result<Attrs> {
        let personality = cx.par.call(
            "personality",
            libc::SYS_personality,
            [0xffff_ffff, 0, 0, 0, 0, 0],
        )? as u32;
        Ok(Attrs {
            personality,
            no_new_privs: prctl_get(cx, "prctl", libc::PR_GET_NO_NEW_PRIVS)? != 0,
            dumpable: prctl_get(cx, "prctl", libc::PR_GET_DUMPABLE)? as i32,
        })
    }

    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        let h = &mut *cx.h;
        h.call(
            "personality",
            libc::SYS_personality,
            [self.personality as u64, 0, 0, 0, 0, 0],
        )?;
        // the root was to die with its restorer until now (see `sys::spawn`); no process keeps
        // a parent-death signal across a checkpoint
        h.call(
            "prctl pdeathsig",
            libc::SYS_prctl,
            [libc::PR_SET_PDEATHSIG as u64, 0, 0, 0, 0, 0],
        )?;
        h.call(
            "prctl dumpable",
            libc::SYS_prctl,
            [
                libc::PR_SET_DUMPABLE as u64,
                self.dumpable as u64,
                0,
                0,
                0,
                0,
            ],
        )?;
        if self.no_new_privs {
            h.call(
                "prctl no_new_privs",
                libc::SYS_prctl,
                [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
            )?;
        }
        Ok(())
    }
}
