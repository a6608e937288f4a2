//! An injection session in a frozen process: system calls run by its own threads, for the state
//! only the process itself can report (see `sys::ptrace` for how a call is injected).

use crate::error::{Error, Result};
use crate::sys::{mem, ptrace};

const SCRATCH_LEN: u64 = 64 * 1024;

/// An injection session on one stopped process: a scratch area mapped in it, all signals of the
/// injected thread blocked while it lasts.
#[derive(Debug)]
pub(crate) struct Parasite {
    pid: i32,
    syscall_at: u64,
    scratch: u64,
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

    /// The process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Address of the scratch area in the process.
    pub fn scratch(&self) -> u64 {
        self.scratch
    }

    /// The signal mask the main thread had before the session blocked every signal.
    pub fn main_sigmask(&self) -> u64 {
        self.mask
    }

    /// The registers the main thread had before the session used them.
    pub fn main_regs(&self) -> Result<ptrace::Regs> {
        self.inj
            .as_ref()
            .map(|i| *i.saved_regs())
            .ok_or_else(|| Error::Conflict(format!("pid {}: injector closed", self.pid)))
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

    /// Runs a system call in thread `tid` of the process: the main thread, or another whose
    /// registers and signal mask are saved and put back around the call.
    pub fn call_in(&mut self, tid: i32, what: &str, nr: i64, args: [u64; 6]) -> Result<u64> {
        if tid == self.pid {
            return self.call(what, nr, args);
        }
        let mask = ptrace::get_sigmask(tid).map_err(|e| Error::sys(tid, "read signal mask", e))?;
        ptrace::set_sigmask(tid, u64::MAX).map_err(|e| Error::sys(tid, "block signals", e))?;
        let mut inj = ptrace::Injector::new(tid, self.syscall_at)
            .map_err(|e| Error::sys(tid, "read registers", e))?;
        let r = inj
            .call(nr, args)
            .map_err(|e| Error::sys(tid, format!("injected {what}"), e));
        let taken = inj.taken().to_vec();
        inj.finish()
            .map_err(|e| Error::sys(tid, "restore registers", e))?;
        ptrace::set_sigmask(tid, mask).map_err(|e| Error::sys(tid, "restore signal mask", e))?;
        crate::state::signals::requeue(tid, self.pid, &taken)?;
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

    /// Reads `n` 64-bit words of the scratch area at `off`.
    pub fn read_words(&self, off: u64, n: usize) -> Result<Vec<u64>> {
        let b = self.read_scratch(off, n * 8)?;
        Ok(b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect())
    }

    /// Removes the scratch area and puts registers and signal mask back.
    pub fn finish(mut self) -> Result<()> {
        self.end()
    }

    fn end(&mut self) -> Result<()> {
        let Some(mut inj) = self.inj.take() else {
            return Ok(());
        };
        let pid = self.pid;
        let unmapped = inj
            .call(libc::SYS_munmap, [self.scratch, SCRATCH_LEN, 0, 0, 0, 0])
            .map_err(|e| Error::sys(pid, "injected unmap scratch page", e));
        let taken = inj.taken().to_vec();
        inj.finish()
            .map_err(|e| Error::sys(pid, "restore registers", e))?;
        ptrace::set_sigmask(pid, self.mask)
            .map_err(|e| Error::sys(pid, "restore signal mask", e))?;
        // a stop signal sent while the session lasted comes after the snapshot: the process
        // gets it when let go
        crate::state::signals::requeue(pid, pid, &taken)?;
        unmapped.map(drop)
    }
}

impl Drop for Parasite {
    /// A session that ends early (a dump that fails or refuses the process once frozen) still
    /// leaves the process as it found it, so that the tree can run on.
    fn drop(&mut self) {
        let _ = self.end();
    }
}
