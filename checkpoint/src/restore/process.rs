//! Turning a seized copy of the restorer into the saved process, by injected system calls.
//!
//! ```text
//!  unregister the restorer's rseq (the kernel would write to memory about to vanish)
//!  unmap everything but the vvar/vdso block; move the block where the image had it
//!  map a scratch page in a hole of the image; map every area (writable for now)
//!  write the pages (process_vm_writev); set the final protections
//!  PR_SET_MM_MAP (brk, stack, args, env, auxv, exe); close the restorer's fds
//!  signals, personality; create the threads (clone3 + set_tid); per-thread state
//! ```
//! Registers and the signal mask are set last, by [`finish`], right before the tree goes.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use crate::error::{Error, Result};
use crate::image::{Chunk, ProcessImage, ThreadImage, VmaKind};
use crate::sys::{fd as sfd, mem, ptrace};
use crate::vdso;

/// Size of the scratch area mapped in each process during restore.
pub(crate) const SCRATCH_LEN: u64 = 64 * 1024;
const TASK_SIZE: u64 = 0x7fff_ffff_f000;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const CLONE_THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// An injection context for one process being restored.
struct Ctx {
    pid: i32,
    inj: ptrace::Injector,
    scratch: u64,
    syscall_at: u64,
}

impl Ctx {
    fn call(&mut self, what: &str, nr: i64, args: [u64; 6]) -> Result<u64> {
        let pid = self.pid;
        self.inj
            .call(nr, args)
            .map_err(|e| Error::sys(pid, format!("restore: {what}"), e))
    }

    fn put(&self, off: u64, bytes: &[u8]) -> Result<()> {
        mem::write_remote(self.pid, &[(self.scratch + off, bytes)])
            .map_err(|e| Error::sys(self.pid, "write scratch", e))
    }
}

fn words(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Everything the restore of one process needs from the restorer.
pub(crate) struct Env<'a> {
    pub local: &'a vdso::Local,
    pub scratch_at: u64,
    pub temp_at: u64,
    pub shmem_fds: &'a HashMap<u32, RawFd>,
    pub fd_base: i32,
    pub same_creds: bool,
    /// Epoll registrations to make in each process.
    pub epoll: &'a EpollPlan,
}

/// Per pid: `(epoll fd, [(watched fd, events, data)])`.
pub(crate) type EpollPlan = HashMap<i32, Vec<(i32, Vec<(i32, u32, u64)>)>>;

/// Rebuilds the memory, mm fields, signal state and threads of `p` (see the module doc).
pub(crate) fn rebuild(p: &ProcessImage, pages: &[Chunk], env: &Env<'_>) -> Result<()> {
    let pid = p.pid;
    let local = env.local;
    ptrace::set_sigmask(pid, u64::MAX).map_err(|e| Error::sys(pid, "block signals", e))?;
    let inj = ptrace::Injector::new(pid, local.block.vdso + local.syscall_off)
        .map_err(|e| Error::sys(pid, "read registers", e))?;
    let mut c = Ctx {
        pid,
        inj,
        scratch: env.scratch_at,
        syscall_at: local.block.vdso + local.syscall_off,
    };
    if let Some((addr, len, sig)) =
        ptrace::get_rseq(pid).map_err(|e| Error::sys(pid, "read rseq", e))?
    {
        c.call(
            "rseq unregister",
            libc::SYS_rseq,
            [addr, len as u64, RSEQ_FLAG_UNREGISTER, sig as u64, 0, 0],
        )?;
    }
    // everything but the vdso block goes
    let b = local.block;
    c.call(
        "munmap below vdso",
        libc::SYS_munmap,
        [0, b.start, 0, 0, 0, 0],
    )?;
    c.call(
        "munmap above vdso",
        libc::SYS_munmap,
        [b.end, TASK_SIZE - b.end, 0, 0, 0, 0],
    )?;
    let len = b.end - b.start;
    let target = p.mm.vdso_block.unwrap_or(b.start);
    if target != b.start {
        let mut at = b.start;
        if target < b.start + len && b.start < target + len {
            move_block(&mut c, at, env.temp_at, len)?;
            at = env.temp_at;
        }
        move_block(&mut c, at, target, len)?;
        c.syscall_at = target + (b.vdso - b.start) + local.syscall_off;
        c.inj.set_syscall_at(c.syscall_at);
    }
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    c.call(
        "map scratch",
        libc::SYS_mmap,
        [
            env.scratch_at,
            SCRATCH_LEN,
            rw,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
            u64::MAX,
            0,
        ],
    )?;
    map_areas(&mut c, p, env)?;
    write_pages(&mut c, p, pages)?;
    for v in &p.mm.vmas {
        if v.shared || matches!(v.kind, VmaKind::Vdso) || v.prot as u64 == rw {
            continue;
        }
        c.call(
            "mprotect",
            libc::SYS_mprotect,
            [v.start, v.end - v.start, v.prot as u64, 0, 0, 0],
        )?;
    }
    set_mm(&mut c, p)?;
    c.call(
        "close restorer fds",
        libc::SYS_close_range,
        [env.fd_base as u64, u32::MAX as u64, 0, 0, 0, 0],
    )?;
    for (epfd, targets) in env.epoll.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
        for &(tfd, events, data) in targets {
            // struct epoll_event is packed on x86-64: u32 events, u64 data
            let mut ev = events.to_le_bytes().to_vec();
            ev.extend(data.to_le_bytes());
            c.put(0, &ev)?;
            c.call(
                &format!("epoll_ctl add fd {tfd} to epoll fd {epfd}"),
                libc::SYS_epoll_ctl,
                [
                    *epfd as u64,
                    libc::EPOLL_CTL_ADD as u64,
                    tfd as u64,
                    c.scratch,
                    0,
                    0,
                ],
            )?;
        }
    }
    c.call(
        "personality",
        libc::SYS_personality,
        [p.personality as u64, 0, 0, 0, 0, 0],
    )?;
    c.call(
        "prctl dumpable",
        libc::SYS_prctl,
        [libc::PR_SET_DUMPABLE as u64, p.dumpable as u64, 0, 0, 0, 0],
    )?;
    for (i, sa) in p.sigactions.iter().enumerate() {
        let sig = i as u64 + 1;
        if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
            continue;
        }
        c.put(0, &words(&[sa.handler, sa.flags, sa.restorer, sa.mask]))?;
        c.call(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            [sig, c.scratch, 0, 8, 0, 0],
        )?;
    }
    for &(res, soft, hard) in &p.rlimits {
        c.put(0, &words(&[soft, hard]))?;
        c.call(
            &format!("set rlimit {res} to {soft}/{hard}"),
            libc::SYS_prlimit64,
            [0, res as u64, c.scratch, 0, 0, 0],
        )?;
    }
    // threads: the main thread clones the others with their own tids
    for t in p.threads.iter().skip(1) {
        let tid = t.tid as u64;
        c.put(128, &tid.to_le_bytes())?;
        let mut args = [0u64; 11];
        args[0] = CLONE_THREAD_FLAGS;
        args[8] = c.scratch + 128;
        args[9] = 1;
        c.put(0, &words(&args))?;
        let got = c.call(
            &format!("clone3 thread {tid}"),
            libc::SYS_clone3,
            [c.scratch, 88, 0, 0, 0, 0],
        )?;
        if got != tid {
            return Err(Error::Conflict(format!(
                "pid {pid}: thread created as {got}, not {tid}"
            )));
        }
        ptrace::wait_new_thread(t.tid).map_err(|e| Error::sys(t.tid, "catch new thread", e))?;
    }
    for t in &p.threads {
        thread_state(&mut c, p, t, env)?;
    }
    for si in &p.shared_pending {
        c.put(0, si)?;
        let signo = i32::from_le_bytes([si[0], si[1], si[2], si[3]]) as u64;
        c.call(
            "rt_sigqueueinfo",
            libc::SYS_rt_sigqueueinfo,
            [pid as u64, signo, c.scratch, 0, 0, 0],
        )?;
    }
    if p.no_new_privs {
        c.call(
            "prctl no_new_privs",
            libc::SYS_prctl,
            [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
        )?;
    }
    // a chroot comes after every file was opened by the paths the dumper saw
    if p.root != "/" {
        let mut root = p.root.as_bytes().to_vec();
        root.push(0);
        c.put(0, &root)?;
        c.call(
            &format!("chroot {}", p.root),
            libc::SYS_chroot,
            [c.scratch, 0, 0, 0, 0, 0],
        )?;
    }
    // interval timers last: ITIMER_REAL runs from now on
    for (which, &(interval, value)) in p.itimers.iter().enumerate() {
        if interval == 0 && value == 0 {
            continue;
        }
        c.put(
            0,
            &words(&[
                interval / 1_000_000,
                interval % 1_000_000,
                value / 1_000_000,
                value % 1_000_000,
            ]),
        )?;
        c.call(
            "setitimer",
            libc::SYS_setitimer,
            [which as u64, c.scratch, 0, 0, 0, 0],
        )?;
    }
    c.call(
        "munmap scratch",
        libc::SYS_munmap,
        [env.scratch_at, SCRATCH_LEN, 0, 0, 0, 0],
    )?;
    Ok(())
}

/// Opens a userfaultfd in the process (by an injected call, taken out with `pidfd_getfd`)
/// with its private anonymous areas registered for UFFDIO_COPY.
fn copy_uffd(c: &mut Ctx, anon: &[(u64, u64)]) -> Result<OwnedFd> {
    let pid = c.pid;
    let fd = c.call(
        "userfaultfd",
        libc::SYS_userfaultfd,
        [(libc::O_CLOEXEC | libc::O_NONBLOCK) as u64, 0, 0, 0, 0, 0],
    )?;
    let mine = sfd::pidfd_open(pid)
        .and_then(|pf| sfd::pidfd_getfd(pf.as_fd(), fd as i32))
        .map_err(|e| Error::sys(pid, "take userfaultfd", e));
    c.call("close userfaultfd", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    let mine = mine?;
    mem::uffd_copy::api(mine.as_fd()).map_err(|e| Error::sys(pid, "UFFDIO_API", e))?;
    for &(s, e) in anon {
        mem::uffd_copy::register_missing(mine.as_fd(), s, e - s)
            .map_err(|er| Error::sys(pid, format!("UFFDIO_REGISTER {s:#x}-{e:#x}"), er))?;
    }
    Ok(mine)
}

/// Writes the pages into the process: into private anonymous areas with UFFDIO_COPY (no
/// zeroing, no fault per page), elsewhere with `process_vm_writev`; on two threads when there
/// is enough to share. The copy into fresh pages is the bulk of a restore.
fn write_pages(c: &mut Ctx, p: &ProcessImage, pages: &[Chunk]) -> Result<()> {
    let pid = p.pid;
    let anon: Vec<(u64, u64)> =
        p.mm.vmas
            .iter()
            .filter(|v| matches!(v.kind, VmaKind::Anon) && !v.shared)
            .map(|v| (v.start, v.end))
            .collect();
    // without a userfaultfd (old kernel, no permission) everything goes by process_vm_writev
    let uffd = copy_uffd(c, &anon).ok();
    // (address, bytes, into an anonymous area)
    let mut pieces: Vec<(u64, &[u8], bool)> = Vec::with_capacity(pages.len());
    for ch in pages {
        let (mut at, data) = (ch.addr, ch.data.as_slice());
        let end = at + data.len() as u64;
        let mut i = anon.partition_point(|r| r.1 <= at);
        while at < end {
            let (stop, is_anon) = match anon.get(i) {
                Some(&(s, e)) if s <= at => (e.min(end), uffd.is_some()),
                Some(&(s, _)) => (s.min(end), false),
                None => (end, false),
            };
            let off = (at - ch.addr) as usize;
            pieces.push((at, &data[off..off + (stop - at) as usize], is_anon));
            if anon.get(i).is_some_and(|r| r.1 <= stop) {
                i += 1;
            }
            at = stop;
        }
    }
    let write = |part: &[(u64, &[u8], bool)]| -> Result<()> {
        let plain: Vec<(u64, &[u8])> = part.iter().filter(|p| !p.2).map(|p| (p.0, p.1)).collect();
        mem::write_remote(pid, &plain).map_err(|e| Error::sys(pid, "write pages", e))?;
        if let Some(u) = &uffd {
            for &(a, d, _) in part.iter().filter(|p| p.2) {
                mem::uffd_copy::copy(u.as_fd(), a, d)
                    .map_err(|e| Error::sys(pid, format!("UFFDIO_COPY at {a:#x}"), e))?;
            }
        }
        Ok(())
    };
    let total: usize = pieces.iter().map(|p| p.1.len()).sum();
    if total < 16 << 20 {
        return write(&pieces);
    }
    // split at the piece where half the bytes are reached
    let mut acc = 0;
    let mid = pieces
        .iter()
        .position(|p| {
            acc += p.1.len();
            acc >= total / 2
        })
        .map_or(pieces.len(), |i| i + 1);
    let (a, b) = pieces.split_at(mid);
    let (ra, rb) = crossbeam::thread::scope(|s| {
        let h = s.spawn(|_| write(b));
        (write(a), h.join())
    })
    .map_err(|_| Error::Conflict(format!("pid {pid}: page writer thread panicked")))?;
    ra?;
    rb.map_err(|_| Error::Conflict(format!("pid {pid}: page writer thread panicked")))?
}

fn move_block(c: &mut Ctx, from: u64, to: u64, len: u64) -> Result<()> {
    let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    let r = c
        .inj
        .raw(libc::SYS_mremap, [from, len, len, flags, to, 0])
        .map_err(|e| Error::sys(c.pid, "mremap vdso", e))?;
    if r == to as i64 {
        return Ok(());
    }
    // Kernels before 6.17 move one mapping per call: move the parts of the block one by one.
    let maps = procfs::process::Process::myself()
        .and_then(|p| p.maps())
        .map_err(|e| Error::io("/proc/self/maps", std::io::Error::other(e.to_string())))?;
    let base = vdso::local()?.block.start;
    for m in maps.into_iter().filter(vdso::is_block_part) {
        let (s, e) = (m.address.0 - base + from, m.address.1 - base + from);
        c.call(
            "mremap vdso part",
            libc::SYS_mremap,
            [s, e - s, e - s, flags, s - from + to, 0],
        )?;
    }
    Ok(())
}

fn map_areas(c: &mut Ctx, p: &ProcessImage, env: &Env<'_>) -> Result<()> {
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let mut open: Option<(String, u64, u64)> = None; // path, flags, fd
    for v in &p.mm.vmas {
        let len = v.end - v.start;
        match &v.kind {
            VmaKind::Vdso => continue,
            VmaKind::Anon => {
                let mut fl = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
                if v.growsdown {
                    fl |= libc::MAP_GROWSDOWN;
                }
                c.call(
                    "mmap anon",
                    libc::SYS_mmap,
                    [v.start, len, rw | v.prot as u64, fl as u64, u64::MAX, 0],
                )?;
            }
            VmaKind::File { path, offset, .. } => {
                let oflags = if v.shared && v.prot & libc::PROT_WRITE != 0 {
                    libc::O_RDWR
                } else {
                    libc::O_RDONLY
                } as u64;
                let fd = match &open {
                    Some((pp, f, fd)) if pp == path && *f == oflags => *fd,
                    _ => {
                        if let Some((_, _, fd)) = open.take() {
                            c.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
                        }
                        let mut bytes = path.as_bytes().to_vec();
                        bytes.push(0);
                        if bytes.len() as u64 > SCRATCH_LEN {
                            return Err(Error::Conflict(format!("{path}: path too long")));
                        }
                        c.put(0, &bytes)?;
                        let fd = c.call(
                            &format!("open {path}"),
                            libc::SYS_openat,
                            [
                                libc::AT_FDCWD as u64,
                                c.scratch,
                                oflags | libc::O_CLOEXEC as u64,
                                0,
                                0,
                                0,
                            ],
                        )?;
                        open = Some((path.clone(), oflags, fd));
                        fd
                    }
                };
                let (prot, fl) = if v.shared {
                    (v.prot as u64, libc::MAP_SHARED | libc::MAP_FIXED)
                } else {
                    (rw | v.prot as u64, libc::MAP_PRIVATE | libc::MAP_FIXED)
                };
                c.call(
                    &format!("mmap {path}"),
                    libc::SYS_mmap,
                    [v.start, len, prot, fl as u64, fd, *offset],
                )?;
            }
            VmaKind::SharedAnon { shmem, offset } => {
                let fd = *env.shmem_fds.get(shmem).ok_or_else(|| {
                    Error::Conflict(format!("pid {}: shared memory {shmem} missing", p.pid))
                })?;
                c.call(
                    "mmap shared",
                    libc::SYS_mmap,
                    [
                        v.start,
                        len,
                        v.prot as u64,
                        (libc::MAP_SHARED | libc::MAP_FIXED) as u64,
                        fd as u64,
                        *offset,
                    ],
                )?;
            }
        }
        for &a in &v.advice {
            c.call(
                "madvise",
                libc::SYS_madvise,
                [v.start, len, a as u64, 0, 0, 0],
            )?;
        }
    }
    if let Some((_, _, fd)) = open {
        c.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    }
    Ok(())
}

fn set_mm(c: &mut Ctx, p: &ProcessImage) -> Result<()> {
    let l = &p.mm.layout;
    let auxv = words(&p.mm.auxv);
    c.put(1024, &auxv)?;
    let mut exe = p.mm.exe.as_bytes().to_vec();
    exe.push(0);
    c.put(4096, &exe)?;
    let exe_fd = c.call(
        "open exe",
        libc::SYS_openat,
        [
            libc::AT_FDCWD as u64,
            c.scratch + 4096,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            0,
            0,
            0,
        ],
    )?;
    let mut m = words(&[
        l.start_code,
        l.end_code,
        l.start_data,
        l.end_data,
        l.start_brk,
        l.brk,
        l.start_stack,
        l.arg_start,
        l.arg_end,
        l.env_start,
        l.env_end,
        c.scratch + 1024,
    ]);
    m.extend((auxv.len() as u32).to_le_bytes());
    m.extend((exe_fd as u32).to_le_bytes());
    c.put(0, &m)?;
    c.call(
        "PR_SET_MM_MAP",
        libc::SYS_prctl,
        [PR_SET_MM, PR_SET_MM_MAP, c.scratch, m.len() as u64, 0, 0],
    )?;
    c.call("close exe", libc::SYS_close, [exe_fd, 0, 0, 0, 0, 0])?;
    Ok(())
}

fn thread_state(c: &mut Ctx, p: &ProcessImage, t: &ThreadImage, env: &Env<'_>) -> Result<()> {
    let pid = p.pid;
    let scratch = c.scratch;
    let syscall_at = c.syscall_at;
    let mut other;
    let inj: &mut ptrace::Injector = if t.tid == pid {
        &mut c.inj
    } else {
        other = ptrace::Injector::new(t.tid, syscall_at)
            .map_err(|e| Error::sys(t.tid, "read registers", e))?;
        &mut other
    };
    let tid = t.tid;
    let mut call = |what: &str, nr: i64, args: [u64; 6]| -> Result<u64> {
        inj.call(nr, args)
            .map_err(|e| Error::sys(tid, format!("restore: {what}"), e))
    };
    let put = |off: u64, b: &[u8]| {
        mem::write_remote(pid, &[(scratch + off, b)])
            .map_err(|e| Error::sys(pid, "write scratch", e))
    };
    call(
        "set_tid_address",
        libc::SYS_set_tid_address,
        [t.clear_child_tid, 0, 0, 0, 0, 0],
    )?;
    if t.robust_list.0 != 0 {
        call(
            "set_robust_list",
            libc::SYS_set_robust_list,
            [t.robust_list.0, t.robust_list.1, 0, 0, 0, 0],
        )?;
    }
    if let Some((addr, len, sig)) = t.rseq {
        call(
            "rseq",
            libc::SYS_rseq,
            [addr, len as u64, 0, sig as u64, 0, 0],
        )?;
    }
    if t.altstack.2 != 0 || t.altstack.1 & libc::SS_DISABLE == 0 {
        let mut ss = t.altstack.0.to_le_bytes().to_vec();
        ss.extend((t.altstack.1 as u64).to_le_bytes());
        ss.extend(t.altstack.2.to_le_bytes());
        put(256, &ss)?;
        call(
            "sigaltstack",
            libc::SYS_sigaltstack,
            [scratch + 256, 0, 0, 0, 0, 0],
        )?;
    }
    let mut name = t.comm.as_bytes().to_vec();
    name.truncate(15);
    name.push(0);
    put(512, &name)?;
    call(
        "prctl PR_SET_NAME",
        libc::SYS_prctl,
        [libc::PR_SET_NAME as u64, scratch + 512, 0, 0, 0, 0],
    )?;
    for si in &t.pending {
        put(1024, si)?;
        let signo = i32::from_le_bytes([si[0], si[1], si[2], si[3]]) as u64;
        call(
            "rt_tgsigqueueinfo",
            libc::SYS_rt_tgsigqueueinfo,
            [pid as u64, tid as u64, signo, scratch + 1024, 0, 0],
        )?;
    }
    if !env.same_creds {
        creds(&mut call, &put, p, scratch)?;
    }
    Ok(())
}

/// Sets credentials in the calling (injected) thread: groups, gids, uids keeping the saved
/// capabilities, then the capability sets.
/// An injected system call: `(what, number, arguments) -> result`.
type Call<'a> = dyn FnMut(&str, i64, [u64; 6]) -> Result<u64> + 'a;

fn creds(
    call: &mut Call<'_>,
    put: &dyn Fn(u64, &[u8]) -> Result<()>,
    p: &ProcessImage,
    scratch: u64,
) -> Result<()> {
    let cr = &p.creds;
    for cap in 0..64u64 {
        if cr.caps[3] & (1 << cap) == 0 && cap <= 40 {
            call(
                "drop bounding capability",
                libc::SYS_prctl,
                [libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0, 0],
            )?;
        }
    }
    let groups: Vec<u8> = cr.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    put(2048, &groups)?;
    call(
        "setgroups",
        libc::SYS_setgroups,
        [cr.groups.len() as u64, scratch + 2048, 0, 0, 0, 0],
    )?;
    call(
        "setresgid",
        libc::SYS_setresgid,
        [
            cr.gids[0] as u64,
            cr.gids[1] as u64,
            cr.gids[2] as u64,
            0,
            0,
            0,
        ],
    )?;
    call(
        "setfsgid",
        libc::SYS_setfsgid,
        [cr.gids[3] as u64, 0, 0, 0, 0, 0],
    )?;
    call(
        "keepcaps",
        libc::SYS_prctl,
        [libc::PR_SET_KEEPCAPS as u64, 1, 0, 0, 0, 0],
    )?;
    call(
        "setresuid",
        libc::SYS_setresuid,
        [
            cr.uids[0] as u64,
            cr.uids[1] as u64,
            cr.uids[2] as u64,
            0,
            0,
            0,
        ],
    )?;
    call(
        "setfsuid",
        libc::SYS_setfsuid,
        [cr.uids[3] as u64, 0, 0, 0, 0, 0],
    )?;
    // capset v3: header {version, pid}, two data words {effective, permitted, inheritable}
    let mut b = Vec::new();
    b.extend(0x2008_0522u32.to_le_bytes());
    b.extend(0i32.to_le_bytes());
    for half in 0..2 {
        let part = |v: u64| ((v >> (32 * half)) & 0xffff_ffff) as u32;
        b.extend(part(cr.caps[2]).to_le_bytes());
        b.extend(part(cr.caps[1]).to_le_bytes());
        b.extend(part(cr.caps[0]).to_le_bytes());
    }
    put(2048, &b)?;
    call(
        "capset",
        libc::SYS_capset,
        [scratch + 2048, scratch + 2056, 0, 0, 0, 0],
    )?;
    for cap in 0..64u64 {
        if cr.caps[4] & (1 << cap) != 0 {
            call(
                "raise ambient capability",
                libc::SYS_prctl,
                [
                    libc::PR_CAP_AMBIENT as u64,
                    libc::PR_CAP_AMBIENT_RAISE as u64,
                    cap,
                    0,
                    0,
                    0,
                ],
            )?;
        }
    }
    call(
        "keepcaps",
        libc::SYS_prctl,
        [libc::PR_SET_KEEPCAPS as u64, 0, 0, 0, 0, 0],
    )?;
    Ok(())
}

/// Last step before the tree goes: registers, extended state and signal mask of every thread.
pub(crate) fn finish(p: &ProcessImage) -> Result<()> {
    for t in &p.threads {
        let regs = ptrace::words_to_regs(&t.regs)
            .ok_or_else(|| Error::bad_image(format!("proc-{}.rec", p.pid), "bad register set"))?;
        if !t.xstate.is_empty() {
            ptrace::set_xstate(t.tid, &t.xstate).map_err(|e| Error::sys(t.tid, "set xstate", e))?;
        }
        ptrace::setregs(t.tid, &regs).map_err(|e| Error::sys(t.tid, "set registers", e))?;
        ptrace::set_sigmask(t.tid, t.sigmask)
            .map_err(|e| Error::sys(t.tid, "set signal mask", e))?;
    }
    Ok(())
}
