//! Memory: the mappings of a process, its pages, the mm fields the kernel keeps (brk, code,
//! stack, arguments, environment, auxv, executable), and shared anonymous memory.
//!
//! ```text
//!  dump     maps: classify /proc/PID/smaps        pages: present pages (PAGEMAP_SCAN) minus
//!                                                 those unchanged in the chain, copied out
//!  restore  space: each image of a chain brings   Persist::restore (final image): shared
//!           the address space up to date and      mappings, madvise advice, protections,
//!           its pages are written in              PR_SET_MM_MAP
//! ```
//! The pages travel apart from the manifest (the image's pages parts), so saving the memory
//! part also returns which pages to copy ([`MemDump::plan`]).

pub(crate) mod maps;
pub(crate) mod pages;
pub(crate) mod ranges;
pub(crate) mod shmem;
pub(crate) mod space;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::persist::{Persist, ProcRestore};
use crate::track::DirtyTracker;
use maps::VmaInfo;
use ranges::Ranges;

const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;

/// The address space of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmImage {
    /// Mappings in address order.
    pub vmas: Vec<Vma>,
    /// Pages to restore, in address order; those with `in_parent == false` have their data in
    /// this image's pages part, in this order.
    pub pages: Vec<PageRun>,
    /// The fields of `struct prctl_mm_map` (code, data, brk, stack, args, env).
    pub layout: MmLayout,
    /// Auxiliary vector as saved in /proc/PID/auxv.
    pub auxv: Vec<u64>,
    /// Path of the executable.
    pub exe: String,
    /// Start of the vvar..vdso block, if the process has one.
    pub vdso_block: Option<u64>,
}

/// The memory layout fields the kernel keeps in `mm_struct`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmLayout {
    /// Start of code.
    pub start_code: u64,
    /// End of code.
    pub end_code: u64,
    /// Start of data.
    pub start_data: u64,
    /// End of data.
    pub end_data: u64,
    /// Start of the heap.
    pub start_brk: u64,
    /// Current program break.
    pub brk: u64,
    /// Start of the main stack.
    pub start_stack: u64,
    /// Command line area start.
    pub arg_start: u64,
    /// Command line area end.
    pub arg_end: u64,
    /// Environment area start.
    pub env_start: u64,
    /// Environment area end.
    pub env_end: u64,
}

/// One mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// `PROT_*`.
    pub prot: i32,
    /// `MAP_SHARED` (else private).
    pub shared: bool,
    /// `VM_GROWSDOWN` (a stack).
    pub growsdown: bool,
    /// `madvise` advice to apply again (`MADV_*` values).
    pub advice: Vec<i32>,
    /// Locked in memory (`mlock`, `mlock2`).
    pub lock: MemLock,
    /// Mapped with `MAP_NORESERVE` (no swap space reserved).
    pub noreserve: bool,
    /// May be made writable (`VM_MAYWRITE`: for a shared file mapping, its file was opened
    /// for writing).
    pub may_write: bool,
    /// `MAP_DROPPABLE` anonymous memory: the kernel may drop its pages at any time, so the
    /// image keeps none and it comes back droppable and empty.
    pub droppable: bool,
    /// What backs it.
    pub kind: VmaKind,
}

/// Whether a mapping is locked in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemLock {
    /// Not locked.
    Unlocked,
    /// `mlock`: every page in memory.
    Locked,
    /// `mlock2(MLOCK_ONFAULT)`: pages locked as they are touched.
    OnFault,
}

/// What backs a mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaKind {
    /// Private anonymous memory (heap, stacks, guard areas).
    Anon,
    /// A file; private mappings get their written pages from the image.
    File {
        /// Absolute path.
        path: String,
        /// Offset in the file.
        offset: u64,
        /// File size when dumped, checked at restore.
        size: u64,
    },
    /// A shared anonymous object.
    SharedAnon {
        /// Index into [`crate::image::Shared::shmem`].
        shmem: u32,
        /// Offset in the object.
        offset: u64,
    },
    /// Part of the vvar/vdso block (moved there as a whole at restore).
    Vdso,
}

/// A run of pages to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRun {
    /// Address of the first page.
    pub start: u64,
    /// Number of 4 KiB pages.
    pub npages: u64,
    /// The data is in an earlier image of the chain.
    pub in_parent: bool,
    /// The pages are the parent process' pages at the same addresses, shared copy-on-write
    /// since a fork: no image holds them again, the restore forks the process from its parent
    /// after the parent's memory is in place and keeps them.
    pub cow: bool,
}

impl PageRun {
    /// This image's pages part holds the run's bytes.
    pub fn has_data(&self) -> bool {
        !self.in_parent && !self.cow
    }
}

/// Refuses, before anything is frozen, mappings a restore would not bring back (their smaps
/// flags included).
pub(crate) fn check(pid: i32) -> Result<()> {
    maps::mappings(pid, true).map(drop)
}

/// Refuses, before anything is restored, the files a process maps or runs that are gone or
/// changed size (unless `allow_changed`).
pub(crate) fn check_files(p: &crate::image::ProcessImage, allow_changed: bool) -> Result<()> {
    use crate::state::files::regular::metadata;
    for v in &p.mm.vmas {
        if let VmaKind::File { path, size, .. } = &v.kind {
            let md = metadata(path)?;
            if md.len() != *size && !allow_changed {
                return Err(Error::Conflict(format!(
                    "{path}: size is {} but was {size} when dumped (mapped file changed)",
                    md.len()
                )));
            }
        }
    }
    if !p.mm.exe.is_empty() && std::fs::metadata(&p.mm.exe).is_err() {
        return Err(Error::Conflict(format!(
            "{}: executable of pid {} is gone",
            p.mm.exe, p.pid
        )));
    }
    Ok(())
}

/// The program break of a frozen process (`brk(0)`, injected: /proc does not tell it).
pub(crate) fn brk(par: &mut crate::dump::parasite::Parasite) -> Result<u64> {
    par.call("brk", libc::SYS_brk, [0; 6])
}

/// What saving the memory of a frozen process needs, and what it finds besides the manifest.
pub(crate) struct MemDump<'a> {
    /// The process (no injection session may be open: its scratch area would be saved).
    pub pid: i32,
    /// /proc/PID/stat.
    pub stat: &'a procfs::process::Stat,
    /// Its program break ([`brk`]).
    pub brk: u64,
    /// Start of its vvar/vdso block.
    pub vdso_block: u64,
    /// A pre-dump: memory only, the tree runs on while its pages are copied.
    pub pre_dump: bool,
    /// Pages the earlier images of the chain hold.
    pub avail: &'a [(u64, u64)],
    /// What tracks its writes since the last image, if anything does.
    pub tracker: Option<&'a mut dyn DirtyTracker>,
    /// Its parent in the tree, for a dump that keeps pages shared copy-on-write with it (a
    /// final dump that starts a chain; none for the root).
    pub cow_parent: Option<i32>,
    /// Set by `save`: which pages to copy into the image.
    pub plan: Option<PagePlan>,
}

/// Which pages of a process an image copies, and the mappings they were found in.
#[derive(Debug)]
pub(crate) struct PagePlan {
    /// Pages to copy into the image.
    pub to_write: Ranges,
    /// Every page with contents (what the chain holds once the image is written).
    pub present: Ranges,
    /// Bytes left in the parent images.
    pub parent_bytes: u64,
    /// The mappings, as classified.
    pub vmas: Vec<VmaInfo>,
}

impl Persist for MmImage {
    type Saving<'a> = MemDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    fn save(cx: &mut MemDump<'_>) -> Result<MmImage> {
        let pid = cx.pid;
        // smaps (madvise flags, uffd registration) costs a page-table walk of the whole
        // address space; a pre-dump needs neither (an unregistered range is reported by
        // PAGEMAP_SCAN)
        let vmas = maps::mappings(pid, !cx.pre_dump)?;
        let pagemap = pages::open_pagemap(pid)?;
        let present = pages::present_pages(pid, &pagemap, &vmas)?;
        let dirty = match cx.tracker.as_deref_mut() {
            Some(t) => pages::written(t, &vmas, cx.pre_dump)?,
            None => present.clone(),
        };
        let in_parent = ranges::subtract(&ranges::intersect(&present, cx.avail), &dirty);
        let mut to_write = ranges::subtract(&present, &in_parent);
        let cow = match cx.cow_parent {
            Some(ppid) => pages::shared_with_parent(pid, &pagemap, ppid, &to_write, &vmas)?,
            None => Vec::new(),
        };
        to_write = ranges::subtract(&to_write, &cow);
        let mm = MmImage {
            vmas: vmas.iter().map(|v| v.vma.clone()).collect(),
            pages: pages::page_runs(&in_parent, &cow, &to_write),
            layout: layout(cx.stat, cx.brk),
            auxv: auxv(pid)?,
            exe: exe(pid)?,
            vdso_block: Some(cx.vdso_block),
        };
        cx.plan = Some(PagePlan {
            to_write,
            present,
            parent_bytes: ranges::total(&in_parent),
            vmas,
        });
        Ok(mm)
    }

    /// The final steps: shared mappings, advice, protections, mm fields (the mappings and
    /// pages are in place already, see [`space`]).
    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        map_shared(self, cx)?;
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        for v in &self.vmas {
            if matches!(v.kind, VmaKind::Vdso) {
                continue;
            }
            for &a in &v.advice {
                cx.h.call(
                    "madvise",
                    libc::SYS_madvise,
                    [v.start, v.end - v.start, a as u64, 0, 0, 0],
                )?;
            }
            if !v.shared && v.prot as u64 != rw {
                cx.h.call(
                    "mprotect",
                    libc::SYS_mprotect,
                    [v.start, v.end - v.start, v.prot as u64, 0, 0, 0],
                )?;
            }
            lock(cx, v)?;
        }
        set_mm(self, cx)
    }
}

/// Locks a mapping in memory as it was (while the restorer's CAP_IPC_LOCK lasts).
fn lock(cx: &mut ProcRestore<'_>, v: &Vma) -> Result<()> {
    const MLOCK_ONFAULT: u64 = 1;
    let flags = match v.lock {
        MemLock::Unlocked => return Ok(()),
        MemLock::Locked => 0,
        MemLock::OnFault => MLOCK_ONFAULT,
    };
    cx.h.call(
        &format!("mlock2 {:#x}-{:#x}", v.start, v.end),
        libc::SYS_mlock2,
        [v.start, v.end - v.start, flags, 0, 0, 0],
    )
    .map(drop)
}

fn layout(st: &procfs::process::Stat, brk: u64) -> MmLayout {
    MmLayout {
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
    }
}

fn auxv(pid: i32) -> Result<Vec<u64>> {
    let path = format!("/proc/{pid}/auxv");
    let raw = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

fn exe(pid: i32) -> Result<String> {
    let p = format!("/proc/{pid}/exe");
    std::fs::read_link(&p)
        .map(|l| l.to_string_lossy().into_owned())
        .map_err(|e| Error::io(p, e))
}

/// Maps the shared anonymous objects where the image had them (taken from the restorer).
fn map_shared(mm: &MmImage, cx: &mut ProcRestore<'_>) -> Result<()> {
    let pid = cx.h.pid;
    let shared: Vec<(&Vma, u32, u64)> = mm
        .vmas
        .iter()
        .filter_map(|v| match v.kind {
            VmaKind::SharedAnon { shmem, offset } => Some((v, shmem, offset)),
            _ => None,
        })
        .collect();
    let mut fds = Vec::with_capacity(shared.len());
    for &(_, id, _) in &shared {
        let src = cx
            .tree
            .shmem
            .get(&id)
            .ok_or_else(|| Error::Conflict(format!("pid {pid}: shared memory {id} missing")))?;
        fds.push((std::os::fd::AsRawFd::as_raw_fd(src), -1, true));
    }
    let taken = cx.h.take_fds(cx.tree.restorer, &fds)?;
    for (&(v, _, offset), fd) in shared.iter().zip(taken) {
        cx.h.call(
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
        cx.h.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    }
    Ok(())
}

/// `PR_SET_MM_MAP`: code, data, brk, stack, arguments, environment, auxv and executable in one
/// call (it does not need CAP_SYS_RESOURCE).
fn set_mm(mm: &MmImage, cx: &mut ProcRestore<'_>) -> Result<()> {
    let t = &mut cx.h.task;
    let scratch = t.scratch_at()?;
    let l = &mm.layout;
    t.put_words(1024, &mm.auxv)?;
    let exe_at = t.put_str(4096, &mm.exe)?;
    let exe_fd = t.call(
        "open exe",
        libc::SYS_openat,
        [
            libc::AT_FDCWD as u64,
            exe_at,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            0,
            0,
            0,
        ],
    )?;
    let mut m: Vec<u8> = [
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
    ]
    .iter()
    .flat_map(|w| w.to_le_bytes())
    .collect();
    m.extend(((mm.auxv.len() * 8) as u32).to_le_bytes());
    m.extend((exe_fd as u32).to_le_bytes());
    t.put(0, &m)?;
    t.call(
        "PR_SET_MM_MAP",
        libc::SYS_prctl,
        [PR_SET_MM, PR_SET_MM_MAP, scratch, m.len() as u64, 0, 0],
    )?;
    t.call("close exe", libc::SYS_close, [exe_fd, 0, 0, 0, 0, 0])?;
    Ok(())
}
