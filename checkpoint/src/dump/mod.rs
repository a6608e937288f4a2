//! Dump: check, freeze, collect, write.
//!
//! ```text
//!  check the tree from /proc (unsupported fds and mappings refused, nothing frozen yet)
//!    -> freeze every thread (ptrace seize + interrupt, until the set is stable)
//!    -> per process: fds, mappings; inject into it: signals, timers, brk, thread state
//!       (and, for a pre-dump, create its userfaultfd tracker)
//!    -> pages: present pages (PAGEMAP_SCAN), minus those unchanged since the parent image
//!    -> write inventory, shared objects, shared memory, then each process and its pages
//!    -> kill, resume, stop, or keep the tree frozen for the caller
//! ```
//! A pre-dump saves memory only and lets the tree run while its pages are copied: tracking was
//! armed first, so a page changed during the copy is saved again by the next dump.

pub(crate) mod files;
pub(crate) mod mm;
pub(crate) mod ranges;
pub(crate) mod task;
pub(crate) mod tree;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use procfs::process::VmFlags;

pub use tree::FrozenTree;

use crate::error::{Error, Result};
use crate::image::record::{Kind, RecordWriter, PAGE};
use crate::image::{
    Image, ImageSink, Inventory, MmImage, MmLayout, PageRun, ParentRef, Part, ProcessImage, Shared,
    ShmemImage, VmaKind, ZombieImage,
};
use crate::progress::{self, Meter, Phase, Progress};
use crate::sys::{self, fd as sfd};
use crate::track::{uffd::UffdTracker, DirtyTracker, TrackedRange};
use crate::vdso;
use ranges::Ranges;

/// What happens to the tree once its image is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AfterDump {
    /// Kill every process (like CRIU's default).
    #[default]
    Kill,
    /// Let it run on (`--leave-running`).
    Resume,
    /// Leave it stopped with SIGSTOP (resume with SIGCONT); survives the dumper's exit.
    Stop,
    /// Keep it frozen under ptrace and hand it back in [`DumpOutcome::frozen`], for the caller
    /// to kill once the image is safely restored elsewhere, or to resume.
    KeepFrozen,
}

/// How to dump.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// What happens to the tree afterwards (ignored by pre-dumps, which always resume).
    pub after: AfterDump,
    /// Save memory only and start tracking writes; the tree keeps running.
    pub pre_dump: bool,
    /// For a pre-dump: leave the tracker (a userfaultfd) in the process itself, at a high fd
    /// number, so that a dump made by another process later can take it (the `ssi` CLI does).
    /// Otherwise the tracker lives in the calling process (see [`PreCopy`]).
    pub tracker_in_process: bool,
    /// Where the parent image lies relative to this image's directory (written into the
    /// inventory so that `Image::load` finds the chain).
    pub parent_path: Option<String>,
    /// Told how the dump goes (see [`crate::progress`]).
    pub progress: Option<Progress>,
}

/// What a dump did.
#[derive(Debug)]
pub struct DumpOutcome {
    /// Id of the image written.
    pub image_id: u64,
    /// Pids of the tree, parents first.
    pub pids: Vec<i32>,
    /// Bytes of page data written (process pages and shared memory).
    pub page_bytes: u64,
    /// Bytes of page data left in the parent chain.
    pub parent_bytes: u64,
    /// How long the tree was stopped: from the freeze to the end of the image (for a pre-dump,
    /// until it was let go, before its memory was copied). With [`AfterDump::KeepFrozen`] the
    /// tree is still stopped; this is the time until the image was complete.
    pub frozen_for: std::time::Duration,
    /// The frozen tree, with [`AfterDump::KeepFrozen`].
    pub frozen: Option<FrozenTree>,
}

/// Dumps the tree under `pid` into `sink`. With `prev`, only pages changed since that image
/// (a pre-dump of the same tree) are written; the rest are referenced.
pub fn dump(
    pid: i32,
    opts: &DumpOptions,
    prev: Option<&Image>,
    sink: &mut dyn ImageSink,
) -> Result<DumpOutcome> {
    let mut session = Session::default();
    if let Some(p) = prev {
        session.adopt_parent(p)?;
    }
    run(pid, opts, &mut session, sink)
}

/// Iterative pre-copy of a live tree: a first full copy of memory while it runs, rounds that
/// copy what changed since, then a final dump of the frozen tree with the last changes.
/// Each call writes one image whose parent is the previous one; restore the last with the
/// chain (`Image::read_stream(r, Some(previous))` for streams, `Image::load` for directories).
///
/// Trackers live in this value: it must stay on the thread that created it (ptrace).
#[derive(Debug)]
pub struct PreCopy {
    root: i32,
    session: Session,
}

impl PreCopy {
    /// Starts tracking writes in every process of the tree and writes a first copy of memory.
    pub fn start(pid: i32, sink: &mut dyn ImageSink) -> Result<(PreCopy, DumpOutcome)> {
        let mut pc = PreCopy {
            root: pid,
            session: Session::default(),
        };
        let out = pc.round(sink, None)?;
        Ok((pc, out))
    }

    /// Writes the pages changed since the previous round (the tree keeps running).
    pub fn round(
        &mut self,
        sink: &mut dyn ImageSink,
        parent_path: Option<String>,
    ) -> Result<DumpOutcome> {
        let opts = DumpOptions {
            pre_dump: true,
            parent_path,
            ..Default::default()
        };
        run(self.root, &opts, &mut self.session, sink)
    }

    /// Freezes the tree and writes the full image with the pages changed since the last round.
    pub fn finish(mut self, opts: &DumpOptions, sink: &mut dyn ImageSink) -> Result<DumpOutcome> {
        let opts = DumpOptions {
            pre_dump: false,
            ..opts.clone()
        };
        run(self.root, &opts, &mut self.session, sink)
    }
}

/// State carried from one image of a chain to the next.
#[derive(Debug, Default)]
struct Session {
    trackers: HashMap<i32, Box<dyn DirtyTracker>>,
    /// Tracker fds left inside processes by a pre-dump of another dumper.
    tracker_fds: HashMap<i32, i32>,
    /// Pages each process has in the chain so far.
    avail: HashMap<i32, Ranges>,
    parent_id: Option<u64>,
}

impl Session {
    fn adopt_parent(&mut self, prev: &Image) -> Result<()> {
        self.parent_id = Some(prev.inventory.image_id);
        for p in &prev.processes {
            let r =
                p.mm.pages
                    .iter()
                    .map(|r| (r.start, r.start + r.npages * PAGE))
                    .collect();
            self.avail.insert(p.pid, ranges::normalize(r));
            let Some(fd) = p.tracker_fd else { continue };
            // take the userfaultfd the pre-dump left in the process, if it is still there
            let link = std::fs::read_link(format!("/proc/{}/fd/{fd}", p.pid)).ok();
            if link.as_ref().and_then(|l| l.to_str()) != Some("anon_inode:[userfaultfd]") {
                continue;
            }
            let pidfd = sfd::pidfd_open(p.pid).map_err(|e| Error::sys(p.pid, "pidfd_open", e))?;
            let mine = sfd::pidfd_getfd(pidfd.as_fd(), fd)
                .map_err(|e| Error::sys(p.pid, format!("take tracker fd {fd}"), e))?;
            self.trackers
                .insert(p.pid, Box::new(UffdTracker::adopt(p.pid, mine)?));
            self.tracker_fds.insert(p.pid, fd);
        }
        Ok(())
    }
}

impl Session {
    /// Forgets what it knew of processes that left the tree or whose address space was replaced
    /// (`exec`, or a pid used again): their next image saves them whole.
    fn forget_changed(&mut self, pids: &[i32]) {
        let changed: Vec<i32> = self
            .trackers
            .iter()
            .filter(|(pid, t)| !pids.contains(pid) || !t.mm_alive())
            .map(|(pid, _)| *pid)
            .collect();
        for pid in changed {
            self.trackers.remove(&pid);
            self.avail.remove(&pid);
        }
        self.avail.retain(|pid, _| pids.contains(pid));
        self.tracker_fds.retain(|pid, _| pids.contains(pid));
    }
}

/// What a restore needs to bring back zombie `pid` of the frozen tree.
fn zombie(pid: i32, frozen: &FrozenTree) -> Result<ZombieImage> {
    let st = procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .map_err(|e| {
            Error::io(
                format!("/proc/{pid}/stat"),
                std::io::Error::other(e.to_string()),
            )
        })?;
    if !frozen.pids().contains(&st.ppid) {
        return Err(Error::unsupported(
            pid,
            format!("zombie of parent {}, which is outside the tree", st.ppid),
        ));
    }
    Ok(ZombieImage {
        pid,
        ppid: st.ppid,
        pgid: st.pgrp,
        sid: st.session,
        exit_signal: st.exit_signal.unwrap_or(libc::SIGCHLD),
        status: st.exit_code.unwrap_or(0),
    })
}

fn new_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ ((std::process::id() as u64) << 40)
}

/// Checks, without stopping anything, that every process of the tree can be dumped. A process
/// (other than the root) that exits meanwhile is left out: the freeze will not find it either.
fn precheck(shape: &tree::TreeShape, root: i32, skip: &HashMap<i32, i32>) -> Result<()> {
    let root_st = procfs::process::Process::new(root)
        .and_then(|p| p.stat())
        .map_err(|e| {
            Error::io(
                format!("/proc/{root}/stat"),
                std::io::Error::other(e.to_string()),
            )
        })?;
    let mut tables = Vec::new();
    let mut pidfds = HashMap::new();
    for &pid in &shape.order {
        match precheck_one(shape, pid, &root_st, skip) {
            Ok(Some((table, pidfd))) => {
                tables.push((pid, table));
                pidfds.insert(pid, pidfd);
            }
            Ok(None) => {}
            Err(_) if pid != root && !alive(pid) => {}
            Err(e) => return Err(e),
        }
    }
    // A dry run of the shared file table: pipes and sockets that lead outside the tree are
    // found now, before anything is frozen (the copies of their contents are thrown away).
    files::build(root, &tables, &pidfds)?;
    Ok(())
}

/// True if `pid` exists and has not exited.
fn alive(pid: i32) -> bool {
    sys::ptrace::pid_exists(pid) && !tree::is_zombie(pid)
}

/// Checks one process; `None` if it is gone or a zombie (the freeze decides about zombies).
fn precheck_one(
    shape: &tree::TreeShape,
    pid: i32,
    root_st: &procfs::process::Stat,
    skip: &HashMap<i32, i32>,
) -> Result<Option<(Vec<files::FdEntry>, OwnedFd)>> {
    let proc_ = match procfs::process::Process::new(pid) {
        Ok(p) => p,
        Err(_) => return Ok(None),
    };
    let (Ok(st), Ok(status)) = (proc_.stat(), proc_.status()) else {
        return Ok(None);
    };
    if st.state == 'Z' || st.state == 'X' {
        return Ok(None);
    }
    if status.seccomp.unwrap_or(0) != 0 {
        return Err(Error::unsupported(pid, "the process uses seccomp"));
    }
    if std::fs::read_to_string(format!("/proc/{pid}/timers")).is_ok_and(|t| !t.trim().is_empty()) {
        return Err(Error::unsupported(
            pid,
            "the process has POSIX timers (timer_create)",
        ));
    }
    let in_tree = |x: i32| shape.order.contains(&x);
    if !in_tree(st.session) && st.session != root_st.session {
        return Err(Error::unsupported(
            pid,
            format!("session {} is led from outside the tree", st.session),
        ));
    }
    if !in_tree(st.pgrp) && st.pgrp != root_st.pgrp {
        return Err(Error::unsupported(
            pid,
            format!("process group {} is led from outside the tree", st.pgrp),
        ));
    }
    let skip_fds: Vec<i32> = skip.get(&pid).copied().into_iter().collect();
    let table = files::scan(pid, &skip_fds)?;
    let pidfd = sfd::pidfd_open(pid).map_err(|e| Error::sys(pid, "pidfd_open", e))?;
    mm::mappings(pid, false)?;
    Ok(Some((table, pidfd)))
}

/// How long a dump lets a tree caught in a short-lived state (a `vfork` child before its
/// `exec`, a child closing its fds on its way out) run on before it gives up.
const SETTLE_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Checks and freezes the tree. A final dump needs a settled tree (see
/// [`FrozenTree::unsettled`]): it lets an unsettled tree run a moment and freezes it again.
/// A pre-dump copies memory only and leaves unsettled processes and their subtrees out (the
/// returned set): a later image saves them whole.
fn freeze_settled(
    root: i32,
    opts: &DumpOptions,
    session: &Session,
) -> Result<(FrozenTree, std::collections::HashSet<i32>)> {
    let deadline = std::time::Instant::now() + SETTLE_TIME;
    let mut pause = std::time::Duration::from_micros(500);
    loop {
        let shape = tree::discover(root)?;
        // A process other than the root may change while it is looked at (an fd closed by a
        // child on its way out): look again, up to the deadline.
        match precheck(&shape, root, &session.tracker_fds) {
            Err(e) if e.pid() != Some(root) && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
                continue;
            }
            r => r?,
        }
        let frozen = FrozenTree::freeze(root)?;
        let unsettled = frozen.unsettled();
        if opts.pre_dump {
            let pids: Vec<i32> = unsettled.iter().map(|u| u.0).collect();
            let left_out = frozen.subtrees(&pids);
            return Ok((frozen, left_out));
        }
        let Some((pid, why)) = unsettled.into_iter().next() else {
            return Ok((frozen, Default::default()));
        };
        if std::time::Instant::now() >= deadline {
            return Err(Error::unsupported(pid, why));
        }
        frozen.resume()?;
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

struct Collected {
    image: ProcessImage,
    to_write: Ranges,
    parent_bytes: u64,
    present: Ranges,
    vmas: Vec<mm::VmaInfo>,
}

fn run(
    root: i32,
    opts: &DumpOptions,
    session: &mut Session,
    sink: &mut dyn ImageSink,
) -> Result<DumpOutcome> {
    progress::report(opts.progress.as_ref(), Phase::Preparing, 0, 0);
    let local = vdso::local()?;
    let (frozen, left_out) = freeze_settled(root, opts, session)?;
    let frozen_at = std::time::Instant::now();
    let mut frozen_for = None;
    let pids: Vec<i32> = frozen
        .pids()
        .iter()
        .copied()
        .filter(|p| !left_out.contains(p))
        .collect();
    session.forget_changed(&pids);
    let mut collected = Vec::with_capacity(pids.len());
    let mut tables = Vec::new();
    let mut pidfds: HashMap<i32, OwnedFd> = HashMap::new();
    for &pid in &pids {
        let pidfd = sfd::pidfd_open(pid).map_err(|e| Error::sys(pid, "pidfd_open", e))?;
        let c = collect(pid, &frozen, opts, session, &local, &pidfd)?;
        if !opts.pre_dump {
            let skip: Vec<i32> = session.tracker_fds.get(&pid).copied().into_iter().collect();
            tables.push((pid, files::scan(pid, &skip)?));
        }
        pidfds.insert(pid, pidfd);
        collected.push(c);
    }
    let (mut shared, fdmap) = if opts.pre_dump {
        (Shared::default(), HashMap::new())
    } else {
        files::build(root, &tables, &pidfds)?
    };
    for c in collected.iter_mut() {
        c.image.fds = fdmap.get(&c.image.pid).cloned().unwrap_or_default();
    }
    // shared memory objects: one id per (dev, inode)
    let mut shm_ids: HashMap<(i32, i32, u64), (u32, i32, usize)> = HashMap::new();
    for (ci, c) in collected.iter_mut().enumerate() {
        for (vi, v) in c.vmas.iter().enumerate() {
            if let Some(key) = v.shmem_key {
                let next = shm_ids.len() as u32;
                let (id, _, _) = *shm_ids.entry(key).or_insert((next, ci as i32, vi));
                if let VmaKind::SharedAnon { shmem, .. } = &mut c.image.mm.vmas[vi].kind {
                    *shmem = id;
                }
            }
        }
    }
    let image_id = new_id();
    let inventory = Inventory {
        image_id,
        parent: session.parent_id.map(|id| ParentRef {
            image_id: id,
            path: opts.parent_path.clone(),
        }),
        root_pid: root,
        pids: pids.clone(),
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        vdso_crc: local.crc,
        vdso_block_len: local.block.end - local.block.start,
        pre_dump: opts.pre_dump,
        zombies: if opts.pre_dump {
            Vec::new()
        } else {
            frozen
                .zombies
                .iter()
                .map(|&z| zombie(z, &frozen))
                .collect::<Result<_>>()?
        },
    };
    let mut shm_list: Vec<_> = shm_ids
        .iter()
        .map(|(_, &(id, ci, vi))| (id, ci as usize, vi))
        .collect();
    shm_list.sort_unstable();
    for &(id, ci, vi) in &shm_list {
        let c = &collected[ci];
        let size = mm::shmem_size(c.image.pid, &c.vmas[vi].vma)?;
        shared.shmem.push(ShmemImage { id, size });
    }
    // A pre-dump lets the tree run while its memory is copied.
    let mut frozen = Some(frozen);
    if opts.pre_dump {
        if let Some(f) = frozen.take() {
            f.resume()?;
            frozen_for = Some(frozen_at.elapsed());
        }
    }
    let align = sink.aligned();
    let io = |e| Error::io("<image output>", e);
    let mut page_bytes = 0;
    let shmem_total: u64 = if opts.pre_dump {
        0
    } else {
        shared.shmem.iter().map(|s| s.size).sum()
    };
    let pages_total: u64 = collected
        .iter()
        .flat_map(|c| c.to_write.iter().map(|&(s, e)| e - s))
        .sum();
    let mut meter = Meter::start(opts.progress.as_ref(), shmem_total + pages_total);
    {
        let w = sink.begin(Part::Inventory)?;
        let mut rw = RecordWriter::new(w, align);
        rw.meta(Kind::Inventory, &inventory).map_err(io)?;
        rw.meta(Kind::Shared, &shared).map_err(io)?;
        rw.end().map_err(io)?;
    }
    sink.end()?;
    {
        let w = sink.begin(Part::Shmem)?;
        let mut rw = RecordWriter::new(meter.writer(w), align);
        // Shared memory is not tracked page by page: the final image holds it whole, so a
        // pre-dump only lists the objects.
        if !opts.pre_dump {
            for &(id, ci, vi) in &shm_list {
                let c = &collected[ci];
                page_bytes += mm::write_shmem(c.image.pid, &c.vmas[vi].vma, id, &mut rw)?;
            }
        }
        rw.end().map_err(io)?;
    }
    sink.end()?;
    let mut parent_bytes = 0;
    for c in &collected {
        let pid = c.image.pid;
        {
            let w = sink.begin(Part::Process(pid))?;
            let mut rw = RecordWriter::new(w, align);
            rw.meta(Kind::Process, &c.image).map_err(io)?;
            rw.end().map_err(io)?;
        }
        sink.end()?;
        {
            let w = sink.begin(Part::Pages(pid))?;
            let mut rw = RecordWriter::new(meter.writer(w), align);
            page_bytes += mm::write_pages(pid, &c.to_write, &mut rw, opts.pre_dump)?;
            rw.end().map_err(io)?;
        }
        sink.end()?;
        parent_bytes += c.parent_bytes;
    }
    meter.finish();
    // the chain now holds every page present in this image
    session.parent_id = Some(image_id);
    session.avail = collected
        .iter()
        .map(|c| (c.image.pid, c.present.clone()))
        .collect();
    let mut out = DumpOutcome {
        image_id,
        pids,
        page_bytes,
        parent_bytes,
        frozen_for: frozen_for.unwrap_or_else(|| frozen_at.elapsed()),
        frozen: None,
    };
    if let Some(f) = frozen {
        match opts.after {
            AfterDump::Kill => f.kill()?,
            AfterDump::Resume => f.resume()?,
            AfterDump::Stop => {
                for &p in f.pids() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGSTOP,
                    );
                }
                f.resume()?
            }
            AfterDump::KeepFrozen => out.frozen = Some(f),
        }
    }
    if !opts.pre_dump {
        // Tracking ends with the final dump. Closing a userfaultfd write-unprotects every page
        // it covers, so it is done last, when the tree is already gone or running again.
        session.trackers.clear();
    }
    Ok(out)
}

fn collect(
    pid: i32,
    frozen: &FrozenTree,
    opts: &DumpOptions,
    session: &mut Session,
    local: &vdso::Local,
    pidfd: &OwnedFd,
) -> Result<Collected> {
    let proc_ = procfs::process::Process::new(pid)
        .map_err(|e| Error::io(format!("/proc/{pid}"), std::io::Error::other(e.to_string())))?;
    let perr = |what: &str, e: procfs::ProcError| {
        Error::io(
            format!("/proc/{pid}/{what}"),
            std::io::Error::other(e.to_string()),
        )
    };
    let st = proc_.stat().map_err(|e| perr("stat", e))?;
    let status = proc_.status().map_err(|e| perr("status", e))?;
    let block = mm::vdso_block(pid)?;
    let block = block.ok_or_else(|| Error::unsupported(pid, "the process has no vDSO"))?;
    if block.end - block.start != local.block.end - local.block.start {
        return Err(Error::unsupported(
            pid,
            "its vvar/vdso block differs from this kernel's",
        ));
    }
    let syscall_at = block.vdso + local.syscall_off;
    let mut par = task::Parasite::start(pid, syscall_at)?;
    let tids = frozen.threads.get(&pid).cloned().unwrap_or_default();
    let mut threads = Vec::new();
    let mut sigactions = Vec::new();
    let mut itimers = [(0, 0); 3];
    let (mut brk, mut personality, mut nnp, mut dumpable) = (0, 0, false, 1);
    let mut tracker_fd = None;
    let mut rlimits = Vec::new();
    if !opts.pre_dump {
        for &tid in &tids {
            let taken = frozen.taken.get(&tid).map(Vec::as_slice).unwrap_or(&[]);
            threads.push(task::thread(&mut par, tid, taken)?);
        }
        sigactions = task::sigactions(&mut par)?;
        itimers = task::itimers(&mut par)?;
        brk = par.call("brk", libc::SYS_brk, [0; 6])?;
        personality = par.call(
            "personality",
            libc::SYS_personality,
            [0xffff_ffff, 0, 0, 0, 0, 0],
        )? as u32;
        nnp = par.call(
            "prctl",
            libc::SYS_prctl,
            [libc::PR_GET_NO_NEW_PRIVS as u64, 0, 0, 0, 0, 0],
        )? != 0;
        dumpable = par.call(
            "prctl",
            libc::SYS_prctl,
            [libc::PR_GET_DUMPABLE as u64, 0, 0, 0, 0, 0],
        )? as i32;
        rlimits = task::rlimits(&mut par)?;
        if let Some(fd) = session.tracker_fds.remove(&pid) {
            // the final dump ends the tracking the pre-dump left in the process
            par.call("close", libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
        }
    } else if let std::collections::hash_map::Entry::Vacant(slot) = session.trackers.entry(pid) {
        let fd = par.call(
            "userfaultfd",
            libc::SYS_userfaultfd,
            [sys::mem::uffd::SYSCALL_FLAGS, 0, 0, 0, 0, 0],
        )?;
        let mine = sfd::pidfd_getfd(pidfd.as_fd(), fd as i32)
            .map_err(|e| Error::sys(pid, "take userfaultfd", e))?;
        UffdTracker::enable(pid, &mine)?;
        if opts.tracker_in_process {
            let soft = task::rlimits(&mut par)?[libc::RLIMIT_NOFILE as usize].1;
            let min = soft.saturating_sub(64).clamp(3, 1 << 20);
            let high = par.call(
                "fcntl",
                libc::SYS_fcntl,
                [fd, libc::F_DUPFD_CLOEXEC as u64, min, 0, 0, 0],
            )?;
            tracker_fd = Some(high as i32);
        }
        par.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        slot.insert(Box::new(UffdTracker::adopt(pid, mine)?));
    }
    if tracker_fd.is_none() && opts.pre_dump {
        tracker_fd = session.tracker_fds.get(&pid).copied();
    }
    par.finish()?;
    // mappings and pages, now that the scratch page is gone
    // smaps (madvise flags, uffd registration) costs a page-table walk of the whole address
    // space; a pre-dump needs neither (an unregistered range is reported by PAGEMAP_SCAN)
    let (vmas, _) = mm::mappings(pid, !opts.pre_dump)?;
    let pagemap = mm::open_pagemap(pid)?;
    let present = mm::present_pages(pid, &pagemap, &vmas)?;
    let avail = session.avail.get(&pid).cloned().unwrap_or_default();
    let dirty: Ranges = match session.trackers.get_mut(&pid) {
        Some(t) => {
            let mut d = Vec::new();
            for v in &vmas {
                if !matches!(v.vma.kind, VmaKind::Anon | VmaKind::File { .. }) || v.vma.shared {
                    continue;
                }
                let r = TrackedRange {
                    start: v.vma.start,
                    end: v.vma.end,
                    kernel_tracked: opts.pre_dump || v.flags.contains(VmFlags::UW),
                };
                match t.take_written(r)? {
                    Some(w) => d.extend(w),
                    None => d.push((v.vma.start, v.vma.end)),
                }
            }
            t.end_round()?;
            ranges::normalize(d)
        }
        None => present.clone(),
    };
    let in_parent = ranges::subtract(&ranges::intersect(&present, &avail), &dirty);
    let to_write = ranges::subtract(&present, &in_parent);
    let mut pages: Vec<PageRun> = in_parent
        .iter()
        .map(|&(s, e)| PageRun {
            start: s,
            npages: (e - s) / PAGE,
            in_parent: true,
        })
        .chain(to_write.iter().map(|&(s, e)| PageRun {
            start: s,
            npages: (e - s) / PAGE,
            in_parent: false,
        }))
        .collect();
    pages.sort_unstable_by_key(|r| r.start);
    let layout = MmLayout {
        start_code: st.startcode,
        end_code: st.endcode,
        start_data: st.start_data.unwrap_or(0),
        end_data: st.end_data.unwrap_or(0),
        start_brk: st.start_brk.unwrap_or(0),
        brk,
        start_stack: st.startstack,
        arg_start: st.arg_start.unwrap_or(0),
        arg_end: st.arg_end.unwrap_or(0),
        env_start: st.env_start.unwrap_or(0),
        env_end: st.env_end.unwrap_or(0),
    };
    let auxv_path = format!("/proc/{pid}/auxv");
    let auxv_raw = std::fs::read(&auxv_path).map_err(|e| Error::io(&auxv_path, e))?;
    let auxv = auxv_raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let link = |what: &str| -> Result<String> {
        let p = format!("/proc/{pid}/{what}");
        std::fs::read_link(&p)
            .map(|l| l.to_string_lossy().into_owned())
            .map_err(|e| Error::io(p, e))
    };
    let shared_pending = if opts.pre_dump {
        Vec::new()
    } else {
        sys::ptrace::peek_pending(pid, true)
            .map_err(|e| Error::sys(pid, "read pending signals", e))?
    };
    let parent_bytes = ranges::total(&in_parent);
    let image = ProcessImage {
        pid,
        ppid: if pid == frozen.shape.order[0] {
            0
        } else {
            frozen.shape.parent.get(&pid).copied().unwrap_or(0)
        },
        pgid: st.pgrp,
        sid: st.session,
        exit_signal: st.exit_signal.unwrap_or(libc::SIGCHLD),
        threads,
        mm: MmImage {
            vmas: vmas.iter().map(|v| v.vma.clone()).collect(),
            pages,
            layout,
            auxv,
            exe: link("exe")?,
            vdso_block: Some(block.start),
        },
        fds: Vec::new(),
        cwd: link("cwd")?,
        root: link("root")?,
        umask: status.umask.unwrap_or(0o022),
        rlimits,
        creds: task::creds(&status),
        sigactions,
        shared_pending,
        itimers,
        personality,
        no_new_privs: nnp,
        dumpable,
        tracker_fd,
    };
    Ok(Collected {
        image,
        to_write,
        parent_bytes,
        present,
        vmas,
    })
}
