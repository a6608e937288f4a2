//! Threads: registers (with an interrupted system call turned into a restart), XSAVE area,
//! signal mask, rseq registration, `clear_child_tid`, robust futex list, sigaltstack, pending
//! signals and name of each thread.
//!
//! Saved from outside (ptrace) where the kernel allows it, else by calls injected into the
//! thread. Restored by `clone3` with `CLONE_THREAD` and `set_tid` injected into the main thread,
//! then calls injected into each thread; registers, XSAVE area and signal mask are set by
//! [`set_registers`], the very last step before the tree goes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::persist::{Persist, ProcDump, ProcRestore};
use crate::restore::holder::InThread;
use crate::state::attrs::ThreadAttrs;
use crate::sys::ptrace;

const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;
const CLONE_THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// The threads of a process; the first one is the main thread (tid == pid).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Threads(pub Vec<ThreadImage>);

impl std::ops::Deref for Threads {
    type Target = [ThreadImage];
    fn deref(&self) -> &[ThreadImage] {
        &self.0
    }
}

/// One thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadImage {
    /// Thread id.
    pub tid: i32,
    /// `user_regs_struct` as 27 words, with a syscall restart already applied.
    pub regs: Vec<u64>,
    /// `NT_X86_XSTATE` register set (FPU, SSE, AVX, ...).
    pub xstate: Vec<u8>,
    /// Blocked signals.
    pub sigmask: u64,
    /// rseq registration: `(address, length, signature)`.
    pub rseq: Option<(u64, u32, u32)>,
    /// `set_tid_address` value.
    pub clear_child_tid: u64,
    /// `set_robust_list`: `(head, length)`.
    pub robust_list: (u64, u64),
    /// sigaltstack: `(sp, flags, size)`.
    pub altstack: (u64, i32, u64),
    /// Signals pending for this thread only (raw `siginfo_t`).
    pub pending: Vec<Vec<u8>>,
    /// Thread name.
    pub comm: String,
    /// Scheduling, affinity, parent-death signal, timer slack (restored with the process'
    /// attributes, after its credentials).
    pub attrs: ThreadAttrs,
}

impl Persist for Threads {
    type Saving<'a> = ProcDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut ProcDump<'_>) -> Result<Threads> {
        let mut out = Vec::with_capacity(cx.tids.len());
        for &tid in cx.tids {
            out.push(save_thread(cx, tid)?);
        }
        Ok(Threads(out))
    }

    /// Creates the other threads with their own tids, then gives each its state.
    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        let pid = cx.h.pid;
        let scratch = cx.h.scratch_at()?;
        for t in self.0.iter().skip(1) {
            let tid = t.tid as u64;
            cx.h.task.put_words(128, &[tid])?;
            let mut args = [0u64; 11];
            args[0] = CLONE_THREAD_FLAGS;
            args[8] = scratch + 128;
            args[9] = 1;
            cx.h.task.put_words(0, &args)?;
            let got = cx.h.call(
                &format!("clone3 thread {tid}"),
                libc::SYS_clone3,
                [scratch, 88, 0, 0, 0, 0],
            )?;
            if got != tid {
                return Err(Error::Conflict(format!(
                    "pid {pid}: thread created as {got}, not {tid}"
                )));
            }
            ptrace::wait_new_thread(t.tid).map_err(|e| Error::sys(t.tid, "catch new thread", e))?;
        }
        for t in &self.0 {
            restore_thread(&mut cx.h.task.thread(t.tid)?, pid, t)?;
        }
        Ok(())
    }
}

/// Everything about thread `tid` of the frozen process.
fn save_thread(cx: &mut ProcDump<'_>, tid: i32) -> Result<ThreadImage> {
    let pid = cx.pid;
    let main = tid == pid;
    let mut regs = if main {
        // the injection session saved the main thread's registers before using them
        cx.par.main_regs()?
    } else {
        ptrace::getregs(tid).map_err(|e| Error::sys(tid, "read registers", e))?
    };
    let sigmask = if main {
        cx.par.main_sigmask()
    } else {
        ptrace::get_sigmask(tid).map_err(|e| Error::sys(tid, "read signal mask", e))?
    };
    restart_syscall(&mut regs);
    let xstate = ptrace::get_xstate(tid).map_err(|e| Error::sys(tid, "read xstate", e))?;
    let rseq = ptrace::get_rseq(tid).map_err(|e| Error::sys(tid, "read rseq configuration", e))?;
    let robust_list =
        ptrace::get_robust_list(tid).map_err(|e| Error::sys(tid, "read robust list", e))?;
    let scratch = cx.par.scratch();
    cx.par.call_in(
        tid,
        "prctl(PR_GET_TID_ADDRESS)",
        libc::SYS_prctl,
        [libc::PR_GET_TID_ADDRESS as u64, scratch, 0, 0, 0, 0],
    )?;
    cx.par.call_in(
        tid,
        "sigaltstack",
        libc::SYS_sigaltstack,
        [0, scratch + 64, 0, 0, 0, 0],
    )?;
    let tidaddr = cx.par.read_words(0, 1)?[0];
    let alt = cx.par.read_words(64, 3)?;
    let alt_flags = (alt[1] as u32 as i32) & !libc::SS_ONSTACK;
    let mut pending =
        ptrace::peek_pending(tid, false).map_err(|e| Error::sys(tid, "read pending signals", e))?;
    pending.extend(cx.taken.get(&tid).into_iter().flatten().cloned());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
    let attrs = ThreadAttrs::save(cx, tid)?;
    Ok(ThreadImage {
        tid,
        regs: ptrace::regs_to_words(&regs),
        xstate,
        sigmask,
        rseq,
        clear_child_tid: tidaddr,
        robust_list,
        altstack: (alt[0], alt_flags, alt[2]),
        pending,
        comm: comm.trim_end_matches('\n').to_string(),
        attrs,
    })
}

/// A thread stopped inside an interrupted system call: make it issue the call again.
fn restart_syscall(regs: &mut ptrace::Regs) {
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
}

/// The kernel state of one thread, by calls injected into it.
fn restore_thread(th: &mut InThread<'_>, pid: i32, t: &ThreadImage) -> Result<()> {
    let (tid, scratch) = (t.tid, th.scratch());
    th.call(
        "set_tid_address",
        libc::SYS_set_tid_address,
        [t.clear_child_tid, 0, 0, 0, 0, 0],
    )?;
    if t.robust_list.0 != 0 {
        th.call(
            "set_robust_list",
            libc::SYS_set_robust_list,
            [t.robust_list.0, t.robust_list.1, 0, 0, 0, 0],
        )?;
    }
    if let Some((addr, len, sig)) = t.rseq {
        th.call(
            "rseq",
            libc::SYS_rseq,
            [addr, len as u64, 0, sig as u64, 0, 0],
        )?;
    }
    if t.altstack.2 != 0 || t.altstack.1 & libc::SS_DISABLE == 0 {
        let mut ss = t.altstack.0.to_le_bytes().to_vec();
        ss.extend((t.altstack.1 as u64).to_le_bytes());
        ss.extend(t.altstack.2.to_le_bytes());
        th.put(256, &ss)?;
        th.call(
            "sigaltstack",
            libc::SYS_sigaltstack,
            [scratch + 256, 0, 0, 0, 0, 0],
        )?;
    }
    let mut name = t.comm.as_bytes().to_vec();
    name.truncate(15);
    name.push(0);
    th.put(512, &name)?;
    th.call(
        "prctl PR_SET_NAME",
        libc::SYS_prctl,
        [libc::PR_SET_NAME as u64, scratch + 512, 0, 0, 0, 0],
    )?;
    for si in &t.pending {
        th.put(1024, si)?;
        let signo = i32::from_le_bytes([si[0], si[1], si[2], si[3]]) as u64;
        th.call(
            "rt_tgsigqueueinfo",
            libc::SYS_rt_tgsigqueueinfo,
            [pid as u64, tid as u64, signo, scratch + 1024, 0, 0],
        )?;
    }
    Ok(())
}

/// Last step before the tree goes: registers, extended state and signal mask of every thread.
pub(crate) fn set_registers(pid: i32, threads: &Threads) -> Result<()> {
    for t in &threads.0 {
        let regs = ptrace::words_to_regs(&t.regs)
            .ok_or_else(|| Error::bad_image(format!("proc-{pid}.rec"), "bad register set"))?;
        if !t.xstate.is_empty() {
            ptrace::set_xstate(t.tid, &t.xstate).map_err(|e| Error::sys(t.tid, "set xstate", e))?;
        }
        ptrace::setregs(t.tid, &regs).map_err(|e| Error::sys(t.tid, "set registers", e))?;
        ptrace::set_sigmask(t.tid, t.sigmask)
            .map_err(|e| Error::sys(t.tid, "set signal mask", e))?;
    }
    Ok(())
}
