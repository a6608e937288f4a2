//! Signals of a process: the disposition of each signal, the signals pending for the whole
//! process, and whether job control had stopped it. (Masks and signals pending for one thread
//! are kept with the thread.)
//!
//! Dispositions are read and set by `rt_sigaction` injected into the process. They are set
//! before any pending signal is queued again: making a signal ignored discards it if it is
//! pending. Every signal stays blocked until the very end of the restore, so nothing queued is
//! delivered early.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::persist::{Persist, ProcDump, ProcRestore};
use crate::restore::holder::Holder;
use crate::sys::ptrace;

/// A signal's disposition, as the kernel's `struct sigaction` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    /// Handler address, or 0 (SIG_DFL) / 1 (SIG_IGN).
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// `sa_restorer`.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

/// Signal state of a process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signals {
    /// Disposition of signals 1..=64 (index 0 is signal 1).
    pub sigactions: Vec<SigAction>,
    /// Signals pending for the whole process (raw `siginfo_t`, 128 bytes each).
    pub shared_pending: Vec<Vec<u8>>,
    /// The signal that had stopped it by job control (`SIGSTOP`, `SIGTSTP`, ...), 0 if none.
    pub stopped_by: i32,
}

fn uncatchable(sig: u64) -> bool {
    sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64
}

impl Persist for Signals {
    type Saving<'a> = ProcDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut ProcDump<'_>) -> Result<Signals> {
        let mut sigactions = Vec::with_capacity(64);
        let scratch = cx.par.scratch();
        for sig in 1..=64u64 {
            if uncatchable(sig) {
                sigactions.push(SigAction {
                    handler: 0,
                    flags: 0,
                    restorer: 0,
                    mask: 0,
                });
                continue;
            }
            cx.par.call(
                "rt_sigaction",
                libc::SYS_rt_sigaction,
                [sig, 0, scratch, 8, 0, 0],
            )?;
            let w = cx.par.read_words(0, 4)?;
            sigactions.push(SigAction {
                handler: w[0],
                flags: w[1],
                restorer: w[2],
                mask: w[3],
            });
        }
        let shared_pending = ptrace::peek_pending(cx.pid, true)
            .map_err(|e| Error::sys(cx.pid, "read pending signals", e))?;
        Ok(Signals {
            sigactions,
            shared_pending,
            stopped_by: cx.stopped_by.unwrap_or(0),
        })
    }

    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        let h = &mut *cx.h;
        let scratch = h.scratch_at()?;
        for (i, sa) in self.sigactions.iter().enumerate() {
            let sig = i as u64 + 1;
            if uncatchable(sig) {
                continue;
            }
            h.task
                .put_words(0, &[sa.handler, sa.flags, sa.restorer, sa.mask])?;
            h.call(
                "rt_sigaction",
                libc::SYS_rt_sigaction,
                [sig, scratch, 0, 8, 0, 0],
            )?;
        }
        for si in &self.shared_pending {
            h.put(0, si)?;
            h.call(
                "rt_sigqueueinfo",
                libc::SYS_rt_sigqueueinfo,
                [h.pid as u64, signo(si) as u64, scratch, 0, 0, 0],
            )?;
        }
        Ok(())
    }
}

impl Signals {
    /// Puts a process that job control had stopped in a stop again, just before its threads
    /// are let go: each thread gets the signal that had stopped it, which it takes before
    /// running any code of its own once let go (its parent is told the process stopped, with
    /// that signal). Its disposition was the default and it was not blocked by the thread that
    /// took it, or it would not have stopped the process; nothing of the process ran since.
    pub(crate) fn stop_again(
        &self,
        pid: i32,
        threads: &crate::state::threads::Threads,
    ) -> Result<()> {
        if self.stopped_by == 0 {
            return Ok(());
        }
        for t in threads.iter() {
            ptrace::tgkill(pid, t.tid, self.stopped_by)
                .map_err(|e| Error::sys(t.tid, "stop again", e))?;
        }
        Ok(())
    }
}

/// The signal number of a raw `siginfo_t`.
pub(crate) fn signo(si: &[u8]) -> i32 {
    i32::from_le_bytes([si[0], si[1], si[2], si[3]])
}

/// Throws away signals queued to a held process while it was held (SIGCHLD of children the
/// restore created or ended): the image's own pending signals are queued after this.
pub(crate) fn drain(h: &mut Holder) -> Result<()> {
    h.put(0, &[0u8; 16])?; // struct timespec {0, 0}: do not wait
    let at = h.scratch_at()?;
    h.task.put_words(16, &[u64::MAX])?; // every signal
    for _ in 0..128 {
        let r = h.task.raw(
            "rt_sigtimedwait",
            libc::SYS_rt_sigtimedwait,
            [at + 16, 0, at, 8, 0, 0],
        )?;
        if r < 0 {
            return Ok(());
        }
    }
    Ok(())
}

/// Queues again, from outside, signals taken out while freezing (used when the tree resumes).
/// From another process only the signal number can be sent again, not its full siginfo.
pub(crate) fn requeue(tid: i32, pid: i32, sigs: &[Vec<u8>]) -> Result<()> {
    for si in sigs {
        ptrace::tgkill(pid, tid, signo(si))
            .map_err(|e| Error::sys(tid, "queue signal again", e))?;
    }
    Ok(())
}
