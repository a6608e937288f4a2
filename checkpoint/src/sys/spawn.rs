//! Processes with a chosen pid: `clone3` with `set_tid` ([`clone_process`], also used by the
//! node daemon to start programs with their global pid), and the first process of a restored
//! tree, cloned by the restorer ([`spawn_holder`]).
//!
//! The root starts as a copy of the restorer. Before anything else it runs [`run_holder`]: it
//! arranges to die with the restorer, closes every fd it inherited (a migration's data
//! connection among them: the copy must not keep it open if the restorer dies), takes its
//! session or group, reports on a pipe and waits in `pause()` for the restorer to seize it and
//! replace its memory. Once seized, `PTRACE_O_EXITKILL` kills it with the restorer, and the
//! restore clears the parent-death signal as it sets the process's state. Its descendants are
//! created later from inside it, by injected `clone3` calls (see `restore::holder`). The
//! restorer may be multi-threaded, so the code running in the copy allocates nothing and takes
//! no locks: it only makes raw system calls.

use std::io;
use std::os::fd::RawFd;

/// What [`clone_process`] returns in each of the two processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the new process.
    Child,
    /// In the caller: the new process' pid.
    Parent(i32),
}

/// Creates a child process, a copy of the caller as with `fork()`, by `clone3`: with pid `pid`
/// in the caller's pid namespace when given (`set_tid`, needs CAP_SYS_ADMIN over that
/// namespace; `EEXIST` when the pid is taken), else with any pid. The child sends
/// `exit_signal` to its parent when it ends.
///
/// Neither nix nor libc wraps `clone3` with `set_tid`, and `fork()` cannot choose a pid.
///
/// # Safety
///
/// As with `fork()`: if the caller has other threads, the child (which has only the calling
/// one) must not allocate, take locks or touch state another thread may have held; it should
/// only make raw system calls on values prepared beforehand, then `execve` or `_exit`.
pub unsafe fn clone_process(pid: Option<i32>, exit_signal: i32) -> io::Result<Forked> {
    let set_tid: [libc::pid_t; 1] = [pid.unwrap_or(0)];
    let args = libc::clone_args {
        flags: 0,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: exit_signal as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: if pid.is_some() {
            set_tid.as_ptr() as u64
        } else {
            0
        },
        set_tid_size: u64::from(pid.is_some()),
        cgroup: 0,
    };
    // SAFETY: args is a valid clone_args of the size passed, whose set_tid (if any) points at
    // one pid_t; without CLONE_VM the child gets a copy of the address space and returns 0
    // here, like fork(); what the child may do is the caller's contract.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match r {
        0 => Ok(Forked::Child),
        r if r < 0 => Err(io::Error::last_os_error()),
        r => Ok(Forked::Parent(r as i32)),
    }
}

/// Creates process `pid` as a child of the caller, in the caller's pid namespace; it calls
/// `setsid()` (with `setsid`) or `setpgid(0, 0)` (with `setpgid_self`), then writes
/// `(pid, errno)` as two i32 to `ready` (errno 0 once set up) and waits to be seized.
/// Returns its pid in the caller.
pub fn spawn_holder(
    pid: i32,
    exit_signal: i32,
    setsid: bool,
    setpgid_self: bool,
    ready: RawFd,
) -> io::Result<i32> {
    // SAFETY: getpid has no preconditions.
    let restorer = unsafe { libc::getpid() };
    // SAFETY: the child runs only `run_holder`, which makes raw system calls on values copied
    // before the clone (see the module doc).
    match unsafe { clone_process(Some(pid), exit_signal) }? {
        Forked::Child => run_holder(restorer, pid, setsid, setpgid_self, ready),
        Forked::Parent(child) => Ok(child),
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The code of the freshly cloned root (see the module doc). Never returns.
fn run_holder(restorer: i32, pid: i32, setsid: bool, setpgid_self: bool, ready: RawFd) -> ! {
    // SAFETY: only raw system calls on values copied before the clone; no allocation, no
    // locks, as required in a child of a multi-threaded process.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != restorer {
            // the restorer died before the line above
            libc::_exit(1);
        }
        let top = libc::c_uint::MAX;
        let ready_u = ready as libc::c_uint;
        if ready_u > 0 {
            libc::syscall(libc::SYS_close_range, 0, ready_u - 1, 0);
        }
        libc::syscall(libc::SYS_close_range, ready_u + 1, top, 0);
        let mut err = 0;
        if setsid {
            if libc::setsid() < 0 {
                err = errno();
            }
        } else if setpgid_self && libc::setpgid(0, 0) < 0 {
            err = errno();
        }
        let msg = [pid, err];
        // a write of 8 bytes to a pipe is atomic
        // the restorer may stop it from here on: it closes `ready` itself
        libc::write(ready, msg.as_ptr().cast(), 8);
        loop {
            libc::pause();
        }
    }
}
