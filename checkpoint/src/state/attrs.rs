//! Process and thread attributes: execution domain (personality), no_new_privs, the dumpable
//! flag, child subreaper, transparent huge pages disabled, membarrier registrations; for each
//! thread its
//! scheduling policy and priority, nice value, CPU affinity, parent-death signal and timer
//! slack.
//!
//! Refused before anything is frozen: seccomp, KSM merging of the whole process
//! (`PR_SET_MEMORY_MERGE`, which only CAP_SYS_RESOURCE may set again), speculation control set
//! by `prctl`, tagged addresses (LAM), an oom_score_adj lower than this node may set. Refused
//! once frozen (only the process can tell): a parent-death signal on the root, whose parent
//! after a restore is the restorer.
//!
//! Restored after the credentials: a change of credentials resets the dumpable flag and the
//! parent-death signal. Scheduling and affinity are set from outside. (oom_score_adj is kept
//! with the limits: it must be set before the credentials.)

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::persist::{Persist, ProcDump, ProcRestore};
use crate::state::limits::oom_score_adj;
use crate::state::Probe;
use crate::sys::sched;

const PR_GET_THP_DISABLE: i32 = 42;
const PR_SET_THP_DISABLE: i32 = 41;
const SCHED_DEADLINE: i32 = 6;
const CAP_SYS_RESOURCE: u32 = 24;
/// `membarrier` command that returns the process' registrations (the `REGISTER` commands it
/// issued, as a mask of their numbers).
const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;

/// Attributes of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    /// `personality(0xffffffff)`.
    pub personality: u32,
    /// `PR_GET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// `PR_GET_DUMPABLE`.
    pub dumpable: i32,
    /// `PR_GET_CHILD_SUBREAPER`.
    pub child_subreaper: bool,
    /// `PR_GET_THP_DISABLE`.
    pub thp_disable: bool,
    /// `membarrier` commands registered (`MEMBARRIER_CMD_REGISTER_*` bits).
    pub membarrier: u64,
}

impl Default for Attrs {
    /// What a fresh process has (a pre-dump saves no attributes).
    fn default() -> Attrs {
        Attrs {
            personality: 0,
            no_new_privs: false,
            dumpable: 1,
            child_subreaper: false,
            thp_disable: false,
            membarrier: 0,
        }
    }
}

/// Attributes of a thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadAttrs {
    /// Scheduling policy (`SCHED_*`, with `SCHED_RESET_ON_FORK`).
    pub policy: i32,
    /// Real-time priority (0 for the other policies).
    pub priority: i32,
    /// Nice value.
    pub nice: i32,
    /// CPU affinity mask, if it leaves out some CPU that was online when dumped.
    pub affinity: Option<Vec<u64>>,
    /// `PR_GET_PDEATHSIG`.
    pub pdeath_signal: i32,
    /// `PR_GET_TIMERSLACK`, in nanoseconds.
    pub timer_slack_ns: u64,
}

/// A line of /proc/PID/status, raw (for fields the procfs crate does not parse).
fn status_field(pid: i32, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// Refuses, before anything is frozen, attributes a restore would not bring back.
pub(crate) fn check(p: &Probe<'_>) -> Result<()> {
    let pid = p.pid;
    let refuse = |what: &str| Err(Error::unsupported(pid, what));
    if p.status.seccomp.unwrap_or(0) != 0 {
        return refuse("the process uses seccomp");
    }
    let ksm = std::fs::read_to_string(format!("/proc/{pid}/ksm_stat")).unwrap_or_default();
    if ksm.lines().any(|l| l.trim() == "ksm_merge_any: yes") {
        return refuse("KSM merges all its memory (PR_SET_MEMORY_MERGE needs CAP_SYS_RESOURCE)");
    }
    for key in ["Speculation_Store_Bypass", "SpeculationIndirectBranch"] {
        if status_field(pid, key).is_some_and(|v| v.contains("thread")) {
            return refuse(&format!("{key} is set by prctl (PR_SET_SPECULATION_CTRL)"));
        }
    }
    if status_field(pid, "untag_mask").is_some_and(|v| v != "0xffffffffffffffff") {
        return refuse("it uses tagged addresses (ARCH_ENABLE_TAGGED_ADDR)");
    }
    let adj = oom_score_adj(pid)?;
    let mine = oom_score_adj(std::process::id() as i32)?;
    if adj < 0 && adj < mine && !has_cap(CAP_SYS_RESOURCE) {
        return refuse(&format!(
            "its oom_score_adj {adj} is below what may be set without CAP_SYS_RESOURCE"
        ));
    }
    Ok(())
}

/// Whether this process has capability `cap` in its effective set.
fn has_cap(cap: u32) -> bool {
    procfs::process::Process::myself()
        .and_then(|p| p.status())
        .is_ok_and(|st| st.capeff & (1 << cap) != 0)
}

fn prctl_get(cx: &mut ProcDump<'_>, what: &str, option: i32) -> Result<u64> {
    cx.par
        .call(what, libc::SYS_prctl, [option as u64, 0, 0, 0, 0, 0])
}

impl Persist for Attrs {
    type Saving<'a> = ProcDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut ProcDump<'_>) -> Result<Attrs> {
        let personality = cx.par.call(
            "personality",
            libc::SYS_personality,
            [0xffff_ffff, 0, 0, 0, 0, 0],
        )? as u32;
        let scratch = cx.par.scratch();
        cx.par.call(
            "prctl PR_GET_CHILD_SUBREAPER",
            libc::SYS_prctl,
            [libc::PR_GET_CHILD_SUBREAPER as u64, scratch, 0, 0, 0, 0],
        )?;
        let subreaper = cx.par.read_scratch(0, 4)?;
        Ok(Attrs {
            personality,
            no_new_privs: prctl_get(cx, "prctl", libc::PR_GET_NO_NEW_PRIVS)? != 0,
            dumpable: prctl_get(cx, "prctl", libc::PR_GET_DUMPABLE)? as i32,
            child_subreaper: subreaper.iter().any(|&b| b != 0),
            thp_disable: prctl_get(cx, "prctl", PR_GET_THP_DISABLE)? != 0,
            membarrier: cx.par.call(
                "membarrier GET_REGISTRATIONS",
                libc::SYS_membarrier,
                [MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0, 0, 0, 0],
            )?,
        })
    }

    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        let h = &mut *cx.h;
        let prctl = |h: &mut crate::restore::holder::Holder, what: &str, op: i32, arg: u64| {
            h.call(what, libc::SYS_prctl, [op as u64, arg, 0, 0, 0, 0])
        };
        h.call(
            "personality",
            libc::SYS_personality,
            [self.personality as u64, 0, 0, 0, 0, 0],
        )?;
        prctl(
            h,
            "prctl dumpable",
            libc::PR_SET_DUMPABLE,
            self.dumpable as u64,
        )?;
        if self.no_new_privs {
            prctl(h, "prctl no_new_privs", libc::PR_SET_NO_NEW_PRIVS, 1)?;
        }
        if self.child_subreaper {
            prctl(h, "prctl child subreaper", libc::PR_SET_CHILD_SUBREAPER, 1)?;
        }
        if self.thp_disable {
            prctl(h, "prctl THP disable", PR_SET_THP_DISABLE, 1)?;
        }
        // each registration is its own command, of one bit
        for bit in (0..64)
            .map(|b| 1u64 << b)
            .filter(|b| self.membarrier & b != 0)
        {
            h.call(
                &format!("membarrier register {bit:#x}"),
                libc::SYS_membarrier,
                [bit, 0, 0, 0, 0, 0],
            )?;
        }
        for t in cx.p.threads.iter() {
            t.attrs.restore(cx, t.tid)?;
        }
        Ok(())
    }
}

impl ThreadAttrs {
    /// Reads the attributes of thread `tid` of the frozen process.
    pub(crate) fn save(cx: &mut ProcDump<'_>, tid: i32) -> Result<ThreadAttrs> {
        let (policy, priority) =
            sched::scheduler(tid).map_err(|e| Error::sys(tid, "sched_getscheduler", e))?;
        if policy & !libc::SCHED_RESET_ON_FORK == SCHED_DEADLINE {
            return Err(Error::unsupported(
                cx.pid,
                format!("thread {tid} runs under SCHED_DEADLINE"),
            ));
        }
        let nice = sched::nice(tid).map_err(|e| Error::sys(tid, "getpriority", e))?;
        let mask = sched::affinity(tid).map_err(|e| Error::sys(tid, "sched_getaffinity", e))?;
        let online = online_cpus();
        let restricted = mask.iter().zip(&online).any(|(m, o)| o & !m != 0);
        let scratch = cx.par.scratch();
        cx.par.call_in(
            tid,
            "prctl PR_GET_PDEATHSIG",
            libc::SYS_prctl,
            [libc::PR_GET_PDEATHSIG as u64, scratch, 0, 0, 0, 0],
        )?;
        let sig = cx.par.read_scratch(0, 4)?;
        let pdeath_signal = i32::from_le_bytes([sig[0], sig[1], sig[2], sig[3]]);
        if pdeath_signal != 0 && cx.is_root {
            return Err(Error::unsupported(
                cx.pid,
                format!(
                    "thread {tid} of the root has a parent-death signal ({pdeath_signal}), \
                     which would follow the restorer instead of its parent"
                ),
            ));
        }
        let timer_slack_ns = cx.par.call_in(
            tid,
            "prctl PR_GET_TIMERSLACK",
            libc::SYS_prctl,
            [libc::PR_GET_TIMERSLACK as u64, 0, 0, 0, 0, 0],
        )?;
        Ok(ThreadAttrs {
            policy,
            priority,
            nice,
            affinity: restricted.then(|| mask.to_vec()),
            pdeath_signal,
            timer_slack_ns,
        })
    }

    /// Sets the attributes of thread `tid`: scheduling from outside, the rest by calls
    /// injected into the thread.
    fn restore(&self, cx: &mut ProcRestore<'_>, tid: i32) -> Result<()> {
        sched::set_scheduler(tid, self.policy, self.priority)
            .map_err(|e| Error::sys(tid, format!("sched_setscheduler {}", self.policy), e))?;
        sched::set_nice(tid, self.nice).map_err(|e| Error::sys(tid, "setpriority", e))?;
        if let Some(mask) = &self.affinity {
            sched::set_affinity(tid, mask).map_err(|e| Error::sys(tid, "sched_setaffinity", e))?;
        }
        let mut th = cx.h.task.thread(tid)?;
        th.call(
            "prctl PR_SET_PDEATHSIG",
            libc::SYS_prctl,
            [
                libc::PR_SET_PDEATHSIG as u64,
                self.pdeath_signal as u64,
                0,
                0,
                0,
                0,
            ],
        )?;
        th.call(
            "prctl PR_SET_TIMERSLACK",
            libc::SYS_prctl,
            [
                libc::PR_SET_TIMERSLACK as u64,
                self.timer_slack_ns,
                0,
                0,
                0,
                0,
            ],
        )?;
        Ok(())
    }
}

/// The CPUs online now, as an affinity mask.
fn online_cpus() -> [u64; sched::MASK_WORDS] {
    let mut mask = [0u64; sched::MASK_WORDS];
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) else {
            continue;
        };
        for cpu in a..=b.min(sched::MASK_WORDS * 64 - 1) {
            mask[cpu / 64] |= 1 << (cpu % 64);
        }
    }
    mask
}
