//! The raw system calls of grid-node, and the only `unsafe` code of the crate.
//!
//! Programs are started with their exact pid by `checkpoint::clone_process` (`clone3` with
//! `set_tid`); the code that runs in the child between the clone and `execve` must stay
//! async-signal-safe: no allocation, no locks. Everything it needs is prepared beforehand in a
//! [`Prepared`] value.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

/// Which step of starting a program failed in the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Redirecting stdin/stdout/stderr.
    Stdio = 1,
    /// Changing to the working directory.
    Chdir = 2,
    /// Taking the user's limits, groups and ids.
    Credentials = 3,
    /// Executing the program.
    Exec = 4,
    /// Joining the user's cgroup.
    Cgroup = 5,
}

impl Stage {
    fn from_byte(b: u8) -> Stage {
        match b {
            1 => Stage::Stdio,
            2 => Stage::Chdir,
            3 => Stage::Credentials,
            5 => Stage::Cgroup,
            _ => Stage::Exec,
        }
    }

    /// What the stage is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Stdio => "cannot set up stdio",
            Stage::Chdir => "cannot change to the working directory",
            Stage::Credentials => "cannot take the user's identity and limits",
            Stage::Exec => "cannot execute",
            Stage::Cgroup => "cannot join the user's cgroup",
        }
    }
}

/// Everything the child needs, allocated before `clone3`.
#[derive(Debug)]
pub struct Prepared {
    /// Where the program may be, tried in order (a `PATH` search), as the user, after the
    /// change of directory: relative ones are relative to the working directory.
    paths: Vec<CString>,
    // The CStrings own the bytes the pointer arrays point into.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: CString,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    /// Limits to set, already lowered to this process's own (so setting them needs nothing).
    rlimits: Vec<(u32, libc::rlimit64)>,
    fds: Vec<RawFd>,
    /// `cgroup.procs` of the cgroup to join, open for writing (kept open by the caller).
    cgroup: Option<RawFd>,
}

fn cstring(bytes: &[u8], what: &str) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("{what} contains a NUL byte"))
}

impl Prepared {
    /// Makes the child join the cgroup whose `cgroup.procs` is open as `procs` first thing.
    pub fn join_cgroup(mut self, procs: RawFd) -> Self {
        self.cgroup = Some(procs);
        self
    }

    /// Prepares a start of the first of `paths` that can be executed, with `argv`, `env`
    /// (`KEY=VALUE` entries) in `cwd` as `uid`/`gid`/`groups`, with `fds` becoming its fds 0,
    /// 1, 2, ... in order, with `rlimits` (`RLIMIT_*`, soft, hard) where they are below this
    /// process's own. The fds must be numbered above `fds.len()` (see [`lift_fd`]). The
    /// child takes the user's ids before it touches `cwd` or any of `paths`, so both are
    /// reached with the user's rights, not root's.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        paths: &[&OsStr],
        argv: &[Vec<u8>],
        env: &[Vec<u8>],
        cwd: &[u8],
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
        rlimits: &[(u32, u64, u64)],
        fds: Vec<RawFd>,
    ) -> Result<Prepared, String> {
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| cstring(a, "an argument"))
            .collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|e| cstring(e, "an environment variable"))
            .collect::<Result<_, _>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        if paths.is_empty() {
            return Err("no program to execute".into());
        }
        Ok(Prepared {
            paths: paths
                .iter()
                .map(|p| cstring(p.as_bytes(), "the program path"))
                .collect::<Result<_, _>>()?,
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
            cwd: cstring(cwd, "the working directory")?,
            uid,
            gid,
            groups,
            rlimits: lowered(rlimits),
            fds,
            cgroup: None,
        })
    }
}

/// `wanted` limits (`RLIMIT_*`, soft, hard) lowered to this process's own: the hard limit at
/// most ours, the soft one at most the new hard one. Unknown resources are dropped.
fn lowered(wanted: &[(u32, u64, u64)]) -> Vec<(u32, libc::rlimit64)> {
    wanted
        .iter()
        .filter_map(|&(res, soft, hard)| {
            let ours = hard_limit(res)?;
            let hard = hard.min(ours);
            Some((
                res,
                libc::rlimit64 {
                    rlim_cur: soft.min(hard),
                    rlim_max: hard,
                },
            ))
        })
        .collect()
}

/// Why a start failed.
#[derive(Debug)]
pub enum SpawnError {
    /// `clone3` failed (`EEXIST`: the pid is in use).
    Clone(Errno),
    /// The child failed at `stage` with `errno` and exited.
    Child(Stage, Errno),
}

/// Starts the prepared program as a new process of the caller's pid namespace, with pid
/// `pid` when given (`clone3` with `set_tid`), and returns once it has executed its program.
///
/// Must be called from a single-threaded process (the node's namespace init).
pub fn spawn(p: &Prepared, pid: Option<i32>) -> Result<i32, SpawnError> {
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(SpawnError::Clone)?;
    // SAFETY: the caller is single-threaded, so the child may run code until execve; it only
    // calls async-signal-safe functions on values prepared before the clone.
    let child_pid = match unsafe { checkpoint::clone_process(pid, libc::SIGCHLD) } {
        Err(e) => {
            return Err(SpawnError::Clone(Errno::from_raw(
                e.raw_os_error().unwrap_or(libc::EIO),
            )))
        }
        Ok(checkpoint::Forked::Child) => child(p, err_w.as_raw_fd()),
        Ok(checkpoint::Forked::Parent(child_pid)) => child_pid,
    };
    drop(err_w);
    let mut report = [0u8; 5];
    let n = read_full(&err_r, &mut report);
    if n == report.len() {
        let errno = i32::from_ne_bytes([report[1], report[2], report[3], report[4]]);
        // The child exits right away; its status is reaped by the init's SIGCHLD handling.
        return Err(SpawnError::Child(
            Stage::from_byte(report[0]),
            Errno::from_raw(errno),
        ));
    }
    Ok(child_pid)
}

fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    got
}

/// The child side: redirect, drop privileges, change directory, exec (trying each path as
/// execvp does: a path that is missing is skipped, one that was found but refused is the error
/// reported if none runs); on failure report and `_exit(127)`.
fn child(p: &Prepared, err_fd: RawFd) -> ! {
    let fail_with = |stage: Stage, errno: i32| -> ! {
        let errno = errno.to_ne_bytes();
        let msg = [stage as u8, errno[0], errno[1], errno[2], errno[3]];
        // SAFETY: write and _exit are async-signal-safe; `msg` is a valid buffer.
        unsafe {
            libc::write(err_fd, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        }
    };
    let fail = |stage: Stage| -> ! { fail_with(stage, Errno::last_raw()) };
    // SAFETY: plain async-signal-safe syscalls on values prepared before clone3; the pointer
    // arrays are NUL-terminated and point into CStrings that live in our copied memory.
    unsafe {
        libc::setsid();
        // First, while every fd is as it was: writing 0 to cgroup.procs moves the writer, so
        // the program and all it starts live in the cgroup from their first instruction.
        if let Some(fd) = p.cgroup {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail(Stage::Cgroup);
            }
        }
        // Every source fd is above the targets (lift_fd), so no dup2 clobbers a later source.
        for (target, &fd) in p.fds.iter().enumerate() {
            if libc::dup2(fd, target as RawFd) < 0 {
                fail(Stage::Stdio);
            }
        }
        // The init blocks SIGCHLD and Rust ignores SIGPIPE: the program must start clean.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        // Lowering limits needs no privilege; the ones asked for are already no higher.
        for (res, lim) in &p.rlimits {
            if libc::syscall(
                libc::SYS_prlimit64,
                0,
                *res,
                lim as *const libc::rlimit64,
                0usize,
            ) < 0
            {
                fail(Stage::Credentials);
            }
        }
        // The ids first: the working directory and the program are reached as the user.
        if libc::setgroups(p.groups.len(), p.groups.as_ptr()) < 0
            || libc::setgid(p.gid) < 0
            || libc::setuid(p.uid) < 0
        {
            fail(Stage::Credentials);
        }
        if libc::chdir(p.cwd.as_ptr()) < 0 {
            fail(Stage::Chdir);
        }
        let mut refused = 0;
        for path in &p.paths {
            libc::execve(path.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
            match Errno::last_raw() {
                libc::ENOENT | libc::ENOTDIR => {}
                e => refused = e,
            }
        }
        if refused != 0 {
            fail_with(Stage::Exec, refused)
        }
        fail(Stage::Exec)
    }
}

/// Makes the calling thread, and every thread it starts from now on, reach files as user
/// `uid`, group `gid` and supplementary `groups` (its fs uid, fs gid and groups): the kernel
/// then checks file permissions as for that user, and drops the capabilities that bypass them
/// (`CAP_DAC_OVERRIDE`, `CAP_FOWNER`, ...) while the fs uid is not 0. Real and effective ids
/// stay root's, so the thread may still trace and read the user's processes. Raw system calls:
/// glibc's `setgroups` would change the groups of every thread of the process.
pub fn reach_files_as(uid: u32, gid: u32, groups: &[u32]) -> nix::Result<()> {
    // SAFETY: setgroups reads `groups.len()` ids from the pointer, which points into `groups`.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    Errno::result(r)?;
    // setfsgid and setfsuid return the id before the call and report no error: asking again
    // with an invalid id (-1) returns the id in force, which must be the one we set.
    // SAFETY: no pointers; an id argument only.
    let fsgid = unsafe {
        libc::syscall(libc::SYS_setfsgid, gid);
        libc::syscall(libc::SYS_setfsgid, u32::MAX)
    };
    // SAFETY: as above.
    let fsuid = unsafe {
        libc::syscall(libc::SYS_setfsuid, uid);
        libc::syscall(libc::SYS_setfsuid, u32::MAX)
    };
    if fsgid != i64::from(gid) || fsuid != i64::from(uid) {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// The supplementary groups of the process at the other end of Unix socket `fd`, as the kernel
/// recorded them when it connected (`SO_PEERGROUPS`).
pub fn peer_groups(fd: std::os::fd::BorrowedFd<'_>) -> nix::Result<Vec<u32>> {
    // NGROUPS_MAX on Linux is 65536; start small and grow to what the kernel asks for.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = libc::socklen_t::try_from(groups.len() * std::mem::size_of::<libc::gid_t>())
            .map_err(|_| Errno::ERANGE)?;
        // SAFETY: getsockopt writes at most `len` bytes into `groups`, which holds that many,
        // and writes the length it needs (or used) into `len`.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        match Errno::result(r) {
            Ok(_) => {
                groups.truncate(n);
                return Ok(groups);
            }
            Err(Errno::ERANGE) if n > groups.len() && n <= 65536 => groups.resize(n, 0),
            Err(e) => return Err(e),
        }
    }
}

/// This process's hard limit of resource `res` (`RLIMIT_*`), if the kernel knows it.
pub fn hard_limit(res: u32) -> Option<u64> {
    let mut lim = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 on ourselves (pid 0) with no new limit writes one rlimit64 through the
    // last pointer, which points to `lim`, alive for the whole call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            res,
            std::ptr::null::<libc::rlimit64>(),
            &mut lim as *mut libc::rlimit64,
        )
    };
    (r == 0).then_some(lim.rlim_max)
}

/// Sends one datagram on a SOCK_SEQPACKET socket with `fds` attached (SCM_RIGHTS).
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> nix::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(data)];
    let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(fds)]
    };
    loop {
        match sendmsg::<()>(sock, &iov, &cmsgs, MsgFlags::empty(), None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}

/// Most fds one message may carry.
pub const MAX_FDS: usize = 16;

/// Receives one datagram from a SOCK_SEQPACKET socket into `buf`, with the fds attached to it
/// (close-on-exec). Returns the length (0 at end of stream) and the fds.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> nix::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for fd in raw {
                // SAFETY: the kernel just installed this fd in our table for us (SCM_RIGHTS);
                // nothing else owns it.
                fds.push(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(Errno::EMSGSIZE);
    }
    Ok((msg.bytes, fds))
}

/// Registers `fd` with the tokio reactor.
pub fn async_fd(fd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of `fd`, so the fd stays open (and is not reused by
    // another file) for as long as it is registered, which is what `register` requires.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// Marks every fd from 3 up close-on-exec, so that programs started later inherit only their
/// stdin, stdout and stderr (not what the daemon inherited, nor the init channel).
pub fn cloexec_from_3() -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on open fds; it takes no
    // pointers.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    Errno::result(r).map(drop)
}

/// Lowest fd number [`lift_fd`] moves fds to.
pub const LIFT_BASE: RawFd = 64;

/// A close-on-exec duplicate of `fd` numbered at least [`LIFT_BASE`], so that it cannot be
/// overwritten when a child's fds 0, 1, 2, ... are set up.
pub fn lift_fd(fd: &OwnedFd) -> nix::Result<OwnedFd> {
    let raw = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(LIFT_BASE))?;
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) just returned this new fd; we are its only owner.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

/// Takes ownership of fd `n`, which this process inherited for its own use (a helper's
/// control socket).
pub fn inherited_fd(n: RawFd) -> OwnedFd {
    // SAFETY: the daemon starts helpers with fd `n` open for them alone and nothing else in the
    // helper refers to it; taking it once makes this value its only owner.
    unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) }
}

/// Bytes written into the pipe behind `fd` (either end) and not read yet (`FIONREAD`).
pub fn pipe_unread(fd: std::os::fd::BorrowedFd<'_>) -> nix::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points to `n`, alive for the
    // whole call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) };
    Errno::result(r)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_limits_are_lowered_to_ours_never_raised() {
        let nofile = libc::RLIMIT_NOFILE as u32;
        let ours = hard_limit(nofile).expect("RLIMIT_NOFILE");
        let got = lowered(&[(nofile, u64::MAX, u64::MAX), (9999, 1, 1)]);
        assert_eq!(got.len(), 1, "an unknown resource is dropped");
        assert_eq!((got[0].1.rlim_cur, got[0].1.rlim_max), (ours, ours));
        let got = lowered(&[(nofile, 100, 50)]);
        assert_eq!((got[0].1.rlim_cur, got[0].1.rlim_max), (50, 50.min(ours)));
    }
}
