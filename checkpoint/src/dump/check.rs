//! Checking the tree from /proc before anything is frozen, then freezing it once it is in a
//! state a dump can keep.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use super::freeze::{self, FrozenTree, TreeShape};
use super::session::Session;
use super::DumpOptions;
use crate::error::{Error, Result};
use crate::state::files::{self, scan::FdEntry};
use crate::state::{self, Probe};
use crate::sys::{self, fd as sfd};

/// How long a dump lets a tree caught in a short-lived state (a `vfork` child before its
/// `exec`, a child closing its fds on its way out) run on before it gives up.
const SETTLE_TIME: Duration = Duration::from_secs(2);

/// Checks, without stopping anything, that every process of the tree can be dumped. A process
/// (other than the root) that exits meanwhile is left out: the freeze will not find it either.
fn precheck(shape: &TreeShape, root: i32, skip: &HashMap<i32, i32>) -> Result<()> {
    let root_st = state::tree::stat(root)?;
    let mut tables = Vec::new();
    let mut pidfds = HashMap::new();
    for &pid in &shape.order {
        match precheck_one(shape, pid, &root_st, skip) {
            Ok(Some((table, pidfd))) => {
                tables.push((pid, table));
                pidfds.insert(pid, pidfd);
            }
            Ok(None) => {}
            Err(_) if pid != root && !alive(pid) => {}
            Err(e) => return Err(e),
        }
    }
    refuse_shared_tables(&tables.iter().map(|t| t.0).collect::<Vec<_>>())?;
    // A dry run of the shared file table: pipes and sockets that lead outside the tree are
    // found now, before anything is frozen (the copies of their contents are thrown away).
    files::build(root, &tables, &pidfds, false)?;
    Ok(())
}

/// Refuses processes (not threads) that share an fd table, fs struct or signal handlers with
/// another process of the tree (`clone` with `CLONE_FILES`, `CLONE_FS` or `CLONE_SIGHAND`):
/// a restore creates each process with its own.
fn refuse_shared_tables(pids: &[i32]) -> Result<()> {
    use sfd::Shared;
    for (i, &pid) in pids.iter().enumerate() {
        for &other in &pids[..i] {
            for (what, name, flag) in [
                (Shared::Files, "its fd table is", "CLONE_FILES"),
                (Shared::Fs, "its cwd, root and umask are", "CLONE_FS"),
                (Shared::Sighand, "its signal handlers are", "CLONE_SIGHAND"),
            ] {
                if sfd::shares(pid, other, what).unwrap_or(false) {
                    return Err(Error::unsupported(
                        pid,
                        format!("{name} shared with pid {other} ({flag})"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// True if `pid` exists and has not exited.
fn alive(pid: i32) -> bool {
    sys::ptrace::pid_exists(pid) && !freeze::is_zombie(pid)
}

/// Checks one process; `None` if it is gone or a zombie (the freeze decides about zombies).
fn precheck_one(
    shape: &TreeShape,
    pid: i32,
    root_st: &procfs::process::Stat,
    skip: &HashMap<i32, i32>,
) -> Result<Option<(Vec<FdEntry>, OwnedFd)>> {
    let Ok(proc_) = procfs::process::Process::new(pid) else {
        return Ok(None);
    };
    let (Ok(st), Ok(status)) = (proc_.stat(), proc_.status()) else {
        return Ok(None);
    };
    if st.state == 'Z' || st.state == 'X' {
        return Ok(None);
    }
    let skip_fds: Vec<i32> = skip.get(&pid).copied().into_iter().collect();
    let table = state::check(&Probe {
        pid,
        stat: &st,
        status: &status,
        root_stat: root_st,
        in_tree: &|x| shape.order.contains(&x),
        skip_fds: &skip_fds,
    })?;
    let pidfd = sfd::pidfd_open(pid).map_err(|e| Error::sys(pid, "pidfd_open", e))?;
    Ok(Some((table, pidfd)))
}

/// Checks and freezes the tree. A final dump needs a settled tree (see
/// [`FrozenTree::unsettled`]): it lets an unsettled tree run a moment and freezes it again.
/// A pre-dump copies memory only and leaves unsettled processes and their subtrees out (the
/// returned set): a later image saves them whole.
pub(super) fn freeze_settled(
    root: i32,
    opts: &DumpOptions,
    session: &Session,
) -> Result<(FrozenTree, HashSet<i32>)> {
    let deadline = Instant::now() + SETTLE_TIME;
    let mut pause = Duration::from_micros(500);
    let mut wait = || {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    loop {
        let shape = freeze::discover(root)?;
        // A process other than the root may change while it is looked at (an fd closed by a
        // child on its way out): look again, up to the deadline.
        match precheck(&shape, root, &session.tracker_fds) {
            Err(e) if e.pid() != Some(root) && Instant::now() < deadline => {
                wait();
                continue;
            }
            r => r?,
        }
        let frozen = FrozenTree::freeze(root)?;
        let unsettled = frozen.unsettled();
        if opts.pre_dump {
            let pids: Vec<i32> = unsettled.iter().map(|u| u.0).collect();
            let left_out = frozen.subtrees(&pids);
            return Ok((frozen, left_out));
        }
        let Some((pid, why)) = unsettled.into_iter().next() else {
            return Ok((frozen, HashSet::new()));
        };
        if Instant::now() >= deadline {
            return Err(Error::unsupported(pid, why));
        }
        frozen.resume()?;
        wait();
    }
}
