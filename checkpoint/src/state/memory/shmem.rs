//! Shared anonymous memory (`MAP_SHARED | MAP_ANONYMOUS`, inherited over fork): one object per
//! kernel shmem inode, whatever processes map it.
//!
//! Dump: each object gets an id (mappings refer to it), its size and contents (data ranges
//! only, holes skipped) are read through /proc/PID/map_files. Restore: the restorer makes a
//! memfd per object and fills it; each process then takes it and maps it where it was (the
//! memory part's last step).

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

use super::maps::VmaInfo;
use super::{Vma, VmaKind};
use crate::error::{Error, Result};
use crate::image::record::{Kind, RecordWriter, PAGE};
use crate::sys::fd as sfd;

const CHUNK: usize = 1 << 20;

/// A shared anonymous memory object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmemImage {
    /// Id referred to by [`VmaKind::SharedAnon`].
    pub id: u32,
    /// Size of the object in bytes.
    pub size: u64,
}

/// Where the dump reads an object from: a process and one of its mappings of it.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The object's id.
    pub id: u32,
    /// A process that maps it.
    pub pid: i32,
    /// Its mapping there.
    pub vma: Vma,
}

/// Gives every shared memory object of the tree an id, in the mappings of `procs` (`(pid,
/// mappings as classified, mappings of the image)`); returns where to read each object, by id.
pub(crate) fn assign_ids(procs: &mut [(i32, &[VmaInfo], &mut [Vma])]) -> Vec<Source> {
    let mut ids: HashMap<super::maps::ShmemKey, u32> = HashMap::new();
    let mut out: Vec<Source> = Vec::new();
    for (pid, infos, vmas) in procs.iter_mut() {
        for (info, vma) in infos.iter().zip(vmas.iter_mut()) {
            let Some(key) = info.shmem_key else { continue };
            let next = ids.len() as u32;
            let id = *ids.entry(key).or_insert_with(|| {
                out.push(Source {
                    id: next,
                    pid: *pid,
                    vma: info.vma.clone(),
                });
                next
            });
            if let VmaKind::SharedAnon { shmem, .. } = &mut vma.kind {
                *shmem = id;
            }
        }
    }
    out
}

fn map_file(s: &Source) -> String {
    format!(
        "/proc/{}/map_files/{:x}-{:x}",
        s.pid, s.vma.start, s.vma.end
    )
}

impl Source {
    /// The object as the image lists it.
    pub fn image(&self) -> Result<ShmemImage> {
        let path = map_file(self);
        let md = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        Ok(ShmemImage {
            id: self.id,
            size: md.len().div_ceil(PAGE) * PAGE,
        })
    }

    /// Writes the object's contents as `ShmemPages` records; returns the bytes written.
    pub fn write<W: Write>(&self, rw: &mut RecordWriter<W>) -> Result<u64> {
        use nix::unistd::{lseek, Whence};
        let path = map_file(self);
        let f = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let size = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut off: i64 = 0;
        let mut buf = vec![0u8; CHUNK];
        let mut bytes = 0;
        while (off as u64) < size {
            let data = match lseek(&f, off, Whence::SeekData) {
                Ok(d) => d,
                Err(nix::errno::Errno::ENXIO) => break,
                Err(e) => return Err(Error::io(&path, e.into())),
            };
            let hole = lseek(&f, data, Whence::SeekHole).map_err(|e| Error::io(&path, e.into()))?;
            let mut at = data as u64;
            while at < hole as u64 {
                let n = ((hole as u64 - at) as usize).min(CHUNK);
                f.read_exact_at(&mut buf[..n], at)
                    .map_err(|e| Error::io(&path, e))?;
                rw.data(Kind::ShmemPages, self.id as u64, at, &[&buf[..n]])
                    .map_err(|e| Error::io("<image output>", e))?;
                at += n as u64;
                bytes += n as u64;
            }
            off = hole;
        }
        Ok(bytes)
    }
}

/// Makes an empty memfd for every object (their contents follow, see [`write`]).
pub(crate) fn create(objects: &[ShmemImage]) -> Result<HashMap<u32, OwnedFd>> {
    let name = CString::new("dev/zero").unwrap_or_default();
    let mut out = HashMap::new();
    for s in objects {
        let fd = sfd::memfd(&name, s.size).map_err(|e| Error::io("memfd_create", e))?;
        out.insert(s.id, fd);
    }
    Ok(out)
}

/// Writes bytes of object `id` at `offset`.
pub(crate) fn write(made: &HashMap<u32, OwnedFd>, id: u32, offset: u64, data: &[u8]) -> Result<()> {
    let fd = made
        .get(&id)
        .ok_or_else(|| Error::bad_image("shmem.rec", format!("unknown shared memory {id}")))?;
    let file = File::from(fd.try_clone().map_err(|e| Error::io("memfd", e))?);
    file.write_all_at(data, offset)
        .map_err(|e| Error::io("memfd", e))
}
