//! The records' contents: what a dump knows about a tree, serialized with postcard.
//!
//! Every field is plain data (no pointers into a live process), so an image can be restored on
//! another machine with the same kernel. Addresses are in the process' own address space.

use serde::{Deserialize, Serialize};

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

/// A process of the tree that has exited and waits for its parent to reap it. Restore creates
/// it as a child of its parent and makes it end the same way, so that the parent's `wait`
/// finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZombieImage {
    /// Its pid.
    pub pid: i32,
    /// Its parent (a process of the image).
    pub ppid: i32,
    /// Its process group.
    pub pgid: i32,
    /// Its session.
    pub sid: i32,
    /// Signal its parent gets when it ends.
    pub exit_signal: i32,
    /// How it ended, as `waitpid` reports it (exit code << 8, or the signal number).
    pub status: i32,
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
}

/// One open file description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    /// Id referred to by [`Fd::file`].
    pub id: u32,
    /// `O_*` status flags (access mode, `O_APPEND`, `O_NONBLOCK`, ...), without `O_CLOEXEC`.
    pub flags: i32,
    /// File position.
    pub pos: i64,
    /// What the file is.
    pub kind: FileKind,
}

/// The kinds of open files that can be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file, checked against its size at restore.
    Regular {
        /// Absolute path.
        path: String,
        /// Size when dumped.
        size: u64,
    },
    /// A directory.
    Directory {
        /// Absolute path.
        path: String,
    },
    /// A character device such as /dev/null, opened again by path.
    Device {
        /// Absolute path.
        path: String,
        /// Device number, checked at restore.
        rdev: u64,
    },
    /// One end of a pipe inside the tree.
    Pipe {
        /// Index into [`Shared::pipes`].
        pipe: u32,
    },
    /// One end of a FIFO (named pipe) inside the tree.
    Fifo {
        /// Path of the FIFO.
        path: String,
        /// Index into [`Shared::pipes`].
        pipe: u32,
    },
    /// One end of a Unix socket pair.
    SocketPair {
        /// Index into [`Shared::socketpairs`].
        pair: u32,
        /// Which end (0 or 1).
        end: u8,
    },
    /// An eventfd.
    EventFd {
        /// Counter value.
        count: u64,
        /// `EFD_SEMAPHORE` mode.
        semaphore: bool,
    },
    /// An epoll instance and what it watches (registered again from the owning process).
    EventPoll {
        /// Watched fds of the owning process: `(fd, events, data)`.
        targets: Vec<(i32, u32, u64)>,
    },
    /// A timerfd.
    TimerFd {
        /// Clock (`CLOCK_*`).
        clockid: i32,
        /// Time to the next expiry, in nanoseconds (0: disarmed).
        value_ns: u64,
        /// Period, in nanoseconds.
        interval_ns: u64,
        /// Expirations not read yet.
        ticks: u64,
    },
    /// A signalfd.
    SignalFd {
        /// Signals it reads.
        mask: u64,
    },
    /// A terminal or a pipe whose other end is outside the tree, bound at restore to the
    /// restorer's standard stream of the same number (see docs/IMAGE.md).
    Stdio {
        /// 0, 1 or 2.
        stream: u8,
    },
}

/// A pipe (or the pipe behind a FIFO).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeImage {
    /// Pipe inode on the dumping machine (for diagnostics).
    pub ino: u64,
    /// `F_GETPIPE_SZ`.
    pub capacity: u32,
    /// Bytes in flight, in order.
    pub data: Vec<u8>,
}

/// A Unix socket pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketPairImage {
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub sotype: i32,
    /// Bytes waiting to be read at end 0 and end 1 (stream sockets).
    pub queued: [Vec<u8>; 2],
}

/// A shared anonymous memory object (MAP_SHARED|MAP_ANONYMOUS, inherited over fork).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmemImage {
    /// Id referred to by [`VmaKind::SharedAnon`].
    pub id: u32,
    /// Size of the object in bytes.
    pub size: u64,
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
    pub threads: Vec<ThreadImage>,
    /// Address space.
    pub mm: MmImage,
    /// File descriptor table.
    pub fds: Vec<Fd>,
    /// Working directory.
    pub cwd: String,
    /// Root directory.
    pub root: String,
    /// File mode creation mask.
    pub umask: u32,
    /// `(resource, soft, hard)` for every rlimit.
    pub rlimits: Vec<(u32, u64, u64)>,
    /// User and group ids, groups, capabilities.
    pub creds: Creds,
    /// Disposition of signals 1..=64 (index 0 is signal 1).
    pub sigactions: Vec<SigAction>,
    /// Signals pending for the whole process (raw `siginfo_t`, 128 bytes each).
    pub shared_pending: Vec<Vec<u8>>,
    /// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`: `(interval, value)` in microseconds.
    pub itimers: [(u64, u64); 3],
    /// `personality(0xffffffff)`.
    pub personality: u32,
    /// `PR_GET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// `PR_GET_DUMPABLE`.
    pub dumpable: i32,
    /// A pre-dump left its userfaultfd in the process at this fd, for the next dump to take.
    pub tracker_fd: Option<i32>,
}

/// One file descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fd {
    /// The number.
    pub fd: i32,
    /// Index into [`Shared::files`].
    pub file: u32,
    /// `FD_CLOEXEC`.
    pub cloexec: bool,
}

/// Credentials of a thread (all threads of a process share them here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creds {
    /// Real, effective, saved, filesystem uid.
    pub uids: [u32; 4],
    /// Real, effective, saved, filesystem gid.
    pub gids: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Inheritable, permitted, effective, bounding, ambient capability sets.
    pub caps: [u64; 5],
}

/// A signal's disposition, as the kernel's `struct sigaction` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    /// Handler address, or 0 (SIG_DFL) / 1 (SIG_IGN).
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// `sa_restorer`.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

/// One thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadImage {
    /// Thread id.
    pub tid: i32,
    /// `user_regs_struct` as 27 words, with a syscall restart already applied.
    pub regs: Vec<u64>,
    /// `NT_X86_XSTATE` register set (FPU, SSE, AVX, ...).
    pub xstate: Vec<u8>,
    /// Blocked signals.
    pub sigmask: u64,
    /// rseq registration: `(address, length, signature)`.
    pub rseq: Option<(u64, u32, u32)>,
    /// `set_tid_address` value.
    pub clear_child_tid: u64,
    /// `set_robust_list`: `(head, length)`.
    pub robust_list: (u64, u64),
    /// sigaltstack: `(sp, flags, size)`.
    pub altstack: (u64, i32, u64),
    /// Signals pending for this thread only (raw `siginfo_t`).
    pub pending: Vec<Vec<u8>>,
    /// Thread name.
    pub comm: String,
}

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
    /// What backs it.
    pub kind: VmaKind,
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
        /// Index into [`Shared::shmem`].
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
}
