//! What a chain of images carries from one dump to the next: the write trackers of each
//! process and the pages the chain holds so far.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use super::parasite::Parasite;
use crate::error::{Error, Result};
use crate::image::record::PAGE;
use crate::image::Image;
use crate::state::limits::Rlimits;
use crate::state::memory::ranges::{self, Ranges};
use crate::sys::{self, fd as sfd};
use crate::track::{uffd::UffdTracker, DirtyTracker};

/// State carried from one image of a chain to the next.
#[derive(Debug, Default)]
pub(super) struct Session {
    pub trackers: HashMap<i32, Box<dyn DirtyTracker>>,
    /// Tracker fds left inside processes by a pre-dump of another dumper.
    pub tracker_fds: HashMap<i32, i32>,
    /// Pages each process has in the chain so far.
    pub avail: HashMap<i32, Ranges>,
    pub parent_id: Option<u64>,
    /// Periodic checkpoints: a full dump starts (and keeps) tracking, as a pre-dump does, so
    /// that the next image of the chain saves only what was written since.
    pub keep_tracking: bool,
}

impl Session {
    /// Continues the chain of `prev`: its pages, and the trackers a pre-dump left in the
    /// processes (taken over if they are still there).
    pub fn adopt_parent(&mut self, prev: &Image) -> Result<()> {
        self.parent_id = Some(prev.inventory.image_id);
        for p in &prev.processes {
            let r =
                p.mm.pages
                    .iter()
                    .filter(|r| !r.cow) // in no image: the parent process' pages
                    .map(|r| (r.start, r.start + r.npages * PAGE))
                    .collect();
            self.avail.insert(p.pid, ranges::normalize(r));
            let Some(fd) = p.tracker_fd else { continue };
            // take the userfaultfd the pre-dump left in the process, if it is still there
            let link = std::fs::read_link(format!("/proc/{}/fd/{fd}", p.pid)).ok();
            if link.as_ref().and_then(|l| l.to_str()) != Some("anon_inode:[userfaultfd]") {
                continue;
            }
            let pidfd = sfd::pidfd_open(p.pid).map_err(|e| Error::sys(p.pid, "pidfd_open", e))?;
            let mine = sfd::pidfd_getfd(pidfd.as_fd(), fd)
                .map_err(|e| Error::sys(p.pid, format!("take tracker fd {fd}"), e))?;
            self.trackers
                .insert(p.pid, Box::new(UffdTracker::adopt(p.pid, mine)?));
            self.tracker_fds.insert(p.pid, fd);
        }
        Ok(())
    }

    /// Forgets what it knew of processes that left the tree or whose address space was replaced
    /// (`exec`, or a pid used again): their next image saves them whole.
    pub fn forget_changed(&mut self, pids: &[i32]) {
        let changed: Vec<i32> = self
            .trackers
            .iter()
            .filter(|(pid, t)| !pids.contains(pid) || !t.mm_alive())
            .map(|(pid, _)| *pid)
            .collect();
        for pid in changed {
            self.trackers.remove(&pid);
            self.avail.remove(&pid);
        }
        self.avail.retain(|pid, _| pids.contains(pid));
        self.tracker_fds.retain(|pid, _| pids.contains(pid));
    }

    /// Write tracking of a frozen process: a pre-dump starts it (once per process), a final
    /// dump ends the tracking a pre-dump left inside the process. Returns the fd of a tracker
    /// left in the process, for the image to name.
    pub fn track(
        &mut self,
        par: &mut Parasite,
        pidfd: &OwnedFd,
        pre_dump: bool,
        in_process: bool,
    ) -> Result<Option<i32>> {
        let pid = par.pid();
        if !pre_dump && !self.keep_tracking {
            if let Some(fd) = self.tracker_fds.remove(&pid) {
                // the final dump ends the tracking the pre-dump left in the process
                par.call("close", libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
            }
            return Ok(None);
        }
        let Entry::Vacant(slot) = self.trackers.entry(pid) else {
            return Ok(self.tracker_fds.get(&pid).copied());
        };
        let (tracker, left) = start_tracker(par, pidfd, in_process)?;
        slot.insert(Box::new(tracker));
        Ok(left.or_else(|| self.tracker_fds.get(&pid).copied()))
    }

    /// The next image starts a new chain: every present page is written again (the
    /// trackers go on, so the image after it is incremental again).
    pub fn rebase(&mut self) {
        self.avail.clear();
        self.parent_id = None;
    }

    /// The chain now holds every page present in this image.
    pub fn image_written(&mut self, image_id: u64, present: HashMap<i32, Ranges>) {
        self.parent_id = Some(image_id);
        self.avail = present;
    }
}

/// A userfaultfd write tracker of the process (created by an injected `userfaultfd`: it
/// belongs to the address space that creates it). With `in_process`, a copy stays in the
/// process at a high fd number, for a dump made by another process later; its number is
/// returned.
fn start_tracker(
    par: &mut Parasite,
    pidfd: &OwnedFd,
    in_process: bool,
) -> Result<(UffdTracker, Option<i32>)> {
    let pid = par.pid();
    let fd = par.call(
        "userfaultfd",
        libc::SYS_userfaultfd,
        [sys::mem::uffd::SYSCALL_FLAGS, 0, 0, 0, 0, 0],
    )?;
    let mine = sfd::pidfd_getfd(pidfd.as_fd(), fd as i32)
        .map_err(|e| Error::sys(pid, "take userfaultfd", e))?;
    UffdTracker::enable(pid, &mine)?;
    let mut left = None;
    if in_process {
        let soft = Rlimits::read(par)?
            .get(libc::RLIMIT_NOFILE)
            .map_or(1024, |l| l.0);
        let min = soft.saturating_sub(64).clamp(3, 1 << 20);
        let high = par.call(
            "fcntl",
            libc::SYS_fcntl,
            [fd, libc::F_DUPFD_CLOEXEC as u64, min, 0, 0, 0],
        )?;
        left = Some(high as i32);
    }
    par.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    Ok((UffdTracker::adopt(pid, mine)?, left))
}
