//! Pipes and FIFOs whose ends are all in the tree, with the bytes in flight (a pipe whose
//! other end is closed everywhere counts: its restored twin has that end closed).
//!
//! Dump: the bytes are copied without consuming them (`tee` into a pipe of the dumper), so a
//! tree that runs on keeps them; a FIFO held only by writers is read through a reader of the
//! dumper's own. Restore: the restorer makes one pipe per pipe of the tree (capacity and bytes
//! as they were), and a second open file of the same end is opened again through
//! /proc/self/fd. A FIFO is opened again by its path, kept open by the restorer until the tree
//! holds its ends, so that its bytes survive.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};

use super::scan::FdEntry;
use super::{open, set_status_flags, FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::sys::fd as sfd;

/// A pipe (or the pipe behind a FIFO).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeImage {
    /// Pipe inode on the dumping machine (for diagnostics).
    pub ino: u64,
    /// `F_GETPIPE_SZ`.
    pub capacity: u32,
    /// Bytes in flight, in order.
    pub data: Vec<u8>,
}

/// One end of a pipe inside the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeEnd {
    /// Index into [`crate::image::Shared::pipes`].
    pub pipe: u32,
}

/// One end of a FIFO (named pipe) inside the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FifoEnd {
    /// Path of the FIFO.
    pub path: String,
    /// Index into [`crate::image::Shared::pipes`].
    pub pipe: u32,
}

/// Pipes met so far by a dump: index in the shared table, by inode.
pub(crate) type Seen = HashMap<u64, u32>;

/// Records which end of a pipe or FIFO `e` is.
pub(crate) fn note_end(ends: &mut HashMap<u64, (bool, bool)>, e: &FdEntry) {
    let ends = ends.entry(e.key.1).or_default();
    match e.flags & libc::O_ACCMODE {
        libc::O_RDONLY => ends.0 = true,
        libc::O_WRONLY => ends.1 = true,
        _ => *ends = (true, true),
    }
}

/// True for a pipe with one of its ends open outside the tree. A pipe whose other end is
/// closed everywhere (a read end without writers, a write end without readers) is the tree's
/// alone: it is restored with that end closed.
pub(crate) fn leads_outside(cx: &FileDump<'_>) -> Result<bool> {
    let (r, w) = cx
        .tree
        .pipe_ends
        .get(&cx.e.key.1)
        .copied()
        .unwrap_or_default();
    if r && w {
        return Ok(false);
    }
    let mine = cx.take()?;
    let ev = sfd::poll_now(mine.as_fd()).map_err(|er| cx.failed("poll", er))?;
    // a read end sees POLLHUP once no writer is left, a write end POLLERR once no reader is
    let peer_closed = if r {
        ev & libc::POLLHUP != 0
    } else {
        ev & libc::POLLERR != 0
    };
    Ok(!peer_closed)
}

fn reads(e: &FdEntry) -> bool {
    e.flags & libc::O_ACCMODE != libc::O_WRONLY
}

/// The index of the pipe behind `cx.e` in the shared table, saving it when first met. The
/// bytes are copied from the first read end met (or, for a FIFO held only by writers, through
/// a reader of the dumper's own).
fn pipe_index(cx: &mut FileDump<'_>, fifo: Option<&str>) -> Result<u32> {
    let ino = cx.e.key.1;
    let idx = match cx.seen.pipes.get(&ino) {
        Some(&i) => i,
        None => {
            let mine = cx.take()?;
            let capacity =
                sfd::pipe_capacity(mine.as_fd()).map_err(|er| cx.failed("pipe size", er))?;
            let data = match fifo {
                Some(path) if !reads(cx.e) => peek_fifo(cx, path)?,
                _ => Vec::new(),
            };
            let i = cx.shared.pipes.len() as u32;
            cx.shared.pipes.push(PipeImage {
                ino,
                capacity,
                data,
            });
            cx.seen.pipes.insert(ino, i);
            i
        }
    };
    if reads(cx.e) && cx.shared.pipes[idx as usize].data.is_empty() {
        let mine = cx.take()?;
        cx.shared.pipes[idx as usize].data =
            sfd::peek_pipe(mine.as_fd()).map_err(|er| cx.failed("copy pipe contents", er))?;
    }
    Ok(idx)
}

/// The bytes in a FIFO, read through a reader of the dumper's own.
fn peek_fifo(cx: &FileDump<'_>, path: &str) -> Result<Vec<u8>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|er| Error::io(path, er))?;
    sfd::peek_pipe(f.as_fd()).map_err(|er| cx.failed("copy fifo contents", er))
}

impl Persist for PipeEnd {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<PipeEnd> {
        Ok(PipeEnd {
            pipe: pipe_index(cx, None)?,
        })
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        let flags = cx.file.flags;
        let write_end = flags & libc::O_ACCMODE == libc::O_WRONLY;
        let pi = cx.shared.pipes.get(self.pipe as usize).ok_or_else(|| {
            Error::bad_image("inventory.rec", format!("unknown pipe {}", self.pipe))
        })?;
        let made = cx.making.pipes.made(self.pipe, pi)?;
        let fd = match made.take(write_end) {
            Some(fd) => fd,
            None => open(
                &format!("/proc/self/fd/{}", made.num(write_end)),
                flags | libc::O_NONBLOCK,
            )?,
        };
        set_status_flags(fd.as_fd(), flags, "pipe")?;
        Ok(fd)
    }
}

impl FifoEnd {
    /// Refuses a path that is gone or no longer a FIFO.
    pub(crate) fn check(&self) -> Result<()> {
        super::regular::check_fifo(&self.path)
    }
}

impl Persist for FifoEnd {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<FifoEnd> {
        let path = cx.e.link.clone();
        let pipe = pipe_index(cx, Some(&path))?;
        Ok(FifoEnd { path, pipe })
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        if !cx.making.pipes.fifo_keepers.contains_key(&self.pipe) {
            let k = open(&self.path, libc::O_RDWR | libc::O_NONBLOCK)?;
            let data = cx
                .shared
                .pipes
                .get(self.pipe as usize)
                .map_or(&[][..], |p| &p.data[..]);
            std::fs::File::from(k.try_clone().map_err(|e| Error::io(&self.path, e))?)
                .write_all(data)
                .map_err(|e| Error::io(&self.path, e))?;
            cx.making.pipes.fifo_keepers.insert(self.pipe, k);
        }
        let fd = open(&self.path, cx.file.flags | libc::O_NONBLOCK)?;
        set_status_flags(fd.as_fd(), cx.file.flags, &self.path)?;
        Ok(fd)
    }
}

/// Pipes made so far by a restore.
#[derive(Debug, Default)]
pub(crate) struct Making {
    pipes: HashMap<u32, MadePipe>,
    /// Openers of each FIFO, by pipe index.
    fifo_keepers: HashMap<u32, OwnedFd>,
}

/// A pipe made by the restorer: its ends not handed out yet, and the numbers of its first
/// ends (to open further open files of an end).
#[derive(Debug)]
struct MadePipe {
    ends: [Option<OwnedFd>; 2],
    nums: [RawFd; 2],
}

impl MadePipe {
    fn take(&mut self, write_end: bool) -> Option<OwnedFd> {
        self.ends[write_end as usize].take()
    }

    fn num(&self, write_end: bool) -> RawFd {
        self.nums[write_end as usize]
    }
}

impl Making {
    /// Pipe `idx`, made (with its capacity and bytes) when first asked for.
    fn made(&mut self, idx: u32, pi: &PipeImage) -> Result<&mut MadePipe> {
        let slot = match self.pipes.entry(idx) {
            std::collections::hash_map::Entry::Occupied(o) => return Ok(o.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => v,
        };
        let (r, w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))?;
        if pi.capacity > 0 {
            sfd::set_pipe_capacity(w.as_fd(), pi.capacity.max(pi.data.len() as u32))
                .map_err(|e| Error::io("F_SETPIPE_SZ", e))?;
        }
        std::fs::File::from(w.try_clone().map_err(|e| Error::io("pipe", e))?)
            .write_all(&pi.data)
            .map_err(|e| Error::io("pipe", e))?;
        let nums = [r.as_raw_fd(), w.as_raw_fd()];
        Ok(slot.insert(MadePipe {
            ends: [Some(r), Some(w)],
            nums,
        }))
    }

    /// The FIFO openers, to keep until the tree holds its ends. (Pipe ends not handed out are
    /// closed: no open file of the tree uses them.)
    pub fn into_keepers(self) -> Vec<OwnedFd> {
        self.fifo_keepers.into_values().collect()
    }
}
