//! State only the process itself can report, read by injecting system calls into its stopped
//! threads (see `sys::ptrace`), and state read from outside (registers, masks, rseq).

use crate::error::{Error, Result};
use crate::image::{Creds, SigAction, ThreadImage};
use crate::sys::{mem, ptrace};

const SCRATCH_LEN: u64 = 64 * 1024;
const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;

/// An injection session on one stopped process: a scratch page mapped in it, all signals of the
/// injected thread blocked while it lasts.
#[derive(Debug)]
pub(crate) struct Parasite {
    pub pid: i32,
    pub syscall_at: u64,
    pub scratch: u64,
    inj: Option<ptrace::Injector>,
    mask: u64,
}

impl Parasite {
    /// Starts injecting into the main thread of `pid`; `syscall_at` is a `syscall` instruction
    /// in its vDSO.
    pub fn start(pid: i32, syscall_at: u64) -> Result<Parasite> {
        let mask = ptrace::get_sigmask(pid).map_err(|e| Error::sys(pid, "read signal mask", e))?;
        ptrace::set_sigmask(pid, u64::MAX).map_err(|e| Error::sys(pid, "block signals", e))?;
        let inj = ptrace::Injector::new(pid, syscall_at)
            .map_err(|e| Error::sys(pid, "read registers", e))?;
        let mut p = Parasite {
            pid,
            syscall_at,
            scratch: 0,
            inj: Some(inj),
            mask,
        };
        p.scratch = p.call(
            "map scratch page",
            libc::SYS_mmap,
            [
                0,
                SCRATCH_LEN,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?;
        Ok(p)
    }

    /// Runs a system call in the main thread.
    pub fn call(&mut self, what: &str, nr: i64, args: [u64; 6]) -> Result<u64> {
        let pid = self.pid;
        let inj = self
            .inj
            .as_mut()
            .ok_or_else(|| Error::Conflict(format!("pid {pid}: injector closed")))?;
        inj.call(nr, args)
            .map_err(|e| Error::sys(pid, format!("injected {what}"), e))
    }

    /// Runs a system call in another thread `tid` of the process.
    pub fn call_in(&self, tid: i32, what: &str, nr: i64, args: [u64; 6]) -> Result<u64> {
        if tid == self.pid {
            return Err(Error::Conflict(format!(
                "pid {tid}: call_in on the main thread"
            )));
        }
        let mask = ptrace::get_sigmask(tid).map_err(|e| Error::sys(tid, "read signal mask", e))?;
        ptrace::set_sigmask(tid, u64::MAX).map_err(|e| Error::sys(tid, "block signals", e))?;
        let mut inj = ptrace::Injector::new(tid, self.syscall_at)
            .map_err(|e| Error::sys(tid, "read registers", e))?;
        let r = inj
            .call(nr, args)
            .map_err(|e| Error::sys(tid, format!("injected {what}"), e));
        inj.finish()
            .map_err(|e| Error::sys(tid, "restore registers", e))?;
        ptrace::set_sigmask(tid, mask).map_err(|e| Error::sys(tid, "restore signal mask", e))?;
        r
    }

    /// Reads `len` bytes of the scratch area at `off`.
    pub fn read_scratch(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let n = mem::read_remote(self.pid, &mut buf, &[(self.scratch + off, len)])
            .map_err(|e| Error::sys(self.pid, "read scratch page", e))?;
        if n != len {
            return Err(Error::Conflict(format!(
                "pid {}: short read of scratch page",
                self.pid
            )));
        }
        Ok(buf)
    }

    /// Removes the scratch page and puts registers and signal mask back.
    pub fn finish(mut self) -> Result<()> {
        let (pid, scratch) = (self.pid, self.scratch);
        self.call(
            "unmap scratch page",
            libc::SYS_munmap,
            [scratch, SCRATCH_LEN, 0, 0, 0, 0],
        )?;
        if let Some(inj) = self.inj.take() {
            inj.finish()
                .map_err(|e| Error::sys(pid, "restore registers", e))?;
        }
        ptrace::set_sigmask(pid, self.mask).map_err(|e| Error::sys(pid, "restore signal mask", e))
    }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Dispositions of signals 1..=64.
pub(crate) fn sigactions(p: &mut Parasite) -> Result<Vec<SigAction>> {
    let mut out = Vec::with_capacity(64);
    for sig in 1..=64u64 {
        if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
            out.push(SigAction {
                handler: 0,
                flags: 0,
                restorer: 0,
                mask: 0,
            });
            continue;
        }
        p.call(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            [sig, 0, p.scratch, 8, 0, 0],
        )?;
        let b = p.read_scratch(0, 32)?;
        out.push(SigAction {
            handler: u64_at(&b, 0),
            flags: u64_at(&b, 8),
            restorer: u64_at(&b, 16),
            mask: u64_at(&b, 24),
        });
    }
    Ok(out)
}

/// The three interval timers as `(interval, value)` in microseconds.
pub(crate) fn itimers(p: &mut Parasite) -> Result<[(u64, u64); 3]> {
    let mut out = [(0, 0); 3];
    for (which, slot) in out.iter_mut().enumerate() {
        p.call(
            "getitimer",
            libc::SYS_getitimer,
            [which as u64, p.scratch, 0, 0, 0, 0],
        )?;
        let b = p.read_scratch(0, 32)?;
        let us = |o| u64_at(&b, o) * 1_000_000 + u64_at(&b, o + 8);
        *slot = (us(0), us(16));
    }
    Ok(out)
}

/// `(resource, soft, hard)` of every rlimit, read from inside (prlimit on a process of another
/// user needs CAP_SYS_RESOURCE, which root lacks here).
pub(crate) fn rlimits(p: &mut Parasite) -> Result<Vec<(u32, u64, u64)>> {
    let mut out = Vec::new();
    for r in 0..16u64 {
        p.call("prlimit64", libc::SYS_prlimit64, [0, r, 0, p.scratch, 0, 0])?;
        let b = p.read_scratch(0, 16)?;
        out.push((r as u32, u64_at(&b, 0), u64_at(&b, 8)));
    }
    Ok(out)
}

/// Everything about one thread. `p` injects into the process; `tid` must be stopped.
pub(crate) fn thread(p: &mut Parasite, tid: i32, taken: &[Vec<u8>]) -> Result<ThreadImage> {
    let pid = p.pid;
    let mut regs = if tid == pid {
        // the injector saved the main thread's registers before using them
        p.inj
            .as_ref()
            .map(|i| *i.saved_regs())
            .ok_or_else(|| Error::Conflict(format!("pid {pid}: injector closed")))?
    } else {
        ptrace::getregs(tid).map_err(|e| Error::sys(tid, "read registers", e))?
    };
    let sigmask = if tid == pid {
        p.mask
    } else {
        ptrace::get_sigmask(tid).map_err(|e| Error::sys(tid, "read signal mask", e))?
    };
    // A thread stopped inside an interrupted system call: make it issue the call again.
    if (regs.orig_rax as i64) >= 0 {
        match regs.rax as i64 {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND | ERESTART_RESTARTBLOCK => {
                regs.rax = regs.orig_rax;
                regs.rip -= 2;
            }
            _ => {}
        }
    }
    regs.orig_rax = u64::MAX;
    let xstate = ptrace::get_xstate(tid).map_err(|e| Error::sys(tid, "read xstate", e))?;
    let rseq = ptrace::get_rseq(tid).map_err(|e| Error::sys(tid, "read rseq configuration", e))?;
    let robust_list =
        ptrace::get_robust_list(tid).map_err(|e| Error::sys(tid, "read robust list", e))?;
    let scratch = p.scratch;
    let (tidaddr, alt) = if tid == pid {
        p.call(
            "prctl(PR_GET_TID_ADDRESS)",
            libc::SYS_prctl,
            [libc::PR_GET_TID_ADDRESS as u64, scratch, 0, 0, 0, 0],
        )?;
        p.call(
            "sigaltstack",
            libc::SYS_sigaltstack,
            [0, scratch + 64, 0, 0, 0, 0],
        )?;
        (p.read_scratch(0, 8)?, p.read_scratch(64, 24)?)
    } else {
        p.call_in(
            tid,
            "prctl(PR_GET_TID_ADDRESS)",
            libc::SYS_prctl,
            [libc::PR_GET_TID_ADDRESS as u64, scratch, 0, 0, 0, 0],
        )?;
        p.call_in(
            tid,
            "sigaltstack",
            libc::SYS_sigaltstack,
            [0, scratch + 64, 0, 0, 0, 0],
        )?;
        (p.read_scratch(0, 8)?, p.read_scratch(64, 24)?)
    };
    let alt_flags = (u64_at(&alt, 8) as u32 as i32) & !libc::SS_ONSTACK;
    let mut pending =
        ptrace::peek_pending(tid, false).map_err(|e| Error::sys(tid, "read pending signals", e))?;
    pending.extend(taken.iter().cloned());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
    Ok(ThreadImage {
        tid,
        regs: ptrace::regs_to_words(&regs),
        xstate,
        sigmask,
        rseq,
        clear_child_tid: u64_at(&tidaddr, 0),
        robust_list,
        altstack: (u64_at(&alt, 0), alt_flags, u64_at(&alt, 16)),
        pending,
        comm: comm.trim_end_matches('\n').to_string(),
    })
}

/// Credentials from /proc/PID/status.
pub(crate) fn creds(st: &procfs::process::Status) -> Creds {
    Creds {
        uids: [st.ruid, st.euid, st.suid, st.fuid],
        gids: [st.rgid, st.egid, st.sgid, st.fgid],
        groups: st.groups.clone(),
        caps: [
            st.capinh,
            st.capprm,
            st.capeff,
            st.capbnd.unwrap_or(0),
            st.capamb.unwrap_or(0),
        ],
    }
}

/// Queues again, from outside, signals taken out while freezing (used when the tree resumes).
/// From another process only the signal number can be sent again, not its full siginfo.
pub(crate) fn requeue(tid: i32, pid: i32, sigs: &[Vec<u8>]) -> Result<()> {
    for si in sigs {
        let signo = i32::from_le_bytes([si[0], si[1], si[2], si[3]]);
        ptrace::tgkill(pid, tid, signo).map_err(|e| Error::sys(tid, "queue signal again", e))?;
    }
    Ok(())
}
