//! File descriptors of other processes: pidfds, kcmp, pipes peeked with tee, Unix socket
//! diagnostics, rlimits.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, cvt_i};

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: no memory arguments; on success the result is a new fd we own.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd`: a copy of fd `target_fd` of the process behind `pidfd` (same open file).
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: no memory arguments; on success the result is a new fd we own.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) })?;
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// True if fd `fd1` of `pid1` and fd `fd2` of `pid2` are the same open file description.
pub fn same_file(pid1: i32, fd1: i32, pid2: i32, fd2: i32) -> io::Result<bool> {
    const KCMP_FILE: i32 = 0;
    // SAFETY: no memory arguments.
    let r = cvt(unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2) })?;
    Ok(r == 0)
}

/// True if processes `pid1` and `pid2` share one address space (a `vfork` child before it
/// execs, or a `CLONE_VM` process).
pub fn same_mm(pid1: i32, pid2: i32) -> io::Result<bool> {
    const KCMP_VM: i32 = 1;
    // SAFETY: no memory arguments.
    let r = cvt(unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_VM, 0, 0) })?;
    Ok(r == 0)
}

/// The poll events of `fd` now (`POLLIN`, `POLLOUT`, `POLLHUP`, `POLLERR`), without waiting.
pub fn poll_now(fd: BorrowedFd<'_>) -> io::Result<i16> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: the kernel reads and writes one pollfd at &mut p.
    cvt(unsafe { libc::poll(&mut p, 1, 0) } as i64)?;
    Ok(p.revents)
}

/// Kernel objects two processes can share without being threads of one process (kcmp types).
#[derive(Debug, Clone, Copy)]
pub enum Shared {
    /// The fd table (`CLONE_FILES`).
    Files = 2,
    /// Working and root directory, umask (`CLONE_FS`).
    Fs = 3,
    /// Signal handlers (`CLONE_SIGHAND`).
    Sighand = 4,
}

/// True if processes `pid1` and `pid2` share `what`.
pub fn shares(pid1: i32, pid2: i32, what: Shared) -> io::Result<bool> {
    // SAFETY: no memory arguments.
    let r = cvt(unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, what as i32, 0, 0) })?;
    Ok(r == 0)
}

/// Copies the bytes queued in pipe `src` (a read end) without consuming them.
pub fn peek_pipe(src: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    cvt_i(unsafe {
        libc::ioctl(
            src.as_raw_fd(),
            libc::FIONREAD,
            &mut queued as *mut libc::c_int,
        )
    })?;
    if queued == 0 {
        return Ok(Vec::new());
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: F_SETPIPE_SZ takes an int; root may exceed pipe-max-size.
    let _ = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, queued.max(4096)) };
    // SAFETY: tee takes two fds, no memory arguments.
    let n = cvt(unsafe {
        libc::tee(
            src.as_raw_fd(),
            w.as_raw_fd(),
            queued as usize,
            libc::SPLICE_F_NONBLOCK,
        ) as libc::c_long
    })? as usize;
    if n != queued as usize {
        return Err(io::Error::other(format!(
            "tee copied {n} of {queued} queued bytes"
        )));
    }
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        got += nix::unistd::read(&r, &mut out[got..])?;
    }
    Ok(out)
}

/// `F_GETPIPE_SZ`.
pub fn pipe_capacity(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: no memory arguments.
    Ok(cvt_i(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) })? as u32)
}

/// `F_SETPIPE_SZ`.
pub fn set_pipe_capacity(fd: BorrowedFd<'_>, size: u32) -> io::Result<()> {
    // SAFETY: no memory arguments.
    cvt_i(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) })?;
    Ok(())
}

/// `(SO_DOMAIN, SO_TYPE, SO_PROTOCOL)` of a socket.
pub fn socket_kind(fd: BorrowedFd<'_>) -> io::Result<(i32, i32, i32)> {
    let get = |opt| -> io::Result<i32> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the kernel writes at most len bytes to &v.
        cvt_i(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        })?;
        Ok(v)
    };
    Ok((
        get(libc::SO_DOMAIN)?,
        get(libc::SO_TYPE)?,
        get(libc::SO_PROTOCOL)?,
    ))
}

/// What is queued for reading at a socket, copied without consuming it.
#[derive(Debug, Default)]
pub struct Peeked {
    /// The messages (a stream socket: one run of bytes).
    pub messages: Vec<Vec<u8>>,
    /// Some message carries control data (file descriptors, credentials).
    pub control: bool,
    /// Some message is empty (a datagram of no bytes).
    pub empty: bool,
}

/// One `recvmsg(MSG_PEEK)` of at most `max` bytes, without room for control data: the bytes
/// and whether control data had to be left out (`MSG_CTRUNC`). `None` when nothing is queued.
fn peek_one(fd: BorrowedFd<'_>, max: usize) -> io::Result<Option<(Vec<u8>, bool)>> {
    let mut buf = vec![0u8; max.max(1)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all zeroes (no name, no control buffer) is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: the kernel writes at most iov_len bytes into buf and fills msg's flags.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    buf.truncate(n as usize);
    Ok(Some((buf, msg.msg_flags & libc::MSG_CTRUNC != 0)))
}

/// `SO_PEEK_OFF` of a socket (-1: off).
fn peek_off(fd: BorrowedFd<'_>, set: Option<i32>) -> io::Result<i32> {
    let mut v: libc::c_int = set.unwrap_or(0);
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let p = (&mut v as *mut libc::c_int).cast();
    // SAFETY: the kernel reads or writes one int at &v.
    cvt_i(unsafe {
        match set {
            Some(_) => {
                libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF, p, len)
            }
            None => libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEEK_OFF,
                p,
                &mut len,
            ),
        }
    })?;
    Ok(v)
}

/// Most messages a dump copies from one socket.
const MAX_MESSAGES: usize = 1 << 16;

/// What is queued for reading at socket `fd` (`stream_len` bytes for a stream socket; a
/// datagram or seqpacket socket is read message by message, moving its peek offset and putting
/// it back). Fails if the socket's own peek offset is in use.
pub fn peek_socket(fd: BorrowedFd<'_>, stream_len: Option<usize>) -> io::Result<Peeked> {
    let mut out = Peeked::default();
    if let Some(len) = stream_len {
        if let Some((data, control)) = peek_one(fd, len)? {
            out.messages.push(data);
            out.control = control;
        }
        return Ok(out);
    }
    if peek_off(fd, None)? != -1 {
        return Err(io::Error::other("the socket uses SO_PEEK_OFF"));
    }
    peek_off(fd, Some(0))?;
    let r = (|| {
        while out.messages.len() < MAX_MESSAGES {
            let Some((data, control)) = peek_one(fd, 1 << 20)? else {
                return Ok(());
            };
            out.control |= control;
            if data.is_empty() {
                // the peek offset cannot step over an empty datagram
                out.empty = true;
                return Ok(());
            }
            out.messages.push(data);
        }
        Err(io::Error::other("too many messages queued"))
    })();
    peek_off(fd, Some(-1))?;
    r.map(|()| out)
}

/// What sock_diag says about one Unix socket.
#[derive(Debug, Clone, Default)]
pub struct UnixDiag {
    /// Connection state (`TCP_ESTABLISHED` = 1, `TCP_LISTEN` = 10, ...).
    pub state: u8,
    /// Inode of the peer, 0 if none.
    pub peer: u32,
    /// Bound path or abstract name, if any.
    pub name: Option<Vec<u8>>,
    /// Bytes (stream) or datagrams queued for reading; for a listening socket, the
    /// connections waiting to be accepted.
    pub rqueue: u32,
    /// For a listening socket, its backlog.
    pub wqueue: u32,
    /// Shutdown state.
    pub shutdown: u8,
    /// Device (user-space `dev_t`) and inode of the file it is bound to, if bound to a path.
    pub vfs: Option<(u64, u64)>,
}

/// All Unix sockets of the caller's network namespace, by inode (NETLINK_SOCK_DIAG dump).
pub fn unix_sockets() -> io::Result<HashMap<u32, UnixDiag>> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_NAME: u32 = 1;
    const UDIAG_SHOW_VFS: u32 = 2;
    const UNIX_DIAG_VFS: u16 = 1;
    const UDIAG_SHOW_PEER: u32 = 4;
    const UDIAG_SHOW_RQLEN: u32 = 16;
    const UNIX_DIAG_NAME: u16 = 0;
    const UNIX_DIAG_PEER: u16 = 2;
    const UNIX_DIAG_RQLEN: u16 = 4;
    const UNIX_DIAG_SHUTDOWN: u16 = 6;
    // SAFETY: plain socket creation.
    let s = cvt_i(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    })?;
    // SAFETY: s is a new fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    // nlmsghdr (16) + unix_diag_req (24)
    let mut req = [0u8; 40];
    req[0..4].copy_from_slice(&40u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req[16] = libc::AF_UNIX as u8;
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes()); // all states
    req[28..32].copy_from_slice(
        &(UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | 0x80)
            .to_ne_bytes(),
    );
    req[32..40].copy_from_slice(&[0xff; 8]);
    // SAFETY: req is a readable buffer of req.len() bytes.
    let sent = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    cvt(sent as libc::c_long)?;
    let mut out = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: the kernel writes at most buf.len() bytes.
        let n = cvt(
            unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) }
                as libc::c_long,
        )? as usize;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or_default()) as usize;
            let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap_or_default());
            if len < 16 || off + len > n {
                break;
            }
            if ty == libc::NLMSG_DONE as u16 {
                return Ok(out);
            }
            if ty == libc::NLMSG_ERROR as u16 {
                let code =
                    i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap_or_default());
                return Err(io::Error::from_raw_os_error(-code));
            }
            let m = &buf[off + 16..off + len];
            if m.len() >= 16 {
                let ino = u32::from_ne_bytes(m[4..8].try_into().unwrap_or_default());
                let mut d = UnixDiag {
                    state: m[2],
                    ..Default::default()
                };
                let mut a = 16;
                while a + 4 <= m.len() {
                    let alen = u16::from_ne_bytes([m[a], m[a + 1]]) as usize;
                    let aty = u16::from_ne_bytes([m[a + 2], m[a + 3]]);
                    if alen < 4 || a + alen > m.len() {
                        break;
                    }
                    let p = &m[a + 4..a + alen];
                    match aty {
                        UNIX_DIAG_NAME => d.name = Some(p.to_vec()),
                        UNIX_DIAG_PEER if p.len() >= 4 => {
                            d.peer = u32::from_ne_bytes(p[0..4].try_into().unwrap_or_default())
                        }
                        UNIX_DIAG_RQLEN if p.len() >= 8 => {
                            d.rqueue = u32::from_ne_bytes(p[0..4].try_into().unwrap_or_default());
                            d.wqueue = u32::from_ne_bytes(p[4..8].try_into().unwrap_or_default());
                        }
                        UNIX_DIAG_VFS if p.len() >= 8 => {
                            let ino = u32::from_ne_bytes(p[0..4].try_into().unwrap_or_default());
                            // the kernel's own encoding: major << 20 | minor
                            let kdev = u32::from_ne_bytes(p[4..8].try_into().unwrap_or_default());
                            let dev = libc::makedev(kdev >> 20, kdev & 0xf_ffff);
                            d.vfs = Some((dev, ino as u64));
                        }
                        UNIX_DIAG_SHUTDOWN if !p.is_empty() => d.shutdown = p[0],
                        _ => {}
                    }
                    a += (alen + 3) & !3;
                }
                out.insert(ino, d);
            }
            off += (len + 3) & !3;
        }
    }
}

/// `prlimit(pid, resource)` read from outside.
pub fn get_rlimit(pid: i32, resource: u32) -> io::Result<(u64, u64)> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the kernel writes one rlimit64 to &old.
    cvt_i(unsafe { libc::prlimit64(pid, resource as _, std::ptr::null(), &mut old) })?;
    Ok((old.rlim_cur, old.rlim_max))
}

/// `prlimit(pid, resource, new)` set from outside.
pub fn set_rlimit(pid: i32, resource: u32, soft: u64, hard: u64) -> io::Result<()> {
    let new = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: the kernel reads one rlimit64 from &new.
    cvt_i(unsafe { libc::prlimit64(pid, resource as _, &new, std::ptr::null_mut()) })?;
    Ok(())
}

/// An eventfd with the given counter and flags.
pub fn eventfd(count: u64, flags: i32) -> io::Result<OwnedFd> {
    // The counter is 64-bit but eventfd() takes an unsigned int: write the rest.
    let init = u32::try_from(count).unwrap_or(0);
    // SAFETY: no memory arguments.
    let fd = cvt_i(unsafe { libc::eventfd(init, flags | libc::EFD_CLOEXEC) })?;
    // SAFETY: fd was just returned by the kernel.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if u64::from(init) != count {
        nix::unistd::write(&fd, &count.to_ne_bytes())?;
    }
    Ok(fd)
}

/// A memfd of `size` bytes named `name`.
pub fn memfd(name: &std::ffi::CStr, size: u64) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid C string.
    let fd = cvt_i(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: fd was just returned by the kernel.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    nix::unistd::ftruncate(&fd, size as i64)?;
    Ok(fd)
}

/// A memfd named `name` that accepts seals (`MFD_ALLOW_SEALING`), close-on-exec.
pub fn memfd_sealable(name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid C string.
    let fd = cvt_i(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Raises this process' soft RLIMIT_NOFILE to its hard limit.
pub fn raise_nofile() {
    if let Ok((_, hard)) = get_rlimit(0, libc::RLIMIT_NOFILE) {
        let _ = set_rlimit(0, libc::RLIMIT_NOFILE, hard, hard);
    }
}

/// A close-on-exec duplicate of a raw fd number of this process (e.g. a standard stream).
pub fn dup_raw(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC has no memory arguments; a bad fd gives EBADF.
    let n = cvt_i(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: n was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// True if epoll instance `epfd` of `pid` watches, under number `tfd`, the file open at `tfd`.
/// `toff` picks one of several watches under the same number (files closed after `dup`):
/// the `toff`-th, counting from 0 in the order fdinfo lists them.
pub fn epoll_target_is(pid: i32, epfd: i32, tfd: i32, toff: u32) -> io::Result<bool> {
    epoll_target_at(pid, epfd, tfd, toff, tfd)
}

/// True if the file epoll instance `epfd` of `pid` watches under number `tfd` (the `toff`-th
/// such watch) is the file open at fd `fd` of `pid`.
pub fn epoll_target_at(pid: i32, epfd: i32, tfd: i32, toff: u32, fd: i32) -> io::Result<bool> {
    const KCMP_EPOLL_TFD: i32 = 7;
    #[repr(C)]
    struct Slot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = Slot {
        efd: epfd as u32,
        tfd: tfd as u32,
        toff,
    };
    // SAFETY: the kernel reads one kcmp_epoll_slot from &slot.
    let r = cvt(unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_EPOLL_TFD,
            fd,
            &slot as *const Slot,
        )
    })?;
    Ok(r == 0)
}

/// A timerfd armed with `value_ns` to go and `interval_ns` period (relative).
pub fn timerfd(clockid: i32, flags: i32, value_ns: u64, interval_ns: u64) -> io::Result<OwnedFd> {
    // SAFETY: no memory arguments.
    let fd = cvt_i(unsafe { libc::timerfd_create(clockid, flags | libc::TFD_CLOEXEC) })?;
    // SAFETY: fd was just returned by the kernel.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if value_ns != 0 {
        let ts = |ns: u64| libc::timespec {
            tv_sec: (ns / 1_000_000_000) as i64,
            tv_nsec: (ns % 1_000_000_000) as i64,
        };
        let its = libc::itimerspec {
            it_interval: ts(interval_ns),
            it_value: ts(value_ns),
        };
        // SAFETY: the kernel reads one itimerspec from &its.
        cvt_i(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &its, std::ptr::null_mut()) })?;
    }
    Ok(fd)
}

/// A signalfd reading the signals of `mask`.
pub fn signalfd(mask: u64, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; an all-zero value is an empty set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    for sig in 1..=64 {
        if mask & (1 << (sig - 1)) != 0 {
            // SAFETY: set is a valid sigset_t.
            unsafe { libc::sigaddset(&mut set, sig) };
        }
    }
    // SAFETY: set is a valid sigset_t; -1 asks for a new signalfd.
    let fd = cvt_i(unsafe { libc::signalfd(-1, &set, flags | libc::SFD_CLOEXEC) })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new epoll instance.
pub fn epoll() -> io::Result<OwnedFd> {
    // SAFETY: no memory arguments.
    let fd = cvt_i(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;

/// `F_GETOWN_EX`: `(F_OWNER_TID (0), F_OWNER_PID (1) or F_OWNER_PGRP (2), pid)` of the
/// process or group that gets SIGIO for an open file; pid 0 when none does.
pub fn owner(fd: BorrowedFd<'_>) -> io::Result<(i32, i32)> {
    // struct f_owner_ex { int type; pid_t pid; } (not in the libc crate for glibc)
    let mut o = [0i32; 2];
    // SAFETY: the kernel writes one f_owner_ex (two ints) to o.
    cvt_i(unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, o.as_mut_ptr()) })?;
    Ok((o[0], o[1]))
}

/// `F_SETOWN_EX`.
pub fn set_owner(fd: BorrowedFd<'_>, kind: i32, pid: i32) -> io::Result<()> {
    let o = [kind, pid];
    // SAFETY: the kernel reads one f_owner_ex (two ints) from o.
    cvt_i(unsafe { libc::fcntl(fd.as_raw_fd(), F_SETOWN_EX, o.as_ptr()) })?;
    Ok(())
}

/// `F_GETSIG`: the signal sent instead of SIGIO (0: SIGIO).
pub fn io_signal(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: no memory arguments.
    cvt_i(unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) })
}

/// `F_SETSIG`.
pub fn set_io_signal(fd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: no memory arguments.
    cvt_i(unsafe { libc::fcntl(fd.as_raw_fd(), F_SETSIG, sig) })?;
    Ok(())
}

/// Opens (`O_PATH`) the file a file handle names, on the file system `mount` is on.
pub fn open_by_handle(mount: BorrowedFd<'_>, htype: i32, handle: &[u8]) -> io::Result<OwnedFd> {
    // struct file_handle: handle_bytes, handle_type, then the bytes
    let mut buf = Vec::with_capacity(8 + handle.len());
    buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&htype.to_ne_bytes());
    buf.extend_from_slice(handle);
    // SAFETY: the kernel reads a struct file_handle of handle_bytes bytes from buf.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            buf.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Bytes waiting to be read at `fd` (`FIONREAD`).
pub fn queued_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int at &mut n.
    cvt_i(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) })?;
    Ok(n.max(0) as usize)
}

/// `inotify_init1(flags)`.
pub fn inotify(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: no memory arguments.
    let fd = cvt_i(unsafe { libc::inotify_init1(flags) })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `inotify_add_watch(fd, path, mask)`: the watch descriptor.
pub fn inotify_add(fd: BorrowedFd<'_>, path: &std::ffi::CStr, mask: u32) -> io::Result<i32> {
    // SAFETY: path is a valid C string.
    cvt_i(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) })
}

/// `inotify_rm_watch(fd, wd)`.
pub fn inotify_rm(fd: BorrowedFd<'_>, wd: i32) -> io::Result<()> {
    // SAFETY: no memory arguments.
    cvt_i(unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) })?;
    Ok(())
}

/// A Unix socket of type `sotype`, close-on-exec.
pub fn unix_socket(sotype: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation.
    let fd = cvt_i(unsafe { libc::socket(libc::AF_UNIX, sotype | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A `sockaddr_un` holding `name` (a path, or an abstract name starting with a NUL byte).
fn sockaddr_un(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.len() > a.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in a.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len();
    Ok((a, len as libc::socklen_t))
}

/// `bind` of a Unix socket to `name` (relative names resolve against the caller's cwd).
pub fn unix_bind(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let (a, len) = sockaddr_un(name)?;
    // SAFETY: the kernel reads len bytes of a.
    cvt_i(unsafe { libc::bind(fd.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len) })?;
    Ok(())
}

/// `connect` of a Unix socket to `name`.
pub fn unix_connect(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let (a, len) = sockaddr_un(name)?;
    // SAFETY: the kernel reads len bytes of a.
    cvt_i(unsafe { libc::connect(fd.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len) })?;
    Ok(())
}

/// `listen(fd, backlog)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: no memory arguments.
    cvt_i(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

/// An inet socket (`AF_INET` or `AF_INET6`) of type `sotype`, close-on-exec.
pub fn inet_socket(family: i32, sotype: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation.
    let fd = cvt_i(unsafe { libc::socket(family, sotype | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `getsockopt(fd, level, name)`: the value's bytes (at most 64).
pub fn getsockopt_raw(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; 256];
    let mut len = 64 as libc::socklen_t;
    // SAFETY: the kernel writes at most len bytes into buf and the length into len.
    cvt_i(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    Ok(buf[..(len as usize).min(buf.len())].to_vec())
}

/// `getsockopt(fd, level, name)` into a buffer of `size` bytes (for larger structures).
pub fn getsockopt_sized(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    size: usize,
) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let mut len = size as libc::socklen_t;
    // SAFETY: the kernel writes at most len bytes into buf and the length into len.
    cvt_i(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    buf.truncate((len as usize).min(size));
    Ok(buf)
}

/// `setsockopt(fd, level, name, value)`.
pub fn setsockopt_raw(fd: BorrowedFd<'_>, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
    // SAFETY: the kernel reads value.len() bytes of value.
    cvt_i(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `getsockname(fd)`: the address's bytes (a `sockaddr_in` or `sockaddr_in6`).
pub fn sockname_raw(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    address_of(fd, libc::getsockname)
}

/// The address `get` (`getsockname` or `getpeername`) gives for `fd`, as bytes.
fn address_of(
    fd: BorrowedFd<'_>,
    get: unsafe extern "C" fn(
        libc::c_int,
        *mut libc::sockaddr,
        *mut libc::socklen_t,
    ) -> libc::c_int,
) -> io::Result<Vec<u8>> {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut a: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the kernel writes at most len bytes into a.
    cvt_i(unsafe {
        get(
            fd.as_raw_fd(),
            (&mut a as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    // SAFETY: a is len (<= its size) initialized bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&a as *const libc::sockaddr_storage).cast::<u8>(),
            len as usize,
        )
    };
    Ok(bytes.to_vec())
}

/// Calls `call` (`bind` or `connect`) on `fd` with an address given as bytes.
fn with_address(
    fd: BorrowedFd<'_>,
    addr: &[u8],
    call: unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int,
) -> io::Result<()> {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut a: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    if addr.len() > std::mem::size_of::<libc::sockaddr_storage>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: addr.len() bytes fit in a (checked above); the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            addr.as_ptr(),
            (&mut a as *mut libc::sockaddr_storage).cast::<u8>(),
            addr.len(),
        )
    };
    // SAFETY: the kernel reads addr.len() bytes of a.
    cvt_i(unsafe {
        call(
            fd.as_raw_fd(),
            (&a as *const libc::sockaddr_storage).cast(),
            addr.len() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `bind(fd, addr)` with an address as [`sockname_raw`] gave it.
pub fn bind_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    with_address(fd, addr, libc::bind)
}

/// How many classic BPF blocks the socket filter of `fd` has (0: none); an eBPF filter is an
/// error (EACCES).
pub fn socket_filter_len(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut len: libc::socklen_t = 0;
    // SAFETY: with a length of 0 the kernel only writes the block count into len.
    cvt_i(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::null_mut(),
            &mut len,
        )
    })?;
    Ok(len)
}

/// `getpeername(fd)`: the address's bytes.
pub fn peername_raw(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    address_of(fd, libc::getpeername)
}

/// `connect(fd, addr)` with an address as [`peername_raw`] gave it.
pub fn connect_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    with_address(fd, addr, libc::connect)
}

/// Bytes waiting in a socket's receive queue (`SIOCINQ`) or send queue (`SIOCOUTQ`).
pub fn socket_queue_len(fd: BorrowedFd<'_>, send: bool) -> io::Result<usize> {
    let req = if send { libc::TIOCOUTQ } else { libc::FIONREAD };
    let mut n: libc::c_int = 0;
    // SAFETY: the kernel writes one int into n.
    cvt_i(unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut n) })?;
    Ok(n.max(0) as usize)
}

/// Copies up to `len` bytes of a socket's queue without taking them (`MSG_PEEK`).
pub fn peek_bytes(fd: BorrowedFd<'_>, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    // SAFETY: the kernel writes at most len bytes into buf.
    let n = cvt(unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            len,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        ) as libc::c_long
    })?;
    buf.truncate(n as usize);
    Ok(buf)
}

/// Sends all of `data` (without waiting: an error rather than a hang).
pub fn send_all(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        // SAFETY: the kernel reads at most data.len() - done bytes from the slice.
        let n = cvt(unsafe {
            libc::send(
                fd.as_raw_fd(),
                data[done..].as_ptr().cast(),
                data.len() - done,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            ) as libc::c_long
        })?;
        done += n as usize;
    }
    Ok(())
}

/// Whether the socket `fd` is shut down for reading (`POLLRDHUP`).
pub fn read_shut_down(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: the kernel reads and writes one pollfd at &mut p.
    cvt(unsafe { libc::poll(&mut p, 1, 0) } as i64)?;
    Ok(p.revents & libc::POLLRDHUP != 0)
}

/// `shutdown(fd, SHUT_RDWR)`. On a socket never connected it fails with ENOTCONN but still
/// marks it shut down both ways.
pub fn shutdown_both(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no memory arguments.
    cvt_i(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) })?;
    Ok(())
}
