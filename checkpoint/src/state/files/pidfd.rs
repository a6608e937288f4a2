//! pidfds of processes of the tree (a live process or a zombie waiting in it): made again with
//! `pidfd_open` once every process of the tree exists. A pidfd of a process outside the tree,
//! of one already reaped, or of a single thread (`PIDFD_THREAD`) is refused.

use std::os::fd::{AsFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::{set_status_flags, FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::sys::fd as sfd;

/// A pidfd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidFd {
    /// The process it refers to.
    pub pid: i32,
}

/// Whether `pid` is a zombie whose parent is a process of the tree.
fn zombie_of_tree(cx: &FileDump<'_>, pid: i32) -> bool {
    crate::state::tree::stat(pid).is_ok_and(|st| st.state == 'Z' && cx.tree.has_process(st.ppid))
}

impl Persist for PidFd {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<PidFd> {
        let pid: i32 =
            cx.e.info
                .get("Pid")
                .and_then(|p| p.parse().ok())
                .unwrap_or(-1);
        if pid <= 0 {
            return Err(cx.refuse("is a pidfd of a process already reaped"));
        }
        if cx.e.flags & libc::O_EXCL != 0 {
            return Err(cx.refuse(&format!("is a pidfd of thread {pid} (PIDFD_THREAD)")));
        }
        if !cx.tree.has_process(pid) && !zombie_of_tree(cx, pid) {
            return Err(cx.refuse(&format!(
                "is a pidfd of pid {pid}, which is outside the tree"
            )));
        }
        Ok(PidFd { pid })
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        let fd = sfd::pidfd_open(self.pid)
            .map_err(|e| Error::io(format!("pidfd_open {}", self.pid), e))?;
        set_status_flags(fd.as_fd(), cx.file.flags, "pidfd")?;
        Ok(fd)
    }
}
