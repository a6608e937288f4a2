//! epoll instances and what they watch, from fdinfo (one `tfd:` line per watched fd).
//!
//! The restorer makes an empty instance; the first process of the tree that holds it
//! registers every watch again by an injected `epoll_ctl`, once its fds are in place. A watch
//! of a file no longer open under the number it was registered with cannot be registered again
//! and is refused.

use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use super::{FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::restore::holder::Holder;
use crate::sys::fd as sfd;

/// An epoll instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPoll {
    /// Watched fds of the owning process: `(fd, events, data)`.
    pub targets: Vec<(i32, u32, u64)>,
}

/// One `tfd:` line of an epoll fdinfo: `(fd, events, data)`.
fn watch(line: &str) -> (i32, u32, u64) {
    let w: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| {
        w.iter()
            .position(|x| *x == name)
            .and_then(|i| w.get(i + 1))
            .copied()
    };
    let tfd: i32 = w.get(1).and_then(|x| x.parse().ok()).unwrap_or(-1);
    let events = field("events:")
        .and_then(|x| u32::from_str_radix(x, 16).ok())
        .unwrap_or(0);
    let data = field("data:")
        .and_then(|x| u64::from_str_radix(x, 16).ok())
        .unwrap_or(0);
    (tfd, events, data)
}

impl Persist for EventPoll {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<EventPoll> {
        let mut targets = Vec::new();
        for line in cx.e.info_text.lines().filter(|l| l.starts_with("tfd:")) {
            let (tfd, events, data) = watch(line);
            // the watched file must still be open at the number it was registered with
            if !sfd::epoll_target_is(cx.pid, cx.e.fd, tfd).unwrap_or(false) {
                return Err(cx.refuse(&format!(
                    "is an epoll instance watching a file no longer open as fd {tfd}"
                )));
            }
            targets.push((tfd, events, data));
        }
        Ok(EventPoll { targets })
    }

    fn restore(&self, _cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        sfd::epoll().map_err(|e| Error::io("epoll_create1", e))
    }
}

impl EventPoll {
    /// Registers every watch again from process `h`, which holds the instance as `epfd`.
    pub(crate) fn fill(&self, h: &mut Holder, epfd: i32) -> Result<()> {
        let scratch = h.scratch_at()?;
        for &(tfd, events, data) in &self.targets {
            // struct epoll_event is packed on x86-64: u32 events, u64 data
            let mut ev = events.to_le_bytes().to_vec();
            ev.extend(data.to_le_bytes());
            h.put(0, &ev)?;
            h.call(
                &format!("epoll_ctl add fd {tfd} to epoll fd {epfd}"),
                libc::SYS_epoll_ctl,
                [
                    epfd as u64,
                    libc::EPOLL_CTL_ADD as u64,
                    tfd as u64,
                    scratch,
                    0,
                    0,
                ],
            )?;
        }
        Ok(())
    }
}
