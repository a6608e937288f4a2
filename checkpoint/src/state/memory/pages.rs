//! Which pages of a process to save, and copying them out.
//!
//! Pages are found with the PAGEMAP_SCAN ioctl (present or swapped, not the shared zero page;
//! for private file mappings only the private copies, the rest comes back from the file).
//! Copying runs on a helper thread with `process_vm_readv` into reused buffers while the
//! calling thread checksums and writes the previous buffer, so reading and writing overlap.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use super::maps::VmaInfo;
use super::ranges::Ranges;
use super::{PageRun, VmaKind};
use crate::error::{Error, Result};
use crate::image::record::{Kind, RecordWriter, PAGE};
use crate::sys::mem::{self, category, Scan};
use crate::track::{DirtyTracker, TrackedRange};
use procfs::process::VmFlags;

/// Swap type of PTE markers (uffd-wp markers, guard regions): the last of the 32 types.
const SWP_PTE_MARKER: u64 = 31;

/// Pages of `pid` whose contents must be saved (present or swapped, not the zero page; for
/// private file mappings only private copies), as sorted ranges.
///
/// PAGEMAP_SCAN reports every non-present entry as "swapped": real swap entries, migration
/// entries (a page being moved by compaction has content even though it is not present for a
/// moment), and the markers that write tracking leaves on unpopulated pages (no content). The
/// candidates are sorted out in /proc/PID/pagemap by swap type: markers have the last one.
pub(crate) fn present_pages(pid: i32, pagemap: &File, vmas: &[VmaInfo]) -> Result<Ranges> {
    let mut out = Vec::new();
    let mut swapped = Vec::new();
    for v in vmas {
        let inverted = match v.vma.kind {
            // the kernel may drop these at any time: a restore drops them
            VmaKind::Anon if v.vma.droppable => continue,
            VmaKind::Anon => category::PFNZERO,
            VmaKind::File { .. } if !v.vma.shared => category::PFNZERO | category::FILE,
            _ => continue,
        };
        let q = Scan {
            inverted,
            mask: inverted | category::PRESENT,
            anyof: 0,
            write_protect: false,
        };
        let at = |e| {
            Error::sys(
                pid,
                format!("PAGEMAP_SCAN of {:#x}-{:#x}", v.vma.start, v.vma.end),
                e,
            )
        };
        mem::pagemap_scan(pagemap.as_fd(), v.vma.start, v.vma.end, q, &mut out).map_err(at)?;
        let q = Scan {
            mask: inverted | category::SWAPPED,
            ..q
        };
        mem::pagemap_scan(pagemap.as_fd(), v.vma.start, v.vma.end, q, &mut swapped).map_err(at)?;
    }
    for (s, e) in swapped {
        let n = ((e - s) / PAGE) as usize;
        let mut raw = vec![0u8; n * 8];
        pagemap
            .read_exact_at(&mut raw, s / PAGE * 8)
            .map_err(|er| Error::io(format!("/proc/{pid}/pagemap"), er))?;
        for (i, w) in raw.chunks_exact(8).enumerate() {
            let entry = u64::from_le_bytes(w.try_into().unwrap_or_default());
            let is_swap = entry & (1 << 62) != 0;
            if is_swap && (entry & 0x1f) != SWP_PTE_MARKER {
                let a = s + i as u64 * PAGE;
                out.push((a, a + PAGE));
            }
        }
    }
    Ok(super::ranges::normalize(out))
}

/// Pages of `pid` among `runs` that are the very pages its parent `ppid` has at the same
/// addresses (same page frame, anonymous in both: shared copy-on-write since a fork), in
/// mappings that a restore forks with those pages kept (same backing, private, the parent's
/// not locked: locking it again at restore would copy them).
pub(crate) fn shared_with_parent(
    pid: i32,
    pagemap: &File,
    ppid: i32,
    runs: &[(u64, u64)],
    vmas: &[VmaInfo],
) -> Result<Ranges> {
    let pvmas = super::maps::mappings(ppid, true)?;
    let ppagemap = open_pagemap(ppid)?;
    let mut both = Vec::new();
    for v in vmas {
        for pv in &pvmas {
            if pv.vma.end <= v.vma.start || v.vma.end <= pv.vma.start {
                continue;
            }
            if inheritable(&pv.vma, &v.vma) {
                both.push((v.vma.start.max(pv.vma.start), v.vma.end.min(pv.vma.end)));
            }
        }
    }
    let cand = super::ranges::intersect(runs, &super::ranges::normalize(both));
    let mut out = Vec::new();
    for (s, e) in cand {
        let n = ((e - s) / PAGE) as usize;
        let (mut mine, mut theirs) = (vec![0u8; n * 8], vec![0u8; n * 8]);
        let read = |f: &File, p: i32, buf: &mut [u8]| {
            f.read_exact_at(buf, s / PAGE * 8)
                .map_err(|er| Error::io(format!("/proc/{p}/pagemap"), er))
        };
        read(pagemap, pid, &mut mine)?;
        read(&ppagemap, ppid, &mut theirs)?;
        for (i, (a, b)) in mine.chunks_exact(8).zip(theirs.chunks_exact(8)).enumerate() {
            let (a, b) = (word(a), word(b));
            if same_anon_frame(a, b) {
                let at = s + i as u64 * PAGE;
                out.push((at, at + PAGE));
            }
        }
    }
    Ok(super::ranges::normalize(out))
}

fn word(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().unwrap_or_default())
}

/// Two pagemap entries name one present anonymous page frame.
fn same_anon_frame(a: u64, b: u64) -> bool {
    const PRESENT: u64 = 1 << 63;
    const SWAPPED: u64 = 1 << 62;
    const FILE_OR_SHARED: u64 = 1 << 61;
    const PFN: u64 = (1 << 55) - 1;
    let anon = |x: u64| x & (PRESENT | SWAPPED | FILE_OR_SHARED) == PRESENT && x & PFN != 0;
    anon(a) && anon(b) && a & PFN == b & PFN
}

/// A child forked from a process with mapping `parent` at this place gets `child` with the
/// parent's pages: both private with the same backing, the parent's not locked.
fn inheritable(parent: &super::Vma, child: &super::Vma) -> bool {
    use super::{MemLock, VmaKind};
    if parent.shared || child.shared || parent.lock != MemLock::Unlocked {
        return false;
    }
    match (&parent.kind, &child.kind) {
        (VmaKind::Anon, VmaKind::Anon) => {
            parent.growsdown == child.growsdown && !parent.droppable && !child.droppable
        }
        (
            VmaKind::File {
                path: a,
                offset: oa,
                ..
            },
            VmaKind::File {
                path: b,
                offset: ob,
                ..
            },
        ) => a == b && *oa as i128 - parent.start as i128 == *ob as i128 - child.start as i128,
        _ => false,
    }
}

/// Opens /proc/PID/pagemap.
pub(crate) fn open_pagemap(pid: i32) -> Result<File> {
    let path = format!("/proc/{pid}/pagemap");
    File::open(&path).map_err(|e| Error::io(path, e))
}

const CHUNK: usize = 1 << 20;

/// Copies the pages in `runs` out of `pid` and writes them as `Pages` records. Returns bytes.
/// With `tolerant` (pre-dumps of a running tree), pages unmapped meanwhile, or of a process
/// that exited or replaced its address space meanwhile, are saved as zeros: the next dump sees
/// them gone or changed, or the process gone.
pub(crate) fn write_pages<W: Write>(
    pid: i32,
    runs: &[(u64, u64)],
    rw: &mut RecordWriter<W>,
    tolerant: bool,
) -> Result<u64> {
    if runs.is_empty() {
        return Ok(0);
    }
    let mem_path = format!("/proc/{pid}/mem");
    let memf = match File::open(&mem_path) {
        Ok(f) => Some(f),
        Err(_) if tolerant => None,
        Err(e) => return Err(Error::io(&mem_path, e)),
    };
    let memf = memf.as_ref();
    let (full_tx, full_rx) = crossbeam::channel::bounded::<Result<Filled>>(2);
    let (free_tx, free_rx) = crossbeam::channel::bounded::<Vec<u8>>(3);
    for _ in 0..3 {
        let _ = free_tx.send(Vec::new());
    }
    let mut written = 0u64;
    let mut werr: Option<Error> = None;
    crossbeam::thread::scope(|s| {
        s.spawn(|_| {
            let mut pieces = Vec::new();
            let mut fill = 0usize;
            let mut it = runs.iter().copied();
            let mut cur: Option<(u64, u64)> = None;
            loop {
                if cur.is_none() {
                    cur = it.next();
                }
                let Some((a, e)) = cur else { break };
                let take = ((e - a) as usize).min(CHUNK - fill);
                pieces.push((a, fill, take));
                fill += take;
                cur = if a + take as u64 == e {
                    None
                } else {
                    Some((a + take as u64, e))
                };
                if fill == CHUNK {
                    let Ok(buf) = free_rx.recv() else { return };
                    let r = read_into(pid, memf, buf, std::mem::take(&mut pieces), fill, tolerant);
                    fill = 0;
                    // after a failure, stop: its buffer is gone with it, and the writer only
                    // needs the error (waiting for a free buffer would wait forever)
                    let failed = r.is_err();
                    if full_tx.send(r).is_err() || failed {
                        return;
                    }
                }
            }
            if fill > 0 {
                if let Ok(buf) = free_rx.recv() {
                    let _ = full_tx.send(read_into(pid, memf, buf, pieces, fill, tolerant));
                }
            }
            drop(full_tx);
        });
        for msg in full_rx.iter() {
            match msg {
                Ok((buf, pieces, crc)) => {
                    // one record per buffer: its bytes continue the runs in order
                    if werr.is_none() {
                        if let Some(&(addr, _, _)) = pieces.first() {
                            let len: usize = pieces.iter().map(|p| p.2).sum();
                            match rw.data_with_crc(Kind::Pages, pid as u64, addr, &buf[..len], crc)
                            {
                                Ok(()) => written += len as u64,
                                Err(e) => werr = Some(Error::io("<image output>", e)),
                            }
                        }
                    }
                    let _ = free_tx.send(buf);
                }
                Err(e) => {
                    werr.get_or_insert(e);
                }
            }
            if werr.is_some() {
                // let the reader finish quickly: keep draining
                continue;
            }
        }
    })
    .map_err(|_| Error::Conflict(format!("pid {pid}: page reader thread panicked")))?;
    match werr {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

/// A buffer of copied pages, its pieces `(address, offset, length)` (consecutive in the
/// buffer) and the crc32 of the filled part.
type Filled = (Vec<u8>, Vec<(u64, usize, usize)>, u32);

fn read_into(
    pid: i32,
    memf: Option<&File>,
    mut buf: Vec<u8>,
    pieces: Vec<(u64, usize, usize)>,
    fill: usize,
    tolerant: bool,
) -> Result<Filled> {
    if buf.len() < CHUNK {
        buf = vec![0u8; CHUNK]; // calloc: no page is touched before the copy
    }
    let remote: Vec<(u64, usize)> = pieces.iter().map(|&(a, _, l)| (a, l)).collect();
    // a failed copy is retried page by page below
    let n = mem::read_remote(pid, &mut buf[..fill], &remote).unwrap_or_default();
    if n < fill {
        // Unreadable pages (PROT_NONE): /proc/PID/mem ignores protections.
        for &(a, off, l) in &pieces {
            if off + l <= n {
                continue;
            }
            let from = n.max(off);
            let addr = a + (from - off) as u64;
            let got = match memf {
                Some(f) => f.read_exact_at(&mut buf[from..off + l], addr),
                None => Err(std::io::ErrorKind::NotFound.into()),
            };
            if let Err(e) = got {
                if !tolerant {
                    return Err(Error::sys(pid, format!("read memory at {addr:#x}"), e));
                }
                buf[from..off + l].fill(0);
            }
        }
    }
    // checksummed here, on the reading thread, so the writing thread only writes
    let crc = crc32fast::hash(&buf[..fill]);
    Ok((buf, pieces, crc))
}

/// Pages of private mappings written since the tracker's last round (those it does not track
/// are taken whole); the tracker starts a new round.
pub(crate) fn written(
    t: &mut dyn DirtyTracker,
    vmas: &[VmaInfo],
    pre_dump: bool,
) -> Result<Ranges> {
    let mut d = Vec::new();
    for v in vmas {
        if !matches!(v.vma.kind, VmaKind::Anon | VmaKind::File { .. }) || v.vma.shared {
            continue;
        }
        let r = TrackedRange {
            start: v.vma.start,
            end: v.vma.end,
            kernel_tracked: pre_dump || v.flags.contains(VmFlags::UW),
        };
        match t.take_written(r)? {
            Some(w) => d.extend(w),
            None => d.push((v.vma.start, v.vma.end)),
        }
    }
    t.end_round()?;
    Ok(super::ranges::normalize(d))
}

/// The page list of an image: runs kept in the parent image, runs shared copy-on-write with
/// the parent process and runs written in this one, in address order.
pub(crate) fn page_runs(
    in_parent: &[(u64, u64)],
    cow: &[(u64, u64)],
    to_write: &[(u64, u64)],
) -> Vec<PageRun> {
    let run = |in_parent: bool, cow: bool| {
        move |&(s, e): &(u64, u64)| PageRun {
            start: s,
            npages: (e - s) / PAGE,
            in_parent,
            cow,
        }
    };
    let mut pages: Vec<PageRun> = in_parent
        .iter()
        .map(run(true, false))
        .chain(cow.iter().map(run(false, true)))
        .chain(to_write.iter().map(run(false, false)))
        .collect();
    pages.sort_unstable_by_key(|r| r.start);
    pages
}
