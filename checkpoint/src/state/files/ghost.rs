//! Regular files deleted while still open ("ghost" files) and memfds: their contents are kept
//! in the image, holes left out, up to [`LIMIT`] bytes of data per file.
//!
//! Dump: the file is read through an opener of the dumper's own (`/proc/PID/fd/N`, so that a
//! write-only fd can be read too), extent by extent (`SEEK_DATA`/`SEEK_HOLE`), with `pread`
//! (the open file's position is untouched). Refused: a deleted file still linked under another
//! name (a copy would stop sharing writes with it), and one mapped by a process of the tree
//! (the mapping would no longer share its pages with the fd).
//!
//! A memfd is made again by `memfd_create` with its name, filled, and given its seals last.
//! One on hugetlbfs is refused (its pages are not saved that way).
//!
//! Restore: the file is made again in its directory under its old name with its mode and
//! owner, filled, and unlinked at once (under another free name, `O_TMPFILE`, if that name is
//! taken meanwhile); every open file of it is opened again through the restorer's fd.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};

use super::{open, set_status_flags, FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;

/// Most bytes of data (holes not counted) a deleted file may hold for the image to keep it.
pub const LIMIT: u64 = 64 << 20;

/// What /proc appends to the path of a deleted file.
const DELETED: &str = " (deleted)";

/// The contents and attributes of a deleted file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostImage {
    /// The path it had (without " (deleted)").
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size (holes included).
    pub size: u64,
    /// Its data: (offset, bytes), holes left out.
    pub extents: Vec<(u64, Vec<u8>)>,
    /// Last access and modification times, `(seconds, nanoseconds)` each.
    pub times: [(i64, i64); 2],
    /// For a memfd, its name and seals.
    pub memfd: Option<Memfd>,
}

/// What makes a memfd again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memfd {
    /// The name given to `memfd_create`.
    pub name: String,
    /// `F_GET_SEALS` (`F_SEAL_SEAL` for one made without `MFD_ALLOW_SEALING`).
    pub seals: i32,
}

/// An open file of a deleted file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ghost {
    /// Index into [`crate::image::Shared::ghosts`].
    pub ghost: u32,
}

/// Deleted files met so far by a dump: index in the shared table, by (dev, ino).
pub(crate) type Seen = HashMap<(u64, u64), u32>;

/// What /proc puts before the name of a memfd.
const MEMFD: &str = "/memfd:";

/// Whether a /proc fd link names a deleted file (a memfd is one).
pub(crate) fn is_deleted(link: &str) -> bool {
    link.ends_with(DELETED)
}

/// The name of the memfd a /proc fd link names, if it names one.
fn memfd_name(link: &str) -> Option<&str> {
    link.strip_prefix(MEMFD)?.strip_suffix(DELETED)
}

/// Name and seals of the memfd `f` (named by `link`), if it is one; one on hugetlbfs is refused.
fn memfd_of(cx: &FileDump<'_>, f: &std::fs::File) -> Result<Option<Memfd>> {
    const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
    let Some(name) = memfd_name(&cx.e.link) else {
        return Ok(None);
    };
    let fs = nix::sys::statfs::fstatfs(f).map_err(|e| cx.failed("fstatfs", e.into()))?;
    if fs.filesystem_type().0 as i64 == HUGETLBFS_MAGIC {
        return Err(cx.refuse("is a hugetlb memfd"));
    }
    let seals = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_GET_SEALS)
        .map_err(|e| cx.failed("F_GET_SEALS", e.into()))?;
    Ok(Some(Memfd {
        name: name.to_string(),
        seals,
    }))
}

/// How an fd of a deleted file is named in messages.
fn what(link: &str) -> String {
    match memfd_name(link) {
        Some(name) => format!("memfd {name}"),
        None => format!("deleted file {link}"),
    }
}

/// The data of the file behind `f`, holes left out; refused above [`LIMIT`] bytes.
fn extents(cx: &FileDump<'_>, f: &std::fs::File, size: u64) -> Result<Vec<(u64, Vec<u8>)>> {
    use nix::unistd::{lseek, Whence};
    let mut out = Vec::new();
    let (mut at, mut total) = (0u64, 0u64);
    while at < size {
        let start = match lseek(f, at as i64, Whence::SeekData) {
            Ok(s) => s as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(cx.failed("SEEK_DATA", e.into())),
        };
        let end = lseek(f, start as i64, Whence::SeekHole)
            .map_err(|e| cx.failed("SEEK_HOLE", e.into()))? as u64;
        let end = end.min(size);
        total += end.saturating_sub(start);
        if total > LIMIT {
            return Err(cx.refuse(&format!(
                "is {} holding more than the {} MiB of data an image keeps",
                what(&cx.e.link),
                LIMIT >> 20
            )));
        }
        let mut buf = vec![0u8; (end - start) as usize];
        let mut got = 0;
        while got < buf.len() {
            let n = f
                .read_at(&mut buf[got..], start + got as u64)
                .map_err(|e| cx.failed("read deleted file", e))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        out.push((start, buf));
        at = end;
    }
    Ok(out)
}

impl Persist for Ghost {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<Ghost> {
        if let Some(&ghost) = cx.seen.ghosts.get(&cx.e.key) {
            return Ok(Ghost { ghost });
        }
        if cx.tree.is_mapped(cx.e.key) {
            return Err(cx.refuse(&format!("is {} that is also mapped", what(&cx.e.link))));
        }
        let lpath = format!("/proc/{}/fd/{}", cx.pid, cx.e.fd);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .open(&lpath)
            .map_err(|e| Error::io(&lpath, e))?;
        let md = f.metadata().map_err(|e| Error::io(&lpath, e))?;
        let memfd = memfd_of(cx, &f)?;
        if md.nlink() > 0 && memfd.is_none() {
            return Err(cx.refuse(&format!(
                "is deleted file {} still linked under another name",
                cx.e.link
            )));
        }
        let extents = extents(cx, &f, md.size())?;
        let ghost = cx.shared.ghosts.len() as u32;
        cx.shared.ghosts.push(GhostImage {
            path: cx.e.link.trim_end_matches(DELETED).to_string(),
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            extents,
            times: [(md.atime(), md.atime_nsec()), (md.mtime(), md.mtime_nsec())],
            memfd,
        });
        cx.seen.ghosts.insert(cx.e.key, ghost);
        Ok(Ghost { ghost })
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        let g = cx.shared.ghosts.get(self.ghost as usize).ok_or_else(|| {
            Error::bad_image(
                "inventory.rec",
                format!("unknown deleted file {}", self.ghost),
            )
        })?;
        if !cx.making.ghosts.contains_key(&self.ghost) {
            let made = make(g)?;
            cx.making.ghosts.insert(self.ghost, made);
        }
        let made = &cx.making.ghosts[&self.ghost];
        // The file memfd_create made is no writer of its inode, so that the memfd can be run
        // (execveat) while open for writing; a reopened one is: the first read-write open
        // file of a memfd gets the original.
        let fd = if g.memfd.is_some()
            && cx.file.flags & libc::O_ACCMODE == libc::O_RDWR
            && cx.making.memfd_originals.insert(self.ghost)
        {
            made.try_clone().map_err(|e| Error::io(&g.path, e))?
        } else {
            // an O_TMPFILE file keeps O_TMPFILE (with O_DIRECTORY) in its flags
            let num = made.as_raw_fd();
            open(
                &format!("/proc/self/fd/{num}"),
                cx.file.flags & !libc::O_TMPFILE,
            )?
        };
        if cx.file.pos != 0 {
            nix::unistd::lseek(&fd, cx.file.pos, nix::unistd::Whence::SeekSet)
                .map_err(|e| Error::io(&g.path, e.into()))?;
        }
        set_status_flags(fd.as_fd(), cx.file.flags, &g.path)?;
        Ok(fd)
    }
}

impl Ghost {
    /// Refuses, before anything is created, a deleted file whose directory is gone.
    pub(crate) fn check(&self, ghosts: &[GhostImage]) -> Result<()> {
        let Some(g) = ghosts
            .get(self.ghost as usize)
            .filter(|g| g.memfd.is_none())
        else {
            return Ok(());
        };
        super::regular::metadata(dir_of(&g.path)).map(drop)
    }
}

fn dir_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    }
}

/// Makes the deleted file or memfd again, with its mode, owner, contents and seals.
fn make(g: &GhostImage) -> Result<OwnedFd> {
    let f = match &g.memfd {
        Some(m) => {
            let name = std::ffi::CString::new(m.name.as_bytes())
                .map_err(|_| Error::bad_image("inventory.rec", "memfd name with a NUL byte"))?;
            crate::sys::fd::memfd_sealable(&name)
                .map_err(|e| Error::io(format!("memfd {}", m.name), e))?
        }
        None => make_file(g)?,
    };
    fill(g, std::fs::File::from(f))
}

/// Creates the deleted file under its old name and unlinks it at once, or makes it unnamed
/// in its directory if the name is taken.
fn make_file(g: &GhostImage) -> Result<OwnedFd> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let rw = OFlag::O_RDWR | OFlag::O_CLOEXEC;
    Ok(
        match nix::fcntl::open(
            g.path.as_str(),
            rw | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => {
                std::fs::remove_file(&g.path).map_err(|e| Error::io(&g.path, e))?;
                fd
            }
            Err(nix::errno::Errno::EEXIST) => nix::fcntl::open(
                dir_of(&g.path),
                rw | OFlag::O_TMPFILE,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| Error::io(dir_of(&g.path), e.into()))?,
            Err(e) => return Err(Error::io(&g.path, e.into())),
        },
    )
}

/// Gives a made file the owner, size, contents, mode and seals of `g`.
fn fill(g: &GhostImage, f: std::fs::File) -> Result<OwnedFd> {
    use nix::sys::stat::Mode;
    let io = |e: nix::errno::Errno| Error::io(&g.path, e.into());
    nix::unistd::fchown(
        &f,
        Some(nix::unistd::Uid::from_raw(g.uid)),
        Some(nix::unistd::Gid::from_raw(g.gid)),
    )
    .map_err(io)?;
    nix::unistd::ftruncate(&f, g.size as i64).map_err(io)?;
    for (at, data) in &g.extents {
        f.write_all_at(data, *at)
            .map_err(|e| Error::io(&g.path, e))?;
    }
    // after fchown, which clears set-user-id and set-group-id bits
    nix::sys::stat::fchmod(&f, Mode::from_bits_truncate(g.mode)).map_err(io)?;
    // after the writes, which set the modification time
    let ts = |(s, ns): (i64, i64)| nix::sys::time::TimeSpec::new(s, ns);
    nix::sys::stat::futimens(&f, &ts(g.times[0]), &ts(g.times[1])).map_err(io)?;
    if let Some(m) = &g.memfd {
        let seals = nix::fcntl::SealFlag::from_bits_retain(m.seals);
        nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_ADD_SEALS(seals)).map_err(io)?;
    }
    Ok(OwnedFd::from(f))
}
