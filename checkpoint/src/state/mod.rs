//! The state of a process, one module per kind, each saving and restoring itself through
//! [`Persist`] (see `persist`).
//!
//! | part | what | dump reads it from | restore |
//! |---|---|---|---|
//! | `tree` | parent, group, session, zombies | /proc/PID/stat | clone3 in the parent, setsid/setpgid |
//! | `memory` | mappings, pages, mm fields, shared memory | smaps, pagemap, /proc/PID/mem | mmap, UFFDIO_COPY, PR_SET_MM_MAP |
//! | `files` | fd table, open files (one module per kind) | /proc/PID/fd, fdinfo, sock_diag | made by the restorer, taken with pidfd_getfd |
//! | `fs` | cwd, root, umask | /proc/PID/{cwd,root,status} | chdir, umask, chroot |
//! | `rlimits` | resource limits | injected prlimit64 | injected prlimit64 |
//! | `signals` | dispositions, process-wide pending signals | injected rt_sigaction, PEEKSIGINFO | rt_sigaction, rt_sigqueueinfo |
//! | `threads` | registers, xstate, masks, rseq, tid address, robust list, altstack, pending, name | ptrace, injected calls | clone3 CLONE_THREAD set_tid, injected calls, SETREGS |
//! | `creds` | uids, gids, groups, capabilities | /proc/PID/status | setres[ug]id, capset in every thread |
//! | `attrs` | personality, no_new_privs, dumpable | injected personality, prctl | personality, prctl |
//! | `timers` | interval timers | injected getitimer | setitimer |
//!
//! [`check`] is every refusal made before anything is frozen; [`restore_process`] is the order
//! the parts are restored in, and why.

pub(crate) mod attrs;
pub(crate) mod creds;
pub(crate) mod files;
pub(crate) mod fs;
pub(crate) mod memory;
pub(crate) mod rlimits;
pub(crate) mod signals;
pub(crate) mod threads;
pub(crate) mod timers;
pub(crate) mod tree;

use crate::error::Result;
use crate::image::ProcessImage;
use crate::persist::{Persist, ProcDump, ProcRestore};
use files::scan::FdEntry;

/// A live process looked at from /proc before anything is frozen.
pub(crate) struct Probe<'a> {
    /// The process.
    pub pid: i32,
    /// /proc/PID/stat.
    pub stat: &'a procfs::process::Stat,
    /// /proc/PID/status.
    pub status: &'a procfs::process::Status,
    /// /proc/ROOT/stat of the tree's root.
    pub root_stat: &'a procfs::process::Stat,
    /// Whether a pid is a process of the tree.
    pub in_tree: &'a dyn Fn(i32) -> bool,
    /// Fds of the process that are not its own state (a write tracker a pre-dump left).
    pub skip_fds: &'a [i32],
}

/// Refuses, before anything is frozen, whatever of the process a restore would not bring back
/// exactly, naming the process and the object. Returns its fd table (each fd classified).
pub(crate) fn check(p: &Probe<'_>) -> Result<Vec<FdEntry>> {
    attrs::check(p.pid, p.status)?;
    timers::check(p.pid)?;
    tree::check(p.pid, p.stat, p.root_stat, p.in_tree)?;
    let table = files::scan::scan(p.pid, p.skip_fds)?;
    memory::check(p.pid)?;
    Ok(table)
}

/// The parts of a process that a final dump saves from its frozen threads, apart from its
/// memory and its fds (which are saved with those of the whole tree).
#[derive(Debug, Default)]
pub(crate) struct Saved {
    pub threads: threads::Threads,
    pub fs: fs::Fs,
    pub rlimits: rlimits::Rlimits,
    pub creds: creds::Creds,
    pub signals: signals::Signals,
    pub timers: timers::Timers,
    pub attrs: attrs::Attrs,
}

/// Saves every part of a frozen process but its memory and fds. A pre-dump saves only what
/// /proc tells (filesystem context and credentials): it keeps memory, nothing else is used.
pub(crate) fn save_process(cx: &mut ProcDump<'_>, pre_dump: bool) -> Result<Saved> {
    let fs = fs::Fs::save(cx)?;
    let creds = creds::Creds::save(cx)?;
    if pre_dump {
        return Ok(Saved {
            fs,
            creds,
            ..Saved::default()
        });
    }
    Ok(Saved {
        threads: threads::Threads::save(cx)?,
        signals: signals::Signals::save(cx)?,
        timers: timers::Timers::save(cx)?,
        attrs: attrs::Attrs::save(cx)?,
        rlimits: rlimits::Rlimits::save(cx)?,
        fs,
        creds,
    })
}

/// Restores every part of `p` but its memory contents and registers, in this order:
///
/// 1. fds (the files are opened by paths the dumper saw), then the epoll watches over them;
/// 2. memory: shared mappings, advice, protections, mm fields (opens the executable);
/// 3. cwd, umask and root (chroot after every open, while the restorer's privileges last);
/// 4. rlimits (raising a hard limit needs those privileges too);
/// 5. signal dispositions, then process-wide pending signals (setting SIG_IGN would discard
///    a pending signal);
/// 6. threads, each with its own state and pending signals;
/// 7. credentials, in every thread;
/// 8. attributes (a change of credentials resets dumpable and the parent-death signal);
/// 9. interval timers (ITIMER_REAL runs from the moment it is set).
///
/// Every signal stays blocked until the registers and masks are set, the very last step.
pub(crate) fn restore_process(p: &ProcessImage, cx: &mut ProcRestore<'_>) -> Result<()> {
    p.fds.restore(cx)?;
    p.mm.restore(cx)?;
    p.fs.restore(cx)?;
    p.rlimits.restore(cx)?;
    p.signals.restore(cx)?;
    p.threads.restore(cx)?;
    p.creds.restore(cx)?;
    p.attrs.restore(cx)?;
    p.timers.restore(cx)?;
    cx.h.drop_scratch()
}
