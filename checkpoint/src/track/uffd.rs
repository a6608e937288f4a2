//! Write tracking with userfaultfd write-protect in async mode.
//!
//! `UFFD_FEATURE_WP_ASYNC` makes the kernel resolve write faults on protected pages by itself
//! (no thread waits on the fd) and mark the page written; `WP_UNPOPULATED` protects pages not
//! yet faulted in too. PAGEMAP_SCAN with `PM_SCAN_WP_MATCHING` returns the written pages and
//! protects them again in the same call, so a round loses no write even while the process runs.
//! A userfaultfd belongs to the mm of the process that created it, hence it is created by an
//! injected `userfaultfd()` in the target and taken out with `pidfd_getfd`.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use super::{DirtyTracker, TrackedRange};
use crate::error::{Error, Result};
use crate::sys::mem::{self, category, uffd, Scan};

/// uffd-wp tracker of one process.
#[derive(Debug)]
pub struct UffdTracker {
    pid: i32,
    uffd: OwnedFd,
    pagemap: File,
}

impl UffdTracker {
    /// Wraps a userfaultfd of process `pid` (already set up with [`UffdTracker::enable`]).
    pub(crate) fn adopt(pid: i32, uffd: OwnedFd) -> Result<UffdTracker> {
        let pagemap = crate::state::memory::pages::open_pagemap(pid)?;
        Ok(UffdTracker { pid, uffd, pagemap })
    }

    /// Enables the async write-protect API on a fresh userfaultfd.
    pub(crate) fn enable(pid: i32, fd: &OwnedFd) -> Result<()> {
        uffd::api(
            fd.as_fd(),
            uffd::FEATURE_WP_ASYNC | uffd::FEATURE_WP_UNPOPULATED,
        )
        .map_err(|e| Error::sys(pid, "UFFDIO_API (needs Linux 6.7+ with uffd-wp)", e))
    }

    fn scan(&self, start: u64, end: u64) -> std::io::Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        let q = Scan {
            inverted: 0,
            mask: category::WRITTEN,
            anyof: 0,
            write_protect: true,
        };
        mem::pagemap_scan(self.pagemap.as_fd(), start, end, q, &mut out)?;
        Ok(out)
    }
}

impl DirtyTracker for UffdTracker {
    fn name(&self) -> &'static str {
        "uffd-wp"
    }

    fn mm_alive(&self) -> bool {
        super::pagemap_mm_alive(&self.pagemap)
    }

    fn take_written(&mut self, r: TrackedRange) -> Result<Option<Vec<(u64, u64)>>> {
        if r.kernel_tracked {
            if let Ok(w) = self.scan(r.start, r.end) {
                return Ok(Some(w));
            }
        }
        // new (or replaced) mapping: track it from now on; the caller saves it whole
        if uffd::register_wp(self.uffd.as_fd(), r.start, r.end - r.start).is_ok() {
            self.scan(r.start, r.end).map_err(|e| {
                Error::sys(
                    self.pid,
                    format!("write-protect {:#x}-{:#x}", r.start, r.end),
                    e,
                )
            })?;
        }
        Ok(None)
    }
}
