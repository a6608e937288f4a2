//! The mappings of a process, read from /proc/PID/maps or smaps and classified; a mapping that
//! cannot be restored is refused, naming it.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use procfs::process::{MMPermissions, MMapPath, MemoryMap, MemoryMaps, VmFlags};
use procfs::FromBufRead;

use super::{MemLock, Vma, VmaKind};
use crate::error::{Error, Result};
use crate::vdso;

/// `(device major, minor, inode)` of a shared memory object.
pub(crate) type ShmemKey = (i32, i32, u64);

/// A mapping as found in /proc/PID/smaps, classified.
#[derive(Debug, Clone)]
pub(crate) struct VmaInfo {
    pub vma: Vma,
    pub flags: VmFlags,
    /// `(dev, inode)` of a shared memory object.
    pub shmem_key: Option<ShmemKey>,
}

/// A mapping with the VmFlags of smaps that the procfs crate does not know (`lf`, `sl`, ...).
struct Mapping {
    m: MemoryMap,
    more_flags: Vec<String>,
}

fn read_maps(pid: i32, smaps: bool) -> Result<Vec<Mapping>> {
    let path = format!("/proc/{pid}/{}", if smaps { "smaps" } else { "maps" });
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let maps = MemoryMaps::from_buf_read(text.as_bytes()).map_err(|e| Error::procfs(&path, e))?;
    let mut more = if smaps {
        raw_flags(&text)
    } else {
        HashMap::new()
    };
    Ok(maps
        .into_iter()
        .map(|m| Mapping {
            more_flags: more.remove(&m.address.0).unwrap_or_default(),
            m,
        })
        .collect())
}

/// The VmFlags of each mapping of an smaps text, by start address, as the kernel wrote them.
fn raw_flags(smaps: &str) -> HashMap<u64, Vec<String>> {
    let mut out = HashMap::new();
    let mut start = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(s) = start.take() {
                out.insert(s, flags.split_whitespace().map(str::to_string).collect());
            }
        } else if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, _)) = range.split_once('-') {
                if let Ok(s) = u64::from_str_radix(a, 16) {
                    start = Some(s);
                }
            }
        }
    }
    out
}

/// Where the vvar/vdso block of `pid` is (from /proc/PID/maps, cheaper than smaps).
pub(crate) fn vdso_block(pid: i32) -> Result<Option<vdso::Block>> {
    let maps: Vec<MemoryMap> = read_maps(pid, false)?.into_iter().map(|m| m.m).collect();
    Ok(vdso::find(&maps))
}

/// Reads and classifies the mappings of `pid`; an unsupported mapping is an error. With
/// `flags`, from /proc/PID/smaps (VmFlags: madvise advice, uffd registration, device
/// mappings); else from /proc/PID/maps, which does not walk the page tables (the main stack is
/// then known by its name).
pub(crate) fn mappings(pid: i32, flags: bool) -> Result<Vec<VmaInfo>> {
    let maps = read_maps(pid, flags)?;
    let mut out = Vec::with_capacity(maps.len());
    for m in &maps {
        refuse_flags(pid, m)?;
        if let Some(v) = classify(pid, &m.m, &m.more_flags)? {
            out.push(v);
        }
    }
    Ok(out)
}

/// `madvise` advice a mapping's VmFlags show, to apply again at restore.
const ADVICE: [(VmFlags, i32); 8] = [
    (VmFlags::HG, libc::MADV_HUGEPAGE),
    (VmFlags::NH, libc::MADV_NOHUGEPAGE),
    (VmFlags::DC, libc::MADV_DONTFORK),
    (VmFlags::WF, libc::MADV_WIPEONFORK),
    (VmFlags::DD, libc::MADV_DONTDUMP),
    (VmFlags::SR, libc::MADV_SEQUENTIAL),
    (VmFlags::RR, libc::MADV_RANDOM),
    (VmFlags::MG, libc::MADV_MERGEABLE),
];

/// Flags of smaps that mark a mapping a restore would not make again.
const REFUSED_FLAGS: [(&str, &str); 4] = [
    ("ht", "a hugetlb mapping"),
    ("sl", "sealed (mseal)"),
    ("ss", "a shadow stack"),
    ("gu", "guarded (MADV_GUARD_INSTALL)"),
];

/// Refuses a mapping whose smaps flags or protection key a restore would not make again.
fn refuse_flags(pid: i32, m: &Mapping) -> Result<()> {
    for (flag, what) in REFUSED_FLAGS {
        if m.more_flags.iter().any(|f| f == flag)
            || (flag == "ht" && m.m.extension.vm_flags.contains(VmFlags::HT))
        {
            return Err(refused(pid, &m.m, what));
        }
    }
    match m.m.extension.map.get("ProtectionKey") {
        Some(&key) if key != 0 => Err(refused(
            pid,
            &m.m,
            &format!("under protection key {key} (pkey_mprotect)"),
        )),
        _ => Ok(()),
    }
}

fn classify(pid: i32, m: &MemoryMap, more_flags: &[String]) -> Result<Option<VmaInfo>> {
    let (start, end) = m.address;
    let flags = m.extension.vm_flags;
    if flags.intersects(VmFlags::IO | VmFlags::PF) && !vdso::is_block_part(m) {
        return Err(refused(pid, m, "a device mapping (VM_IO/VM_PFNMAP)"));
    }
    let Some((kind, shmem_key)) = backing(pid, m)? else {
        return Ok(None);
    };
    let mut prot = 0;
    for (p, bit) in [
        (MMPermissions::READ, libc::PROT_READ),
        (MMPermissions::WRITE, libc::PROT_WRITE),
        (MMPermissions::EXECUTE, libc::PROT_EXEC),
    ] {
        if m.perms.contains(p) {
            prot |= bit;
        }
    }
    let advice = ADVICE
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|&(_, a)| a)
        .collect();
    Ok(Some(VmaInfo {
        vma: Vma {
            start,
            end,
            prot,
            shared: m.perms.contains(MMPermissions::SHARED),
            growsdown: flags.contains(VmFlags::GD) || matches!(m.pathname, MMapPath::Stack),
            advice,
            lock: match (
                flags.contains(VmFlags::LO),
                more_flags.iter().any(|f| f == "lf"),
            ) {
                (false, _) => MemLock::Unlocked,
                (true, false) => MemLock::Locked,
                (true, true) => MemLock::OnFault,
            },
            noreserve: flags.contains(VmFlags::NR),
            may_write: flags.contains(VmFlags::MW),
            droppable: more_flags.iter().any(|f| f == "dp"),
            kind,
        },
        flags,
        shmem_key,
    }))
}

fn refused(pid: i32, m: &MemoryMap, kind: &str) -> Error {
    let (start, end) = m.address;
    Error::unsupported(pid, format!("mapping {start:#x}-{end:#x} is {kind}"))
}

/// What backs mapping `m` (and the key of its shared memory object); `None` for a mapping that
/// is not saved (vsyscall).
fn backing(pid: i32, m: &MemoryMap) -> Result<Option<(VmaKind, Option<ShmemKey>)>> {
    if vdso::is_block_part(m) {
        return Ok(Some((VmaKind::Vdso, None)));
    }
    let kind = match &m.pathname {
        MMapPath::Vsyscall => return Ok(None),
        MMapPath::Heap | MMapPath::Stack | MMapPath::TStack(_) | MMapPath::Anonymous => {
            VmaKind::Anon
        }
        MMapPath::Other(s) if s.starts_with("anon:") || s.starts_with("stack") => VmaKind::Anon,
        MMapPath::Vsys(_) => return Err(refused(pid, m, "SysV shared memory")),
        MMapPath::Path(p) => return file_backing(pid, m, p).map(Some),
        other => {
            return Err(refused(
                pid,
                m,
                &format!("an unknown special mapping {other:?}"),
            ))
        }
    };
    Ok(Some((kind, None)))
}

fn file_backing(
    pid: i32,
    m: &MemoryMap,
    p: &std::path::Path,
) -> Result<(VmaKind, Option<ShmemKey>)> {
    let s = p.to_string_lossy();
    let shared = m.perms.contains(MMPermissions::SHARED);
    let is_shmem =
        m.dev == (0, 1) || s.starts_with("/memfd:") || s.starts_with("/dev/zero (deleted)");
    if shared && is_shmem {
        let kind = VmaKind::SharedAnon {
            shmem: 0,
            offset: m.offset,
        };
        return Ok((kind, Some((m.dev.0, m.dev.1, m.inode))));
    }
    if s == "/dev/zero" && !shared {
        return Ok((VmaKind::Anon, None));
    }
    if s == "/[aio] (deleted)" {
        return Err(refused(pid, m, "an AIO ring (io_setup)"));
    }
    if s.ends_with(" (deleted)") {
        return Err(refused(pid, m, &format!("a mapping of deleted file {s}")));
    }
    let md = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
    if !md.is_file() {
        return Err(refused(
            pid,
            m,
            &format!("a mapping of {s}, which is not a regular file"),
        ));
    }
    if md.ino() != m.inode {
        return Err(refused(
            pid,
            m,
            &format!("a mapping of {s}, replaced since it was mapped"),
        ));
    }
    let kind = VmaKind::File {
        path: s.into_owned(),
        offset: m.offset,
        size: md.len(),
    };
    Ok((kind, None))
}
