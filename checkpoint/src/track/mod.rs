//! Dirty-page tracking for incremental dumps and pre-copy migration.
//!
//! One trait, two kernels' ways of answering "which pages were written since last time":
//! userfaultfd write-protect in async mode read with PAGEMAP_SCAN ([`uffd::UffdTracker`], works
//! on this machine), and soft-dirty bits ([`softdirty::SoftDirtyTracker`], needs
//! `CONFIG_MEM_SOFT_DIRTY`).

pub mod softdirty;
pub mod uffd;

use crate::error::Result;

/// A mapping handed to a tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackedRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// The kernel still marks the mapping as tracked (for uffd: `VM_UFFD_WP`, "uw" in smaps).
    /// A mapping replaced or created since tracking began is not.
    pub kernel_tracked: bool,
}

/// Tells which pages of one process were written.
pub trait DirtyTracker: std::fmt::Debug + Send {
    /// Short name for messages ("uffd-wp", "soft-dirty").
    fn name(&self) -> &'static str;

    /// Ranges of `range` written since tracking of it began or since the last call, and starts
    /// tracking anew. `None` when the range was not tracked: the caller saves it whole; the
    /// tracker tracks it from now on if it can.
    fn take_written(&mut self, range: TrackedRange) -> Result<Option<Vec<(u64, u64)>>>;

    /// Whether the address space it tracks is still in use. False once the process exited or
    /// replaced it by `exec`: the tracker then knows nothing of the process' memory.
    fn mm_alive(&self) -> bool;

    /// Called once after all ranges of a round were taken.
    fn end_round(&mut self) -> Result<()> {
        Ok(())
    }
}

/// True while the address space behind an open /proc/PID/pagemap is in use: reading it returns
/// nothing once its last user is gone (exit or exec), although the file stays open.
pub(crate) fn pagemap_mm_alive(pagemap: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut entry = [0u8; 8];
    matches!(pagemap.read_at(&mut entry, 0), Ok(8))
}
