//! The FUSE client: the cluster file system mounted on this node.
//!
//! ```text
//!  kernel (default_permissions checks) --> fuser threads --> Fs
//!       names, attributes, locks  --> Dfs::write / Dfs::read (raft, leader)
//!       data                      --> OpenFile (chunk files here, replicas at publish)
//! ```
//!
//! The writeback cache is off: the metadata, not one node's kernel, owns sizes and times.
//! Record locks and flock are negotiated with the kernel so that they reach the metadata and
//! hold across nodes.

mod attr;
mod files;
pub mod mount;
mod ops;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::future::Future;
use std::sync::{Arc, Mutex};

use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyLock, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use crate::meta::{Attr, MetaOp, MetaRead, MetaReply, Timespec};
use crate::service::Dfs;

pub use files::OpenFile;

/// Publishes what this node wrote to `ino` and has not published yet (another node asked);
/// blocks, so it is to be called off the runtime `rt`.
pub fn publish_here(dfs: Arc<Dfs>, rt: Handle, ino: u64) -> Result<(), i32> {
    Fs::new(dfs, rt).publish_recalled(ino)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The file system as this node's kernel sees it.
#[derive(Debug)]
pub struct Fs {
    dfs: Arc<Dfs>,
    rt: Handle,
    /// Handles: file handle to inode.
    handles: Mutex<HashMap<u64, u64>>,
    next_fh: Mutex<u64>,
    /// Lock owners of this node that hold or held locks, per inode (to drop them on close).
    lockers: Mutex<HashSet<(u64, u64)>>,
}

impl Fs {
    /// The file system of `dfs`; its async work runs on `rt`.
    pub fn new(dfs: Arc<Dfs>, rt: Handle) -> Fs {
        Fs {
            dfs,
            rt,
            handles: Mutex::default(),
            next_fh: Mutex::new(1),
            lockers: Mutex::default(),
        }
    }

    /// Runs async work of the service from a FUSE thread and waits for it; `EIO` if the
    /// daemon's runtime is shutting down.
    fn run<T, F, Fut>(&self, f: F) -> Result<T, i32>
    where
        F: FnOnce(Arc<Dfs>) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let task = self.rt.spawn(f(self.dfs.clone()));
        self.rt.block_on(task).map_err(|e| {
            tracing::warn!(error = %e, "dfs request abandoned");
            libc::EIO
        })
    }

    /// Proposes a change.
    fn write(&self, op: MetaOp) -> Result<MetaReply, i32> {
        self.run(move |d| async move { d.write(op).await })?
    }

    /// Asks a question.
    fn read(&self, q: MetaRead) -> Result<MetaReply, i32> {
        self.run(move |d| async move { d.read(q).await })?
    }

    /// Makes sure this node holds a committed chunk version.
    fn local_chunk(&self, ino: u64, idx: u64, c: &crate::meta::ChunkRef) -> Result<(), i32> {
        if self.dfs.chunks.has(ino, idx, c.version) {
            return Ok(());
        }
        let c = c.clone();
        self.run(move |d| async move { d.ensure_local(ino, idx, &c).await })?
            .map_err(|e| {
                tracing::warn!(ino, idx, error = %e, "no replica of a chunk answered");
                libc::EIO
            })
    }

    fn open_file(&self, ino: u64) -> Option<Arc<Mutex<OpenFile>>> {
        self.dfs.open_file(ino)
    }

    /// Whether other nodes hold `a` open, and answered a recall of what they wrote to it (then
    /// the attributes and chunks must be asked again).
    fn recalled(&self, a: &Attr) -> Result<bool, i32> {
        let me = self.dfs.opts.me;
        if a.kind != crate::meta::Kind::File || a.open_on.iter().all(|n| *n == me) {
            return Ok(false);
        }
        let (ino, holders) = (a.ino, a.open_on.clone());
        self.run(move |d| async move { d.recall(ino, &holders).await })
    }

    /// How many commits of its writes this node has made to `ino`, if it holds it open: taken
    /// before asking the metadata, and given back to [`Fs::local_view`].
    fn commits_of(&self, ino: u64) -> Option<u64> {
        self.open_file(ino).map(|f| lock(&f).commits)
    }

    /// Attributes with this node's view laid over (size, mtime) while it holds the file open
    /// and either has unpublished writes or committed some after `seen` (the count taken before
    /// the metadata was asked): the answer then predates this node's own commit, and a stale
    /// size would make the kernel put the next `O_APPEND` write over earlier records.
    fn local_view(&self, mut a: Attr, seen: Option<u64>) -> Attr {
        if let Some(f) = self.open_file(a.ino) {
            let f = lock(&f);
            let newer = seen.is_none_or(|n| n != f.commits);
            if let Some(t) = f.written.or(if newer { f.committed } else { None }) {
                a.size = f.size;
                a.mtime = t;
                a.ctime = t;
            }
        }
        a
    }

    fn new_fh(&self, ino: u64) -> u64 {
        let mut n = lock(&self.next_fh);
        let fh = *n;
        *n += 1;
        lock(&self.handles).insert(fh, ino);
        fh
    }
}

fn now() -> Timespec {
    Timespec::now()
}

fn name(n: &OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    n.as_bytes().to_vec()
}

fn err(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn reply_entry(reply: ReplyEntry, r: Result<Attr, i32>) {
    match r {
        Ok(a) => reply.entry(&attr::ttl(a.kind), &attr::file_attr(&a), Generation(0)),
        Err(e) => reply.error(err(e)),
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), i32>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(err(e)),
    }
}

fn reply_attr(reply: ReplyAttr, r: Result<Attr, i32>) {
    match r {
        Ok(a) => reply.attr(&attr::ttl(a.kind), &attr::file_attr(&a)),
        Err(e) => reply.error(err(e)),
    }
}

fn to_time(t: TimeOrNow) -> crate::meta::SetTime {
    match t {
        TimeOrNow::Now => crate::meta::SetTime::Now,
        TimeOrNow::SpecificTime(t) => crate::meta::SetTime::At(t.into()),
    }
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_POSIX_LOCKS
            | InitFlags::FUSE_FLOCK_LOCKS
            | InitFlags::FUSE_PARALLEL_DIROPS;
        if let Err(missing) = config.add_capabilities(wanted) {
            tracing::warn!(?missing, "kernel lacks FUSE capabilities");
        }
        // As large as the session's buffer allows (the kernel's limit is 1 MiB here).
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.lookup_attr(parent.0, name(n)));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(reply, self.attr_of(ino.0));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = crate::meta::SetAttr {
            perm: mode.map(|m| u16::try_from(m & 0o7777).unwrap_or(0)),
            uid,
            gid,
            size,
            atime: atime.map(to_time),
            mtime: mtime.map(to_time),
        };
        reply_attr(reply, self.set_attr(ino.0, set));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.read(MetaRead::ReadLink { ino: ino.0 }) {
            Ok(MetaReply::Bytes(b)) => reply.data(&b),
            Ok(_) => reply.error(Errno::EIO),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            self.make(req, parent.0, name(n), mode, rdev, Vec::new(), None),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mode = (mode & 0o7777) | libc::S_IFDIR;
        reply_entry(
            reply,
            self.make(req, parent.0, name(n), mode, 0, Vec::new(), None),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let op = MetaOp::Unlink {
            parent: parent.0,
            name: name(n),
            now: now(),
        };
        reply_empty(reply, self.write(op).map(drop));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let op = MetaOp::Rmdir {
            parent: parent.0,
            name: name(n),
            now: now(),
        };
        reply_empty(reply, self.write(op).map(drop));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let target = name(target.as_os_str());
        let mode = libc::S_IFLNK | 0o777;
        reply_entry(
            reply,
            self.make(req, parent.0, name(link_name), mode, 0, target, None),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        n: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let op = MetaOp::Rename {
            parent: parent.0,
            name: name(n),
            new_parent: new_parent.0,
            new_name: name(new_name),
            flags: flags.bits(),
            now: now(),
        };
        reply_empty(reply, self.write(op).map(drop));
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        new_parent: INodeNo,
        new_name: &OsStr,
        reply: ReplyEntry,
    ) {
        let op = MetaOp::Link {
            ino: ino.0,
            parent: new_parent.0,
            name: name(new_name),
            now: now(),
        };
        reply_entry(reply, self.write(op).and_then(ops::attr_of_reply));
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.open_ino(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(err(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_data(ino.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(err(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.write_data(ino.0, offset, data) {
            Ok(()) => reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let published = self.publish(ino.0);
        self.drop_locks(ino.0, lock_owner.0);
        reply_empty(reply, published);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(owner) = lock_owner {
            self.drop_locks(ino.0, owner.0);
        }
        reply_empty(reply, self.release_fh(ino.0, fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.publish(ino.0));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.read(MetaRead::ReadDir {
            ino: ino.0,
            after: offset,
            max: 512,
        }) {
            Ok(MetaReply::Dir(items)) => {
                for i in items {
                    let kind = attr::file_type(i.kind);
                    if reply.add(
                        INodeNo(i.ino),
                        i.cookie,
                        kind,
                        OsStr::from_bytes_lossy(&i.name),
                    ) {
                        break;
                    }
                }
                reply.ok();
            }
            Ok(_) => reply.error(Errno::EIO),
            Err(e) => reply.error(err(e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (blocks, bfree, files) = self.totals();
        reply.statfs(
            blocks,
            bfree,
            bfree,
            files,
            u64::from(u32::MAX),
            4096,
            255,
            4096,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        n: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let op = MetaOp::SetXattr {
            ino: ino.0,
            name: name(n),
            value: value.to_vec(),
            flags,
            now: now(),
        };
        reply_empty(reply, self.write(op).map(drop));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, size: u32, reply: ReplyXattr) {
        let q = MetaRead::GetXattr {
            ino: ino.0,
            name: name(n),
        };
        match self.read(q) {
            Ok(MetaReply::Bytes(v)) => ops::reply_sized(reply, &v, size),
            Ok(_) => reply.error(Errno::EIO),
            Err(e) => reply.error(err(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.read(MetaRead::ListXattr { ino: ino.0 }) {
            Ok(MetaReply::Names(names)) => {
                let mut out = Vec::new();
                for n in names {
                    out.extend_from_slice(&n);
                    out.push(0);
                }
                ops::reply_sized(reply, &out, size);
            }
            Ok(_) => reply.error(Errno::EIO),
            Err(e) => reply.error(err(e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let op = MetaOp::RemoveXattr {
            ino: ino.0,
            name: name(n),
            now: now(),
        };
        reply_empty(reply, self.write(op).map(drop));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let me = self.dfs.opts.me;
        match self.make(req, parent.0, name(n), mode, 0, Vec::new(), Some(me)) {
            Ok(a) => {
                let fh = self.adopt(a.ino, OpenFile::new(a.ino, 0, Vec::new()));
                reply.created(
                    &attr::ttl(a.kind),
                    &attr::file_attr(&a),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                );
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        match self.get_lock(ino.0, lock_owner.0, start, end, typ, pid) {
            Ok(Some(l)) => {
                let typ = match l.kind {
                    crate::meta::LockKind::Read => libc::F_RDLCK,
                    crate::meta::LockKind::Write => libc::F_WRLCK,
                };
                reply.locked(l.start, l.end, typ, l.pid);
            }
            Ok(None) => reply.locked(start, end, libc::F_UNLCK, 0),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            reply,
            self.set_lock(ino.0, lock_owner.0, start, end, typ, pid, sleep),
        );
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.allocate(ino.0, offset, length, mode));
    }
}

/// `OsStr` from raw bytes.
trait FromBytes {
    fn from_bytes_lossy(b: &[u8]) -> &OsStr;
}

impl FromBytes for OsStr {
    fn from_bytes_lossy(b: &[u8]) -> &OsStr {
        use std::os::unix::ffi::OsStrExt;
        OsStr::from_bytes(b)
    }
}
