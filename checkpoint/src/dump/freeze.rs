//! Finding and freezing a process tree.
//!
//! Every thread is seized with `PTRACE_SEIZE` and stopped with `PTRACE_INTERRUPT`. A process can
//! fork or start a thread while the others are being stopped, so the tree and its threads are
//! listed again until a pass finds nothing new: a stopped thread creates nothing, so once every
//! listed thread is stopped the set cannot grow.
//!
//! A signal that was about to be delivered when a thread was stopped shows up as a
//! signal-delivery stop before the interrupt stop; it is taken out (suppressed) and its siginfo
//! kept, to be queued again on resume or saved as pending in the image.
//!
//! A tree that runs changes under the dumper: a child may have exited and wait to be reaped (a
//! zombie cannot be seized: the freeze lists it apart, a dump saves how it ended), or a `vfork`
//! child may share its parent's address space until it execs, a short state that
//! [`FrozenTree::unsettled`] names so that the caller can let the tree run a moment and try
//! again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::marker::PhantomData;

use crate::error::{Error, Result};
use crate::sys::ptrace;

/// The processes of a tree, parents before children.
#[derive(Debug, Clone)]
pub(crate) struct TreeShape {
    /// Pids, parents first (breadth-first from the root).
    pub order: Vec<i32>,
    /// Parent of each pid (the root maps to its real parent).
    pub parent: HashMap<i32, i32>,
}

/// Lists the tree under `root`: each thread's `/proc/PID/task/TID/children` names the
/// children it forked, so only the tree's own /proc entries are read (a scan of every
/// process' stat could block behind a process elsewhere stuck in the kernel). Kernels built
/// without that file (`CONFIG_PROC_CHILDREN`) fall back to a scan of /proc.
pub(crate) fn discover(root: i32) -> Result<TreeShape> {
    let root_parent = ppid(root)?;
    let mut order = vec![root];
    let mut parent = HashMap::from([(root, root_parent)]);
    let mut i = 0;
    while i < order.len() {
        let pid = order[i];
        i += 1;
        let Some(mut kids) = children(pid)? else {
            return discover_by_scan(root);
        };
        kids.sort_unstable();
        for k in kids {
            if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(k) {
                e.insert(pid);
                order.push(k);
            }
        }
    }
    Ok(TreeShape { order, parent })
}

/// The parent of `pid` (from its own stat), or ESRCH if it is gone.
fn ppid(pid: i32) -> Result<i32> {
    let gone = |_| {
        Error::sys(
            pid,
            "find process",
            std::io::Error::from_raw_os_error(libc::ESRCH),
        )
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(gone)?;
    // the fields after the command name (in parentheses, any byte): state, ppid
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            let bad = std::io::Error::new(std::io::ErrorKind::InvalidData, "no parent pid");
            Error::io(format!("/proc/{pid}/stat"), bad)
        })
}

/// Children of process `pid`, forked by any of its threads; `None` if the kernel has no
/// `children` file. A process or thread that exited meanwhile has none.
fn children(pid: i32) -> Result<Option<Vec<i32>>> {
    let Ok(tids) = threads(pid) else {
        return Ok(Some(Vec::new()));
    };
    let mut out = Vec::new();
    for tid in tids {
        let path = format!("/proc/{pid}/task/{tid}/children");
        match std::fs::read_to_string(&path) {
            Ok(s) => out.extend(s.split_whitespace().filter_map(|w| w.parse::<i32>().ok())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // no such file on this kernel, or the thread is gone: tell them apart
                if std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists() {
                    return Ok(None);
                }
            }
            Err(_) => {} // exited meanwhile
        }
    }
    Ok(Some(out))
}

/// Lists the tree under `root` from the stat of every process (kernels without
/// `/proc/PID/task/TID/children`).
fn discover_by_scan(root: i32) -> Result<TreeShape> {
    let all = procfs::process::all_processes().map_err(|e| Error::procfs("/proc", e))?;
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let mut parent = HashMap::new();
    for p in all.flatten() {
        if let Ok(st) = p.stat() {
            children.entry(st.ppid).or_default().push(st.pid);
            parent.insert(st.pid, st.ppid);
        }
    }
    if !parent.contains_key(&root) {
        return Err(Error::sys(
            root,
            "find process",
            std::io::Error::from_raw_os_error(libc::ESRCH),
        ));
    }
    let mut order = vec![root];
    let mut i = 0;
    while i < order.len() {
        let mut kids = children.get(&order[i]).cloned().unwrap_or_default();
        kids.sort_unstable();
        order.extend(kids);
        i += 1;
    }
    let parent = order.iter().map(|p| (*p, parent[p])).collect();
    Ok(TreeShape { order, parent })
}

/// True if `pid` has exited and waits to be reaped (or is being reaped).
pub(crate) fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // the state follows the command name, which is in parentheses and may hold any byte
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    matches!(state, Some('Z' | 'X'))
}

/// Thread ids of process `pid`, main thread first.
pub(crate) fn threads(pid: i32) -> Result<Vec<i32>> {
    let dir = format!("/proc/{pid}/task");
    let mut tids: Vec<i32> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    tids.sort_unstable_by_key(|&t| (t != pid, t));
    Ok(tids)
}

/// A tree whose every thread is stopped under ptrace by the calling thread.
///
/// ptrace ties a tracee to the thread that seized it, so this value must stay on that thread
/// (it is neither `Send` nor `Sync`). Dropping it resumes the tree.
#[derive(Debug)]
pub struct FrozenTree {
    pub(crate) shape: TreeShape,
    pub(crate) threads: BTreeMap<i32, Vec<i32>>,
    /// Signals taken out while stopping, by tid.
    pub(crate) taken: HashMap<i32, Vec<Vec<u8>>>,
    /// Processes found stopped by job control, with the signal that stopped them.
    pub(crate) stopped: HashMap<i32, i32>,
    /// Children found exited but not reaped yet (not seized, not in `shape`).
    pub(crate) zombies: Vec<i32>,
    released: bool,
    _not_send: PhantomData<*const ()>,
}

impl FrozenTree {
    /// Seizes and stops every thread of the tree under `root`.
    pub(crate) fn freeze(root: i32) -> Result<FrozenTree> {
        let mut t = FrozenTree {
            shape: TreeShape {
                order: vec![],
                parent: HashMap::new(),
            },
            threads: BTreeMap::new(),
            taken: HashMap::new(),
            stopped: HashMap::new(),
            zombies: Vec::new(),
            released: false,
            _not_send: PhantomData,
        };
        let mut seized: HashSet<i32> = HashSet::new();
        loop {
            let shape = discover(root)?;
            let mut new = false;
            t.zombies.clear();
            for &pid in &shape.order {
                if pid != root && !t.threads.contains_key(&pid) && is_zombie(pid) {
                    t.zombies.push(pid);
                    continue;
                }
                let tids = match threads(pid) {
                    Ok(t) => t,
                    Err(_) if pid != root => {
                        // exited meanwhile: look again, it may wait as a zombie
                        new = true;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                for tid in tids {
                    if seized.contains(&tid) {
                        continue;
                    }
                    match ptrace::seize_and_stop(
                        tid,
                        nix::sys::ptrace::Options::PTRACE_O_TRACESYSGOOD,
                    ) {
                        Ok(got) => {
                            seized.insert(tid);
                            t.threads.entry(pid).or_default().push(tid);
                            if !got.taken.is_empty() {
                                t.taken.insert(tid, got.taken);
                            }
                            if let Some(sig) = got.stopped_by {
                                t.stopped.insert(pid, sig);
                            }
                            new = true;
                        }
                        // it exited meanwhile: look again, it may wait as a zombie
                        Err(e)
                            if e.raw_os_error() == Some(libc::ESRCH)
                                || e.kind() == std::io::ErrorKind::NotFound =>
                        {
                            new = true
                        }
                        // it exited between the check and the seize
                        Err(e) if e.raw_os_error() == Some(libc::EPERM) && is_zombie(pid) => {
                            if tid == pid && pid != root {
                                t.zombies.push(pid);
                            }
                        }
                        Err(e) => return Err(Error::sys(tid, "seize thread", e)),
                    }
                }
            }
            t.shape = shape;
            if !new {
                break;
            }
        }
        // keep only live processes, threads in main-first order
        t.threads.retain(|pid, _| t.shape.order.contains(pid));
        for (pid, tids) in t.threads.iter_mut() {
            tids.sort_unstable_by_key(|&x| (x != *pid, x));
        }
        t.shape.order.retain(|p| t.threads.contains_key(p));
        Ok(t)
    }

    /// Pids of the tree, parents first.
    pub fn pids(&self) -> &[i32] {
        &self.shape.order
    }

    /// Processes caught in a short-lived state that a dump cannot keep, with the reason:
    /// processes sharing their parent's address space (a `vfork` child before its `exec`).
    pub(crate) fn unsettled(&self) -> Vec<(i32, String)> {
        let mut out = Vec::new();
        for &pid in self.shape.order.iter().skip(1) {
            let Some(&parent) = self.shape.parent.get(&pid) else {
                continue;
            };
            if crate::sys::fd::same_mm(pid, parent).unwrap_or(false) {
                out.push((
                    pid,
                    format!("shares its address space with pid {parent} (vfork or CLONE_VM)"),
                ));
            }
        }
        out
    }

    /// `pids` and all their descendants in the tree.
    pub(crate) fn subtrees(&self, pids: &[i32]) -> HashSet<i32> {
        let mut out: HashSet<i32> = pids.iter().copied().collect();
        // parents come first in `order`, so one pass finds every descendant
        for &p in &self.shape.order {
            if self.shape.parent.get(&p).is_some_and(|pp| out.contains(pp)) {
                out.insert(p);
            }
        }
        out
    }

    /// Lets the tree run again (signals taken while freezing are queued again).
    pub fn resume(mut self) -> Result<()> {
        self.release(false)
    }

    /// Kills every process of the tree.
    pub fn kill(mut self) -> Result<()> {
        self.release(true)
    }

    fn release(&mut self, kill: bool) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let mut first_err = None;
        for (&pid, tids) in &self.threads {
            if kill {
                ptrace::kill9(pid);
                continue;
            }
            for &tid in tids {
                if let Some(sigs) = self.taken.get(&tid) {
                    if let Err(e) = crate::state::signals::requeue(tid, pid, sigs) {
                        first_err.get_or_insert(e);
                    }
                }
                if let Err(e) = ptrace::detach(tid) {
                    first_err.get_or_insert(Error::sys(tid, "detach", e));
                }
            }
        }
        if kill {
            // A traced thread that dies stays a zombie until its tracer waits for it, and a
            // thread-group leader is reported only after its other threads: reap those first.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            for tids in self.threads.values() {
                for &tid in tids.iter().rev() {
                    ptrace::reap_traced(tid, deadline);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for FrozenTree {
    fn drop(&mut self) {
        let _ = self.release(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn children_files_find_the_tree_a_scan_of_proc_finds() {
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & sh -c 'sleep 30 & wait' & wait"])
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let pid = sh.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut found = discover(pid).expect("discover");
        while found.order.len() < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            found = discover(pid).expect("discover");
        }
        let scanned = discover_by_scan(pid).expect("scan");
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = sh.wait();
        assert_eq!(found.order.len(), 5, "{:?}", found.order);
        assert_eq!(found.order, scanned.order);
        assert_eq!(found.parent, scanned.parent);
    }
}
