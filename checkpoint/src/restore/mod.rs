//! Restore: check the image against this machine, rebuild the tree, let it go.
//!
//! ```text
//!  check: image kind, vDSO, free pids, files      (nothing created before this passes)
//!  open files, pipes, socket pairs, shared memory in the restorer; lift them above every fd
//!  clone the root with its pid; each process clones its children (sys::spawn) and installs
//!  its fds, then waits; seize them all; fix process groups
//!  per process: memory, mm, signals, threads (restore::process)
//!  registers and signal masks last; detach every thread at once
//! ```
//! Pids are created with `clone3` `set_tid` in the restorer's own pid namespace, so a restorer
//! running inside a pid namespace (as the node daemon does) restores the tree there. No /proc
//! of the restored processes is read, so that namespace needs no /proc mount of its own.

mod files;
mod process;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::ptrace::Options;

use crate::error::{Error, Result};
use crate::image::record::PAGE;
use crate::image::Image;
use crate::sys::{self, ptrace, spawn};
use crate::vdso;

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Descriptors that files saved as standard streams (`Stdio`) are bound to; by default the
    /// restorer's own 0, 1 and 2.
    pub stdio: Option<[RawFd; 3]>,
    /// Restore even if a regular or mapped file changed size since the dump.
    pub allow_changed_files: bool,
}

/// A restored tree, running. Its root is a child of the restorer.
#[derive(Debug)]
pub struct Restored {
    /// Pid of the root.
    pub root: i32,
    /// All pids, parents first.
    pub pids: Vec<i32>,
}

impl Restored {
    /// Waits for the root to exit; returns its exit code, or 128 + signal if it was killed.
    pub fn wait(&self) -> Result<i32> {
        use nix::sys::wait::{waitpid, WaitStatus};
        loop {
            match waitpid(nix::unistd::Pid::from_raw(self.root), None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys(self.root, "wait", e)),
            }
        }
    }
}

/// Kills what was created if the restore fails half-way.
struct Undo {
    root: Option<i32>,
    pids: Vec<i32>,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for &p in &self.pids {
            ptrace::kill9(p);
        }
        if let Some(r) = self.root {
            ptrace::kill9(r);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(r), None);
        }
    }
}

/// Checks everything that can be checked before a process is created.
fn check(img: &Image, opts: &RestoreOptions, local: &vdso::Local) -> Result<()> {
    let inv = &img.inventory;
    if inv.pre_dump {
        return Err(Error::bad_image(
            "inventory.rec",
            "a pre-dump holds memory only; restore the dump made with --prev on top of it",
        ));
    }
    if inv.vdso_crc != local.crc || inv.vdso_block_len != local.block.end - local.block.start {
        return Err(Error::Conflict(format!(
            "image was dumped on kernel {} whose vDSO differs from this kernel's",
            inv.kernel
        )));
    }
    for p in &img.processes {
        if sys::ptrace::pid_exists(p.pid) {
            return Err(Error::Conflict(format!("pid {} is in use", p.pid)));
        }
        for t in p.threads.iter().skip(1) {
            if sys::ptrace::pid_exists(t.tid) {
                return Err(Error::Conflict(format!(
                    "thread id {} (pid {}) is in use",
                    t.tid, p.pid
                )));
            }
        }
    }
    files::check(img, opts.allow_changed_files)
}

/// A free `size`-byte hole in the image's address space (for the scratch area), above `min`.
fn hole(img: &Image, min: u64, size: u64) -> Result<u64> {
    let mut used: Vec<(u64, u64)> = img
        .processes
        .iter()
        .flat_map(|p| p.mm.vmas.iter().map(|v| (v.start, v.end)))
        .collect();
    let local = vdso::local()?;
    used.push((local.block.start, local.block.end));
    used.sort_unstable();
    let mut at = min;
    for (s, e) in used {
        if s >= at + size + PAGE {
            return Ok(at);
        }
        at = at.max(e + PAGE);
    }
    if at + size < 0x7fff_0000_0000 {
        return Ok(at);
    }
    Err(Error::Conflict(
        "no free hole for the restorer's scratch area".into(),
    ))
}

/// Restores the image: the tree runs again when this returns.
pub fn restore(img: &Image, opts: &RestoreOptions) -> Result<Restored> {
    let local = vdso::local()?;
    check(img, opts, &local)?;
    // memory contents, resolved along the chain, checked before anything is created
    let mut pages = HashMap::new();
    for p in &img.processes {
        pages.insert(p.pid, img.resolve_pages(p.pid)?);
    }
    let scratch_at = hole(img, 0x1000_0000, process::SCRATCH_LEN)?;
    let temp_at = hole(
        img,
        scratch_at + process::SCRATCH_LEN + PAGE,
        local.block.end - local.block.start,
    )?;
    let same_creds = same_creds_as_me(img);

    sys::fd::raise_nofile();
    let stdio = opts.stdio.unwrap_or([0, 1, 2]);
    let objects = files::create(img, stdio)?;
    let max_target = img
        .processes
        .iter()
        .flat_map(|p| p.fds.iter().map(|f| f.fd))
        .max()
        .unwrap_or(2);
    let base = (max_target + 1).max(files::max_open_fd() + 1).max(64);
    let objects = files::lift(objects, base)?;
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("pipe", e.into()))?;
    let ready_w = sys::fd::dup_at_least(std::os::fd::AsFd::as_fd(&ready_w), base)
        .map_err(|e| Error::io("pipe", e))?;

    // the spawn plan
    let index: HashMap<i32, usize> = img
        .processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.pid, i))
        .collect();
    let mut nodes = Vec::with_capacity(img.processes.len());
    for p in &img.processes {
        let mut targets: Vec<i32> = p.fds.iter().map(|f| f.fd).collect();
        targets.sort_unstable();
        let mut close = Vec::new();
        let mut lo = 0i32;
        for &t in &targets {
            if t > lo {
                close.push((lo as u32, (t - 1) as u32));
            }
            lo = t + 1;
        }
        if lo < base {
            close.push((lo as u32, (base - 1) as u32));
        }
        let cstr = |s: &str| {
            std::ffi::CString::new(s)
                .map_err(|_| Error::bad_image(format!("proc-{}.rec", p.pid), "path with NUL"))
        };
        nodes.push(spawn::SpawnNode {
            pid: p.pid,
            exit_signal: p.exit_signal,
            setsid: p.sid == p.pid,
            setpgid_self: p.pgid == p.pid && p.sid != p.pid,
            children: img
                .processes
                .iter()
                .filter(|c| c.ppid == p.pid && c.pid != img.inventory.root_pid)
                .map(|c| index[&c.pid])
                .collect(),
            fds: p
                .fds
                .iter()
                .map(|f| (objects.files[f.file as usize].as_raw_fd(), f.fd, f.cloexec))
                .collect(),
            close,
            cwd: cstr(&p.cwd)?,
            umask: p.umask,
        });
    }
    let root_idx = index[&img.inventory.root_pid];
    let mut undo = Undo {
        root: None,
        pids: Vec::new(),
        armed: true,
    };
    let root = spawn::spawn_tree(&nodes, root_idx, ready_w.as_raw_fd())
        .map_err(|e| Error::sys(img.inventory.root_pid, "clone3 with set_tid", e))?;
    undo.root = Some(root);
    drop(ready_w);
    wait_ready(&ready_r, img.processes.len(), &mut undo)?;
    drop(objects.keepers);

    // seize every process (one thread each for now)
    let opts_trace = Options::PTRACE_O_TRACECLONE | Options::PTRACE_O_EXITKILL;
    for p in &img.processes {
        ptrace::seize_and_stop(p.pid, opts_trace).map_err(|e| Error::sys(p.pid, "seize", e))?;
    }
    // process groups whose leader is another process of the tree
    for p in &img.processes {
        if p.pgid != p.pid && index.contains_key(&p.pgid) {
            let mut inj = ptrace::Injector::new(p.pid, local.block.vdso + local.syscall_off)
                .map_err(|e| Error::sys(p.pid, "read registers", e))?;
            inj.call(libc::SYS_setpgid, [0, p.pgid as u64, 0, 0, 0, 0])
                .map_err(|e| Error::sys(p.pid, format!("setpgid to {}", p.pgid), e))?;
            inj.finish()
                .map_err(|e| Error::sys(p.pid, "restore registers", e))?;
        }
    }
    // each epoll instance is filled once, from the first process that holds it
    let mut epoll = process::EpollPlan::new();
    let mut seen = std::collections::HashSet::new();
    for p in &img.processes {
        for f in &p.fds {
            if let crate::image::FileKind::EventPoll { targets } =
                &img.shared.files[f.file as usize].kind
            {
                if seen.insert(f.file) {
                    epoll
                        .entry(p.pid)
                        .or_default()
                        .push((f.fd, targets.clone()));
                }
            }
        }
    }
    let shmem_fds: HashMap<u32, RawFd> = objects
        .shmem
        .iter()
        .map(|(k, v)| (*k, v.as_raw_fd()))
        .collect();
    let env = process::Env {
        local: &local,
        scratch_at,
        temp_at,
        shmem_fds: &shmem_fds,
        fd_base: base,
        same_creds,
        epoll: &epoll,
    };
    for p in &img.processes {
        process::rebuild(p, &pages[&p.pid], &env)?;
    }
    drop(objects.files);
    drop::<HashMap<u32, OwnedFd>>(objects.shmem);
    for p in &img.processes {
        process::finish(p)?;
    }
    for p in &img.processes {
        for t in &p.threads {
            ptrace::detach(t.tid).map_err(|e| Error::sys(t.tid, "detach", e))?;
        }
    }
    undo.armed = false;
    Ok(Restored {
        root,
        pids: img.processes.iter().map(|p| p.pid).collect(),
    })
}

fn wait_ready(r: &OwnedFd, n: usize, undo: &mut Undo) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = 0;
    let mut buf = Vec::new();
    while got < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Conflict(format!(
                "only {got} of {n} processes came up"
            )));
        }
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(r), PollFlags::POLLIN)];
        let ms =
            PollTimeout::try_from(left.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(Error::io("ready pipe", e.into())),
        }
        let mut chunk = [0u8; 512];
        let k = nix::unistd::read(r, &mut chunk).map_err(|e| Error::io("ready pipe", e.into()))?;
        if k == 0 {
            return Err(Error::Conflict(format!(
                "only {got} of {n} processes came up"
            )));
        }
        buf.extend_from_slice(&chunk[..k]);
        while buf.len() >= 8 {
            let pid = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let err = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
            buf.drain(..8);
            undo.pids.push(pid);
            if err != 0 {
                let e = std::io::Error::from_raw_os_error(err);
                let what = if err == libc::EEXIST {
                    "pid is in use".to_string()
                } else {
                    "setting up".to_string()
                };
                return Err(Error::sys(pid, what, e));
            }
            got += 1;
        }
    }
    Ok(())
}

/// True when every process of the image has the restorer's own credentials (nothing to set).
fn same_creds_as_me(img: &Image) -> bool {
    let Ok(me) = procfs::process::Process::myself().and_then(|p| p.status()) else {
        return false;
    };
    let mine = crate::dump::task::creds(&me);
    img.processes.iter().all(|p| p.creds == mine)
}
