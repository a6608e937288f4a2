//! The last steps of a restore, by injected system calls into each held process once its
//! memory is complete:
//!
//! ```text
//!  fds (taken from the restorer with pidfd_getfd), cwd, umask; shared anonymous mappings
//!  final protections; PR_SET_MM_MAP (brk, stack, args, env, auxv, exe)
//!  epoll watches, personality, signal dispositions, rlimits
//!  threads (clone3 + set_tid) and their state; pending signals; chroot; interval timers
//! ```
//! Registers and the signal mask are set last, by [`finish`], right before the tree goes.

use std::collections::HashMap;
use std::os::fd::RawFd;

use super::holder::Holder;
use crate::error::{Error, Result};
use crate::image::{ProcessImage, ThreadImage, VmaKind};
use crate::sys::{mem, ptrace};

const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const CLONE_THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

fn words(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Everything the last steps need from the restorer.
pub(crate) struct Env<'a> {
    /// The restorer's pid (the processes take their fds from it).
    pub restorer: i32,
    /// The restorer's fd of each open file, by id.
    pub files: &'a [RawFd],
    /// The restorer's fd of each shared memory object, by id.
    pub shmem_fds: &'a HashMap<u32, RawFd>,
    pub same_creds: bool,
    /// Epoll registrations to make in each process.
    pub epoll: &'a EpollPlan,
}

/// Per pid: `(epoll fd, [(watched fd, events, data)])`.
pub(crate) type EpollPlan = HashMap<i32, Vec<(i32, Vec<(i32, u32, u64)>)>>;

/// Takes fds `(source fd in the restorer, target fd, close-on-exec)` from the restorer into
/// the process: a pidfd of the restorer, moved above every target, then `pidfd_getfd` and
/// `dup3` to each target number.
fn take_fds(h: &mut Holder, restorer: i32, fds: &[(RawFd, i32, bool)]) -> Result<Vec<u64>> {
    let mut got_fds = Vec::with_capacity(fds.len());
    if fds.is_empty() {
        return Ok(got_fds);
    }
    let top = fds.iter().map(|f| f.1).max().unwrap_or(0) as u64 + 1;
    let pidfd = h.call(
        "pidfd_open of the restorer",
        libc::SYS_pidfd_open,
        [restorer as u64, 0, 0, 0, 0, 0],
    )?;
    let high = h.call(
        "fcntl F_DUPFD_CLOEXEC",
        libc::SYS_fcntl,
        [pidfd, libc::F_DUPFD_CLOEXEC as u64, top, 0, 0, 0],
    )?;
    h.call("close", libc::SYS_close, [pidfd, 0, 0, 0, 0, 0])?;
    for &(src, target, cloexec) in fds {
        // pidfd_getfd sets close-on-exec on what it returns
        let got = h.call(
            &format!("take fd {target}"),
            libc::SYS_pidfd_getfd,
            [high, src as u64, 0, 0, 0, 0],
        )?;
        if target < 0 {
            got_fds.push(got);
            continue;
        }
        if got != target as u64 {
            let fl = if cloexec { libc::O_CLOEXEC } else { 0 } as u64;
            h.call(
                &format!("dup3 to fd {target}"),
                libc::SYS_dup3,
                [got, target as u64, fl, 0, 0, 0],
            )?;
            h.call("close", libc::SYS_close, [got, 0, 0, 0, 0, 0])?;
        } else if !cloexec {
            h.call(
                "fcntl F_SETFD",
                libc::SYS_fcntl,
                [got, libc::F_SETFD as u64, 0, 0, 0, 0],
            )?;
        }
        got_fds.push(target as u64);
    }
    h.call("close", libc::SYS_close, [high, 0, 0, 0, 0, 0])?;
    Ok(got_fds)
}

/// Everything of `p` but its memory and registers (see the module doc); its memory is complete
/// and its userfaultfd closed.
pub(crate) fn state(h: &mut Holder, p: &ProcessImage, env: &Env<'_>) -> Result<()> {
    let pid = p.pid;
    let scratch = h.scratch_at()?;
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    // fds; shared memory objects come along at fd numbers above them, to be mapped
    let mut fds: Vec<(RawFd, i32, bool)> = p
        .fds
        .iter()
        .map(|f| {
            env.files
                .get(f.file as usize)
                .map(|&src| (src, f.fd, f.cloexec))
                .ok_or_else(|| Error::bad_image(format!("proc-{pid}.rec"), "unknown file"))
        })
        .collect::<Result<_>>()?;
    let shared_vmas: Vec<_> =
        p.mm.vmas
            .iter()
            .filter_map(|v| match v.kind {
                VmaKind::SharedAnon { shmem, offset } => Some((v, shmem, offset)),
                _ => None,
            })
            .collect();
    for &(_, shmem, _) in &shared_vmas {
        let src = *env
            .shmem_fds
            .get(&shmem)
            .ok_or_else(|| Error::Conflict(format!("pid {pid}: shared memory {shmem} missing")))?;
        fds.push((src, -1, true));
    }
    let taken = take_fds(h, env.restorer, &fds)?;
    for (i, &(v, _, offset)) in shared_vmas.iter().enumerate() {
        let fd = taken[p.fds.len() + i];
        h.call(
            "mmap shared",
            libc::SYS_mmap,
            [
                v.start,
                v.end - v.start,
                v.prot as u64,
                (libc::MAP_SHARED | libc::MAP_FIXED) as u64,
                fd,
                offset,
            ],
        )?;
        h.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    }
    let mut cwd = p.cwd.as_bytes().to_vec();
    cwd.push(0);
    h.put(0, &cwd)?;
    h.call(
        &format!("chdir {}", p.cwd),
        libc::SYS_chdir,
        [scratch, 0, 0, 0, 0, 0],
    )?;
    h.call("umask", libc::SYS_umask, [p.umask as u64, 0, 0, 0, 0, 0])?;
    for v in &p.mm.vmas {
        if !matches!(v.kind, VmaKind::Vdso) {
            for &a in &v.advice {
                h.call(
                    "madvise",
                    libc::SYS_madvise,
                    [v.start, v.end - v.start, a as u64, 0, 0, 0],
                )?;
            }
        }
        if v.shared || matches!(v.kind, VmaKind::Vdso) || v.prot as u64 == rw {
            continue;
        }
        h.call(
            "mprotect",
            libc::SYS_mprotect,
            [v.start, v.end - v.start, v.prot as u64, 0, 0, 0],
        )?;
    }
    set_mm(h, p)?;
    for (epfd, targets) in env.epoll.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
        for &(tfd, events, data) in targets {
            // struct epoll_event is packed on x86-64: u32 events, u64 data
            let mut ev = events.to_le_bytes().to_vec();
            ev.extend(data.to_le_bytes());
            h.put(0, &ev)?;
            h.call(
                &format!("epoll_ctl add fd {tfd} to epoll fd {epfd}"),
                libc::SYS_epoll_ctl,
                [
                    *epfd as u64,
                    libc::EPOLL_CTL_ADD as u64,
                    tfd as u64,
                    scratch,
                    0,
                    0,
                ],
            )?;
        }
    }
    h.call(
        "personality",
        libc::SYS_personality,
        [p.personality as u64, 0, 0, 0, 0, 0],
    )?;
    // the root was to die with its restorer until now (see `sys::spawn`); no process keeps
    // a parent-death signal across a checkpoint
    h.call(
        "prctl pdeathsig",
        libc::SYS_prctl,
        [libc::PR_SET_PDEATHSIG as u64, 0, 0, 0, 0, 0],
    )?;
    h.call(
        "prctl dumpable",
        libc::SYS_prctl,
        [libc::PR_SET_DUMPABLE as u64, p.dumpable as u64, 0, 0, 0, 0],
    )?;
    for (i, sa) in p.sigactions.iter().enumerate() {
        let sig = i as u64 + 1;
        if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
            continue;
        }
        h.put(0, &words(&[sa.handler, sa.flags, sa.restorer, sa.mask]))?;
        h.call(
            "rt_sigaction",
            libc::SYS_rt_sigaction,
            [sig, scratch, 0, 8, 0, 0],
        )?;
    }
    for &(res, soft, hard) in &p.rlimits {
        h.put(0, &words(&[soft, hard]))?;
        h.call(
            &format!("set rlimit {res} to {soft}/{hard}"),
            libc::SYS_prlimit64,
            [0, res as u64, scratch, 0, 0, 0],
        )?;
    }
    // threads: the main thread clones the others with their own tids
    for t in p.threads.iter().skip(1) {
        let tid = t.tid as u64;
        h.put(128, &tid.to_le_bytes())?;
        let mut args = [0u64; 11];
        args[0] = CLONE_THREAD_FLAGS;
        args[8] = scratch + 128;
        args[9] = 1;
        h.put(0, &words(&args))?;
        let got = h.call(
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
    for t in &p.threads {
        thread_state(h, p, t, env)?;
    }
    for si in &p.shared_pending {
        h.put(0, si)?;
        let signo = i32::from_le_bytes([si[0], si[1], si[2], si[3]]) as u64;
        h.call(
            "rt_sigqueueinfo",
            libc::SYS_rt_sigqueueinfo,
            [pid as u64, signo, scratch, 0, 0, 0],
        )?;
    }
    if p.no_new_privs {
        h.call(
            "prctl no_new_privs",
            libc::SYS_prctl,
            [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
        )?;
    }
    // a chroot comes after every file was opened by the paths the dumper saw
    if p.root != "/" {
        let mut root = p.root.as_bytes().to_vec();
        root.push(0);
        h.put(0, &root)?;
        h.call(
            &format!("chroot {}", p.root),
            libc::SYS_chroot,
            [scratch, 0, 0, 0, 0, 0],
        )?;
    }
    // interval timers last: ITIMER_REAL runs from now on
    for (which, &(interval, value)) in p.itimers.iter().enumerate() {
        if interval == 0 && value == 0 {
            continue;
        }
        h.put(
            0,
            &words(&[
                interval / 1_000_000,
                interval % 1_000_000,
                value / 1_000_000,
                value % 1_000_000,
            ]),
        )?;
        h.call(
            "setitimer",
            libc::SYS_setitimer,
            [which as u64, scratch, 0, 0, 0, 0],
        )?;
    }
    h.drop_scratch()
}

/// Throws away signals queued to a held process while it was held (SIGCHLD of children the
/// restore created or ended): the image's own pending signals are queued after this.
pub(crate) fn drain_signals(h: &mut Holder) -> Result<()> {
    h.put(0, &[0u8; 16])?; // struct timespec {0, 0}: do not wait
    let at = h.scratch_at()?;
    h.put(16, &u64::MAX.to_le_bytes())?; // every signal
    for _ in 0..128 {
        let r = h
            .injector()
            .raw(libc::SYS_rt_sigtimedwait, [at + 16, 0, at, 8, 0, 0])
            .map_err(|e| Error::sys(h.pid, "restore: rt_sigtimedwait", e))?;
        if r < 0 {
            return Ok(());
        }
    }
    Ok(())
}

/// Creates zombie `pid` as a child of `parent` and makes it end with wait status `status`.
pub(crate) fn zombie(
    parent: &mut Holder,
    z: &crate::image::ZombieImage,
    pgid: i32,
    sid: i32,
) -> Result<()> {
    let mut h = parent.fork(z.pid, z.exit_signal)?;
    h.scratch = parent.scratch;
    h.set_identity(pgid, sid)?;
    let sig = z.status & 0x7f;
    if sig == 0 {
        let code = ((z.status >> 8) & 0xff) as u64;
        return ptrace::end_by_exit(h.injector(), code).map_err(|e| Error::sys(z.pid, "exit", e));
    }
    // death by a signal: its default action, unblocked, without a core dump
    h.put(0, &[0u8; 32])?;
    let at = h.scratch_at()?;
    h.call(
        "rt_sigaction SIG_DFL",
        libc::SYS_rt_sigaction,
        [sig as u64, at, 0, 8, 0, 0],
    )?;
    crate::sys::fd::set_rlimit(z.pid, libc::RLIMIT_CORE, 0, 0)
        .map_err(|e| Error::sys(z.pid, "set RLIMIT_CORE", e))?;
    ptrace::end_by_signal(z.pid, sig)
        .map_err(|e| Error::sys(z.pid, format!("end by signal {sig}"), e))
}

fn set_mm(c: &mut Holder, p: &ProcessImage) -> Result<()> {
    let scratch = c.scratch_at()?;
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
            scratch + 4096,
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
        scratch + 1024,
    ]);
    m.extend((auxv.len() as u32).to_le_bytes());
    m.extend((exe_fd as u32).to_le_bytes());
    c.put(0, &m)?;
    c.call(
        "PR_SET_MM_MAP",
        libc::SYS_prctl,
        [PR_SET_MM, PR_SET_MM_MAP, scratch, m.len() as u64, 0, 0],
    )?;
    c.call("close exe", libc::SYS_close, [exe_fd, 0, 0, 0, 0, 0])?;
    Ok(())
}

fn thread_state(c: &mut Holder, p: &ProcessImage, t: &ThreadImage, env: &Env<'_>) -> Result<()> {
    let pid = p.pid;
    let scratch = c.scratch_at()?;
    let syscall_at = c.syscall_at;
    let mut other;
    let inj: &mut ptrace::Injector = if t.tid == pid {
        c.injector()
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

/// An injected system call: `(what, number, arguments) -> result`.
type Call<'a> = dyn FnMut(&str, i64, [u64; 6]) -> Result<u64> + 'a;

/// Sets credentials in the calling (injected) thread: groups, gids, uids keeping the saved
/// capabilities, then the capability sets.
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
