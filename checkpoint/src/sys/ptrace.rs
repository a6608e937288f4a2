//! ptrace: seizing threads, reading and writing their registers, and running system calls
//! inside a stopped thread ("injection").
//!
//! Injection needs a `syscall` instruction in the target. Every process has the vDSO mapped, and
//! the vDSO of this kernel contains `syscall` instructions (its fallbacks), at the same offset in
//! every process. So instead of writing code into the target, a thread's registers are pointed
//! at that instruction and the thread is run with `PTRACE_SYSCALL` to the call's entry and on
//! to its exit, where `rax` holds the result. Setting `orig_rax` to -1 keeps the kernel from
//! "restarting" an interrupted system call over the injected one. The target's memory is never
//! modified, which keeps `--leave-running` exact.
//!
//! Why not single-step over the instruction (one stop instead of two): the kernel reports a
//! step with a *forced* SIGTRAP, and forcing a signal that is blocked or ignored resets its
//! disposition to SIG_DFL and unblocks it. Calls are injected with every signal blocked, so
//! each step would throw away the process' SIGTRAP handler (a pending SIGTRAP then kills it,
//! and a tree left running loses its handler). System call stops are no signal. Tracees are
//! seized with `PTRACE_O_TRACESYSGOOD`, so that a system call stop is never taken for a SIGTRAP
//! that was sent to the process.

use std::io;

use nix::sys::ptrace as np;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{cvt, cvt_i};

/// x86-64 `user_regs_struct`.
pub type Regs = libc::user_regs_struct;

const PTRACE_GETREGSET: libc::c_uint = 0x4204;
const PTRACE_SETREGSET: libc::c_uint = 0x4205;
const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
const NT_X86_XSTATE: usize = 0x202;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
const PTRACE_EVENT_STOP: i32 = 128;

/// How a thread was found when it was seized and stopped.
#[derive(Debug, Default)]
pub struct Seized {
    /// Siginfos of signals that were dequeued for delivery while stopping it (they must be
    /// queued again later, see the module doc of `dump::freeze`).
    pub taken: Vec<Vec<u8>>,
    /// The signal that had stopped it, if it was stopped by job control (group stop).
    pub stopped_by: Option<i32>,
}

/// Seizes a thread and stops it.
pub fn seize_and_stop(tid: i32, options: np::Options) -> io::Result<Seized> {
    let pid = Pid::from_raw(tid);
    np::seize(pid, options)?;
    np::interrupt(pid)?;
    wait_interrupt_stop(tid)
}

/// Waits until `tid` reports the stop asked by PTRACE_INTERRUPT, collecting signals that got
/// in the way (each is suppressed and its siginfo kept). A thread in a group stop reports it
/// with the signal that stopped it; one stopped by the interrupt, with SIGTRAP.
pub fn wait_interrupt_stop(tid: i32) -> io::Result<Seized> {
    let pid = Pid::from_raw(tid);
    let mut taken = Vec::new();
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL))? {
            WaitStatus::PtraceEvent(_, sig, ev) if ev == PTRACE_EVENT_STOP => {
                let stopped_by = (sig != nix::sys::signal::Signal::SIGTRAP).then_some(sig as i32);
                return Ok(Seized { taken, stopped_by });
            }
            WaitStatus::PtraceEvent(_, _, _) => np::cont(pid, None)?,
            WaitStatus::Stopped(..) => {
                // A signal was about to be delivered: keep its siginfo, suppress it now, and
                // let the pending interrupt stop the thread.
                taken.push(get_siginfo_raw(tid)?);
                np::cont(pid, None)?;
            }
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "thread exited while being stopped",
                ))
            }
            _ => {}
        }
    }
}

fn get_siginfo_raw(tid: i32) -> io::Result<Vec<u8>> {
    let si = np::getsiginfo(Pid::from_raw(tid))?;
    // SAFETY: siginfo_t is plain old data of 128 bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            &si as *const libc::siginfo_t as *const u8,
            std::mem::size_of::<libc::siginfo_t>(),
        )
    };
    Ok(bytes.to_vec())
}

/// Registers of a stopped thread.
pub fn getregs(tid: i32) -> io::Result<Regs> {
    Ok(np::getregs(Pid::from_raw(tid))?)
}

/// Sets the registers of a stopped thread.
pub fn setregs(tid: i32, regs: &Regs) -> io::Result<()> {
    Ok(np::setregs(Pid::from_raw(tid), *regs)?)
}

/// Registers as 27 words (the layout of `user_regs_struct`).
pub fn regs_to_words(r: &Regs) -> Vec<u64> {
    const N: usize = std::mem::size_of::<Regs>() / 8;
    // SAFETY: user_regs_struct is 27 consecutive u64 fields, no padding.
    let words: [u64; N] = unsafe { std::mem::transmute_copy(r) };
    words.to_vec()
}

/// The inverse of [`regs_to_words`]; None if the length is wrong.
pub fn words_to_regs(w: &[u64]) -> Option<Regs> {
    const N: usize = std::mem::size_of::<Regs>() / 8;
    let arr: [u64; N] = w.try_into().ok()?;
    // SAFETY: every bit pattern is a valid user_regs_struct.
    Some(unsafe { std::mem::transmute_copy(&arr) })
}

/// The XSAVE area (FPU, SSE, AVX, ...) of a stopped thread.
pub fn get_xstate(tid: i32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: iov points at a buffer we own of iov_len bytes; the kernel shrinks iov_len.
    cvt(unsafe {
        libc::ptrace(
            PTRACE_GETREGSET,
            tid,
            NT_X86_XSTATE,
            &mut iov as *mut libc::iovec,
        )
    })?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}

/// Sets the XSAVE area of a stopped thread.
pub fn set_xstate(tid: i32, xstate: &[u8]) -> io::Result<()> {
    let mut buf = xstate.to_vec();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: iov points at a buffer we own of iov_len bytes, read by the kernel.
    cvt(unsafe {
        libc::ptrace(
            PTRACE_SETREGSET,
            tid,
            NT_X86_XSTATE,
            &mut iov as *mut libc::iovec,
        )
    })?;
    Ok(())
}

/// Blocked signals of a stopped thread.
pub fn get_sigmask(tid: i32) -> io::Result<u64> {
    let mut m: u64 = 0;
    // SAFETY: the kernel writes 8 bytes to &m.
    cvt(unsafe { libc::ptrace(PTRACE_GETSIGMASK, tid, 8usize, &mut m as *mut u64) })?;
    Ok(m)
}

/// Sets the blocked signals of a stopped thread.
pub fn set_sigmask(tid: i32, mask: u64) -> io::Result<()> {
    // SAFETY: the kernel reads 8 bytes from &mask.
    cvt(unsafe { libc::ptrace(PTRACE_SETSIGMASK, tid, 8usize, &mask as *const u64) })?;
    Ok(())
}

/// rseq registration `(address, length, signature)` of a stopped thread, if any.
pub fn get_rseq(tid: i32) -> io::Result<Option<(u64, u32, u32)>> {
    #[repr(C)]
    #[derive(Default)]
    struct Conf {
        ptr: u64,
        size: u32,
        sig: u32,
        flags: u32,
        pad: u32,
    }
    let mut c = Conf::default();
    // SAFETY: the kernel writes at most size_of::<Conf>() bytes to &c.
    cvt(unsafe {
        libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            tid,
            std::mem::size_of::<Conf>(),
            &mut c as *mut Conf,
        )
    })?;
    Ok((c.ptr != 0).then_some((c.ptr, c.size, c.sig)))
}

/// Pending signals of a stopped thread (`shared`: those of the whole process), as raw siginfos.
pub fn peek_pending(tid: i32, shared: bool) -> io::Result<Vec<Vec<u8>>> {
    #[repr(C)]
    struct Args {
        off: u64,
        flags: u32,
        nr: i32,
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 128 * 32];
    loop {
        let a = Args {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: 32,
        };
        // SAFETY: the kernel writes at most nr siginfos (128 bytes each) into buf.
        let n = cvt(unsafe {
            libc::ptrace(PTRACE_PEEKSIGINFO, tid, &a as *const Args, buf.as_mut_ptr())
        })?;
        if n == 0 {
            return Ok(out);
        }
        for i in 0..n as usize {
            out.push(buf[i * 128..(i + 1) * 128].to_vec());
        }
    }
}

/// Robust futex list `(head, len)` of any thread (read from outside).
pub fn get_robust_list(tid: i32) -> io::Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: the kernel writes one pointer and one size_t to the given addresses.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    })?;
    Ok((head, len as u64))
}

/// Lets a stopped thread go (ptrace detach, no signal).
pub fn detach(tid: i32) -> io::Result<()> {
    Ok(np::detach(Pid::from_raw(tid), None)?)
}

/// Waits for the first stop of a thread created by an injected clone under PTRACE_O_TRACECLONE.
pub fn wait_new_thread(tid: i32) -> io::Result<()> {
    let pid = Pid::from_raw(tid);
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL))? {
            WaitStatus::PtraceEvent(..) | WaitStatus::Stopped(..) => return Ok(()),
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                return Err(io::Error::new(io::ErrorKind::NotFound, "new thread exited"))
            }
            _ => {}
        }
    }
}

/// Offset of a `syscall` instruction in this kernel's vDSO.
pub fn vdso_syscall_offset(vdso: &[u8]) -> Option<u64> {
    vdso.windows(2)
        .position(|w| w == [0x0f, 0x05])
        .map(|p| p as u64)
}

/// Runs system calls inside a stopped thread (see the module doc).
#[derive(Debug)]
pub struct Injector {
    tid: i32,
    base: Regs,
    syscall_at: u64,
    taken: Vec<Vec<u8>>,
}

impl Injector {
    /// An injector for stopped thread `tid`, whose `syscall` instruction is at `syscall_at`.
    /// The thread's registers are read now and put back by [`Injector::finish`].
    pub fn new(tid: i32, syscall_at: u64) -> io::Result<Self> {
        let base = getregs(tid)?;
        Ok(Injector {
            tid,
            base,
            syscall_at,
            taken: Vec::new(),
        })
    }

    /// The registers the thread had when the injector was made.
    pub fn saved_regs(&self) -> &Regs {
        &self.base
    }

    /// Moves the `syscall` instruction used (after the vDSO was moved).
    pub fn set_syscall_at(&mut self, at: u64) {
        self.syscall_at = at;
    }

    /// Runs system call `nr` with `args` in the thread; returns the raw result (negative errno
    /// on failure). Signals that arrive meanwhile and cannot be blocked (SIGSTOP) are taken
    /// out, kept in [`Injector::taken`].
    pub fn raw(&mut self, nr: i64, args: [u64; 6]) -> io::Result<i64> {
        let mut r = self.base;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        r.rip = self.syscall_at;
        r.rdi = args[0];
        r.rsi = args[1];
        r.rdx = args[2];
        r.r10 = args[3];
        r.r8 = args[4];
        r.r9 = args[5];
        setregs(self.tid, &r)?;
        // to the call's entry, then through it to its exit
        self.to_syscall_stop()?;
        self.to_syscall_stop()?;
        Ok(getregs(self.tid)?.rax as i64)
    }

    /// Resumes the thread until its next system call stop (needs `PTRACE_O_TRACESYSGOOD`).
    fn to_syscall_stop(&mut self) -> io::Result<()> {
        let pid = Pid::from_raw(self.tid);
        np::syscall(pid, None)?;
        loop {
            match waitpid(pid, Some(WaitPidFlag::__WALL))? {
                WaitStatus::PtraceSyscall(_) => return Ok(()),
                WaitStatus::PtraceEvent(..) => np::syscall(pid, None)?,
                WaitStatus::Stopped(..) => {
                    self.taken.push(get_siginfo_raw(self.tid)?);
                    np::syscall(pid, None)?;
                }
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "thread died during injected syscall",
                    ))
                }
                _ => {}
            }
        }
    }

    /// Signals taken out of the thread while calls were injected (to be queued again).
    pub fn taken(&self) -> &[Vec<u8>] {
        &self.taken
    }

    /// Like [`Injector::raw`] but turns a negative result into an error naming the call.
    pub fn call(&mut self, nr: i64, args: [u64; 6]) -> io::Result<u64> {
        let r = self.raw(nr, args)?;
        if (-4095..0).contains(&r) {
            Err(io::Error::from_raw_os_error(-r as i32))
        } else {
            Ok(r as u64)
        }
    }

    /// Puts back the registers the thread had.
    pub fn finish(self) -> io::Result<()> {
        setregs(self.tid, &self.base)
    }
}

/// Makes the stopped, single-threaded tracee of `inj` exit with `code` (an injected
/// `exit_group`) and takes the tracer's notification of its end: it is then a zombie waiting
/// for its parent.
pub fn end_by_exit(inj: &mut Injector, code: u64) -> io::Result<()> {
    match inj.raw(libc::SYS_exit_group, [code, 0, 0, 0, 0, 0]) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Err(io::Error::other("exit_group returned")),
    }
}

/// Makes the stopped tracee `tid` (single-threaded, `sig` unblocked or blockable, its default
/// action set) die of `sig`, and takes the tracer's notification of its end: it is then a
/// zombie waiting for its parent.
pub fn end_by_signal(tid: i32, sig: i32) -> io::Result<()> {
    let pid = Pid::from_raw(tid);
    set_sigmask(tid, 0)?;
    tgkill(tid, tid, sig)?;
    // SIGKILL ends it at once, stopped or not: then only its death is left to take
    match np::cont(pid, None) {
        Err(nix::errno::Errno::ESRCH) => {}
        r => r?,
    }
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL))? {
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => return Ok(()),
            // the signal about to be delivered: let it through
            WaitStatus::Stopped(_, s) => np::cont(pid, Some(s))?,
            WaitStatus::PtraceEvent(..) => np::cont(pid, None)?,
            _ => {}
        }
    }
}

/// Kills a process with SIGKILL, ignoring a process that is already gone.
pub fn kill9(pid: i32) {
    // SAFETY: kill has no memory arguments.
    let _ = cvt_i(unsafe { libc::kill(pid, libc::SIGKILL) });
}

/// True if a process with this pid exists in the caller's pid namespace.
pub fn pid_exists(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// `tgkill(pid, tid, sig)`.
pub fn tgkill(pid: i32, tid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: no memory arguments.
    cvt(unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) })?;
    Ok(())
}

/// Waits (until `deadline`) for a traced thread killed by the caller to report its death.
pub fn reap_traced(tid: i32, deadline: std::time::Instant) {
    let pid = Pid::from_raw(tid);
    while std::time::Instant::now() < deadline {
        match waitpid(pid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(1)),
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
