//! The audit login uid of a process (/proc/PID/loginuid).
//!
//! Only the process itself may write it (/proc/self/loginuid, with CAP_AUDIT_CONTROL): it is
//! written by an injected call while the process still has the restorer's privileges and root
//! directory, and only when it differs from the restorer's own, which the process inherited.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::persist::{Persist, ProcDump, ProcRestore};

/// Audit state of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Login uid (`u32::MAX` when unset).
    pub loginuid: u32,
}

impl Default for Audit {
    fn default() -> Audit {
        Audit { loginuid: u32::MAX }
    }
}

/// The login uid of `pid` (unset when the kernel has no audit).
fn loginuid(pid: i32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/loginuid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u32::MAX)
}

impl Persist for Audit {
    type Saving<'a> = ProcDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut ProcDump<'_>) -> Result<Audit> {
        Ok(Audit {
            loginuid: loginuid(cx.pid),
        })
    }

    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        if loginuid(std::process::id() as i32) == self.loginuid {
            return Ok(());
        }
        cx.h.task
            .write_proc_self("loginuid", &self.loginuid.to_string())
    }
}
