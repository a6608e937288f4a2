//! A process being rebuilt, held stopped under ptrace from the first image that names it until
//! the tree goes.
//!
//! ```text
//!  create: the root is cloned by the restorer (sys::spawn); every other process is cloned
//!          inside its parent by an injected clone3 with its pid (both start as copies)
//!  each image: its address space is brought to the image (state::memory::space)
//!  final image: every part of its state is restored by injected calls (state::restore_process)
//! ```

use crate::error::{Error, Result};
use crate::state::memory::space::Space;
use crate::sys::{mem, ptrace};
use crate::vdso;

/// Size of the scratch area mapped in a held process while an image is applied.
pub(crate) const SCRATCH_LEN: u64 = 64 * 1024;

/// A process of the tree being rebuilt, stopped under ptrace by the restoring thread.
#[derive(Debug)]
pub(crate) struct Holder {
    /// Its pid.
    pub pid: i32,
    /// Its parent's pid (0 for the root).
    pub ppid: i32,
    /// Its process group as it is now.
    pub pgid: i32,
    /// Its session as it is now.
    pub sid: i32,
    /// System calls run in it.
    pub task: Task,
    /// Its address space as the images applied so far made it.
    pub space: Space,
}

/// Injection into the main thread of a held process, and its scratch area.
#[derive(Debug)]
pub(crate) struct Task {
    pid: i32,
    inj: ptrace::Injector,
    /// Address of a `syscall` instruction in its vDSO.
    syscall_at: u64,
    /// Where its scratch area is, while an image is applied.
    scratch: Option<u64>,
}

impl Task {
    /// The process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Runs a system call in the main thread.
    pub fn call(&mut self, what: &str, nr: i64, args: [u64; 6]) -> Result<u64> {
        let pid = self.pid;
        self.inj
            .call(nr, args)
            .map_err(|e| Error::sys(pid, format!("restore: {what}"), e))
    }

    /// Runs a system call in the main thread and returns its raw result (a negative errno is
    /// not an error).
    pub fn raw(&mut self, what: &str, nr: i64, args: [u64; 6]) -> Result<i64> {
        let pid = self.pid;
        self.inj
            .raw(nr, args)
            .map_err(|e| Error::sys(pid, format!("restore: {what}"), e))
    }

    /// The scratch area.
    pub fn scratch_at(&self) -> Result<u64> {
        self.scratch
            .ok_or_else(|| Error::Conflict(format!("pid {}: no scratch area", self.pid)))
    }

    /// Records where the scratch area was mapped (`None`: unmapped).
    pub fn set_scratch(&mut self, at: Option<u64>) {
        self.scratch = at;
    }

    /// Writes `bytes` at offset `off` of the scratch area.
    pub fn put(&self, off: u64, bytes: &[u8]) -> Result<()> {
        let at = self.scratch_at()? + off;
        mem::write_remote(self.pid, &[(at, bytes)])
            .map_err(|e| Error::sys(self.pid, "write scratch", e))
    }

    /// Writes 64-bit words at offset `off` of the scratch area.
    pub fn put_words(&self, off: u64, words: &[u64]) -> Result<()> {
        let b: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.put(off, &b)
    }

    /// Writes `s` with a NUL at offset `off` of the scratch area; returns its address.
    pub fn put_str(&self, off: u64, s: &str) -> Result<u64> {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        if off + b.len() as u64 > SCRATCH_LEN {
            return Err(Error::Conflict(format!("{s}: path too long")));
        }
        self.put(off, &b)?;
        Ok(self.scratch_at()? + off)
    }

    /// Writes `value` to the process' own /proc/self/`file` (open, write, close injected).
    pub fn write_proc_self(&mut self, file: &str, value: &str) -> Result<()> {
        let path = self.put_str(0, &format!("/proc/self/{file}"))?;
        self.put(256, value.as_bytes())?;
        let fd = self.call(
            &format!("open /proc/self/{file}"),
            libc::SYS_openat,
            [libc::AT_FDCWD as u64, path, libc::O_WRONLY as u64, 0, 0, 0],
        )?;
        let wrote = self.call(
            &format!("write {value} to /proc/self/{file}"),
            libc::SYS_write,
            [fd, path + 256, value.len() as u64, 0, 0, 0],
        );
        self.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        wrote.map(drop)
    }

    /// The `syscall` instruction injected calls use.
    pub fn syscall_at(&self) -> u64 {
        self.syscall_at
    }

    /// Moves the `syscall` instruction injected calls use (the vDSO moved).
    pub fn set_syscall_at(&mut self, at: u64) {
        self.syscall_at = at;
        self.inj.set_syscall_at(at);
    }

    /// The injector of the main thread.
    pub fn injector(&mut self) -> &mut ptrace::Injector {
        &mut self.inj
    }

    /// Calls in thread `tid` of the process (the main thread or one created by the restore).
    pub fn thread(&mut self, tid: i32) -> Result<InThread<'_>> {
        let scratch = self.scratch_at()?;
        let inj = if tid == self.pid {
            ThreadInj::Main(&mut self.inj)
        } else {
            let i = ptrace::Injector::new(tid, self.syscall_at)
                .map_err(|e| Error::sys(tid, "read registers", e))?;
            ThreadInj::Other(Box::new(i))
        };
        Ok(InThread {
            pid: self.pid,
            tid,
            scratch,
            inj,
        })
    }
}

/// System calls in one thread of a held process (its registers are set at the very end, so
/// they are not put back).
#[derive(Debug)]
pub(crate) struct InThread<'t> {
    pid: i32,
    tid: i32,
    scratch: u64,
    inj: ThreadInj<'t>,
}

#[derive(Debug)]
enum ThreadInj<'t> {
    Main(&'t mut ptrace::Injector),
    Other(Box<ptrace::Injector>),
}

impl InThread<'_> {
    /// Runs a system call in the thread.
    pub fn call(&mut self, what: &str, nr: i64, args: [u64; 6]) -> Result<u64> {
        let inj = match &mut self.inj {
            ThreadInj::Main(i) => &mut **i,
            ThreadInj::Other(i) => &mut **i,
        };
        inj.call(nr, args)
            .map_err(|e| Error::sys(self.tid, format!("restore: {what}"), e))
    }

    /// The scratch area of the process.
    pub fn scratch(&self) -> u64 {
        self.scratch
    }

    /// Writes `bytes` at offset `off` of the scratch area.
    pub fn put(&self, off: u64, bytes: &[u8]) -> Result<()> {
        mem::write_remote(self.pid, &[(self.scratch + off, bytes)])
            .map_err(|e| Error::sys(self.pid, "write scratch", e))
    }
}

impl Holder {
    /// Seizes process `pid` (the root, just created by the restorer) and blocks its signals.
    pub fn seize_root(pid: i32, local: &vdso::Local) -> Result<Holder> {
        let opts = nix::sys::ptrace::Options::PTRACE_O_TRACECLONE
            | nix::sys::ptrace::Options::PTRACE_O_TRACEFORK
            | nix::sys::ptrace::Options::PTRACE_O_EXITKILL
            | nix::sys::ptrace::Options::PTRACE_O_TRACESYSGOOD;
        ptrace::seize_and_stop(pid, opts).map_err(|e| Error::sys(pid, "seize", e))?;
        let syscall_at = local.block.vdso + local.syscall_off;
        let (pgid, sid) = group_and_session(pid)?;
        let mut h = Holder::new(
            pid,
            0,
            (pgid, sid),
            syscall_at,
            Space::new(local.block.start),
        )?;
        // It closed what it inherited but the pipe it reported on (`sys::spawn`): close that
        // too.
        h.call(
            "close inherited fds",
            libc::SYS_close_range,
            [0, u32::MAX as u64, 0, 0, 0, 0],
        )?;
        Ok(h)
    }

    fn new(
        pid: i32,
        ppid: i32,
        (pgid, sid): (i32, i32),
        syscall_at: u64,
        space: Space,
    ) -> Result<Holder> {
        ptrace::set_sigmask(pid, u64::MAX).map_err(|e| Error::sys(pid, "block signals", e))?;
        let inj = ptrace::Injector::new(pid, syscall_at)
            .map_err(|e| Error::sys(pid, "read registers", e))?;
        Ok(Holder {
            pid,
            ppid,
            pgid,
            sid,
            task: Task {
                pid,
                inj,
                syscall_at,
                scratch: None,
            },
            space,
        })
    }

    /// Creates process `pid` as a child of this one (a `clone3` with its pid injected here; the
    /// child starts as a copy of this process, stopped under ptrace like it). Needs the scratch
    /// area.
    pub fn fork(&mut self, pid: i32, exit_signal: i32) -> Result<Holder> {
        let scratch = self.scratch_at()?;
        self.task.put_words(128, &[pid as u64])?;
        let mut args = [0u64; 11];
        args[4] = exit_signal as u64;
        args[8] = scratch + 128;
        args[9] = 1;
        self.task.put_words(0, &args)?;
        let got = self.call(
            &format!("clone3 process {pid}"),
            libc::SYS_clone3,
            [scratch, 88, 0, 0, 0, 0],
        )?;
        if got != pid as u64 {
            return Err(Error::Conflict(format!(
                "pid {}: child created as {got}, not {pid}",
                self.pid
            )));
        }
        ptrace::wait_new_thread(pid).map_err(|e| Error::sys(pid, "catch new process", e))?;
        let space = self.space.for_child();
        let mut child = Holder::new(
            pid,
            self.pid,
            (self.pgid, self.sid),
            self.task.syscall_at,
            space,
        )?;
        // a copy of a parent whose memory is in place keeps the parent's scratch area
        if !child.space.is_fresh() {
            child.task.scratch = Some(scratch);
        }
        Ok(child)
    }

    /// Runs a system call in the process.
    pub fn call(&mut self, what: &str, nr: i64, args: [u64; 6]) -> Result<u64> {
        self.task.call(what, nr, args)
    }

    /// The scratch area (mapped when the first image is applied).
    pub fn scratch_at(&self) -> Result<u64> {
        self.task.scratch_at()
    }

    /// Writes `bytes` at offset `off` of the scratch area.
    pub fn put(&self, off: u64, bytes: &[u8]) -> Result<()> {
        self.task.put(off, bytes)
    }

    /// Sets its session and process group to `sid` and `pgid` if they differ (`setsid` when it
    /// leads its session, else `setpgid`).
    pub fn set_identity(&mut self, pgid: i32, sid: i32) -> Result<()> {
        if sid != self.sid && sid == self.pid {
            self.call("setsid", libc::SYS_setsid, [0; 6])?;
            self.sid = sid;
            self.pgid = self.pid;
        }
        if pgid != self.pgid {
            self.call(
                &format!("setpgid to {pgid}"),
                libc::SYS_setpgid,
                [0, pgid as u64, 0, 0, 0, 0],
            )?;
            self.pgid = pgid;
        }
        Ok(())
    }

    /// Brings its address space to image `p` (see `state::memory::space`).
    pub fn bring_to(&mut self, p: &crate::image::ProcessImage, local: &vdso::Local) -> Result<()> {
        self.space.bring_to(&mut self.task, p, local)
    }

    /// Takes fds from the restorer into the process: `(fd in the restorer, target number or
    /// -1 for any, close-on-exec)`. A pidfd of the restorer is moved above every target, then
    /// each fd is taken with `pidfd_getfd` and moved to its number with `dup3`. Returns the
    /// numbers the fds got.
    pub fn take_fds(&mut self, restorer: i32, fds: &[(i32, i32, bool)]) -> Result<Vec<u64>> {
        let mut got_fds = Vec::with_capacity(fds.len());
        if fds.is_empty() {
            return Ok(got_fds);
        }
        let top = fds.iter().map(|f| f.1).max().unwrap_or(0).max(0) as u64 + 1;
        let pidfd = self.call(
            "pidfd_open of the restorer",
            libc::SYS_pidfd_open,
            [restorer as u64, 0, 0, 0, 0, 0],
        )?;
        let high = self.call(
            "fcntl F_DUPFD_CLOEXEC",
            libc::SYS_fcntl,
            [pidfd, libc::F_DUPFD_CLOEXEC as u64, top, 0, 0, 0],
        )?;
        self.call("close", libc::SYS_close, [pidfd, 0, 0, 0, 0, 0])?;
        for &(src, target, cloexec) in fds {
            got_fds.push(self.take_fd(high, src, target, cloexec)?);
        }
        self.call("close", libc::SYS_close, [high, 0, 0, 0, 0, 0])?;
        Ok(got_fds)
    }

    fn take_fd(&mut self, pidfd: u64, src: i32, target: i32, cloexec: bool) -> Result<u64> {
        // pidfd_getfd sets close-on-exec on what it returns
        let got = self.call(
            &format!("take fd {target}"),
            libc::SYS_pidfd_getfd,
            [pidfd, src as u64, 0, 0, 0, 0],
        )?;
        if target < 0 {
            return Ok(got);
        }
        if got != target as u64 {
            let fl = if cloexec { libc::O_CLOEXEC } else { 0 } as u64;
            self.call(
                &format!("dup3 to fd {target}"),
                libc::SYS_dup3,
                [got, target as u64, fl, 0, 0, 0],
            )?;
            self.call("close", libc::SYS_close, [got, 0, 0, 0, 0, 0])?;
        } else if !cloexec {
            self.call(
                "fcntl F_SETFD",
                libc::SYS_fcntl,
                [got, libc::F_SETFD as u64, 0, 0, 0, 0],
            )?;
        }
        Ok(target as u64)
    }

    /// Unmaps the scratch area.
    pub fn drop_scratch(&mut self) -> Result<()> {
        if let Ok(at) = self.task.scratch_at() {
            self.call(
                "munmap scratch",
                libc::SYS_munmap,
                [at, SCRATCH_LEN, 0, 0, 0, 0],
            )?;
            self.task.set_scratch(None);
        }
        Ok(())
    }

    /// Kills it (it must not be waited for by anyone but its parent afterwards).
    pub fn kill(&self) {
        ptrace::kill9(self.pid);
    }
}

/// Process group and session of `pid`.
fn group_and_session(pid: i32) -> Result<(i32, i32)> {
    let p = nix::unistd::Pid::from_raw(pid);
    let pgid = nix::unistd::getpgid(Some(p)).map_err(|e| Error::sys(pid, "getpgid", e))?;
    let sid = nix::unistd::getsid(Some(p)).map_err(|e| Error::sys(pid, "getsid", e))?;
    Ok((pgid.as_raw(), sid.as_raw()))
}
