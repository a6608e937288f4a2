//! signalfd: the set of signals it reads, from fdinfo.

use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use super::{FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::sys::fd as sfd;

/// A signalfd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalFd {
    /// Signals it reads.
    pub mask: u64,
}

impl Persist for SignalFd {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<SignalFd> {
        Ok(SignalFd {
            mask: cx
                .e
                .info
                .get("sigmask")
                .and_then(|m| u64::from_str_radix(m, 16).ok())
                .unwrap_or(0),
        })
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        let fl = if cx.file.flags & libc::O_NONBLOCK != 0 {
            libc::SFD_NONBLOCK
        } else {
            0
        };
        sfd::signalfd(self.mask, fl).map_err(|e| Error::io("signalfd", e))
    }
}
