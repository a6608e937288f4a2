//! inotify instances: each watch (its number, event mask and the path of what it watches).
//!
//! Dump: fdinfo lists each watch with the file handle of the watched inode; the dumper opens
//! it (`open_by_handle_at` on a mount of its file system) and keeps its path. Refused: events
//! queued and not read (they would be lost), a watched file that has no path any more.
//!
//! Restore: a new instance watches each path again in the order of the watch numbers; the
//! kernel hands out numbers one after the other, so a gap is kept by adding and removing a
//! watch of a directory not watched already (`IN_MASK_CREATE`) until the next number is the
//! one wanted.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::{FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::sys::fd as sfd;

/// An inotify instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inotify {
    /// Its watches, by number.
    pub watches: Vec<Watch>,
}

/// One watch of an inotify instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// Watch descriptor.
    pub wd: i32,
    /// Event mask (`IN_*`).
    pub mask: u32,
    /// Path of the watched file.
    pub path: String,
}

/// A watch as fdinfo shows it.
struct Listed {
    wd: i32,
    mask: u32,
    sdev: u64,
    htype: i32,
    handle: Vec<u8>,
}

/// Parses the `inotify wd:...` lines of an fdinfo text.
fn listed(text: &str) -> Vec<Listed> {
    text.lines()
        .filter_map(|l| l.strip_prefix("inotify "))
        .filter_map(|l| {
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(k)?.strip_prefix(':'))
            };
            let hex = |k: &str| u64::from_str_radix(field(k)?, 16).ok();
            let h = field("f_handle")?;
            let handle = (0..h.len() / 2)
                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            Some(Listed {
                wd: field("wd")?.parse().ok()?,
                mask: hex("mask")? as u32,
                sdev: hex("sdev")?,
                htype: field("fhandle-type")?.parse().ok()?,
                handle,
            })
        })
        .collect()
}

/// A mount point of the file system with kernel device number `sdev` (major << 20 | minor).
fn mount_of(sdev: u64) -> Option<String> {
    let want = format!("{}:{}", sdev >> 20, sdev & 0xf_ffff);
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&want.as_str())).then(|| f.get(4).map(|s| s.to_string()))?
    })
}

/// The path of the watched file, found from its handle.
fn path_of(cx: &FileDump<'_>, w: &Listed) -> Result<String> {
    let gone = || {
        cx.refuse(&format!(
            "is an inotify watch {} of a file with no path",
            w.wd
        ))
    };
    let mount = mount_of(w.sdev).ok_or_else(gone)?;
    let m = std::fs::File::open(&mount).map_err(|e| Error::io(&mount, e))?;
    let f = sfd::open_by_handle(m.as_fd(), w.htype, &w.handle).map_err(|_| gone())?;
    let link = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&f)
    ))
    .map_err(|_| gone())?;
    let path = link.to_string_lossy().into_owned();
    if !path.starts_with('/') || path.ends_with(" (deleted)") {
        return Err(gone());
    }
    Ok(path)
}

/// Uses up one watch number: a watch of a directory the instance does not watch yet, removed
/// at once. Returns the number.
fn skip_one(fd: std::os::fd::BorrowedFd<'_>) -> Result<i32> {
    for dir in ["/", "/proc", "/dev", "/sys", "/tmp"] {
        let path = CString::new(dir).unwrap_or_default();
        match sfd::inotify_add(fd, &path, libc::IN_ATTRIB | libc::IN_MASK_CREATE) {
            Ok(d) => {
                sfd::inotify_rm(fd, d).map_err(|e| Error::io("inotify_rm_watch", e))?;
                return Ok(d);
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(Error::io(format!("inotify_add_watch {dir}"), e)),
        }
    }
    Err(Error::Conflict(
        "inotify: no unwatched directory left to skip a watch number with".into(),
    ))
}

impl Persist for Inotify {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<Inotify> {
        let mine = cx.take()?;
        let queued = sfd::queued_bytes(mine.as_fd()).map_err(|e| cx.failed("FIONREAD", e))?;
        if queued > 0 {
            return Err(cx.refuse(&format!(
                "is an inotify instance with {queued} bytes of events not read"
            )));
        }
        let mut watches = listed(&cx.e.info_text)
            .iter()
            .map(|w| {
                Ok(Watch {
                    wd: w.wd,
                    mask: w.mask,
                    path: path_of(cx, w)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        watches.sort_by_key(|w| w.wd);
        Ok(Inotify { watches })
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        let flags = libc::IN_CLOEXEC | (cx.file.flags & libc::O_NONBLOCK);
        let fd = sfd::inotify(flags).map_err(|e| Error::io("inotify_init1", e))?;
        let mut next = 1;
        for w in &self.watches {
            // numbers are handed out one after the other: skip those the image left out
            while next < w.wd {
                next = skip_one(fd.as_fd())? + 1;
            }
            let path = CString::new(w.path.as_bytes())
                .map_err(|_| Error::bad_image("inventory.rec", "watch path with a NUL byte"))?;
            let wd =
                sfd::inotify_add(fd.as_fd(), &path, w.mask).map_err(|e| Error::io(&w.path, e))?;
            if wd != w.wd {
                return Err(Error::Conflict(format!(
                    "{}: inotify watch came back as {wd}, not {} (watched twice?)",
                    w.path, w.wd
                )));
            }
            next = wd + 1;
        }
        Ok(fd)
    }
}
