//! Files that lead outside the tree through the root's standard streams: a terminal, or a
//! pipe or Unix socket whose other end is outside. Such a file is saved as the number of the
//! root's stream it is, and bound at restore to the restorer's stream of that number (as
//! CRIU's `--shell-job` does); any other file leading outside is refused, naming it.

use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use super::scan::Class;
use super::{FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::sys::fd as sfd;

/// One of the root's standard streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stdio {
    /// 0, 1 or 2.
    pub stream: u8,
}

impl Persist for Stdio {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<Stdio> {
        if let Some(stream) = cx.tree.std_stream(cx.e.key) {
            return Ok(Stdio { stream });
        }
        let what = match cx.e.class {
            Class::Pipe => "a pipe",
            Class::Socket => "a Unix socket",
            _ => "a terminal",
        };
        Err(cx.refuse(&format!(
            "is {what} leading outside the tree (only the root's standard streams may)"
        )))
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        let stream = self.stream;
        sfd::dup_raw(cx.stdio[stream as usize])
            .map_err(|e| Error::io(format!("standard stream {stream}"), e))
    }
}
