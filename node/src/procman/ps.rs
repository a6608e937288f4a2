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

/// Every process of the namespace `ns` except its init, ssid's own helpers (processes
/// running the daemon's executable) and zombies the init is about to reap.
pub fn members(ns: u64) -> Vec<Member> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let ours = std::fs::read_link("/proc/self/exe").ok();
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(root_pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid_ns_inode(root_pid) != Some(ns) {
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
pub fn taken(ns: u64, gpid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        e.file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .is_some_and(|p| pid_ns_inode(p) == Some(ns) && ns_pid(p) == Some(gpid))
    })
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
pub fn view(m: Member, node: NodeId, node_name: &str, ns: u64) -> Option<ProcessView> {
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
    let ppid = if stat.ppid > 0 && pid_ns_inode(stat.ppid) == Some(ns) {
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
