//! Building the process tree at restore: `clone3` with `set_tid`, from inside each parent.
//!
//! Each restored process starts as a copy of the restorer. Before anything else it runs
//! [`run_node`]: it takes its session or group, creates its own children (so parent links and
//! pids are right), installs its file descriptors, its cwd and umask (its root directory comes
//! last, once its files are mapped by their full paths), reports on a pipe, and
//! waits in `pause()` for the restorer to seize it and replace its memory. The restorer may be
//! multi-threaded, so the code running in the copies allocates nothing and takes no locks: it
//! only reads the plan made before the first clone and makes raw system calls.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

/// What one process does between its creation and its seizure.
#[derive(Debug)]
pub struct SpawnNode {
    /// Pid to create it with.
    pub pid: i32,
    /// Signal its parent gets when it exits.
    pub exit_signal: i32,
    /// Calls `setsid()` (it leads a session).
    pub setsid: bool,
    /// Calls `setpgid(0, 0)` (it leads a group in its parent's session).
    pub setpgid_self: bool,
    /// Indices of its children in the node table.
    pub children: Vec<usize>,
    /// `(source fd in the restorer, target fd, close-on-exec)`.
    pub fds: Vec<(RawFd, RawFd, bool)>,
    /// Ranges `[lo, hi]` of fds to close (every fd below the plan's base that is not a target).
    pub close: Vec<(u32, u32)>,
    /// Working directory.
    pub cwd: CString,
    /// umask.
    pub umask: u32,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `clone3` creating a process (fork-like) with pid `pid` in the caller's pid namespace.
/// Returns 0 in the child.
fn clone_with_pid(pid: i32, exit_signal: i32) -> libc::c_long {
    let tid: libc::pid_t = pid;
    let args = CloneArgs {
        exit_signal: exit_signal as u64,
        set_tid: &tid as *const libc::pid_t as u64,
        set_tid_size: 1,
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args whose set_tid points at one pid_t; without CLONE_VM
    // the child gets a copy of the address space and returns 0 here, like fork().
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    }
}

/// Creates the process of node `root` (and, from inside it, the whole subtree). Every process
/// writes `(pid, errno)` as two i32 to `ready` once set up (errno 0) or on failure.
/// Returns the root's pid in the caller.
pub fn spawn_tree(nodes: &[SpawnNode], root: usize, ready: RawFd) -> io::Result<i32> {
    let r = clone_with_pid(nodes[root].pid, nodes[root].exit_signal);
    if r == 0 {
        run_node(nodes, root, ready);
    }
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as i32)
}

fn report(ready: RawFd, pid: i32, err: i32) {
    let msg = [pid, err];
    // SAFETY: msg is 8 readable bytes; a write of 8 bytes to a pipe is atomic.
    unsafe { libc::write(ready, msg.as_ptr().cast(), 8) };
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The code of a freshly cloned process (see the module doc). Never returns.
fn run_node(nodes: &[SpawnNode], i: usize, ready: RawFd) -> ! {
    let n = &nodes[i];
    // SAFETY: only raw system calls on data prepared before the clone; no allocation, no
    // locks, as required in a child of a multi-threaded process.
    unsafe {
        let mut err = 0;
        if n.setsid {
            if libc::setsid() < 0 {
                err = errno();
            }
        } else if n.setpgid_self && libc::setpgid(0, 0) < 0 {
            err = errno();
        }
        if err == 0 {
            for &c in &n.children {
                let r = clone_with_pid(nodes[c].pid, nodes[c].exit_signal);
                if r == 0 {
                    run_node(nodes, c, ready);
                }
                if r < 0 {
                    report(ready, nodes[c].pid, errno());
                }
            }
            for &(src, dst, cloexec) in &n.fds {
                if libc::dup3(src, dst, if cloexec { libc::O_CLOEXEC } else { 0 }) < 0 {
                    err = errno();
                }
            }
            for &(lo, hi) in &n.close {
                libc::syscall(libc::SYS_close_range, lo, hi, 0);
            }
            if libc::chdir(n.cwd.as_ptr()) < 0 {
                err = errno();
            }
            libc::umask(n.umask);
        }
        report(ready, n.pid, err);
        loop {
            libc::pause();
        }
    }
}
