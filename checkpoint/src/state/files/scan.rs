//! Reading the fd table of a process from /proc (nothing stopped, nothing injected), and
//! sorting each fd into the kind of open file that saves it, or refusing it.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use super::unix;
use crate::error::{Error, Result};
use crate::sys::fd as sfd;

/// The kinds of open files a dump saves (see `FileKind` for what each keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// An end of an anonymous pipe.
    Pipe,
    /// An end of a named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// An eventfd.
    EventFd,
    /// An epoll instance.
    EventPoll,
    /// A timerfd.
    TimerFd,
    /// A pidfd.
    PidFd,
    /// An inotify instance.
    Inotify,
    /// A signalfd.
    SignalFd,
    /// A terminal.
    Tty,
    /// A regular file.
    Regular,
    /// A regular file deleted while open.
    Ghost,
    /// A directory.
    Directory,
    /// A character device opened again by path.
    Device,
}

/// What an fd refers to, from /proc only (no access to the process needed).
#[derive(Debug, Clone)]
pub(crate) struct FdEntry {
    pub fd: i32,
    pub class: Class,
    pub link: String,
    pub flags: i32,
    pub pos: i64,
    pub cloexec: bool,
    /// `(dev, ino)` of the object.
    pub key: (u64, u64),
    pub mode: u32,
    pub rdev: u64,
    pub size: u64,
    /// Extra fdinfo lines (eventfd-count, ...).
    pub info: HashMap<String, String>,
    /// The whole fdinfo text (epoll lists one `tfd:` line per watched fd).
    pub info_text: String,
    /// Locks on the file that fdinfo shows for this fd.
    pub locks: Vec<super::locks::FileLock>,
    /// Which file it is (regular files only).
    pub id: Option<super::identity::FileId>,
}

const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// Reads and checks the fd table of `pid` (fds in `skip` are ignored). An fd of a kind that
/// cannot be restored is an error naming it.
pub(crate) fn scan(pid: i32, skip: &[i32]) -> Result<Vec<FdEntry>> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<i32> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .filter(|fd| !skip.contains(fd))
        .collect();
    fds.sort_unstable();
    let mut out = Vec::with_capacity(fds.len());
    let mut pidfd: Option<OwnedFd> = None;
    for fd in fds {
        let Some(e) = entry(pid, fd)? else { continue };
        if e.class == Class::Socket {
            if pidfd.is_none() {
                pidfd = Some(sfd::pidfd_open(pid).map_err(|er| Error::sys(pid, "pidfd_open", er))?);
            }
            if let Some(pf) = &pidfd {
                unix::check(pid, fd, pf)?;
            }
        }
        out.push(e);
    }
    Ok(out)
}

/// Fd `fd` of `pid`, classified; `None` if it was closed meanwhile.
fn entry(pid: i32, fd: i32) -> Result<Option<FdEntry>> {
    let lpath = format!("/proc/{pid}/fd/{fd}");
    let link = match std::fs::read_link(&lpath) {
        Ok(l) => l.to_string_lossy().into_owned(),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(Error::io(lpath, e)),
    };
    let ipath = format!("/proc/{pid}/fdinfo/{fd}");
    let text = std::fs::read_to_string(&ipath).map_err(|e| Error::io(&ipath, e))?;
    let mut info: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let raw_flags = info
        .remove("flags")
        .and_then(|f| i32::from_str_radix(&f, 8).ok())
        .unwrap_or(0);
    let pos = info.remove("pos").and_then(|p| p.parse().ok()).unwrap_or(0);
    let md = std::fs::metadata(&lpath).map_err(|e| Error::io(&lpath, e))?;
    let mut e = FdEntry {
        fd,
        class: Class::Regular,
        link,
        flags: raw_flags & !libc::O_CLOEXEC,
        pos,
        cloexec: raw_flags & libc::O_CLOEXEC != 0,
        key: (md.dev(), md.ino()),
        mode: md.mode() & libc::S_IFMT,
        rdev: md.rdev(),
        size: md.size(),
        info,
        locks: super::locks::parse(pid, fd, &text)?,
        info_text: text,
        id: None,
    };
    e.class = classify(pid, &e)?;
    if e.class == Class::Regular {
        e.id = Some(super::identity::FileId::of(&lpath, &md));
    }
    Ok(Some(e))
}

fn is_tty(e: &FdEntry) -> bool {
    let major = libc::major(e.rdev);
    e.mode == libc::S_IFCHR && (major == 136 || major == 4 || major == 5)
}

/// The kind of open file that saves `e`, or an error naming what it is if none does.
fn classify(pid: i32, e: &FdEntry) -> Result<Class> {
    let bad = |kind: &str| Err(Error::unsupported(pid, format!("fd {} is {kind}", e.fd)));
    let l = e.link.as_str();
    if l.starts_with("pipe:") {
        return Ok(Class::Pipe);
    }
    if l.starts_with("socket:") {
        return Ok(Class::Socket);
    }
    if let Some(rest) = l.strip_prefix("anon_inode:") {
        return match rest {
            "[eventfd]" => Ok(Class::EventFd),
            "[eventpoll]" => Ok(Class::EventPoll),
            "[timerfd]" => Ok(Class::TimerFd),
            "[signalfd]" => Ok(Class::SignalFd),
            "inotify" => Ok(Class::Inotify),
            "[pidfd]" => Ok(Class::PidFd),
            "[userfaultfd]" => bad("a userfaultfd"),
            "[io_uring]" => bad("an io_uring instance"),
            other => bad(&format!("an anonymous inode {other}")),
        };
    }
    if super::ghost::is_deleted(l) {
        return match e.mode {
            libc::S_IFREG if l.starts_with('/') => Ok(Class::Ghost),
            _ => bad(&format!("deleted file {l}")),
        };
    }
    if !l.starts_with('/') {
        return bad(l);
    }
    match e.mode {
        libc::S_IFREG => Ok(Class::Regular),
        libc::S_IFDIR => Ok(Class::Directory),
        libc::S_IFIFO => Ok(Class::Fifo),
        libc::S_IFCHR if is_tty(e) => Ok(Class::Tty),
        libc::S_IFCHR if DEVICES.contains(&l) => Ok(Class::Device),
        libc::S_IFCHR => bad(&format!("device {l}")),
        libc::S_IFBLK => bad(&format!("block device {l}")),
        _ => bad(&format!("{l} of an unknown type")),
    }
}
