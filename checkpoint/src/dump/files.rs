//! File descriptor tables: classifying each fd, finding shared open files (kcmp), copying the
//! bytes in flight in pipes (tee) and socket pairs (MSG_PEEK).
//!
//! An object of the tree's standard streams that leads outside the tree (a terminal, a pipe or
//! socket with its other end outside) is saved as `Stdio`: it is bound at restore to the
//! restorer's stream of the same number (docs/IMAGE.md, "Standard streams").

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use crate::error::{Error, Result};
use crate::image::{Fd, FileKind, OpenFile, PipeImage, Shared, SocketPairImage};
use crate::sys::fd as sfd;

/// What an fd refers to, from /proc only (no access to the process needed).
#[derive(Debug, Clone)]
pub(crate) struct FdEntry {
    pub fd: i32,
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
        let lpath = format!("{dir}/{fd}");
        let link = match std::fs::read_link(&lpath) {
            Ok(l) => l.to_string_lossy().into_owned(),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
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
        let e = FdEntry {
            fd,
            link,
            flags: raw_flags & !libc::O_CLOEXEC,
            pos,
            cloexec: raw_flags & libc::O_CLOEXEC != 0,
            key: (md.dev(), md.ino()),
            mode: md.mode() & libc::S_IFMT,
            rdev: md.rdev(),
            size: md.size(),
            info,
            info_text: text,
        };
        check_kind(pid, &e)?;
        if e.link.starts_with("socket:") {
            if pidfd.is_none() {
                pidfd = Some(sfd::pidfd_open(pid).map_err(|er| Error::sys(pid, "pidfd_open", er))?);
            }
            if let Some(pf) = &pidfd {
                check_socket(pid, fd, pf)?;
            }
        }
        out.push(e);
    }
    Ok(out)
}

fn is_tty(e: &FdEntry) -> bool {
    let major = libc::major(e.rdev);
    e.mode == libc::S_IFCHR && (major == 136 || major == 4 || major == 5)
}

/// Refuses fd kinds that cannot be restored at all.
fn check_kind(pid: i32, e: &FdEntry) -> Result<()> {
    let bad = |kind: &str| Err(Error::unsupported(pid, format!("fd {} is {kind}", e.fd)));
    let l = e.link.as_str();
    if l.starts_with("pipe:")
        || l.starts_with("socket:")
        || matches!(
            l,
            "anon_inode:[eventfd]"
                | "anon_inode:[eventpoll]"
                | "anon_inode:[timerfd]"
                | "anon_inode:[signalfd]"
        )
    {
        return Ok(());
    }
    if let Some(rest) = l.strip_prefix("anon_inode:") {
        let what = match rest {
            "inotify" => "an inotify instance".to_string(),
            "[eventpoll]" => "an epoll instance".to_string(),
            "[signalfd]" => "a signalfd".to_string(),
            "[timerfd]" => "a timerfd".to_string(),
            "[pidfd]" => "a pidfd".to_string(),
            "[userfaultfd]" => "a userfaultfd".to_string(),
            "[io_uring]" => "an io_uring instance".to_string(),
            other => format!("an anonymous inode {other}"),
        };
        return bad(&what);
    }
    if l.starts_with("/memfd:") {
        return bad("a memfd");
    }
    if l.ends_with(" (deleted)") {
        return bad(&format!("deleted file {l}"));
    }
    if !l.starts_with('/') {
        return bad(l);
    }
    match e.mode {
        libc::S_IFREG | libc::S_IFDIR | libc::S_IFIFO => Ok(()),
        libc::S_IFCHR if DEVICES.contains(&l) || is_tty(e) => Ok(()),
        libc::S_IFCHR => bad(&format!("device {l}")),
        libc::S_IFBLK => bad(&format!("block device {l}")),
        _ => bad(&format!("{l} of an unknown type")),
    }
}

/// Refuses sockets other than Unix ones (read through a copy of the fd; nothing is stopped).
fn check_socket(pid: i32, fd: i32, pidfd: &OwnedFd) -> Result<()> {
    let mine = sfd::pidfd_getfd(pidfd.as_fd(), fd)
        .map_err(|e| Error::sys(pid, format!("pidfd_getfd fd {fd}"), e))?;
    let (domain, sotype, _) = sfd::socket_kind(mine.as_fd())
        .map_err(|e| Error::sys(pid, format!("fd {fd} socket"), e))?;
    if domain == libc::AF_UNIX {
        return Ok(());
    }
    let name = match (domain, sotype) {
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) => "a TCP socket".to_string(),
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) => "a UDP socket".to_string(),
        (libc::AF_NETLINK, _) => "a netlink socket".to_string(),
        (libc::AF_PACKET, _) => "a packet socket".to_string(),
        (d, t) => format!("a socket of family {d} type {t}"),
    };
    Err(Error::unsupported(pid, format!("fd {fd} is {name}")))
}

fn ino_of(link: &str) -> u64 {
    link.split('[')
        .nth(1)
        .and_then(|s| s.trim_end_matches(']').parse().ok())
        .unwrap_or(0)
}

/// Builds the shared file table from the fd tables of the whole tree.
pub(crate) fn build(
    root: i32,
    tables: &[(i32, Vec<FdEntry>)],
    pidfds: &HashMap<i32, OwnedFd>,
) -> Result<(Shared, HashMap<i32, Vec<Fd>>)> {
    let mut shared = Shared::default();
    // objects behind the root's standard streams
    let root_std: Vec<((u64, u64), u8)> = tables
        .iter()
        .find(|(p, _)| *p == root)
        .map(|(_, t)| {
            t.iter()
                .filter(|e| e.fd < 3)
                .map(|e| (e.key, e.fd as u8))
                .collect()
        })
        .unwrap_or_default();
    let std_stream = |key: (u64, u64)| root_std.iter().find(|(k, _)| *k == key).map(|(_, s)| *s);
    // which pipe ends are inside the tree
    let mut pipe_ends: HashMap<u64, (bool, bool)> = HashMap::new();
    for (_, t) in tables {
        for e in t {
            if e.link.starts_with("pipe:") || e.mode == libc::S_IFIFO {
                let ends = pipe_ends.entry(e.key.1).or_default();
                match e.flags & libc::O_ACCMODE {
                    libc::O_RDONLY => ends.0 = true,
                    libc::O_WRONLY => ends.1 = true,
                    _ => *ends = (true, true),
                }
            }
        }
    }
    let has_sockets = tables
        .iter()
        .any(|(_, t)| t.iter().any(|e| e.link.starts_with("socket:")));
    let unix = if has_sockets {
        sfd::unix_sockets().map_err(|e| Error::io("sock_diag", e))?
    } else {
        HashMap::new()
    };
    let tree_socks: std::collections::HashSet<u64> = tables
        .iter()
        .flat_map(|(_, t)| {
            t.iter()
                .filter(|e| e.link.starts_with("socket:"))
                .map(|e| ino_of(&e.link))
        })
        .collect();

    let mut reps: Vec<(i32, i32, (u64, u64), u32)> = Vec::new();
    let mut pipes: HashMap<u64, u32> = HashMap::new();
    let mut pairs: HashMap<u64, (u32, u8)> = HashMap::new();
    let mut out: HashMap<i32, Vec<Fd>> = HashMap::new();
    for (pid, t) in tables {
        let pid = *pid;
        let pidfd = pidfds
            .get(&pid)
            .ok_or_else(|| Error::Conflict(format!("pid {pid}: no pidfd")))?;
        let mut fds = Vec::with_capacity(t.len());
        for e in t {
            // the same open file seen before (dup, fork)?
            let mut found = None;
            for &(rp, rfd, key, id) in &reps {
                if key == e.key
                    && sfd::same_file(pid, e.fd, rp, rfd)
                        .map_err(|er| Error::sys(pid, format!("kcmp fd {}", e.fd), er))?
                {
                    found = Some(id);
                    break;
                }
            }
            let id = match found {
                Some(id) => id,
                None => {
                    let kind = kind_of(
                        pid,
                        e,
                        pidfd,
                        &pipe_ends,
                        &unix,
                        &tree_socks,
                        &std_stream,
                        &mut shared,
                        &mut pipes,
                        &mut pairs,
                    )?;
                    let id = shared.files.len() as u32;
                    shared.files.push(OpenFile {
                        id,
                        flags: e.flags,
                        pos: e.pos,
                        kind,
                    });
                    reps.push((pid, e.fd, e.key, id));
                    id
                }
            };
            fds.push(Fd {
                fd: e.fd,
                file: id,
                cloexec: e.cloexec,
            });
        }
        out.insert(pid, fds);
    }
    Ok((shared, out))
}

#[allow(clippy::too_many_arguments)]
fn kind_of(
    pid: i32,
    e: &FdEntry,
    pidfd: &OwnedFd,
    pipe_ends: &HashMap<u64, (bool, bool)>,
    unix: &HashMap<u32, sfd::UnixDiag>,
    tree_socks: &std::collections::HashSet<u64>,
    std_stream: &dyn Fn((u64, u64)) -> Option<u8>,
    shared: &mut Shared,
    pipes: &mut HashMap<u64, u32>,
    pairs: &mut HashMap<u64, (u32, u8)>,
) -> Result<FileKind> {
    let outside = |what: &str| -> Result<FileKind> {
        match std_stream(e.key) {
            Some(stream) => Ok(FileKind::Stdio { stream }),
            None => Err(Error::unsupported(
                pid,
                format!("fd {} is {what} leading outside the tree (only the root's standard streams may)", e.fd),
            )),
        }
    };
    let getfd = || {
        sfd::pidfd_getfd(pidfd.as_fd(), e.fd)
            .map_err(|er| Error::sys(pid, format!("pidfd_getfd fd {}", e.fd), er))
    };
    let is_fifo = e.mode == libc::S_IFIFO && e.link.starts_with('/');
    if e.link.starts_with("pipe:") || is_fifo {
        let ino = e.key.1;
        let internal = pipe_ends.get(&ino).is_some_and(|&(r, w)| r && w) || is_fifo;
        if !internal {
            return outside("a pipe");
        }
        let idx = match pipes.get(&ino) {
            Some(&i) => i,
            None => {
                let mine = getfd()?;
                let capacity = sfd::pipe_capacity(mine.as_fd())
                    .map_err(|er| Error::sys(pid, format!("fd {} pipe size", e.fd), er))?;
                let data = if e.flags & libc::O_ACCMODE != libc::O_WRONLY {
                    sfd::peek_pipe(mine.as_fd()).map_err(|er| {
                        Error::sys(pid, format!("fd {}: copy pipe contents", e.fd), er)
                    })?
                } else if is_fifo {
                    // a write end only: read the FIFO's buffer through a reader of our own
                    let f = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(&e.link)
                        .map_err(|er| Error::io(&e.link, er))?;
                    sfd::peek_pipe(f.as_fd()).map_err(|er| {
                        Error::sys(pid, format!("fd {}: copy fifo contents", e.fd), er)
                    })?
                } else {
                    // the read end is elsewhere in the tree; look it up when we meet it
                    Vec::new()
                };
                let i = shared.pipes.len() as u32;
                shared.pipes.push(PipeImage {
                    ino,
                    capacity,
                    data,
                });
                pipes.insert(ino, i);
                i
            }
        };
        // fill in data when the first end met was a write end and this is a read end
        if e.flags & libc::O_ACCMODE != libc::O_WRONLY && shared.pipes[idx as usize].data.is_empty()
        {
            let mine = getfd()?;
            shared.pipes[idx as usize].data = sfd::peek_pipe(mine.as_fd())
                .map_err(|er| Error::sys(pid, format!("fd {}: copy pipe contents", e.fd), er))?;
        }
        return Ok(if is_fifo {
            FileKind::Fifo {
                path: e.link.clone(),
                pipe: idx,
            }
        } else {
            FileKind::Pipe { pipe: idx }
        });
    }
    if e.link.starts_with("socket:") {
        let ino = ino_of(&e.link);
        let mine = getfd()?;
        check_socket(pid, e.fd, pidfd)?;
        let (_, sotype, _) = sfd::socket_kind(mine.as_fd())
            .map_err(|er| Error::sys(pid, format!("fd {} socket", e.fd), er))?;
        let d = unix.get(&(ino as u32)).cloned().unwrap_or_default();
        if d.peer == 0 || !tree_socks.contains(&(d.peer as u64)) {
            if d.state == 10 {
                return Err(Error::unsupported(
                    pid,
                    format!("fd {} is a listening Unix socket", e.fd),
                ));
            }
            return outside("a Unix socket");
        }
        if d.name.as_ref().is_some_and(|n| !n.is_empty()) {
            return Err(Error::unsupported(
                pid,
                format!("fd {} is a bound Unix socket", e.fd),
            ));
        }
        if let Some(&(pair, end)) = pairs.get(&ino) {
            return Ok(FileKind::SocketPair { pair, end });
        }
        if let Some(&(pair, end)) = pairs.get(&(d.peer as u64)) {
            let me = 1 - end;
            pairs.insert(ino, (pair, me));
            shared.socketpairs[pair as usize].queued[me as usize] =
                queued(pid, e.fd, &mine, sotype, d.rqueue)?;
            return Ok(FileKind::SocketPair { pair, end: me });
        }
        let pair = shared.socketpairs.len() as u32;
        shared.socketpairs.push(SocketPairImage {
            sotype,
            queued: [queued(pid, e.fd, &mine, sotype, d.rqueue)?, Vec::new()],
        });
        pairs.insert(ino, (pair, 0));
        return Ok(FileKind::SocketPair { pair, end: 0 });
    }
    if e.link == "anon_inode:[eventfd]" {
        let count = e
            .info
            .get("eventfd-count")
            .and_then(|c| u64::from_str_radix(c.trim(), 16).ok())
            .unwrap_or(0);
        let semaphore = e.info.get("eventfd-semaphore").is_some_and(|s| s == "1");
        return Ok(FileKind::EventFd { count, semaphore });
    }
    if e.link == "anon_inode:[eventpoll]" {
        let mut targets = Vec::new();
        for line in e.info_text.lines().filter(|l| l.starts_with("tfd:")) {
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
            // the watched file must still be open at the number it was registered with
            if !sfd::epoll_target_is(pid, e.fd, tfd).unwrap_or(false) {
                return Err(Error::unsupported(
                    pid,
                    format!(
                        "fd {} is an epoll instance watching a file no longer open as fd {tfd}",
                        e.fd
                    ),
                ));
            }
            targets.push((tfd, events, data));
        }
        return Ok(FileKind::EventPoll { targets });
    }
    if e.link == "anon_inode:[timerfd]" {
        let pair = |k: &str| -> u64 {
            e.info
                .get(k)
                .map(|v| v.trim_matches(|c| c == '(' || c == ')'))
                .and_then(|v| v.split_once(','))
                .map(|(s, ns)| {
                    s.trim().parse::<u64>().unwrap_or(0) * 1_000_000_000
                        + ns.trim().parse::<u64>().unwrap_or(0)
                })
                .unwrap_or(0)
        };
        return Ok(FileKind::TimerFd {
            clockid: e
                .info
                .get("clockid")
                .and_then(|c| c.parse().ok())
                .unwrap_or(libc::CLOCK_MONOTONIC),
            value_ns: pair("it_value"),
            interval_ns: pair("it_interval"),
            ticks: e
                .info
                .get("ticks")
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
        });
    }
    if e.link == "anon_inode:[signalfd]" {
        let mask = e
            .info
            .get("sigmask")
            .and_then(|m| u64::from_str_radix(m, 16).ok())
            .unwrap_or(0);
        return Ok(FileKind::SignalFd { mask });
    }
    if is_tty(e) {
        return outside("a terminal");
    }
    Ok(match e.mode {
        libc::S_IFREG => FileKind::Regular {
            path: e.link.clone(),
            size: e.size,
        },
        libc::S_IFDIR => FileKind::Directory {
            path: e.link.clone(),
        },
        _ => FileKind::Device {
            path: e.link.clone(),
            rdev: e.rdev,
        },
    })
}

use std::os::unix::fs::OpenOptionsExt;

fn queued(pid: i32, fd: i32, sock: &OwnedFd, sotype: i32, rqueue: u32) -> Result<Vec<u8>> {
    if rqueue == 0 {
        return Ok(Vec::new());
    }
    if sotype != libc::SOCK_STREAM {
        return Err(Error::unsupported(
            pid,
            format!("fd {fd} is a Unix datagram socket with queued messages"),
        ));
    }
    let data = sfd::peek_socket(sock.as_fd(), rqueue as usize)
        .map_err(|e| Error::sys(pid, format!("fd {fd}: peek socket"), e))?;
    if data.len() != rqueue as usize {
        return Err(Error::Conflict(format!(
            "pid {pid}: fd {fd}: peeked {} of {rqueue} queued bytes",
            data.len()
        )));
    }
    Ok(data)
}
