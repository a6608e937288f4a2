//! Listing the processes of the node's pid namespace from /proc (in the root namespace).

use procfs::process::Process;
use ssi_core::process::{ProcState, ProcessView};
use ssi_core::NodeId;

/// The inode of a process's pid namespace (from its /proc/PID/ns/pid link).
pub fn pid_ns_inode(pid: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    let text = link.to_string_lossy();
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// A process of the namespace: its pid in the root namespace and its global pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Pid as seen from the root namespace (for /proc).
    pub root_pid: i32,
    /// Pid inside the node's namespace: the global pid.
    pub gpid: i32,
}

/// A node's pid namespace: its inode and its init's pid in the root namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ns {
    /// Inode of the namespace (its /proc/PID/ns/pid link).
    pub inode: u64,
    /// Pid of its init as seen from the root namespace.
    pub init: i32,
}

/// Pids (root namespace) of every descendant of `init`, zombies included, from the
/// `children` files of each thread. Only the namespace's own processes are looked at: a
/// process elsewhere on the machine whose /proc files block (one stuck in `execve` under a
/// tracer) cannot stall the daemon.
fn descendants(init: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![init];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let path = t.path().join("children");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for child in text
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                if !out.contains(&child) {
                    out.push(child);
                    todo.push(child);
                }
            }
        }
    }
    out
}

/// Every process of the namespace `ns` except its init, ssid's own helpers (processes
/// running the daemon's executable) and zombies the init is about to reap.
pub fn members(ns: Ns) -> Vec<Member> {
    let ours = std::fs::read_link("/proc/self/exe").ok();
    let mut out = Vec::new();
    for root_pid in descendants(ns.init) {
        // A process that made a pid namespace of its own has its children there.
        if pid_ns_inode(root_pid) != Some(ns.inode) {
            continue;
        }
        match std::fs::read_link(format!("/proc/{root_pid}/exe")) {
            Ok(exe) if Some(&exe) == ours.as_ref() => continue,
            Ok(_) => {}
            // No executable: a zombie. One left to the init is being reaped (an ended helper
            // or program whose end is on its way); it is no process of the user any more.
            Err(_) if reaped_by_init(root_pid) => continue,
            Err(_) => {}
        }
        if let Some(gpid) = ns_pid(root_pid) {
            if gpid != 1 {
                out.push(Member { root_pid, gpid });
            }
        }
    }
    out
}

/// Whether pid `gpid` of the namespace `ns` is taken, by anything (a zombie or a helper too).
pub fn taken(ns: Ns, gpid: i32) -> bool {
    descendants(ns.init)
        .into_iter()
        .any(|p| pid_ns_inode(p) == Some(ns.inode) && ns_pid(p) == Some(gpid))
}

/// Whether `root_pid` is a zombie whose parent is the namespace's init.
fn reaped_by_init(root_pid: i32) -> bool {
    Process::new(root_pid)
        .and_then(|p| p.stat())
        .is_ok_and(|st| st.state == 'Z' && ns_pid(st.ppid) == Some(1))
}

/// The innermost pid of `root_pid` (last entry of NSpid in /proc/PID/status).
fn ns_pid(root_pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{root_pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// What `ssi ps` shows of one member; `None` if it vanished meanwhile.
pub fn view(m: Member, node: NodeId, node_name: &str, ns: Ns) -> Option<ProcessView> {
    let p = Process::new(m.root_pid).ok()?;
    let stat = p.stat().ok()?;
    let status = p.status().ok()?;
    let tps = procfs::ticks_per_second() as f64;
    let boot = procfs::boot_time_secs().ok()? as f64;
    let now = ssi_core::auth::unix_ms() as f64 / 1000.0;
    let started = boot + stat.starttime as f64 / tps;
    let cpu_s = (stat.utime + stat.stime) as f64 / tps;
    let elapsed = (now - started).max(0.001);
    let uid = status.ruid;
    let user = user_name(uid);
    let command = p
        .cmdline()
        .ok()
        .filter(|c| !c.is_empty())
        .map(|c| c.join(" "))
        .unwrap_or_else(|| format!("[{}]", stat.comm));
    // The parent's global pid, when the parent is in the namespace too (not its init).
    let ppid = if stat.ppid > 0 && pid_ns_inode(stat.ppid) == Some(ns.inode) {
        ns_pid(stat.ppid).filter(|&p| p != 1).unwrap_or(0)
    } else {
        0
    };
    Some(ProcessView {
        gpid: m.gpid,
        ppid,
        node,
        node_name: node_name.to_string(),
        state: ProcState::from_letter(stat.state),
        user,
        uid,
        cpu_percent: (cpu_s / elapsed * 1000.0).round() / 10.0,
        rss_bytes: stat.rss * procfs::page_size(),
        start_time: started as u64,
        threads: u32::try_from(stat.num_threads).unwrap_or(0),
        command,
        to: None,
        ft: None,
    })
}

/// `root` and the processes of `all` under it (by their parents' gpids), if `root` is there.
pub fn tree(all: &[ProcessView], root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if all.iter().any(|p| p.gpid == root) {
        out.push(root);
    }
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            all.iter()
                .filter(|p| p.ppid == parent && p.gpid != parent)
                .map(|p| p.gpid),
        );
        i += 1;
    }
    out
}

/// The name of user `uid` on this node, or the number when it has none.
pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

/// Threads of `root_pid` running or waiting for a CPU.
pub fn running_threads(root_pid: i32) -> u32 {
    let Ok(tasks) = Process::new(root_pid).and_then(|p| p.tasks()) else {
        return 0;
    };
    let n = tasks
        .flatten()
        .filter(|t| t.stat().is_ok_and(|s| s.state == 'R'))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The processes of the tree of `gpid` in namespace `ns`: `gpid` first, then its descendants.
/// `None` when `gpid` is not a process of the namespace.
pub fn tree_members(ns: Ns, gpid: i32) -> Option<Vec<Member>> {
    let all = members(ns);
    let root = *all.iter().find(|m| m.gpid == gpid)?;
    let parent: Vec<(Member, i32)> = all
        .iter()
        .filter_map(|m| Some((*m, Process::new(m.root_pid).ok()?.stat().ok()?.ppid)))
        .collect();
    let mut out = vec![root];
    let mut next = 0;
    while next < out.len() {
        let at = out[next].root_pid;
        out.extend(parent.iter().filter(|(_, pp)| *pp == at).map(|(m, _)| *m));
        next += 1;
    }
    Some(out)
}

/// Whether user `uid` with group `gid` may act on process `m` as the kernel lets a tracer act
/// on a process of its own (`PTRACE_MODE_ATTACH_REALCREDS`): its real, effective and saved
/// user ids must all be `uid`, its group ids all `gid`, and it must be dumpable. The refusal
/// names the process and what failed.
pub fn may_act_on(m: Member, uid: u32, gid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let gone = || format!("process {} has just ended", m.gpid);
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", m.root_pid)).map_err(|_| gone())?;
    // The kernel makes root the owner of /proc/PID of a process that is not dumpable (one that
    // changed ids, ran a setuid program, or asked with PR_SET_DUMPABLE).
    let dir = std::fs::metadata(format!("/proc/{}", m.root_pid)).map_err(|_| gone())?;
    judge(m.gpid, &status, (dir.uid(), dir.gid()), uid, gid)
}

/// [`may_act_on`] on the text of /proc/PID/status and the owner of /proc/PID.
fn judge(gpid: i32, status: &str, owner: (u32, u32), uid: u32, gid: u32) -> Result<(), String> {
    let ids = |key: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (uids, gids) = (ids("Uid:"), ids("Gid:"));
    let all = |v: &[u32], want: u32| v.len() >= 3 && v[..3].iter().all(|&x| x == want);
    if !all(&uids, uid) {
        return Err(format!(
            "process {gpid} runs with user ids {uids:?} (real, effective, saved, fs), not all \
             yours ({uid}): permission denied"
        ));
    }
    if !all(&gids, gid) {
        return Err(format!(
            "process {gpid} runs with group ids {gids:?} (real, effective, saved, fs), not all \
             your group ({gid}): permission denied"
        ));
    }
    if owner != (uid, gid) {
        return Err(format!(
            "process {gpid} is not dumpable (it changed ids, ran a set-id program or asked not \
             to be): permission denied"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINE: &str = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\n";

    #[test]
    fn a_process_with_all_the_callers_ids_that_is_dumpable_is_allowed() {
        assert_eq!(judge(7, MINE, (1000, 100), 1000, 100), Ok(()));
    }

    #[test]
    fn any_other_id_or_no_dumpable_flag_is_refused_naming_the_process() {
        let setuid = "Uid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n";
        let e = judge(7, setuid, (0, 0), 1000, 100).unwrap_err();
        assert!(e.contains("process 7") && e.contains("user ids"), "{e}");
        let setgid = "Uid:\t1000\t1000\t1000\t1000\nGid:\t100\t42\t42\t42\n";
        assert!(judge(7, setgid, (1000, 42), 1000, 100)
            .unwrap_err()
            .contains("group ids"));
        let e = judge(7, MINE, (0, 0), 1000, 100).unwrap_err();
        assert!(e.contains("not dumpable"), "{e}");
        assert!(judge(7, "Name:\tx\n", (1000, 100), 1000, 100).is_err());
        assert!(judge(7, MINE, (1000, 100), 1001, 100).is_err());
    }
}
