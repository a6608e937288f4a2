//! epoll instances and what they watch, from fdinfo (one `tfd:` line per watched fd).
//!
//! The restorer makes an empty instance; the first process of the tree that holds it
//! registers every watch again by an injected `epoll_ctl`, once its fds are in place. A watch
//! of a file no longer open under the number it was registered with (closed after `dup`) is
//! registered through another fd of the same file, put under that number for the moment of
//! the call (whatever was open there is put back); a watched file the process no longer holds
//! at all is refused.

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
    /// Its watches, by fd of the owning process.
    pub targets: Vec<Target>,
}

/// One watch of an epoll instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The fd number it was registered with.
    pub fd: i32,
    /// Events.
    pub events: u32,
    /// User data.
    pub data: u64,
    /// Another fd of the owning process open on the watched file, when `fd` no longer is.
    pub via: Option<i32>,
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
        // several watches may have one number (each of a file since closed): the kernel
        // tells them apart by their rank among those, in the order fdinfo lists them
        let mut rank: std::collections::HashMap<i32, u32> = std::collections::HashMap::new();
        for line in cx.e.info_text.lines().filter(|l| l.starts_with("tfd:")) {
            let (fd, events, data) = watch(line);
            let toff = {
                let r = rank.entry(fd).or_insert(0);
                *r += 1;
                *r - 1
            };
            let via = if sfd::epoll_target_is(cx.pid, cx.e.fd, fd, toff).unwrap_or(false) {
                None
            } else {
                Some(other_fd(cx, fd, toff).ok_or_else(|| {
                    cx.refuse(&format!(
                        "is an epoll instance watching a file no longer open in the process (fd {fd})"
                    ))
                })?)
            };
            targets.push(Target {
                fd,
                events,
                data,
                via,
            });
        }
        Ok(EventPoll { targets })
    }

    fn restore(&self, _cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        sfd::epoll().map_err(|e| Error::io("epoll_create1", e))
    }
}

/// Another fd of the process of `cx` open on the file its epoll instance watches as `tfd`
/// (the `toff`-th such watch).
fn other_fd(cx: &FileDump<'_>, tfd: i32, toff: u32) -> Option<i32> {
    let dir = std::fs::read_dir(format!("/proc/{}/fd", cx.pid)).ok()?;
    let mut fds: Vec<i32> = dir
        .flatten()
        .filter_map(|d| d.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds.into_iter()
        .find(|&fd| sfd::epoll_target_at(cx.pid, cx.e.fd, tfd, toff, fd).unwrap_or(false))
}

impl EventPoll {
    /// Registers every watch again from process `h`, which holds the instance as `epfd`.
    pub(crate) fn fill(&self, h: &mut Holder, epfd: i32) -> Result<()> {
        let scratch = h.scratch_at()?;
        for t in &self.targets {
            let (tfd, events, data) = (t.fd, t.events, t.data);
            // struct epoll_event is packed on x86-64: u32 events, u64 data
            let mut ev = events.to_le_bytes().to_vec();
            ev.extend(data.to_le_bytes());
            h.put(0, &ev)?;
            let moved = match t.via {
                Some(via) => Some(put_under(h, via, tfd)?),
                None => None,
            };
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
            if let Some(moved) = moved {
                put_back(h, tfd, moved)?;
            }
        }
        Ok(())
    }
}

/// What was open under a number before [`put_under`] used it: `(saved copy, fd flags)`, or
/// `None` if nothing was.
type Moved = Option<(u64, u64)>;

/// Puts the file of fd `via` under number `tfd` of the held process, keeping what was there.
fn put_under(h: &mut Holder, via: i32, tfd: i32) -> Result<Moved> {
    let flags = h.task.raw(
        "fcntl F_GETFD",
        libc::SYS_fcntl,
        [tfd as u64, libc::F_GETFD as u64, 0, 0, 0, 0],
    )?;
    let moved = if flags >= 0 {
        let copy = h.call(
            &format!("keep fd {tfd}"),
            libc::SYS_fcntl,
            [tfd as u64, libc::F_DUPFD_CLOEXEC as u64, 0, 0, 0, 0],
        )?;
        Some((copy, flags as u64))
    } else {
        None
    };
    h.call(
        &format!("dup3 fd {via} to {tfd}"),
        libc::SYS_dup3,
        [via as u64, tfd as u64, 0, 0, 0, 0],
    )?;
    Ok(moved)
}

/// Undoes [`put_under`].
fn put_back(h: &mut Holder, tfd: i32, moved: Moved) -> Result<()> {
    match moved {
        Some((copy, flags)) => {
            h.call("dup3 back", libc::SYS_dup3, [copy, tfd as u64, 0, 0, 0, 0])?;
            h.call(
                "fcntl F_SETFD",
                libc::SYS_fcntl,
                [tfd as u64, libc::F_SETFD as u64, flags, 0, 0, 0],
            )?;
            h.call("close", libc::SYS_close, [copy, 0, 0, 0, 0, 0])?;
        }
        None => {
            h.call("close", libc::SYS_close, [tfd as u64, 0, 0, 0, 0, 0])?;
        }
    }
    Ok(())
}
