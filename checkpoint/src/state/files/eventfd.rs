//! eventfd: its counter and mode, read from fdinfo; made again with the same counter.

use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use super::{FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::sys::fd as sfd;

/// An eventfd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFd {
    /// Counter value.
    pub count: u64,
    /// `EFD_SEMAPHORE` mode.
    pub semaphore: bool,
}

impl Persist for EventFd {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<EventFd> {
        let info = &cx.e.info;
        Ok(EventFd {
            count: info
                .get("eventfd-count")
                .and_then(|c| u64::from_str_radix(c.trim(), 16).ok())
                .unwrap_or(0),
            semaphore: info.get("eventfd-semaphore").is_some_and(|s| s == "1"),
        })
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        let mut fl = 0;
        if cx.file.flags & libc::O_NONBLOCK != 0 {
            fl |= libc::EFD_NONBLOCK;
        }
        if self.semaphore {
            fl |= libc::EFD_SEMAPHORE;
        }
        sfd::eventfd(self.count, fl).map_err(|e| Error::io("eventfd", e))
    }
}
