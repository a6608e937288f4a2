//! Conversions between the metadata's records and FUSE's.

use std::time::Duration;

use fuser::{FileAttr, FileType, INodeNo};

use crate::meta::{Attr, Kind};

/// How long the kernel may trust the attributes and names of directories, symlinks and
/// special files before asking again. Changes made on other nodes can be seen this late.
pub const TTL: Duration = Duration::from_secs(1);

/// How long the kernel may trust what it was told of an inode of kind `kind`. Regular files
/// are asked again at every path walk and `stat`: an `open()` must see the size another node
/// committed (close-to-open); a size cached from before would cut reads short and put
/// `O_APPEND` writes over the other node's records.
pub fn ttl(kind: Kind) -> Duration {
    match kind {
        Kind::File => Duration::ZERO,
        _ => TTL,
    }
}

/// The FUSE file type of a kind.
pub fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

/// The FUSE attributes of an inode.
pub fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.stored.div_ceil(512),
        atime: a.atime.into(),
        mtime: a.mtime.into(),
        ctime: a.ctime.into(),
        crtime: a.btime.into(),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}
