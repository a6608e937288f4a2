//! The address space of a held process, brought to each image of a chain as the image arrives.
//!
//! ```text
//!  bring_to(image): unmap what the image no longer has; move the vvar/vdso block where the
//!          image has it; map a scratch area; map what is new; drop pages the image lost;
//!          then its pages are written (UFFDIO_COPY into fresh anonymous memory, else
//!          process_vm_writev over pages that are there already)
//! ```
//! Address ranges are compared page by page, not mapping by mapping: the same backing (the
//! same file at the same offset, or anonymous memory) at the same address keeps its pages from
//! one image to the next, so a stack or heap that grew, or a mapping split by `mprotect`, costs
//! nothing. The image's protections are applied at the very end (`Persist::restore` of the
//! memory part); until then every private mapping is writable.

use std::os::fd::{AsFd, OwnedFd};

use super::ranges::{self, Ranges};
use super::{Vma, VmaKind};
use crate::error::{Error, Result};
use crate::image::record::PAGE;
use crate::image::ProcessImage;
use crate::restore::holder::{Task, SCRATCH_LEN};
use crate::sys::{fd as sfd, mem, ptrace};
use crate::vdso;

const TASK_SIZE: u64 = 0x7fff_ffff_f000;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
/// The mapping type of droppable anonymous memory (Linux 6.11; not in libc yet).
const MAP_DROPPABLE: i32 = 0x08;
/// The lowest address the restorer picks for its own areas in a held process.
const HOLE_MIN: u64 = 0x1000_0000;

/// What backs a page, normalized so that two mappings agree on a page exactly when the page
/// keeps its contents from one to the other.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backing {
    /// Private anonymous memory (`growsdown` for stacks), or droppable.
    Anon { growsdown: bool, droppable: bool },
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
            droppable: v.droppable,
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

/// The address space of a held process as the images applied so far made it.
#[derive(Debug)]
pub(crate) struct Space {
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
}

impl Space {
    /// A fresh copy of another process whose vvar/vdso block starts at `vdso_at`.
    pub fn new(vdso_at: u64) -> Space {
        Space {
            vdso_at,
            vmas: Vec::new(),
            fresh: true,
            have: Vec::new(),
            fill: Vec::new(),
            uffd: None,
        }
    }

    /// The space of a child just cloned from this process: a copy of its mappings and pages
    /// (those the child's image has under the same backing are kept, so that pages shared
    /// copy-on-write at the dump are shared again).
    pub fn for_child(&self) -> Space {
        if self.fresh {
            return Space::new(self.vdso_at);
        }
        Space {
            vdso_at: self.vdso_at,
            vmas: self.vmas.clone(),
            fresh: false,
            have: self.have.clone(),
            fill: Vec::new(),
            uffd: None,
        }
    }

    /// Nothing but the vvar/vdso block is its own yet.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Brings the address space to image `p` (see the module doc) and maps the scratch area.
    /// Afterwards the pages of `p` that are kept in the parent image are in place, and
    /// [`Space::writer`] takes the others.
    pub fn bring_to(&mut self, t: &mut Task, p: &ProcessImage, local: &vdso::Local) -> Result<()> {
        let kept = self.kept(p);
        self.clear(t, &kept, local)?;
        let block_len = local.block.end - local.block.start;
        let target_block = p.mm.vdso_block.unwrap_or(self.vdso_at);
        // everything the image uses, for the holes the restorer's own areas go into
        let mut used: Ranges = p.mm.vmas.iter().map(|v| (v.start, v.end)).collect();
        used.push((target_block, target_block + block_len));
        used.push((self.vdso_at, self.vdso_at + block_len));
        if target_block != self.vdso_at {
            self.place_vdso(t, target_block, &used, local)?;
        }
        if let Ok(at) = t.scratch_at() {
            // inherited from the parent where the image may have a mapping: move it
            if !ranges::intersect(&ranges::normalize(used.clone()), &[(at, at + SCRATCH_LEN)])
                .is_empty()
            {
                t.call(
                    "munmap scratch",
                    libc::SYS_munmap,
                    [at, SCRATCH_LEN, 0, 0, 0, 0],
                )?;
                t.set_scratch(None);
            }
        }
        if t.scratch_at().is_err() {
            map_scratch(t, &used)?;
        }
        let new_anon = self.map_new(t, p, &kept)?;
        if !new_anon.is_empty() {
            self.register(t, &new_anon)?;
        }
        self.vmas =
            p.mm.vmas
                .iter()
                .filter(|v| backing(v).is_some())
                .cloned()
                .collect();
        self.update_pages(t, p, &kept)
    }

    /// What stays from the mappings it has now: pages under the same backing in `p`.
    fn kept(&self, p: &ProcessImage) -> Ranges {
        if self.fresh {
            return Vec::new();
        }
        let new: Vec<(u64, u64, Backing)> =
            p.mm.vmas
                .iter()
                .filter_map(|v| backing(v).map(|b| (v.start, v.end, b)))
                .collect();
        let mut kept = Vec::new();
        for old in &self.vmas {
            let Some(ob) = backing(old) else { continue };
            let i = new.partition_point(|n| n.1 <= old.start);
            for n in new[i..].iter().take_while(|n| n.0 < old.end) {
                if n.2 == ob {
                    kept.push((old.start.max(n.0), old.end.min(n.1)));
                }
            }
        }
        ranges::normalize(kept)
    }

    /// Unmaps what is not kept: for a fresh copy, everything but the vvar/vdso block.
    fn clear(&mut self, t: &mut Task, kept: &[(u64, u64)], local: &vdso::Local) -> Result<()> {
        if !self.fresh {
            let old: Ranges =
                ranges::normalize(self.vmas.iter().map(|v| (v.start, v.end)).collect());
            for (s, e) in ranges::subtract(&old, kept) {
                t.call("munmap", libc::SYS_munmap, [s, e - s, 0, 0, 0, 0])?;
            }
            return Ok(());
        }
        let pid = t.pid();
        if let Some((addr, len, sig)) =
            ptrace::get_rseq(pid).map_err(|e| Error::sys(pid, "read rseq", e))?
        {
            // the kernel would write to the restorer's thread area, about to vanish
            t.call(
                "rseq unregister",
                libc::SYS_rseq,
                [addr, len as u64, RSEQ_FLAG_UNREGISTER, sig as u64, 0, 0],
            )?;
        }
        let (b, len) = (self.vdso_at, local.block.end - local.block.start);
        t.call("munmap below vdso", libc::SYS_munmap, [0, b, 0, 0, 0, 0])?;
        t.call(
            "munmap above vdso",
            libc::SYS_munmap,
            [b + len, TASK_SIZE - b - len, 0, 0, 0, 0],
        )?;
        self.fresh = false;
        Ok(())
    }

    /// Moves the vvar/vdso block to `target` (through a free hole when the two overlap).
    fn place_vdso(
        &mut self,
        t: &mut Task,
        target: u64,
        used: &[(u64, u64)],
        local: &vdso::Local,
    ) -> Result<()> {
        let block_len = local.block.end - local.block.start;
        let mut at = self.vdso_at;
        if target < at + block_len && at < target + block_len {
            let temp = hole(used, HOLE_MIN, block_len)?;
            move_block(t, at, temp, block_len, local)?;
            at = temp;
        }
        move_block(t, at, target, block_len, local)?;
        self.vdso_at = target;
        t.set_syscall_at(target + (local.block.vdso - local.block.start) + local.syscall_off);
        Ok(())
    }

    /// Maps the ranges of `p` that are not kept; returns the new anonymous ones.
    fn map_new(&mut self, t: &mut Task, p: &ProcessImage, kept: &[(u64, u64)]) -> Result<Ranges> {
        let mut new_anon = Vec::new();
        let mut open: Option<(String, u64, u64)> = None; // path, open flags, fd
        for v in &p.mm.vmas {
            if backing(v).is_none() {
                continue;
            }
            for (s, e) in ranges::subtract(&[(v.start, v.end)], kept) {
                map(t, v, s, e, &mut open)?;
                // userfaultfd does not take droppable memory (which gets no pages anyway)
                if matches!(v.kind, VmaKind::Anon) && !v.droppable {
                    new_anon.push((s, e));
                }
            }
        }
        if let Some((_, _, fd)) = open {
            t.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        }
        Ok(ranges::normalize(new_anon))
    }

    /// Pages: those kept in the parent image must be here already; those the image lost go.
    /// Computes the anonymous pages still to fill.
    fn update_pages(&mut self, t: &mut Task, p: &ProcessImage, kept: &[(u64, u64)]) -> Result<()> {
        let runs = |in_parent: bool| -> Ranges {
            ranges::normalize(
                p.mm.pages
                    .iter()
                    .filter(|r| in_parent || r.has_data())
                    .map(|r| (r.start, r.start + r.npages * PAGE))
                    .collect(),
            )
        };
        let all = runs(true);
        let in_parent = ranges::subtract(&all, &runs(false));
        let have = ranges::intersect(&self.have, kept);
        if let Some(&(a, _)) = ranges::subtract(&in_parent, &have).first() {
            return Err(Error::bad_image(
                format!("proc-{}.rec", p.pid),
                format!(
                    "page {a:#x} is kept in a parent image or shared with the parent process, \
                     and is not there"
                ),
            ));
        }
        for (s, e) in ranges::subtract(&have, &all) {
            t.call(
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

    /// Registers fresh anonymous ranges with its userfaultfd (made on first use): UFFDIO_COPY
    /// then fills them without zeroing and without a fault per page. Without a userfaultfd
    /// (old kernel), pages go by `process_vm_writev`.
    fn register(&mut self, t: &mut Task, anon: &[(u64, u64)]) -> Result<()> {
        if self.uffd.is_none() {
            self.uffd = make_uffd(t).ok();
        }
        let pid = t.pid();
        if let Some(u) = &self.uffd {
            for &(s, e) in anon {
                mem::uffd_copy::register_missing(u.as_fd(), s, e - s)
                    .map_err(|er| Error::sys(pid, format!("UFFDIO_REGISTER {s:#x}-{e:#x}"), er))?;
            }
        }
        Ok(())
    }

    /// Closes its userfaultfd, which unregisters every range: done before any injected call
    /// that makes the kernel touch the process' memory.
    pub fn end_fill(&mut self) {
        self.uffd = None;
        self.fill.clear();
    }

    /// A writer of page data into process `pid` (usable from other threads).
    pub fn writer(&self, pid: i32) -> PageWriter<'_> {
        PageWriter {
            pid,
            uffd: self.uffd.as_ref(),
            fill: &self.fill,
        }
    }
}

/// Maps the scratch area in a hole away from `used`.
fn map_scratch(t: &mut Task, used: &[(u64, u64)]) -> Result<()> {
    let at = hole(used, HOLE_MIN, SCRATCH_LEN)?;
    t.call(
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
    t.set_scratch(Some(at));
    Ok(())
}

/// Maps `[s, e)` of image mapping `v` (writable for now), reusing an open file.
fn map(t: &mut Task, v: &Vma, s: u64, e: u64, open: &mut Option<(String, u64, u64)>) -> Result<()> {
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    match &v.kind {
        VmaKind::Anon => {
            let kind = if v.droppable {
                MAP_DROPPABLE
            } else {
                libc::MAP_PRIVATE
            };
            let mut fl = kind | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
            if v.growsdown {
                fl |= libc::MAP_GROWSDOWN;
            }
            if v.noreserve {
                fl |= libc::MAP_NORESERVE;
            }
            t.call(
                "mmap anon",
                libc::SYS_mmap,
                [s, e - s, rw | v.prot as u64, fl as u64, u64::MAX, 0],
            )?;
        }
        VmaKind::File { path, offset, .. } => {
            let fd = open_for_map(t, v, path, open)?;
            let (prot, mut fl) = if v.shared {
                (v.prot as u64, libc::MAP_SHARED | libc::MAP_FIXED)
            } else {
                (rw | v.prot as u64, libc::MAP_PRIVATE | libc::MAP_FIXED)
            };
            if v.noreserve {
                fl |= libc::MAP_NORESERVE;
            }
            t.call(
                &format!("mmap {path}"),
                libc::SYS_mmap,
                [s, e - s, prot, fl as u64, fd, offset + (s - v.start)],
            )?;
        }
        _ => {}
    }
    Ok(())
}

/// An fd of `path` in the process, opened as mapping `v` needs, reusing the last one opened.
fn open_for_map(
    t: &mut Task,
    v: &Vma,
    path: &str,
    open: &mut Option<(String, u64, u64)>,
) -> Result<u64> {
    // a shared mapping of a file opened for writing may be made writable later (mprotect)
    let oflags = if v.shared && (v.prot & libc::PROT_WRITE != 0 || v.may_write) {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    } as u64;
    if let Some((pp, f, fd)) = open {
        if pp == path && *f == oflags {
            return Ok(*fd);
        }
    }
    if let Some((_, _, fd)) = open.take() {
        t.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    }
    let at = t.put_str(0, path)?;
    let fd = t.call(
        &format!("open {path}"),
        libc::SYS_openat,
        [
            libc::AT_FDCWD as u64,
            at,
            oflags | libc::O_CLOEXEC as u64,
            0,
            0,
            0,
        ],
    )?;
    *open = Some((path.to_string(), oflags, fd));
    Ok(fd)
}

/// A userfaultfd of the process (made by an injected call, taken out with `pidfd_getfd`).
/// User-mode only: a fault the kernel takes on a missing page (it never should) fails
/// instead of waiting for the restorer, which would be waiting for it.
fn make_uffd(t: &mut Task) -> Result<OwnedFd> {
    let pid = t.pid();
    let fd = t.call(
        "userfaultfd",
        libc::SYS_userfaultfd,
        [mem::uffd::SYSCALL_FLAGS, 0, 0, 0, 0, 0],
    )?;
    let mine = sfd::pidfd_open(pid)
        .and_then(|pf| sfd::pidfd_getfd(pf.as_fd(), fd as i32))
        .map_err(|e| Error::sys(pid, "take userfaultfd", e));
    t.call("close userfaultfd", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    let mine = mine?;
    mem::uffd_copy::api(mine.as_fd()).map_err(|e| Error::sys(pid, "UFFDIO_API", e))?;
    Ok(mine)
}

/// Moves the vvar/vdso block from `from` to `to`.
fn move_block(t: &mut Task, from: u64, to: u64, len: u64, local: &vdso::Local) -> Result<()> {
    let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    let r = t.raw(
        "mremap vdso",
        libc::SYS_mremap,
        [from, len, len, flags, to, 0],
    )?;
    if r != to as i64 {
        // Kernels before 6.17 move one mapping per call: move the parts one by one.
        let maps = procfs::process::Process::myself()
            .and_then(|p| p.maps())
            .map_err(|e| Error::procfs("/proc/self/maps", e))?;
        let base = local.block.start;
        for m in maps.into_iter().filter(vdso::is_block_part) {
            let (s, e) = (m.address.0 - base + from, m.address.1 - base + from);
            t.call(
                "mremap vdso part",
                libc::SYS_mremap,
                [s, e - s, e - s, flags, s - from + to, 0],
            )?;
        }
    }
    // the syscall instruction moved with the block
    let off = t.syscall_at() - from;
    t.set_syscall_at(to + off);
    Ok(())
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
