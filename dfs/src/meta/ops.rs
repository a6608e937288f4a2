//! The requests the metadata state machine takes and its answers.
//!
//! Every change is a [`MetaOp`] carried by the replicated log; its time stamps (`now`) are set
//! by the node that proposed it, so that every replica applying it computes the same state.

use serde::{Deserialize, Serialize};

use super::locks::{Lock, LockOwner};
use super::types::{Attr, ChunkRef, DirItem, Ino, Kind, Timespec};

/// A time an attribute change sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetTime {
    /// The time of the change.
    Now,
    /// This time.
    At(Timespec),
}

/// A new inode's description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewNode {
    /// What it is.
    pub kind: Kind,
    /// `mode & 07777` (the kernel applied the umask already).
    pub perm: u16,
    /// Owner (the caller).
    pub uid: u32,
    /// Group (the caller's; a set-group-id parent overrides it).
    pub gid: u32,
    /// Device number.
    pub rdev: u32,
    /// Target of a symlink.
    pub target: Vec<u8>,
    /// The caller's supplementary groups: a caller outside the group of a set-group-id parent
    /// (and not root) creates files without their own set-group-id bit, as local file
    /// systems do.
    pub groups: Vec<u32>,
}

/// Attribute changes of `setattr`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAttr {
    /// New `mode & 07777`.
    pub perm: Option<u16>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend with zeros).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
}

/// A change of the file system, applied in log order on every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaOp {
    /// Create a directory entry with a new inode (file, dir, symlink, node); `open_on` opens
    /// it for that node at once (`create`).
    Create {
        /// Parent directory.
        parent: Ino,
        /// Entry name.
        name: Vec<u8>,
        /// The inode.
        node: NewNode,
        /// Node that opens the new file.
        open_on: Option<u16>,
        /// Time of the change.
        now: Timespec,
    },
    /// Add a hard link.
    Link {
        /// Existing inode.
        ino: Ino,
        /// New parent.
        parent: Ino,
        /// New name.
        name: Vec<u8>,
        /// Time of the change.
        now: Timespec,
    },
    /// Remove a non-directory entry.
    Unlink {
        /// Parent.
        parent: Ino,
        /// Name.
        name: Vec<u8>,
        /// Time of the change.
        now: Timespec,
    },
    /// Remove an empty directory.
    Rmdir {
        /// Parent.
        parent: Ino,
        /// Name.
        name: Vec<u8>,
        /// Time of the change.
        now: Timespec,
    },
    /// Move an entry, atomically replacing the target (`rename(2)`, with its flags
    /// `RENAME_NOREPLACE` and `RENAME_EXCHANGE`).
    Rename {
        /// Old parent.
        parent: Ino,
        /// Old name.
        name: Vec<u8>,
        /// New parent.
        new_parent: Ino,
        /// New name.
        new_name: Vec<u8>,
        /// rename flags.
        flags: u32,
        /// Time of the change.
        now: Timespec,
    },
    /// Change attributes.
    SetAttr {
        /// Inode.
        ino: Ino,
        /// What to change.
        set: SetAttr,
        /// Time of the change.
        now: Timespec,
    },
    /// Set an extended attribute (`flags`: `XATTR_CREATE`, `XATTR_REPLACE`).
    SetXattr {
        /// Inode.
        ino: Ino,
        /// Name.
        name: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Flags.
        flags: i32,
        /// Time of the change.
        now: Timespec,
    },
    /// Remove an extended attribute.
    RemoveXattr {
        /// Inode.
        ino: Ino,
        /// Name.
        name: Vec<u8>,
        /// Time of the change.
        now: Timespec,
    },
    /// A node opens the file (the first open there); answered with the inode's attributes and
    /// chunks as of now (close-to-open).
    Open {
        /// Inode.
        ino: Ino,
        /// Node.
        node: u16,
    },
    /// A node closed its last open of the file; an unlinked inode open nowhere is deleted.
    Release {
        /// Inode.
        ino: Ino,
        /// Node.
        node: u16,
    },
    /// New data of a file, already on its replicas: new chunk versions, size and times.
    Commit {
        /// Inode.
        ino: Ino,
        /// File size after the writes.
        size: u64,
        /// Chunks written.
        chunks: Vec<(u64, ChunkRef)>,
        /// Time of the change (mtime and ctime).
        now: Timespec,
    },
    /// Take or release a record lock (non-blocking: a conflict answers `EAGAIN`).
    SetLock {
        /// Inode.
        ino: Ino,
        /// The lock; `None` unlocks `start..=end` of `owner`.
        lock: Option<Lock>,
        /// Owner.
        owner: LockOwner,
        /// First byte.
        start: u64,
        /// Last byte.
        end: u64,
    },
    /// Release every lock of an owner on an inode (its file was closed there).
    DropLocks {
        /// Inode.
        ino: Ino,
        /// Owner.
        owner: LockOwner,
    },
    /// A node died or restarted: its opens and locks are gone.
    NodeGone {
        /// Node.
        node: u16,
    },
    /// A chunk got new replicas (re-replication); ignored if the chunk changed meanwhile.
    SetReplicas {
        /// Inode.
        ino: Ino,
        /// Chunk index.
        idx: u64,
        /// Version copied.
        version: u64,
        /// The replicas now.
        replicas: Vec<u16>,
    },
}

/// A question about the file system (answered by the leader, after it checked it still leads).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaRead {
    /// Find a name in a directory.
    Lookup {
        /// Directory.
        parent: Ino,
        /// Name.
        name: Vec<u8>,
    },
    /// Attributes of an inode.
    GetAttr {
        /// Inode.
        ino: Ino,
    },
    /// Entries of a directory after position `after` (0: from the start, with `.`, `..`).
    ReadDir {
        /// Directory.
        ino: Ino,
        /// Cookie of the last entry seen.
        after: u64,
        /// Most entries to give.
        max: u32,
    },
    /// Target of a symlink.
    ReadLink {
        /// Inode.
        ino: Ino,
    },
    /// Value of an extended attribute.
    GetXattr {
        /// Inode.
        ino: Ino,
        /// Name.
        name: Vec<u8>,
    },
    /// Names of the extended attributes.
    ListXattr {
        /// Inode.
        ino: Ino,
    },
    /// The first lock that stops `want`.
    GetLock {
        /// Inode.
        ino: Ino,
        /// The lock wanted.
        want: Lock,
    },
    /// Totals for `statfs`.
    Totals,
    /// Every chunk of every file, for re-replication and scrub.
    Chunks,
}

/// An answer of the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaReply {
    /// The change was made.
    Done,
    /// Attributes of the inode concerned.
    Attr(Attr),
    /// Attributes and chunks (answer to `Open`).
    Opened(Attr, Vec<(u64, ChunkRef)>),
    /// Directory entries.
    Dir(Vec<DirItem>),
    /// Bytes (symlink target, xattr value).
    Bytes(Vec<u8>),
    /// Names (of xattrs).
    Names(Vec<Vec<u8>>),
    /// A conflicting lock, or none.
    Lock(Option<Lock>),
    /// Inode count and bytes of data.
    Totals {
        /// Inodes.
        inodes: u64,
        /// Bytes of file data (sizes summed).
        bytes: u64,
    },
    /// Chunks: (inode, index, reference).
    Chunks(Vec<(Ino, u64, ChunkRef)>),
}

/// An errno (positive), the only way the state machine fails a request.
pub type Errno = i32;
