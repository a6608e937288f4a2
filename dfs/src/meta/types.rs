//! The records the metadata state machine keeps: inodes, directory entries, chunk references,
//! times.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// An inode number; [`ROOT`] is the root directory.
pub type Ino = u64;
/// The root directory's inode number (as FUSE expects).
pub const ROOT: Ino = 1;
/// Bytes of file data one chunk holds.
pub const CHUNK_SIZE: u64 = 4 << 20;
/// Longest name of a directory entry, as on ext4.
pub const NAME_MAX: usize = 255;

/// A point in time, seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timespec {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds, below 1e9.
    pub nsec: u32,
}

impl Timespec {
    /// The current wall-clock time.
    pub fn now() -> Timespec {
        Timespec::from(std::time::SystemTime::now())
    }
}

impl From<std::time::SystemTime> for Timespec {
    fn from(t: std::time::SystemTime) -> Self {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timespec {
                sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nsec: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let (sec, nsec) = if d.subsec_nanos() == 0 {
                    (-i64::try_from(d.as_secs()).unwrap_or(i64::MAX), 0)
                } else {
                    (
                        -i64::try_from(d.as_secs()).unwrap_or(i64::MAX) - 1,
                        1_000_000_000 - d.subsec_nanos(),
                    )
                };
                Timespec { sec, nsec }
            }
        }
    }
}

impl From<Timespec> for std::time::SystemTime {
    fn from(t: Timespec) -> Self {
        let nanos = std::time::Duration::from_nanos(u64::from(t.nsec));
        if t.sec >= 0 {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.sec.unsigned_abs()) + nanos
        } else {
            std::time::UNIX_EPOCH - std::time::Duration::from_secs(t.sec.unsigned_abs()) + nanos
        }
    }
}

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket node.
    Socket,
    /// Character device node.
    CharDev,
    /// Block device node.
    BlockDev,
}

impl Kind {
    /// The kind named by the file-type bits of a mode (`S_IFMT`); `None` for an unknown one.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            _ => return None,
        })
    }
}

/// Where one chunk of a file's data is, and which bytes it must hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Version of the data; a replica holding another version is never read for this one.
    pub version: u64,
    /// crc32c of the stored bytes.
    pub crc: u32,
    /// Bytes stored.
    pub stored: u32,
    /// Bytes of the chunk that belong to the file (a truncation shortens this without
    /// rewriting the chunk; bytes past it read as zeros).
    pub valid: u32,
    /// Nodes holding this version, the writer first.
    pub replicas: Vec<u16>,
}

/// One inode with everything the file system knows of it except its name(s).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inode {
    /// What it is.
    pub kind: Kind,
    /// Permission bits with set-user-id, set-group-id and sticky (`mode & 07777`).
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links (a directory counts its `.` and its subdirectories' `..`).
    pub nlink: u32,
    /// Size in bytes (of a symlink: of its target).
    pub size: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last data change.
    pub mtime: Timespec,
    /// Last inode change.
    pub ctime: Timespec,
    /// Creation.
    pub btime: Timespec,
    /// Device number of a device node.
    pub rdev: u32,
    /// Target of a symlink.
    pub target: Vec<u8>,
    /// Parent directory of a directory (for `..` and rename loop checks).
    pub parent: Ino,
    /// Extended attributes.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Data chunks of a regular file by index (a missing index is a hole).
    pub chunks: BTreeMap<u64, ChunkRef>,
    /// Nodes that have the file open: an unlinked inode lives while this is not empty.
    pub open_on: BTreeSet<u16>,
}

/// The attributes of an inode, as `stat` shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// What it is.
    pub kind: Kind,
    /// `mode & 07777`.
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links.
    pub nlink: u32,
    /// Size in bytes.
    pub size: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last data change.
    pub mtime: Timespec,
    /// Last inode change.
    pub ctime: Timespec,
    /// Creation.
    pub btime: Timespec,
    /// Device number.
    pub rdev: u32,
    /// Bytes of data stored (chunks, each counted once).
    pub stored: u64,
    /// The nodes that hold it open (their unpublished writes are not in `size` yet).
    pub open_on: Vec<u16>,
}

impl Inode {
    /// The attributes of this inode as inode `ino`.
    pub fn attr(&self, ino: Ino) -> Attr {
        Attr {
            ino,
            kind: self.kind,
            perm: self.perm,
            uid: self.uid,
            gid: self.gid,
            nlink: self.nlink,
            size: self.size,
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            btime: self.btime,
            rdev: self.rdev,
            stored: self.chunks.values().map(|c| u64::from(c.valid)).sum(),
            open_on: self.open_on.iter().copied().collect(),
        }
    }
}

/// One directory entry in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirItem {
    /// Name.
    pub name: Vec<u8>,
    /// Its inode.
    pub ino: Ino,
    /// Its kind.
    pub kind: Kind,
    /// Position to continue a listing after this entry.
    pub cookie: u64,
}

/// Entries of one directory, in a stable order for listings that span several calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dir {
    /// Name to (inode, cookie).
    pub by_name: BTreeMap<Vec<u8>, (Ino, u64)>,
    /// Cookie to name: a listing resumes after the cookie it was given.
    pub by_cookie: BTreeMap<u64, Vec<u8>>,
    /// Next cookie (1 and 2 belong to `.` and `..`).
    pub next_cookie: u64,
}

impl Dir {
    /// An empty directory.
    pub fn new() -> Dir {
        Dir {
            next_cookie: 3,
            ..Dir::default()
        }
    }

    /// Adds `name`; the caller checked it is absent.
    pub fn insert(&mut self, name: Vec<u8>, ino: Ino) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        self.by_cookie.insert(cookie, name.clone());
        self.by_name.insert(name, (ino, cookie));
    }

    /// Removes `name`, giving its inode.
    pub fn remove(&mut self, name: &[u8]) -> Option<Ino> {
        let (ino, cookie) = self.by_name.remove(name)?;
        self.by_cookie.remove(&cookie);
        Some(ino)
    }

    /// The inode named `name`.
    pub fn get(&self, name: &[u8]) -> Option<Ino> {
        self.by_name.get(name).map(|(i, _)| *i)
    }
}
