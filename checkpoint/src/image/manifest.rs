//! The records' contents: what a dump knows about a tree, serialized with postcard.
//!
//! Every field is plain data (no pointers into a live process), so an image can be restored on
//! another machine with the same kernel. Addresses are in the process' own address space.
//!
//! The records are made of the state types of each part (`state/`): this module puts them
//! together and fixes their order, which is the order on the wire (postcard writes a struct as
//! its fields in order, a newtype as its content, an enum as its variant index and content).

use serde::{Deserialize, Serialize};

pub use crate::state::attrs::{Attrs, ThreadAttrs};
pub use crate::state::audit::Audit;
pub use crate::state::cgroups::{Cgroups, Membership};
pub use crate::state::creds::Creds;
pub use crate::state::files::epoll::EventPoll;
pub use crate::state::files::eventfd::EventFd;
pub use crate::state::files::locks::{FileLock, LockKind};
pub use crate::state::files::owner::Owner;
pub use crate::state::files::pipe::{FifoEnd, PipeEnd, PipeImage};
pub use crate::state::files::regular::{Device, Directory, Regular};
pub use crate::state::files::signalfd::SignalFd;
pub use crate::state::files::stdio::Stdio;
pub use crate::state::files::timerfd::TimerFd;
pub use crate::state::files::unix::{PairEnd, SocketPairImage};
pub use crate::state::files::{Fd, FdTable, FileKind, OpenFile};
pub use crate::state::fs::Fs;
pub use crate::state::limits::Limits;
pub use crate::state::memory::shmem::ShmemImage;
pub use crate::state::memory::{MemLock, MmImage, MmLayout, PageRun, Vma, VmaKind};
pub use crate::state::signals::{SigAction, Signals};
pub use crate::state::threads::{ThreadImage, Threads};
pub use crate::state::timers::Timers;
pub use crate::state::tree::ZombieImage;

/// The first record of an image: which processes it holds and what it builds on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Unique id of this image (used by children images to name their parent).
    pub image_id: u64,
    /// The image this one is a delta against (`--prev`), if any.
    pub parent: Option<ParentRef>,
    /// Pid of the tree's root.
    pub root_pid: i32,
    /// Every process, parents before their children.
    pub pids: Vec<i32>,
    /// `uname -r` of the dumping machine.
    pub kernel: String,
    /// Checksum of the vDSO bytes the dumped tree used: restore needs the same vDSO.
    pub vdso_crc: u32,
    /// Size in bytes of the vvar..vdso block.
    pub vdso_block_len: u64,
    /// True when this is a pre-dump: memory only, the tree went on running.
    pub pre_dump: bool,
    /// Children that had exited but were not reaped yet by their parent (none in a pre-dump).
    pub zombies: Vec<ZombieImage>,
}

/// Link from an incremental image to the image it extends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// The parent's `image_id`.
    pub image_id: u64,
    /// Where the parent lies, relative to this image's directory (None for streams).
    pub path: Option<String>,
}

/// Objects shared between processes of the tree: open files, pipes, socket pairs, shared memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    /// Open file descriptions (one per `struct file` in the kernel, shared by dup and fork).
    pub files: Vec<OpenFile>,
    /// Pipes and FIFOs, with the bytes they held.
    pub pipes: Vec<PipeImage>,
    /// Unix socket pairs, with the bytes queued at each end.
    pub socketpairs: Vec<SocketPairImage>,
    /// Shared anonymous memory objects (their pages are in the `shmem` part).
    pub shmem: Vec<ShmemImage>,
    /// Regular files deleted while open, with their contents.
    pub ghosts: Vec<crate::state::files::ghost::GhostImage>,
}

/// Everything about one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessImage {
    /// Process id (= thread group id).
    pub pid: i32,
    /// Parent pid (0 for the root of the tree).
    pub ppid: i32,
    /// Process group.
    pub pgid: i32,
    /// Session.
    pub sid: i32,
    /// Signal sent to the parent on exit.
    pub exit_signal: i32,
    /// Threads; the first one is the main thread (tid == pid).
    pub threads: Threads,
    /// Address space.
    pub mm: MmImage,
    /// File descriptor table.
    pub fds: FdTable,
    /// Working directory, root directory, umask.
    pub fs: Fs,
    /// Resource limits, oom_score_adj.
    pub limits: Limits,
    /// Audit login uid.
    pub audit: Audit,
    /// User and group ids, groups, capabilities.
    pub creds: Creds,
    /// Signal dispositions and process-wide pending signals.
    pub signals: Signals,
    /// Interval timers.
    pub timers: Timers,
    /// Personality, no_new_privs, dumpable, child subreaper, THP disabled.
    pub attrs: Attrs,
    /// The cgroups it and its threads were in, where they differ from the dumper's.
    pub cgroups: Cgroups,
    /// A pre-dump left its userfaultfd in the process at this fd, for the next dump to take.
    pub tracker_fd: Option<i32>,
}
