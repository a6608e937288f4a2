//! The shape of the tree: each process' parent, process group and session, and the children
//! that had exited but were not reaped yet (zombies).
//!
//! Processes themselves are created by the restore driver (with their pids, in their parents);
//! this part refuses groups and sessions led from outside the tree, puts every process back in
//! its group and session (leaders first), and brings zombies back.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::ProcessImage;
use crate::persist::Persist;
use crate::restore::holder::Holder;
use crate::sys::ptrace;

/// A process of the tree that has exited and waits for its parent to reap it. Restore creates
/// it as a child of its parent and makes it end the same way, so that the parent's `wait`
/// finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZombieImage {
    /// Its pid.
    pub pid: i32,
    /// Its parent (a process of the image).
    pub ppid: i32,
    /// Its process group.
    pub pgid: i32,
    /// Its session.
    pub sid: i32,
    /// Signal its parent gets when it ends.
    pub exit_signal: i32,
    /// How it ended, as `waitpid` reports it (exit code << 8, or the signal number).
    pub status: i32,
}

/// /proc/PID/stat.
pub(crate) fn stat(pid: i32) -> Result<procfs::process::Stat> {
    procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .map_err(|e| Error::procfs(format!("/proc/{pid}/stat"), e))
}

/// Namespaces a process of the tree must share with its root: a restore puts the whole tree
/// in the restorer's.
const NAMESPACES: [&str; 10] = [
    "mnt",
    "net",
    "ipc",
    "uts",
    "user",
    "cgroup",
    "pid",
    "pid_for_children",
    "time",
    "time_for_children",
];

/// Refuses a process that is traced, in other namespaces than the root, or in a group or
/// session led from outside the tree (other than the root's).
pub(crate) fn check(p: &crate::state::Probe<'_>) -> Result<()> {
    let (pid, st, root_st) = (p.pid, p.stat, p.root_stat);
    let in_tree = p.in_tree;
    if p.status.tracerpid != 0 {
        return Err(Error::unsupported(
            pid,
            format!("it is traced by pid {}", p.status.tracerpid),
        ));
    }
    let root = root_st.pid;
    // cgroup paths are read and written as the dumper and restorer see them
    if pid == root {
        let link = |of: &str| std::fs::read_link(format!("/proc/{of}/ns/cgroup")).ok();
        let (mine, dumper) = (link(&pid.to_string()), link("self"));
        if mine.is_some() && dumper.is_some() && mine != dumper {
            return Err(Error::unsupported(
                pid,
                "it is in another cgroup namespace than the dumper",
            ));
        }
    }
    for ns in NAMESPACES {
        let link = |of: i32| std::fs::read_link(format!("/proc/{of}/ns/{ns}")).ok();
        let (mine, roots) = (link(pid), link(root));
        if mine.is_some() && roots.is_some() && mine != roots {
            return Err(Error::unsupported(
                pid,
                format!("it is in another {ns} namespace than the root of the tree"),
            ));
        }
    }
    if !in_tree(st.session) && st.session != root_st.session {
        return Err(Error::unsupported(
            pid,
            format!("session {} is led from outside the tree", st.session),
        ));
    }
    // a restore creates every process in the root's session and only then makes sessions: a
    // process can lead one, but not join one of another process
    if st.session != root_st.session && st.session != pid {
        return Err(Error::unsupported(
            pid,
            format!(
                "it is in session {} of another process of the tree (not restored yet)",
                st.session
            ),
        ));
    }
    if !in_tree(st.pgrp) && st.pgrp != root_st.pgrp {
        return Err(Error::unsupported(
            pid,
            format!("process group {} is led from outside the tree", st.pgrp),
        ));
    }
    Ok(())
}

/// What saving a zombie needs: its pid and the processes of the tree.
pub(crate) struct ZombieDump<'a> {
    /// The zombie.
    pub pid: i32,
    /// The frozen processes of the tree.
    pub tree: &'a [i32],
    /// The zombies of the tree.
    pub zombies: &'a [i32],
}

/// What restoring a zombie needs: its parent, held, and the group and session to give it.
pub(crate) struct ZombieRestore<'a> {
    /// Its parent.
    pub parent: &'a mut Holder,
    /// Its process group and session in the restored tree.
    pub pgid_sid: (i32, i32),
}

impl Persist for ZombieImage {
    type Saving<'a> = ZombieDump<'a>;
    type Restoring<'a> = ZombieRestore<'a>;
    type Made = ();

    fn save(cx: &mut ZombieDump<'_>) -> Result<ZombieImage> {
        let pid = cx.pid;
        let st = stat(pid)?;
        if !cx.tree.contains(&st.ppid) {
            return Err(Error::unsupported(
                pid,
                format!("zombie of parent {}, which is outside the tree", st.ppid),
            ));
        }
        // a group or session whose leader is in neither the tree nor the root's (the root
        // comes first in `tree`) could not be made again
        let root = stat(cx.tree[0])?;
        let led = |id: i32| cx.tree.contains(&id) || cx.zombies.contains(&id);
        if !led(st.pgrp) && st.pgrp != root.pgrp {
            return Err(Error::unsupported(
                pid,
                format!(
                    "zombie in process group {}, whose leader is not in the tree",
                    st.pgrp
                ),
            ));
        }
        if !led(st.session) && st.session != root.session {
            return Err(Error::unsupported(
                pid,
                format!(
                    "zombie in session {}, whose leader is not in the tree",
                    st.session
                ),
            ));
        }
        Ok(ZombieImage {
            pid,
            ppid: st.ppid,
            pgid: st.pgrp,
            sid: st.session,
            exit_signal: st.exit_signal.unwrap_or(libc::SIGCHLD),
            status: st.exit_code.unwrap_or(0),
        })
    }

    /// Creates the zombie as a child of its parent and makes it end with its wait status.
    fn restore(&self, cx: &mut ZombieRestore<'_>) -> Result<()> {
        let mut h = cx.parent.fork(self.pid, self.exit_signal)?;
        // a copy of its parent: the scratch area is there too
        h.task.set_scratch(cx.parent.scratch_at().ok());
        h.set_identity(cx.pgid_sid.0, cx.pgid_sid.1)?;
        let sig = self.status & 0x7f;
        if sig == 0 {
            let code = ((self.status >> 8) & 0xff) as u64;
            return ptrace::end_by_exit(h.task.injector(), code)
                .map_err(|e| Error::sys(self.pid, "exit", e));
        }
        // death by a signal: its default action (SIGKILL's cannot be changed), unblocked,
        // without a core dump
        if sig != libc::SIGKILL {
            h.put(0, &[0u8; 32])?;
            let at = h.scratch_at()?;
            h.call(
                "rt_sigaction SIG_DFL",
                libc::SYS_rt_sigaction,
                [sig as u64, at, 0, 8, 0, 0],
            )?;
        }
        crate::sys::fd::set_rlimit(self.pid, libc::RLIMIT_CORE, 0, 0)
            .map_err(|e| Error::sys(self.pid, "set RLIMIT_CORE", e))?;
        ptrace::end_by_signal(self.pid, sig)
            .map_err(|e| Error::sys(self.pid, format!("end by signal {sig}"), e))
    }
}

/// Groups and sessions of the restored tree: those led in the tree, else the root's (they
/// were led from outside the tree, as the root's are).
pub(crate) struct Groups {
    in_tree: HashSet<i32>,
    root: (i32, i32),
}

impl Groups {
    /// For a tree of `pids` and `zombies` whose root is now in group and session `root`.
    pub fn new(pids: &[i32], zombies: &[ZombieImage], root: (i32, i32)) -> Groups {
        Groups {
            in_tree: pids
                .iter()
                .chain(zombies.iter().map(|z| &z.pid))
                .copied()
                .collect(),
            root,
        }
    }

    /// The group and session to give a process that had `pgid` and `sid`.
    pub fn want(&self, pgid: i32, sid: i32) -> (i32, i32) {
        let pick = |id: i32, root: i32| if self.in_tree.contains(&id) { id } else { root };
        (pick(pgid, self.root.0), pick(sid, self.root.1))
    }

    /// Puts every process but the root in its group and session: leaders first, then the
    /// members of groups led by others.
    pub fn restore(
        &self,
        procs: &[ProcessImage],
        root: i32,
        holders: &mut BTreeMap<i32, Holder>,
    ) -> Result<()> {
        for leaders in [true, false] {
            for p in procs.iter().filter(|p| p.pid != root) {
                let (pgid, sid) = self.want(p.pgid, p.sid);
                if (pgid == p.pid || sid == p.pid) != leaders {
                    continue;
                }
                let h = holders
                    .get_mut(&p.pid)
                    .ok_or_else(|| Error::Conflict(format!("pid {}: not held", p.pid)))?;
                h.set_identity(pgid, sid)?;
            }
        }
        Ok(())
    }
}
