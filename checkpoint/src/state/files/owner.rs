//! The owner of an open file: the thread, process or process group that gets SIGIO (or the
//! signal set with `F_SETSIG`) when I/O is possible (`F_SETOWN`, `F_SETOWN_EX`).
//!
//! Read with `F_GETOWN_EX` and `F_GETSIG` on the dumper's copy of the fd (an owner belongs to
//! the open file, which the copy shares). An owner outside the tree is refused. Set again by the
//! restorer on its own copy once every process and thread of the tree exists. The kernel checks
//! a signal's permission against the credentials of whoever set the owner: the restorer's, so
//! a signal the owner's credentials would not let through is not held back after a restore.

use std::os::fd::{AsFd, BorrowedFd};

use serde::{Deserialize, Serialize};

use super::FileDump;
use crate::error::{Error, Result};
use crate::sys::fd as sfd;

const F_OWNER_PGRP: i32 = 2;

/// Who gets SIGIO for an open file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// `F_OWNER_TID` (0), `F_OWNER_PID` (1) or `F_OWNER_PGRP` (2).
    pub kind: i32,
    /// The thread, process or process group.
    pub pid: i32,
    /// The signal sent (`F_GETSIG`; 0 for SIGIO).
    pub signal: i32,
}

/// The owner of the open file behind `cx.e`, if any; one outside the tree is refused.
pub(crate) fn save(cx: &FileDump<'_>, file: BorrowedFd<'_>) -> Result<Option<Owner>> {
    let (kind, pid) = sfd::owner(file).map_err(|e| cx.failed("F_GETOWN_EX", e))?;
    if pid == 0 {
        return Ok(None);
    }
    let inside = if kind == F_OWNER_PGRP {
        cx.tree.leads_group(pid)
    } else {
        cx.tree.has_task(pid)
    };
    if !inside {
        let whom = if kind == F_OWNER_PGRP {
            "process group"
        } else {
            "pid"
        };
        return Err(cx.refuse(&format!("sends SIGIO to {whom} {pid}, outside the tree")));
    }
    let signal = sfd::io_signal(file).map_err(|e| cx.failed("F_GETSIG", e))?;
    Ok(Some(Owner { kind, pid, signal }))
}

impl Owner {
    /// Sets the owner and signal of `file` (an fd of the restorer on the open file).
    pub(crate) fn restore(&self, file: BorrowedFd<'_>) -> Result<()> {
        let what = |w: &str| format!("{w} of an open file to {} {}", self.kind, self.pid);
        sfd::set_owner(file.as_fd(), self.kind, self.pid)
            .map_err(|e| Error::sys(self.pid, what("F_SETOWN_EX"), e))?;
        sfd::set_io_signal(file, self.signal).map_err(|e| Error::sys(self.pid, what("F_SETSIG"), e))
    }
}
