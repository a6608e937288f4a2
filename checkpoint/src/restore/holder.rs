//! A process being rebuilt, held stopped under ptrace from the first image that names it until
//! the tree goes, its address space brought to each image of a chain as the image arrives.
//!
//! ```text
//!  create: the root is cloned by the restorer (sys::spawn); every other process is cloned
//!          inside its parent by an injected clone3 with its pid (both start as copies)
//!  bring_to(image): unmap what the image no longer has; move the vvar/vdso block where the
//!          image has it; map a scratch area; map what is new; drop pages the image lost;
//!          then its pages are written (UFFDIO_COPY into fresh anonymous memory, else
//!          process_vm_writev over pages that are there already)
//! ```
//! Address ranges are compared page by page, not mapping by mapping: the same backing (the
//! same file at the same offset, or anonymous memory) at the same address keeps its pages from
//! one image to the next, so a stack or heap that grew, or a mapping split by `mprotect`, costs
//! nothing. The image's protections are applied at the very end; until then every private
//! mapping is writable.

use std::os::fd::{AsFd, OwnedFd};

use crate::dump::ranges::{self, Ranges};
use crate::error::{Error, Result};
use crate::image::record::PAGE;
use crate::image::{ProcessImage, Vma, VmaKind};
use crate::sys::{fd as sfd, mem, ptrace};
use crate::vdso;

/// Size of the scratch area mapped in a held process while an image is applied.
pub(crate) const SCRATCH_LEN: u64 = 64 * 1024;
const TASK_SIZE: u64 = 0x7fff_ffff_f000;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
/// The lowest address the restorer picks for its own areas in a held process.
const HOLE_MIN: u64 = 0x1000_0000;

/// What backs a page, normalized so that two mappings agree on a page exactly when the page
/// keeps its contents from one to the other.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backing {
    /// Private anonymous memory (`growsdown` for stacks).
    Anon { growsdown: bool },
    /// A file, with `offset - start` (the file offset of address 0), private or shared.
    File {
        path: String,
        base: i128,
        shared: bool,
    },
}

fn backing(v: &Vma) -> Option<Backing> {
    match &v.kind {
        VmaKind::Anon if !v.shared => Some(Backing::Anon {
            growsdown: v.growsdown,
        }),
        VmaKind::File { path, offset, .. } => Some(Backing::File {
            path: path.clone(),
            base: *offset as i128 - v.start as i128,
            shared: v.shared,
        }),
        // shared anonymous memory is mapped last, from the final image's objects; the
        // vvar/vdso block moves as a whole
        _ => None,
    }
}

/// A process of the tree being rebuilt, stopped under ptrace by the restoring thread.
#[derive(Debug)]
pub(crate) struct Holder {
    /// Its pid.
    pub pid: i32,
    /// Its parent's pid (0 for the root).
    pub ppid: i32,
    /// Its process group and session as they are now.
    pub pgid: i32,
    pub sid: i32,
    inj: ptrace::Injector,
    /// Address of a `syscall` instruction in its vDSO.
    pub syscall_at: u64,
    /// Start of its vvar..vdso block.
    vdso_at: u64,
    /// Private and file mappings as they are now (those of the last image applied).
    vmas: Vec<Vma>,
    /// Nothing but the vvar/vdso block is its own yet (a copy of the restorer or of a parent).
    fresh: bool,
    /// Pages that hold image data.
    have: Ranges,
    /// Anonymous pages not there yet, filled with UFFDIO_COPY (computed by `bring_to`).
    fill: Ranges,
    uffd: Option<OwnedFd>,
    /// Where its scratch area is, while an image is applied.
    pub scratch: Option<u64>,
}

impl Holder {
    /// Seizes process `pid` (the root, just created by the restorer) and blocks its signals.
    pub fn seize_root(pid: i32, local: &vdso::Local) -> Result<Holder> {
        let opts = nix::sys::ptrace::Options::PTRACE_O_TRACECLONE
            | nix::sys::ptrace::Options::PTRACE_O_TRACEFORK
            | nix::sys::ptrace::Options::PTRACE_O_EXITKILL;
        ptrace::seize_and_stop(pid, opts).map_err(|e| Error::sys(pid, "seize", e))?;
        let syscall_at = local.block.vdso + local.syscall_off;
        let (pgid, sid) = group_and_session(pid)?;
        let mut h = Holder::new(pid, 0, pgid, sid, syscall_at, local.block.start)?;
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
        pgid: i32,
        sid: i32,
        syscall_at: u64,
        vdso_at: u64,
    ) -> Result<Holder> {
        ptrace::set_sigmask(pid, u64::MAX).map_err(|e| Error::sys(pid, "block signals", e))?;
        let inj = ptrace::Injector::new(pid, syscall_at)
            .map_err(|e| Error::sys(pid, "read registers", e))?;
        Ok(Holder {
            pid,
            ppid,
            pgid,
            sid,
            inj,
            syscall_at,
            vdso_at,
            vmas: Vec::new(),
            fresh: true,
            have: Vec::new(),
            fill: Vec::new(),
            uffd: None,
            scratch: None,
        })
    }

    /// Creates process `pid` as a child of this one (a `clone3` with its pid injected here; the
    /// child starts as a copy of this process, stopped under ptrace like it). Needs the scratch
    /// area.
    pub fn fork(&mut self, pid: i32, exit_signal: i32) -> Result<Holder> {
        let scratch = self.scratch_at()?;
        self.put(128, &(pid as u64).to_le_bytes())?;
        let mut args = [0u64; 11];
        args[4] = exit_signal as u64;
        args[8] = scratch + 128;
        args[9] = 1;
        self.put(0, &words(&args))?;
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
        Holder::new(
            pid,
            self.pid,
            self.pgid,
            self.sid,
            self.syscall_at,
            self.vdso_at,
        )
    }

    /// Runs a system call in the process.
    pub fn call(&mut self, what: &str, nr: i64, args: [u64; 6]) -> Result<u64> {
        let pid = self.pid;
        self.inj
            .call(nr, args)
            .map_err(|e| Error::sys(pid, format!("restore: {what}"), e))
    }

    /// The scratch area (mapped by `bring_to`).
    pub fn scratch_at(&self) -> Result<u64> {
        self.scratch
            .ok_or_else(|| Error::Conflict(format!("pid {}: no scratch area", self.pid)))
    }

    /// Writes `bytes` at offset `off` of the scratch area.
    pub fn put(&self, off: u64, bytes: &[u8]) -> Result<()> {
        let at = self.scratch_at()? + off;
        mem::write_remote(self.pid, &[(at, bytes)])
            .map_err(|e| Error::sys(self.pid, "write scratch", e))
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

    /// Brings the address space to image `p` (see the module doc) and maps the scratch area;
    /// `holes` are extra ranges the scratch area must avoid. Afterwards the pages of `p` that
    /// are kept in the parent image are in place, and [`Holder::write`] takes the others.
    pub fn bring_to(&mut self, p: &ProcessImage, local: &vdso::Local) -> Result<()> {
        let pid = self.pid;
        let block_len = local.block.end - local.block.start;
        let target_block = p.mm.vdso_block.unwrap_or(self.vdso_at);
        // what stays: pages under the same backing before and after
        let new: Vec<(u64, u64, Backing)> =
            p.mm.vmas
                .iter()
                .filter_map(|v| backing(v).map(|b| (v.start, v.end, b)))
                .collect();
        let mut kept = Vec::new();
        if !self.fresh {
            for old in &self.vmas {
                let Some(ob) = backing(old) else { continue };
                let i = new.partition_point(|n| n.1 <= old.start);
                for n in new[i..].iter().take_while(|n| n.0 < old.end) {
                    if n.2 == ob {
                        kept.push((old.start.max(n.0), old.end.min(n.1)));
                    }
                }
            }
        }
        let kept = ranges::normalize(kept);
        if self.fresh {
            if let Some((addr, len, sig)) =
                ptrace::get_rseq(pid).map_err(|e| Error::sys(pid, "read rseq", e))?
            {
                // the kernel would write to the restorer's thread area, about to vanish
                self.call(
                    "rseq unregister",
                    libc::SYS_rseq,
                    [addr, len as u64, RSEQ_FLAG_UNREGISTER, sig as u64, 0, 0],
                )?;
            }
            let b = self.vdso_at;
            self.call("munmap below vdso", libc::SYS_munmap, [0, b, 0, 0, 0, 0])?;
            self.call(
                "munmap above vdso",
                libc::SYS_munmap,
                [b + block_len, TASK_SIZE - b - block_len, 0, 0, 0, 0],
            )?;
            self.fresh = false;
        } else {
            let old: Ranges =
                ranges::normalize(self.vmas.iter().map(|v| (v.start, v.end)).collect());
            for (s, e) in ranges::subtract(&old, &kept) {
                self.call("munmap", libc::SYS_munmap, [s, e - s, 0, 0, 0, 0])?;
            }
        }
        // everything the image uses, for the holes the restorer's own areas go into
        let mut used: Ranges = p.mm.vmas.iter().map(|v| (v.start, v.end)).collect();
        used.push((target_block, target_block + block_len));
        used.push((self.vdso_at, self.vdso_at + block_len));
        if target_block != self.vdso_at {
            let mut at = self.vdso_at;
            if target_block < at + block_len && at < target_block + block_len {
                let temp = hole(&used, HOLE_MIN, block_len)?;
                self.move_block(at, temp, block_len, local)?;
                at = temp;
            }
            self.move_block(at, target_block, block_len, local)?;
            self.vdso_at = target_block;
            self.syscall_at =
                target_block + (local.block.vdso - local.block.start) + local.syscall_off;
            self.inj.set_syscall_at(self.syscall_at);
        }
        if self.scratch.is_none() {
            let at = hole(&used, HOLE_MIN, SCRATCH_LEN)?;
            self.call(
                "map scratch",
                libc::SYS_mmap,
                [
                    at,
                    SCRATCH_LEN,
                    (libc::PROT_READ | libc::PROT_WRITE) as u64,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
                    u64::MAX,
                    0,
                ],
            )?;
            self.scratch = Some(at);
        }
        // map what is new
        let mut new_anon = Vec::new();
        let mut open: Option<(String, u64, u64)> = None; // path, open flags, fd
        for v in &p.mm.vmas {
            if backing(v).is_none() {
                continue;
            }
            for (s, e) in ranges::subtract(&[(v.start, v.end)], &kept) {
                self.map(v, s, e, &mut open)?;
                if matches!(v.kind, VmaKind::Anon) {
                    new_anon.push((s, e));
                }
            }
        }
        if let Some((_, _, fd)) = open {
            self.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        }
        let new_anon = ranges::normalize(new_anon);
        if !new_anon.is_empty() {
            self.register(&new_anon)?;
        }
        self.vmas =
            p.mm.vmas
                .iter()
                .filter(|v| backing(v).is_some())
                .cloned()
                .collect();
        // pages: those kept in the parent image must be here; those the image lost go
        let runs = |in_parent: bool| -> Ranges {
            ranges::normalize(
                p.mm.pages
                    .iter()
                    .filter(|r| in_parent || !r.in_parent)
                    .map(|r| (r.start, r.start + r.npages * PAGE))
                    .collect(),
            )
        };
        let all = runs(true);
        let fresh_pages = runs(false);
        let in_parent = ranges::subtract(&all, &fresh_pages);
        let have = ranges::intersect(&self.have, &kept);
        if let Some(&(a, _)) = ranges::subtract(&in_parent, &have).first() {
            return Err(Error::bad_image(
                format!("proc-{pid}.rec"),
                format!("page {a:#x} is kept in a parent image that was not applied"),
            ));
        }
        for (s, e) in ranges::subtract(&have, &all) {
            self.call(
                "madvise MADV_DONTNEED",
                libc::SYS_madvise,
                [s, e - s, libc::MADV_DONTNEED as u64, 0, 0, 0],
            )?;
        }
        let anon: Ranges = ranges::normalize(
            self.vmas
                .iter()
                .filter(|v| matches!(v.kind, VmaKind::Anon))
                .map(|v| (v.start, v.end))
                .collect(),
        );
        let present = ranges::intersect(&have, &all);
        self.fill = if self.uffd.is_some() {
            ranges::subtract(&anon, &present)
        } else {
            Vec::new()
        };
        self.have = all;
        Ok(())
    }

    /// Maps `[s, e)` of image mapping `v` (writable for now), reusing an open file.
    fn map(
        &mut self,
        v: &Vma,
        s: u64,
        e: u64,
        open: &mut Option<(String, u64, u64)>,
    ) -> Result<()> {
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        match &v.kind {
            VmaKind::Anon => {
                let mut fl = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
                if v.growsdown {
                    fl |= libc::MAP_GROWSDOWN;
                }
                self.call(
                    "mmap anon",
                    libc::SYS_mmap,
                    [s, e - s, rw | v.prot as u64, fl as u64, u64::MAX, 0],
                )?;
            }
            VmaKind::File { path, offset, .. } => {
                let oflags = if v.shared && v.prot & libc::PROT_WRITE != 0 {
                    libc::O_RDWR
                } else {
                    libc::O_RDONLY
                } as u64;
                let fd = match open {
                    Some((pp, f, fd)) if pp == path && *f == oflags => *fd,
                    _ => {
                        if let Some((_, _, fd)) = open.take() {
                            self.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
                        }
                        let mut bytes = path.as_bytes().to_vec();
                        bytes.push(0);
                        if bytes.len() as u64 > SCRATCH_LEN {
                            return Err(Error::Conflict(format!("{path}: path too long")));
                        }
                        self.put(0, &bytes)?;
                        let scratch = self.scratch_at()?;
                        let fd = self.call(
                            &format!("open {path}"),
                            libc::SYS_openat,
                            [
                                libc::AT_FDCWD as u64,
                                scratch,
                                oflags | libc::O_CLOEXEC as u64,
                                0,
                                0,
                                0,
                            ],
                        )?;
                        *open = Some((path.clone(), oflags, fd));
                        fd
                    }
                };
                let (prot, fl) = if v.shared {
                    (v.prot as u64, libc::MAP_SHARED | libc::MAP_FIXED)
                } else {
                    (rw | v.prot as u64, libc::MAP_PRIVATE | libc::MAP_FIXED)
                };
                self.call(
                    &format!("mmap {path}"),
                    libc::SYS_mmap,
                    [s, e - s, prot, fl as u64, fd, offset + (s - v.start)],
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Registers fresh anonymous ranges with its userfaultfd (made on first use): UFFDIO_COPY
    /// then fills them without zeroing and without a fault per page. Without a userfaultfd
    /// (old kernel), pages go by `process_vm_writev`.
    fn register(&mut self, anon: &[(u64, u64)]) -> Result<()> {
        if self.uffd.is_none() {
            self.uffd = self.make_uffd().ok();
        }
        let pid = self.pid;
        if let Some(u) = &self.uffd {
            for &(s, e) in anon {
                mem::uffd_copy::register_missing(u.as_fd(), s, e - s)
                    .map_err(|er| Error::sys(pid, format!("UFFDIO_REGISTER {s:#x}-{e:#x}"), er))?;
            }
        }
        Ok(())
    }

    /// A userfaultfd of the process (made by an injected call, taken out with `pidfd_getfd`).
    /// User-mode only: a fault the kernel takes on a missing page (it never should) fails
    /// instead of waiting for the restorer, which would be waiting for it.
    fn make_uffd(&mut self) -> Result<OwnedFd> {
        let pid = self.pid;
        let fd = self.call(
            "userfaultfd",
            libc::SYS_userfaultfd,
            [mem::uffd::SYSCALL_FLAGS, 0, 0, 0, 0, 0],
        )?;
        let mine = sfd::pidfd_open(pid)
            .and_then(|pf| sfd::pidfd_getfd(pf.as_fd(), fd as i32))
            .map_err(|e| Error::sys(pid, "take userfaultfd", e));
        self.call("close userfaultfd", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        let mine = mine?;
        mem::uffd_copy::api(mine.as_fd()).map_err(|e| Error::sys(pid, "UFFDIO_API", e))?;
        Ok(mine)
    }

    /// Closes its userfaultfd, which unregisters every range: done before any injected call
    /// that makes the kernel touch the process' memory.
    pub fn end_fill(&mut self) {
        self.uffd = None;
        self.fill.clear();
    }

    /// A writer of page data into the process (usable from other threads).
    pub fn writer(&self) -> PageWriter<'_> {
        PageWriter {
            pid: self.pid,
            uffd: self.uffd.as_ref(),
            fill: &self.fill,
        }
    }

    /// Unmaps the scratch area.
    pub fn drop_scratch(&mut self) -> Result<()> {
        if let Some(at) = self.scratch.take() {
            self.call(
                "munmap scratch",
                libc::SYS_munmap,
                [at, SCRATCH_LEN, 0, 0, 0, 0],
            )?;
        }
        Ok(())
    }

    fn move_block(&mut self, from: u64, to: u64, len: u64, local: &vdso::Local) -> Result<()> {
        let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
        let r = self
            .inj
            .raw(libc::SYS_mremap, [from, len, len, flags, to, 0])
            .map_err(|e| Error::sys(self.pid, "mremap vdso", e))?;
        if r != to as i64 {
            // Kernels before 6.17 move one mapping per call: move the parts one by one.
            let maps = procfs::process::Process::myself()
                .and_then(|p| p.maps())
                .map_err(|e| Error::io("/proc/self/maps", std::io::Error::other(e.to_string())))?;
            let base = local.block.start;
            for m in maps.into_iter().filter(vdso::is_block_part) {
                let (s, e) = (m.address.0 - base + from, m.address.1 - base + from);
                self.call(
                    "mremap vdso part",
                    libc::SYS_mremap,
                    [s, e - s, e - s, flags, s - from + to, 0],
                )?;
            }
        }
        // the syscall instruction moved with the block
        let off = self.syscall_at - from;
        self.syscall_at = to + off;
        self.inj.set_syscall_at(self.syscall_at);
        Ok(())
    }

    /// Kills it (it must not be waited for by anyone but its parent afterwards).
    pub fn kill(&self) {
        ptrace::kill9(self.pid);
    }

    /// The injector of its main thread (for the last steps of the restore).
    pub fn injector(&mut self) -> &mut ptrace::Injector {
        &mut self.inj
    }
}

/// Writes page data into a held process: into anonymous pages not there yet with UFFDIO_COPY,
/// elsewhere with `process_vm_writev`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageWriter<'a> {
    pid: i32,
    uffd: Option<&'a OwnedFd>,
    fill: &'a [(u64, u64)],
}

impl PageWriter<'_> {
    /// Writes `data` at `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<()> {
        let pid = self.pid;
        let end = addr + data.len() as u64;
        let mut at = addr;
        let mut i = self.fill.partition_point(|r| r.1 <= at);
        let mut plain: Vec<(u64, &[u8])> = Vec::new();
        while at < end {
            let (stop, fill) = match self.fill.get(i) {
                Some(&(s, e)) if s <= at => (e.min(end), true),
                Some(&(s, _)) => (s.min(end), false),
                None => (end, false),
            };
            let off = (at - addr) as usize;
            let piece = &data[off..off + (stop - at) as usize];
            match self.uffd {
                Some(u) if fill => {
                    if let Err(e) = mem::uffd_copy::copy(u.as_fd(), at, piece) {
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(Error::sys(pid, format!("UFFDIO_COPY at {at:#x}"), e));
                        }
                        // a page there already: write over it
                        plain.push((at, piece));
                    }
                }
                _ => plain.push((at, piece)),
            }
            if self.fill.get(i).is_some_and(|r| r.1 <= stop) {
                i += 1;
            }
            at = stop;
        }
        mem::write_remote(pid, &plain).map_err(|e| Error::sys(pid, "write pages", e))
    }
}

fn words(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Process group and session of `pid`.
fn group_and_session(pid: i32) -> Result<(i32, i32)> {
    let p = nix::unistd::Pid::from_raw(pid);
    let pgid = nix::unistd::getpgid(Some(p)).map_err(|e| Error::sys(pid, "getpgid", e))?;
    let sid = nix::unistd::getsid(Some(p)).map_err(|e| Error::sys(pid, "getsid", e))?;
    Ok((pgid.as_raw(), sid.as_raw()))
}

/// A free `size`-byte hole above `min`, away from `used` by a page on each side.
pub(crate) fn hole(used: &[(u64, u64)], min: u64, size: u64) -> Result<u64> {
    let used = ranges::normalize(used.to_vec());
    let mut at = min;
    for &(s, e) in &used {
        if e + PAGE <= at {
            continue;
        }
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
