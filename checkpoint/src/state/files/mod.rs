//! Open files: the fd table of each process and the open file descriptions of the whole tree
//! (one per kernel `struct file`, shared by `dup` and `fork`, found with kcmp).
//!
//! ```text
//!  dump     scan: /proc/PID/fd + fdinfo, each fd sorted into a kind or refused (before freezing)
//!           table: the tree's open files, each saved once by its kind's Persist::save
//!  restore  the restorer opens or makes every open file (its kind's Persist::restore), then
//!           each process takes its fds with pidfd_getfd (FdTable's Persist::restore)
//! ```
//! Each kind of open file is one module: `regular` (files, directories, devices), `pipe`
//! (pipes and FIFOs), `ghost` (deleted files, memfds), `unix` (socket pairs), `unix_alone`
//! (Unix sockets connected to nothing), `eventfd`, `epoll`, `timerfd`, `signalfd`, `pidfd`,
//! `inotify`, `tcp` (TCP sockets holding no connection), and
//! `stdio` for what leads outside the tree through the root's standard streams. A new kind is a
//! new module, a variant of [`FileKind`] and a [`scan::Class`].

pub(crate) mod epoll;
pub(crate) mod eventfd;
pub(crate) mod ghost;
pub(crate) mod identity;
pub(crate) mod inotify;
pub(crate) mod locks;
pub(crate) mod owner;
pub(crate) mod pidfd;
pub(crate) mod pipe;
pub(crate) mod regular;
pub(crate) mod scan;
pub(crate) mod signalfd;
pub(crate) mod sockopt;
pub(crate) mod stdio;
pub(crate) mod tcp;
pub(crate) mod tcp_conn;
pub(crate) mod timerfd;
pub(crate) mod unix;
pub(crate) mod unix_alone;

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::Shared;
use crate::persist::{Persist, ProcRestore};
use crate::sys::fd as sfd;
use scan::{Class, FdEntry};

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

/// The fd table of a process, and the POSIX locks it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdTable {
    /// The fds.
    pub fds: Vec<Fd>,
    /// Its POSIX record locks, each with an fd of its file.
    pub posix_locks: Vec<(i32, locks::FileLock)>,
}

impl std::ops::Deref for FdTable {
    type Target = [Fd];
    fn deref(&self) -> &[Fd] {
        &self.fds
    }
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
    /// Its OFD and flock locks.
    pub locks: Vec<locks::FileLock>,
    /// Who gets SIGIO for it.
    pub owner: Option<owner::Owner>,
}

/// The kinds of open files that can be restored, each with its own state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file, checked against its size at restore.
    Regular(regular::Regular),
    /// A regular file deleted while open, its contents in the image.
    Ghost(ghost::Ghost),
    /// A directory.
    Directory(regular::Directory),
    /// A character device such as /dev/null, opened again by path.
    Device(regular::Device),
    /// One end of a pipe inside the tree.
    Pipe(pipe::PipeEnd),
    /// One end of a FIFO (named pipe) inside the tree.
    Fifo(pipe::FifoEnd),
    /// One end of a Unix socket pair.
    SocketPair(unix::PairEnd),
    /// A Unix socket connected to nothing (never connected, bound, listening).
    UnixAlone(unix_alone::UnixAlone),
    /// An eventfd.
    EventFd(eventfd::EventFd),
    /// An epoll instance and what it watches (registered again from the owning process).
    EventPoll(epoll::EventPoll),
    /// A timerfd.
    TimerFd(timerfd::TimerFd),
    /// A pidfd of a process of the tree.
    PidFd(pidfd::PidFd),
    /// An inotify instance and its watches.
    Inotify(inotify::Inotify),
    /// A signalfd.
    SignalFd(signalfd::SignalFd),
    /// A terminal or a pipe whose other end is outside the tree, bound at restore to the
    /// restorer's standard stream of the same number (see docs/IMAGE.md).
    Stdio(stdio::Stdio),
    /// A TCP socket that holds no connection (never connected, or listening).
    Tcp(tcp::TcpSocket),
    /// An established TCP connection whose peer is in the tree too (through `TCP_REPAIR`).
    TcpConn(tcp_conn::TcpConn),
}

/// What the dump knows of the fds of the whole tree.
#[derive(Debug, Default)]
pub(crate) struct TreeFds {
    /// The objects behind the root's fds 0, 1 and 2.
    root_std: Vec<((u64, u64), u8)>,
    /// Which ends of each pipe (by inode) are open in the tree: (read, write).
    pipe_ends: HashMap<u64, (bool, bool)>,
    /// Every Unix socket of the network namespace, by inode.
    unix: HashMap<u32, sfd::UnixDiag>,
    /// Inodes of the sockets open in the tree.
    tree_socks: HashSet<u64>,
    /// Processes and threads of the tree.
    tasks: HashSet<i32>,
    /// Processes of the tree.
    procs: HashSet<i32>,
    /// `(dev, ino)` of every file mapped in the tree (known when a deleted file is open).
    mapped: HashSet<(u64, u64)>,
    /// Process groups led in the tree.
    groups: HashSet<i32>,
    /// The tree is frozen (else only what can be checked of a running tree is done: no
    /// socket is put in repair mode).
    pub frozen: bool,
}

impl TreeFds {
    fn new(root: i32, tables: &[(i32, Vec<FdEntry>)]) -> Result<TreeFds> {
        let mut t = TreeFds::default();
        for (pid, table) in tables {
            t.tasks.insert(*pid);
            t.procs.insert(*pid);
            if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                let tids = dir
                    .flatten()
                    .filter_map(|d| d.file_name().to_str()?.parse::<i32>().ok());
                t.tasks.extend(tids);
            }
            if nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(*pid)))
                .is_ok_and(|g| g.as_raw() == *pid)
            {
                t.groups.insert(*pid);
            }
            for e in table {
                if *pid == root && e.fd < 3 {
                    t.root_std.push((e.key, e.fd as u8));
                }
                match e.class {
                    Class::Pipe | Class::Fifo => pipe::note_end(&mut t.pipe_ends, e),
                    Class::Socket => {
                        t.tree_socks.insert(unix::ino_of(&e.link));
                    }
                    _ => {}
                }
            }
        }
        if !t.tree_socks.is_empty() {
            t.unix = sfd::unix_sockets().map_err(|e| Error::io("sock_diag", e))?;
        }
        if tables
            .iter()
            .any(|(_, es)| es.iter().any(|e| e.class == Class::Ghost))
        {
            for (pid, _) in tables {
                t.mapped.extend(mapped_files(*pid)?);
            }
        }
        Ok(t)
    }

    /// Whether the file `key` is mapped by a process of the tree.
    fn is_mapped(&self, key: (u64, u64)) -> bool {
        self.mapped.contains(&key)
    }

    /// Whether `tid` is a process or thread of the tree.
    fn has_task(&self, tid: i32) -> bool {
        self.tasks.contains(&tid)
    }

    /// Whether `pid` is a process of the tree.
    fn has_process(&self, pid: i32) -> bool {
        self.procs.contains(&pid)
    }

    /// Whether process group `pgid` is led by a process of the tree.
    fn leads_group(&self, pgid: i32) -> bool {
        self.groups.contains(&pgid)
    }

    /// The root's standard stream behind object `key`, if it is one.
    fn std_stream(&self, key: (u64, u64)) -> Option<u8> {
        self.root_std
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| *s)
    }
}

/// Objects of the tree met so far while its open files are saved.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// One fd of each open file saved: (pid, fd, object, id).
    files: Vec<(i32, i32, (u64, u64), u32)>,
    pipes: pipe::Seen,
    pairs: unix::Seen,
    ghosts: ghost::Seen,
    /// TCP sockets put in repair mode.
    repaired: tcp_conn::Repaired,
}

/// An open file being saved: the first fd of the tree found to hold it.
pub(crate) struct FileDump<'a> {
    /// The process holding it.
    pub pid: i32,
    /// The fd.
    pub e: &'a FdEntry,
    /// A pidfd of the process, to take copies of its fds.
    pub pidfd: BorrowedFd<'a>,
    /// What is known of the whole tree's fds.
    pub tree: &'a TreeFds,
    /// The shared objects saved so far (pipes and socket pairs are added here).
    pub shared: &'a mut Shared,
    /// Objects met so far.
    pub seen: &'a mut Seen,
}

impl FileDump<'_> {
    /// A copy of the fd (same open file) in the dumper.
    pub fn take(&self) -> Result<OwnedFd> {
        sfd::pidfd_getfd(self.pidfd, self.e.fd)
            .map_err(|er| Error::sys(self.pid, format!("pidfd_getfd fd {}", self.e.fd), er))
    }

    /// An error naming the fd: `fd N <what>`.
    pub fn refuse(&self, what: &str) -> Error {
        Error::unsupported(self.pid, format!("fd {} {what}", self.e.fd))
    }

    /// A failed system call on the fd.
    pub fn failed(&self, what: &str, e: std::io::Error) -> Error {
        Error::sys(self.pid, format!("fd {}: {what}", self.e.fd), e)
    }
}

impl FileKind {
    /// Saves the open file behind `cx.e` with the kind its class names.
    fn save(cx: &mut FileDump<'_>) -> Result<FileKind> {
        Ok(match cx.e.class {
            Class::Pipe if pipe::leads_outside(cx)? => FileKind::Stdio(stdio::Stdio::save(cx)?),
            Class::Pipe => FileKind::Pipe(pipe::PipeEnd::save(cx)?),
            Class::Fifo => FileKind::Fifo(pipe::FifoEnd::save(cx)?),
            Class::Socket if tcp::is_inet(cx)? => tcp::save_kind(cx)?,
            Class::Socket => match unix::role(cx)? {
                unix::Role::Pair => FileKind::SocketPair(unix::PairEnd::save(cx)?),
                unix::Role::Alone => FileKind::UnixAlone(unix_alone::UnixAlone::save(cx)?),
                unix::Role::Outside => FileKind::Stdio(stdio::Stdio::save(cx)?),
            },
            Class::EventFd => FileKind::EventFd(eventfd::EventFd::save(cx)?),
            Class::EventPoll => FileKind::EventPoll(epoll::EventPoll::save(cx)?),
            Class::TimerFd => FileKind::TimerFd(timerfd::TimerFd::save(cx)?),
            Class::PidFd => FileKind::PidFd(pidfd::PidFd::save(cx)?),
            Class::Inotify => FileKind::Inotify(inotify::Inotify::save(cx)?),
            Class::SignalFd => FileKind::SignalFd(signalfd::SignalFd::save(cx)?),
            Class::Tty => FileKind::Stdio(stdio::Stdio::save(cx)?),
            Class::Regular => FileKind::Regular(regular::Regular::save(cx)?),
            Class::Ghost => FileKind::Ghost(ghost::Ghost::save(cx)?),
            Class::Directory => FileKind::Directory(regular::Directory::save(cx)?),
            Class::Device => FileKind::Device(regular::Device::save(cx)?),
        })
    }

    /// Makes the open file in the restorer.
    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        match self {
            FileKind::Regular(s) => s.restore(cx),
            FileKind::Ghost(s) => s.restore(cx),
            FileKind::Directory(s) => s.restore(cx),
            FileKind::Device(s) => s.restore(cx),
            FileKind::Pipe(s) => s.restore(cx),
            FileKind::Fifo(s) => s.restore(cx),
            FileKind::SocketPair(s) => s.restore(cx),
            FileKind::UnixAlone(s) => s.restore(cx),
            FileKind::EventFd(s) => s.restore(cx),
            FileKind::EventPoll(s) => s.restore(cx),
            FileKind::TimerFd(s) => s.restore(cx),
            FileKind::PidFd(s) => s.restore(cx),
            FileKind::Inotify(s) => s.restore(cx),
            FileKind::SignalFd(s) => s.restore(cx),
            FileKind::Stdio(s) => s.restore(cx),
            FileKind::Tcp(s) => s.restore(cx),
            FileKind::TcpConn(s) => s.restore(cx),
        }
    }

    /// Whether it can be made only once the tree's processes exist (a pidfd).
    fn needs_processes(&self) -> bool {
        matches!(self, FileKind::PidFd(_))
    }

    /// Checks, before anything is created, that what the file was opened from is still there
    /// and unchanged.
    fn check(&self, shared: &Shared, allow_changed: bool) -> Result<()> {
        match self {
            FileKind::Regular(s) => s.check(allow_changed),
            FileKind::Ghost(s) => s.check(&shared.ghosts),
            FileKind::Directory(s) => s.check(),
            FileKind::Device(s) => s.check(),
            FileKind::Fifo(s) => s.check(),
            FileKind::UnixAlone(s) => s.check(),
            _ => Ok(()),
        }
    }

    /// Whether the shared object it refers to, if any, is in `shared`.
    pub(crate) fn refs_ok(&self, shared: &Shared) -> bool {
        match self {
            FileKind::Pipe(p) => (p.pipe as usize) < shared.pipes.len(),
            FileKind::Fifo(f) => (f.pipe as usize) < shared.pipes.len(),
            FileKind::SocketPair(s) => (s.pair as usize) < shared.socketpairs.len() && s.end < 2,
            FileKind::Stdio(s) => s.stream < 3,
            FileKind::Ghost(g) => (g.ghost as usize) < shared.ghosts.len(),
            _ => true,
        }
    }
}

/// Builds the tree's table of open files from the fd tables of its processes; returns it with
/// each process' fd table and the TCP sockets put in repair mode (see `tcp_conn`).
pub(crate) fn build(
    root: i32,
    tables: &[(i32, Vec<FdEntry>)],
    pidfds: &HashMap<i32, OwnedFd>,
    frozen: bool,
) -> Result<(Shared, HashMap<i32, FdTable>, tcp_conn::Repaired)> {
    let mut tree = TreeFds::new(root, tables)?;
    tree.frozen = frozen;
    let mut shared = Shared::default();
    let mut seen = Seen::default();
    let mut out = HashMap::new();
    for (pid, entries) in tables {
        let pidfd = pidfds
            .get(pid)
            .ok_or_else(|| Error::Conflict(format!("pid {pid}: no pidfd")))?;
        let mut cx = FdTableDump {
            pid: *pid,
            entries,
            pidfd: pidfd.as_fd(),
            tree: &tree,
            shared: &mut shared,
            seen: &mut seen,
        };
        out.insert(*pid, FdTable::save(&mut cx)?);
    }
    Ok((shared, out, seen.repaired))
}

/// The id of the open file met before that fd `e` of `pid` shares (dup, fork), if any.
fn same_as(pid: i32, e: &FdEntry, reps: &[(i32, i32, (u64, u64), u32)]) -> Result<Option<u32>> {
    for &(rp, rfd, key, id) in reps {
        if key == e.key
            && sfd::same_file(pid, e.fd, rp, rfd)
                .map_err(|er| Error::sys(pid, format!("kcmp fd {}", e.fd), er))?
        {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Checks, before anything is created, that the files of the shared table are there and
/// unchanged.
pub(crate) fn check(shared: &Shared, allow_changed: bool) -> Result<()> {
    shared
        .files
        .iter()
        .try_for_each(|f| f.kind.check(shared, allow_changed))
}

/// Objects of the tree made so far by the restorer while its open files are made.
#[derive(Debug, Default)]
pub(crate) struct Making {
    pipes: pipe::Making,
    pairs: unix::Making,
    ghosts: HashMap<u32, OwnedFd>,
    /// Memfds whose own open file (from `memfd_create`) an open file of the image got.
    memfd_originals: HashSet<u32>,
}

/// An open file being made by the restorer.
pub(crate) struct FileRestore<'a> {
    /// The open file.
    pub file: &'a OpenFile,
    /// The tree's shared objects (pipe contents, queued socket bytes).
    pub shared: &'a Shared,
    /// Objects made so far.
    pub making: &'a mut Making,
    /// The restorer's fds that files saved as standard streams are bound to.
    pub stdio: [RawFd; 3],
    /// TCP connections are restored closed (`RestoreOptions::tcp_close`).
    pub tcp_close: bool,
}

/// Everything the tree's fds refer to, held by the restorer until each process took its own.
#[derive(Debug, Default)]
pub(crate) struct Made {
    /// One fd per open file, by [`OpenFile::id`] (a pidfd only once the processes exist).
    files: Vec<Option<OwnedFd>>,
    /// The restorer's standard streams.
    stdio: [RawFd; 3],
    /// The process that finishes each open file (fills an epoll instance, takes its OFD and
    /// flock locks): the first that holds it, by open file id.
    finisher: HashMap<u32, i32>,
    /// Openers that keep FIFOs alive until the tree holds them.
    keepers: Vec<OwnedFd>,
}

/// Makes every open file of the tree in the restorer.
pub(crate) fn create(shared: &Shared, stdio: [RawFd; 3], tcp_close: bool) -> Result<Made> {
    let mut making = Making::default();
    let mut files: Vec<Option<OwnedFd>> = shared.files.iter().map(|_| None).collect();
    // TCP sockets without a connection come after the connections: a connection in repair
    // mode binds whatever its port holds, a listener binds beside connections but not before
    for late in [false, true] {
        for (i, f) in shared.files.iter().enumerate() {
            if f.kind.needs_processes() || matches!(f.kind, FileKind::Tcp(_)) != late {
                continue;
            }
            let mut cx = FileRestore {
                file: f,
                shared,
                making: &mut making,
                stdio,
                tcp_close,
            };
            files[i] = Some(f.kind.restore(&mut cx)?);
        }
    }
    // both ends of every connection exist now: the connections may go on
    for (f, made) in shared.files.iter().zip(&files) {
        if let (FileKind::TcpConn(c), Some(fd), false) = (&f.kind, made, tcp_close) {
            tcp_conn::go_live(fd.as_fd(), c)?;
        }
    }
    Ok(Made {
        files,
        stdio,
        finisher: HashMap::new(),
        keepers: making.pipes.into_keepers(),
    })
}

impl Made {
    /// Makes the open files that refer to processes (pidfds), once every process and zombie
    /// of the tree exists.
    pub fn make_late(&mut self, shared: &Shared) -> Result<()> {
        let mut making = Making::default();
        for (f, slot) in shared.files.iter().zip(self.files.iter_mut()) {
            if f.kind.needs_processes() {
                let mut cx = FileRestore {
                    file: f,
                    shared,
                    making: &mut making,
                    stdio: self.stdio,
                    tcp_close: false,
                };
                *slot = Some(f.kind.restore(&mut cx)?);
            }
        }
        Ok(())
    }

    /// Picks, for each open file, the process that finishes it: the first one of `procs` (in
    /// restore order) that holds it.
    pub fn plan_finish<'p>(&mut self, procs: impl Iterator<Item = (i32, &'p FdTable)>) {
        for (pid, table) in procs {
            for f in table.iter() {
                self.finisher.entry(f.file).or_insert(pid);
            }
        }
    }

    /// Sets the owners of the open files that have one; every process and thread of the tree
    /// must exist.
    pub fn restore_owners(&self, shared: &Shared) -> Result<()> {
        for (f, fd) in shared.files.iter().zip(&self.files) {
            if let (Some(o), Some(fd)) = (&f.owner, fd) {
                o.restore(fd.as_fd())?;
            }
        }
        Ok(())
    }

    /// Closes the FIFO openers once every process holds its own ends.
    pub fn release_keepers(&mut self) {
        self.keepers.clear();
    }
}

/// The fd table of one process being saved, with what is known of the whole tree.
pub(crate) struct FdTableDump<'a> {
    /// The process.
    pub pid: i32,
    /// Its fds as /proc shows them.
    pub entries: &'a [FdEntry],
    /// A pidfd of the process, to take copies of its fds.
    pub pidfd: BorrowedFd<'a>,
    /// What is known of the whole tree's fds.
    pub tree: &'a TreeFds,
    /// The tree's shared objects saved so far.
    pub shared: &'a mut Shared,
    /// Objects met so far.
    pub seen: &'a mut Seen,
}

impl Persist for FdTable {
    type Saving<'a> = FdTableDump<'a>;
    type Restoring<'a> = ProcRestore<'a>;
    type Made = ();

    /// Each fd refers to an open file saved once for the tree: the first time it is met.
    fn save(cx: &mut FdTableDump<'_>) -> Result<FdTable> {
        let mut fds = Vec::with_capacity(cx.entries.len());
        let mut posix_locks: Vec<(i32, locks::FileLock)> = Vec::new();
        // the POSIX locks of the process on an inode show in the fdinfo of each of its fds
        let mut posix_seen = HashSet::new();
        for e in cx.entries {
            if posix_seen.insert(e.key) {
                posix_locks.extend(
                    e.locks
                        .iter()
                        .filter(|l| l.kind == locks::LockKind::Posix)
                        .map(|l| (e.fd, l.clone())),
                );
            }
            let id = match same_as(cx.pid, e, &cx.seen.files)? {
                Some(id) => id,
                None => {
                    let mut fcx = FileDump {
                        pid: cx.pid,
                        e,
                        pidfd: cx.pidfd,
                        tree: cx.tree,
                        shared: &mut *cx.shared,
                        seen: &mut *cx.seen,
                    };
                    let kind = FileKind::save(&mut fcx)?;
                    // a standard stream is bound to the restorer's at restore: its owner is not
                    // the tree's to give
                    let owner = match kind {
                        FileKind::Stdio(_) => None,
                        _ => owner::save(&fcx, fcx.take()?.as_fd())?,
                    };
                    let id = cx.shared.files.len() as u32;
                    cx.shared.files.push(OpenFile {
                        id,
                        flags: e.flags,
                        pos: e.pos,
                        kind,
                        locks: e
                            .locks
                            .iter()
                            .filter(|l| l.kind != locks::LockKind::Posix)
                            .cloned()
                            .collect(),
                        owner,
                    });
                    cx.seen.files.push((cx.pid, e.fd, e.key, id));
                    id
                }
            };
            fds.push(Fd {
                fd: e.fd,
                file: id,
                cloexec: e.cloexec,
            });
        }
        Ok(FdTable { fds, posix_locks })
    }

    /// Takes every fd from the restorer and its POSIX locks, then finishes the open files this
    /// process finishes (epoll watches, OFD and flock locks).
    fn restore(&self, cx: &mut ProcRestore<'_>) -> Result<()> {
        let pid = cx.h.pid;
        let made = cx.tree.files;
        let fds: Vec<(RawFd, i32, bool)> = self
            .iter()
            .map(|f| {
                made.files
                    .get(f.file as usize)
                    .and_then(Option::as_ref)
                    .map(|src| (src.as_raw_fd(), f.fd, f.cloexec))
                    .ok_or_else(|| Error::bad_image(format!("proc-{pid}.rec"), "unknown file"))
            })
            .collect::<Result<_>>()?;
        cx.h.take_fds(cx.tree.restorer, &fds)?;
        for (fd, lock) in &self.posix_locks {
            lock.take(cx.h, *fd)?;
        }
        let mut done = HashSet::new();
        for f in self.iter() {
            if made.finisher.get(&f.file) != Some(&pid) || !done.insert(f.file) {
                continue;
            }
            let Some(file) = cx.tree.shared.files.get(f.file as usize) else {
                continue;
            };
            if let FileKind::EventPoll(ep) = &file.kind {
                ep.fill(cx.h, f.fd)?;
            }
            for lock in &file.locks {
                lock.take(cx.h, f.fd)?;
            }
        }
        Ok(())
    }
}

/// `(dev, ino)` of the files mapped by `pid` (/proc/PID/maps: `MAJ:MIN` in hex, then inode).
fn mapped_files(pid: i32) -> Result<HashSet<(u64, u64)>> {
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().skip(3);
            let (maj, min) = f.next()?.split_once(':')?;
            let ino: u64 = f.next()?.parse().ok()?;
            let dev = libc::makedev(
                u32::from_str_radix(maj, 16).ok()?,
                u32::from_str_radix(min, 16).ok()?,
            );
            (ino != 0).then_some((dev, ino))
        })
        .collect())
}

/// Sets the status flags an open file had that a fresh one may lack.
pub(crate) fn set_status_flags(fd: BorrowedFd<'_>, flags: i32, what: &str) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let keep = OFlag::from_bits_truncate(
        flags
            & (libc::O_NONBLOCK
                | libc::O_APPEND
                | libc::O_ASYNC
                | libc::O_DIRECT
                | libc::O_NOATIME),
    );
    fcntl(fd, FcntlArg::F_SETFL(keep)).map_err(|e| Error::io(what, e.into()))?;
    Ok(())
}

/// Opens `path` with the access mode and flags of an open file (never creating it).
pub(crate) fn open(path: &str, flags: i32) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .custom_flags(flags & !(libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL))
        .write(matches!(
            flags & libc::O_ACCMODE,
            libc::O_WRONLY | libc::O_RDWR
        ))
        .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    Ok(OwnedFd::from(f))
}
