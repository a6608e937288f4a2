//! Re-creating open files, pipes, socket pairs and shared memory in the restorer; each process
//! then takes its own with `pidfd_getfd` (see `process::state`).

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::error::{Error, Result};
use crate::image::{FileKind, ProcessImage, Shared, VmaKind};
use crate::sys::fd as sfd;

/// Everything the tree's fds and shared mappings refer to, held by the restorer.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    /// One fd per open file, by [`crate::image::OpenFile::id`].
    pub files: Vec<OwnedFd>,
    /// Shared memory objects by id.
    pub shmem: HashMap<u32, OwnedFd>,
    /// FIFO openers that keep FIFOs alive until the tree holds them.
    pub keepers: Vec<OwnedFd>,
}

fn size_of(path: &str) -> Result<std::fs::Metadata> {
    std::fs::metadata(path)
        .map_err(|e| Error::Conflict(format!("{path}: {e} (needed by the image)")))
}

/// Checks, before anything is created, that the files of the shared table are there and
/// unchanged.
pub(crate) fn check_shared(shared: &Shared, allow_changed: bool) -> Result<()> {
    for f in &shared.files {
        match &f.kind {
            FileKind::Regular { path, size } => {
                let md = size_of(path)?;
                if md.len() != *size && !allow_changed {
                    return Err(Error::Conflict(format!(
                        "{path}: size is {} but was {size} when dumped (file changed)",
                        md.len()
                    )));
                }
            }
            FileKind::Directory { path } => {
                size_of(path)?;
            }
            FileKind::Device { path, rdev } => {
                let md = size_of(path)?;
                if md.rdev() != *rdev {
                    return Err(Error::Conflict(format!(
                        "{path}: is another device than when dumped"
                    )));
                }
            }
            FileKind::Fifo { path, .. } if !size_of(path)?.file_type().is_fifo() => {
                return Err(Error::Conflict(format!("{path}: is no longer a FIFO")));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks that the files a process maps and runs are there and unchanged.
pub(crate) fn check_process(p: &ProcessImage, allow_changed: bool) -> Result<()> {
    for v in &p.mm.vmas {
        if let VmaKind::File { path, size, .. } = &v.kind {
            let md = size_of(path)?;
            if md.len() != *size && !allow_changed {
                return Err(Error::Conflict(format!(
                    "{path}: size is {} but was {size} when dumped (mapped file changed)",
                    md.len()
                )));
            }
        }
    }
    if !p.mm.exe.is_empty() && std::fs::metadata(&p.mm.exe).is_err() {
        return Err(Error::Conflict(format!(
            "{}: executable of pid {} is gone",
            p.mm.exe, p.pid
        )));
    }
    Ok(())
}

fn open(path: &str, flags: i32) -> Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags & !(libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL))
        .write(matches!(
            flags & libc::O_ACCMODE,
            libc::O_WRONLY | libc::O_RDWR
        ))
        .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    Ok(OwnedFd::from(f))
}

fn set_status_flags(fd: BorrowedFd<'_>, flags: i32, what: &str) -> Result<()> {
    let keep = OFlag::from_bits_truncate(
        flags
            & (libc::O_NONBLOCK
                | libc::O_APPEND
                | libc::O_ASYNC
                | libc::O_DIRECT
                | libc::O_NOATIME),
    );
    fcntl(fd, FcntlArg::F_SETFL(keep)).map_err(|e| Error::io(what, e.into()))?;
    Ok(())
}

/// Reopens the same pipe end as a new open file (for a second description of one end).
fn reopen(fd: RawFd, flags: i32) -> Result<OwnedFd> {
    open(&format!("/proc/self/fd/{fd}"), flags | libc::O_NONBLOCK)
}

/// Creates every object: open files, and empty shared memory objects (their contents follow).
pub(crate) fn create(shared: &Shared, stdio: [RawFd; 3]) -> Result<Objects> {
    let mut o = Objects::default();
    let mut pipes: HashMap<u32, (Option<OwnedFd>, Option<OwnedFd>)> = HashMap::new();
    // raw numbers of the first read and write end of each pipe, to reopen further descriptions
    let mut pipe_nums: HashMap<u32, (RawFd, RawFd)> = HashMap::new();
    let mut fifo_keepers: HashMap<u32, OwnedFd> = HashMap::new();
    let mut pairs: HashMap<u32, [Option<OwnedFd>; 2]> = HashMap::new();
    for f in &shared.files {
        let acc = f.flags & libc::O_ACCMODE;
        let fd = match &f.kind {
            FileKind::Regular { path, .. }
            | FileKind::Directory { path }
            | FileKind::Device { path, .. } => {
                let fd = open(path, f.flags)?;
                if f.pos != 0 {
                    nix::unistd::lseek(&fd, f.pos, nix::unistd::Whence::SeekSet)
                        .map_err(|e| Error::io(path, e.into()))?;
                }
                fd
            }
            FileKind::Pipe { pipe } => {
                let pi = &shared.pipes[*pipe as usize];
                let ends = match pipes.get_mut(pipe) {
                    Some(e) => e,
                    None => {
                        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                            .map_err(|e| Error::io("pipe", e.into()))?;
                        if pi.capacity > 0 {
                            sfd::set_pipe_capacity(
                                w.as_fd(),
                                pi.capacity.max(pi.data.len() as u32),
                            )
                            .map_err(|e| Error::io("F_SETPIPE_SZ", e))?;
                        }
                        std::fs::File::from(w.try_clone().map_err(|e| Error::io("pipe", e))?)
                            .write_all(&pi.data)
                            .map_err(|e| Error::io("pipe", e))?;
                        pipe_nums.insert(*pipe, (r.as_raw_fd(), w.as_raw_fd()));
                        pipes.entry(*pipe).or_insert((Some(r), Some(w)))
                    }
                };
                let slot = if acc == libc::O_WRONLY {
                    &mut ends.1
                } else {
                    &mut ends.0
                };
                let fd = match slot.take() {
                    Some(fd) => fd,
                    None => {
                        let (r, w) = pipe_nums[pipe];
                        reopen(if acc == libc::O_WRONLY { w } else { r }, f.flags)?
                    }
                };
                set_status_flags(fd.as_fd(), f.flags, "pipe")?;
                fd
            }
            FileKind::Fifo { path, pipe } => {
                if !fifo_keepers.contains_key(pipe) {
                    let k = open(path, libc::O_RDWR | libc::O_NONBLOCK)?;
                    let data = &shared.pipes[*pipe as usize].data;
                    std::fs::File::from(k.try_clone().map_err(|e| Error::io(path, e))?)
                        .write_all(data)
                        .map_err(|e| Error::io(path, e))?;
                    fifo_keepers.insert(*pipe, k);
                }
                let fd = open(path, f.flags | libc::O_NONBLOCK)?;
                set_status_flags(fd.as_fd(), f.flags, path)?;
                fd
            }
            FileKind::SocketPair { pair, end } => {
                let sp = &shared.socketpairs[*pair as usize];
                if !pairs.contains_key(pair) {
                    let ty = nix::sys::socket::SockType::try_from(sp.sotype)
                        .map_err(|e| Error::io("socketpair", e.into()))?;
                    let (a, b) = nix::sys::socket::socketpair(
                        nix::sys::socket::AddressFamily::Unix,
                        ty,
                        None,
                        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                    )
                    .map_err(|e| Error::io("socketpair", e.into()))?;
                    // bytes waiting at end 0 were sent from end 1, and the other way round
                    std::fs::File::from(b.try_clone().map_err(|e| Error::io("socketpair", e))?)
                        .write_all(&sp.queued[0])
                        .map_err(|e| Error::io("socketpair", e))?;
                    std::fs::File::from(a.try_clone().map_err(|e| Error::io("socketpair", e))?)
                        .write_all(&sp.queued[1])
                        .map_err(|e| Error::io("socketpair", e))?;
                    pairs.insert(*pair, [Some(a), Some(b)]);
                }
                let fd = pairs
                    .get_mut(pair)
                    .and_then(|p| p[*end as usize].take())
                    .ok_or_else(|| {
                        Error::Conflict(format!(
                            "socket pair {pair} end {end} used by two open files"
                        ))
                    })?;
                set_status_flags(fd.as_fd(), f.flags, "socket")?;
                fd
            }
            FileKind::EventFd { count, semaphore } => {
                let mut fl = 0;
                if f.flags & libc::O_NONBLOCK != 0 {
                    fl |= libc::EFD_NONBLOCK;
                }
                if *semaphore {
                    fl |= libc::EFD_SEMAPHORE;
                }
                sfd::eventfd(*count, fl).map_err(|e| Error::io("eventfd", e))?
            }
            FileKind::EventPoll { .. } => {
                sfd::epoll().map_err(|e| Error::io("epoll_create1", e))?
            }
            FileKind::TimerFd {
                clockid,
                value_ns,
                interval_ns,
                ticks,
            } => {
                // expirations not read yet come back as one expiry right away
                let value = if *ticks > 0 { 1 } else { *value_ns };
                let fl = if f.flags & libc::O_NONBLOCK != 0 {
                    libc::TFD_NONBLOCK
                } else {
                    0
                };
                sfd::timerfd(*clockid, fl, value, *interval_ns)
                    .map_err(|e| Error::io("timerfd", e))?
            }
            FileKind::SignalFd { mask } => {
                let fl = if f.flags & libc::O_NONBLOCK != 0 {
                    libc::SFD_NONBLOCK
                } else {
                    0
                };
                sfd::signalfd(*mask, fl).map_err(|e| Error::io("signalfd", e))?
            }
            FileKind::Stdio { stream } => sfd::dup_raw(stdio[*stream as usize])
                .map_err(|e| Error::io(format!("standard stream {stream}"), e))?,
        };
        o.files.push(fd);
    }
    o.keepers = fifo_keepers.into_values().collect();
    for s in &shared.shmem {
        let name = CString::new("dev/zero").unwrap_or_default();
        let fd = sfd::memfd(&name, s.size).map_err(|e| Error::io("memfd_create", e))?;
        o.shmem.insert(s.id, fd);
    }
    Ok(o)
}

/// Writes bytes of shared memory object `id` at `offset`.
pub(crate) fn write_shmem(o: &Objects, id: u32, offset: u64, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let fd = o
        .shmem
        .get(&id)
        .ok_or_else(|| Error::bad_image("shmem.rec", format!("unknown shared memory {id}")))?;
    let file = std::fs::File::from(fd.try_clone().map_err(|e| Error::io("memfd", e))?);
    file.write_all_at(data, offset)
        .map_err(|e| Error::io("memfd", e))
}
