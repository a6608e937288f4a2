//! The state of a process, one module per kind, each saving and restoring itself through
//! [`Persist`] (see `persist`).
//!
//! | part | what | dump reads it from | restore |
//! |---|---|---|---|
//! | `tree` | parent, group, session, zombies | /proc/PID/stat | clone3 in the parent, setsid/setpgid |
//! | `memory` | mappings, pages, mm fields, shared memory | smaps, pagemap, /proc/PID/mem | mmap, UFFDIO_COPY, PR_SET_MM_MAP |
//! | `files` | fd table, open files (one module per kind) | /proc/PID/fd, fdinfo, sock_diag | made by the restorer, taken with pidfd_getfd |
//! | `fs` | cwd, root, umask | /proc/PID/{cwd,root,status} | chdir, umask, chroot |
//! | `limits` | resource limits, oom_score_adj | injected prlimit64, /proc/PID/oom_score_adj | injected prlimit64, /proc/self/oom_score_adj |
//! | `signals` | dispositions, process-wide pending signals | injected rt_sigaction, PEEKSIGINFO | rt_sigaction, rt_sigqueueinfo |
//! | `threads` | registers, xstate, masks, rseq, tid address, robust list, altstack, pending, name | ptrace, injected calls | clone3 CLONE_THREAD set_tid, injected calls, SETREGS |
//! | `creds` | uids, gids, groups, capabilities | /proc/PID/status | setres[ug]id, capset in every thread |
//! | `audit` | login uid | /proc/PID/loginuid | /proc/self/loginuid |
//! | `attrs` | personality, no_new_privs, dumpable, child subreaper, THP disabled; per thread: scheduling, affinity, parent-death signal, timer slack | injected personality, prctl; sched_getscheduler, sched_getaffinity | personality, prctl; sched_setscheduler, sched_setaffinity |
//! | `timers` | interval timers | injected getitimer | setitimer |
//! | `cgroups` | cgroups of the process and its threads (those not the dumper's) | /proc/PID/task/TID/cgroup | written to `cgroup.procs`, `tasks`, `cgroup.threads` |
//!
//! [`check`] is every refusal made before anything is frozen; [`restore_process`] is the order
//! the parts are restored in, and why.

pub(crate) mod attrs;
pub(crate) mod audit;
pub(crate) mod cgroups;
pub(crate) mod creds;
pub(crate) mod files;
pub(crate) mod fs;
pub(crate) mod limits;
pub(crate) mod memory;
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
    attrs::check(p)?;
    creds::check(p.pid, p.status)?;
    tree::check(p)?;
    fs::check(p.pid)?;
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
    pub limits: limits::Limits,
    pub audit: audit::Audit,
    pub creds: creds::Creds,
    pub signals: signals::Signals,
    pub timers: timers::Timers,
    pub attrs: attrs::Attrs,
    pub cgroups: cgroups::Cgroups,
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
        cgroups: cgroups::Cgroups::save(cx)?,
        limits: limits::Limits::save(cx)?,
        audit: audit::Audit::save(cx)?,
        fs,
        creds,
    })
}

/// Restores every part of `p` but its memory contents and registers, in this order:
///
/// 1. memory: shared mappings, advice, protections, locks, mm fields (the files this opens are
///    closed again, which would drop POSIX locks on them: those come next);
/// 2. fds (the files are opened by paths the dumper saw), POSIX locks, then the open files'
///    epoll watches and OFD and flock locks;
/// 3. rlimits and oom_score_adj (raising a hard limit needs the restorer's privileges, and a
///    process that is not dumpable cannot open its own /proc files once it is not root);
/// 4. the audit login uid (only the process may write it, through /proc/self);
/// 5. cwd, umask and root (chroot after every open, while the restorer's privileges last);
/// 6. signal dispositions, then process-wide pending signals (setting SIG_IGN would discard
///    a pending signal);
/// 7. threads, each with its own state and pending signals, then the cgroups of the process
///    and of its threads (the threads must exist to be moved);
/// 8. credentials, in every thread;
/// 9. attributes (a change of credentials resets dumpable and the parent-death signal);
/// 10. interval timers (ITIMER_REAL runs from the moment it is set).
///
/// Every signal stays blocked until the registers and masks are set, the very last step.
pub(crate) fn restore_process(p: &ProcessImage, cx: &mut ProcRestore<'_>) -> Result<()> {
    p.mm.restore(cx)?;
    p.fds.restore(cx)?;
    p.limits.restore(cx)?;
    p.audit.restore(cx)?;
    p.fs.restore(cx)?;
    p.signals.restore(cx)?;
    p.threads.restore(cx)?;
    p.cgroups.restore(cx)?;
    p.creds.restore(cx)?;
    p.attrs.restore(cx)?;
    p.timers.restore(cx)?;
    cx.h.drop_scratch()
}
