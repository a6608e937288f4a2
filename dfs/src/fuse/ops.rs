//! The work behind each FUSE request, as plain methods returning an errno on failure.

use std::time::Duration;

use fuser::{ReplyXattr, Request};

use super::{lock, now, Fs, OpenFile};
use crate::meta::{
    Attr, Kind, Lock, LockKind, LockOwner, MetaOp, MetaRead, MetaReply, NewNode, SetAttr,
};

/// How often a blocking lock request (`F_SETLKW`, `flock` without `LOCK_NB`) tries again.
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// The attributes in an answer.
pub fn attr_of_reply(r: MetaReply) -> Result<Attr, i32> {
    match r {
        MetaReply::Attr(a) | MetaReply::Opened(a, _) => Ok(a),
        _ => Err(libc::EIO),
    }
}

/// Answers an xattr request: its size when asked (`size` 0), else the bytes if they fit.
pub fn reply_sized(reply: ReplyXattr, bytes: &[u8], size: u32) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(fuser::Errno::ERANGE);
    } else {
        reply.data(bytes);
    }
}

/// The supplementary groups of process `pid` (empty if it is gone).
fn groups_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Groups:")).map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|g| g.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

impl Fs {
    /// Attributes found by name; another node's unpublished writes are recalled first.
    pub(super) fn lookup_attr(&self, parent: u64, name: Vec<u8>) -> Result<Attr, i32> {
        let a = attr_of_reply(self.read(MetaRead::Lookup { parent, name })?)?;
        if self.recalled(&a)? || self.commits_of(a.ino).is_some() {
            // Asked again: after the recall, or with this node's commits counted first.
            return self.attr_of(a.ino);
        }
        Ok(self.local_view(a, None))
    }

    /// Attributes of an inode; another node's unpublished writes are recalled first.
    pub(super) fn attr_of(&self, ino: u64) -> Result<Attr, i32> {
        let mut seen = self.commits_of(ino);
        let mut a = attr_of_reply(self.read(MetaRead::GetAttr { ino })?)?;
        if self.recalled(&a)? {
            seen = self.commits_of(ino);
            a = attr_of_reply(self.read(MetaRead::GetAttr { ino })?)?;
        }
        Ok(self.local_view(a, seen))
    }

    /// Changes attributes; a size change publishes this node's writes first, so the new size
    /// cuts what was written before it.
    pub(super) fn set_attr(&self, ino: u64, set: SetAttr) -> Result<Attr, i32> {
        let file = self.open_file(ino);
        let mut guard = file.as_ref().map(|f| lock(f));
        if let (Some(size), Some(f)) = (set.size, guard.as_deref_mut()) {
            f.publish_or_drop(self)?;
            f.resize(size);
        }
        let a = attr_of_reply(self.write(MetaOp::SetAttr {
            ino,
            set,
            now: now(),
        })?)?;
        let seen = guard.as_ref().map(|f| f.commits);
        drop(guard);
        Ok(self.local_view(a, seen))
    }

    /// Creates an inode (file, directory, node, symlink) owned by the caller.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn make(
        &self,
        req: &Request,
        parent: u64,
        name: Vec<u8>,
        mode: u32,
        rdev: u32,
        target: Vec<u8>,
        open_on: Option<u16>,
    ) -> Result<Attr, i32> {
        let kind = Kind::from_mode(mode).ok_or(libc::EINVAL)?;
        let node = NewNode {
            kind,
            perm: u16::try_from(mode & 0o7777).unwrap_or(0),
            uid: req.uid(),
            gid: req.gid(),
            rdev,
            target,
            groups: groups_of(req.pid()),
        };
        attr_of_reply(self.write(MetaOp::Create {
            parent,
            name,
            node,
            open_on,
            now: now(),
        })?)
    }

    /// Registers an open file and gives a handle for it.
    pub(super) fn adopt(&self, ino: u64, fresh: OpenFile) -> u64 {
        self.dfs.adopt_open(ino, fresh);
        self.new_fh(ino)
    }

    /// Opens a file: the metadata records this node as holding it open and answers its current
    /// chunks (close-to-open: an open sees every close that came before it).
    pub(super) fn open_ino(&self, ino: u64) -> Result<u64, i32> {
        let me = self.dfs.opts.me;
        let open = || match self.write(MetaOp::Open { ino, node: me })? {
            MetaReply::Opened(a, c) => Ok((a, c)),
            _ => Err(libc::EIO),
        };
        let (mut attr, mut chunks) = open()?;
        if self.recalled(&attr)? {
            (attr, chunks) = open()?;
        }
        if let Some(f) = self.open_file(ino) {
            lock(&f).refresh(attr.size, chunks.clone());
        }
        Ok(self.adopt(ino, OpenFile::new(ino, attr.size, chunks)))
    }

    fn with_file<T>(
        &self,
        ino: u64,
        f: impl FnOnce(&mut OpenFile) -> Result<T, i32>,
    ) -> Result<T, i32> {
        let file = self.open_file(ino).ok_or(libc::EBADF)?;
        let mut guard = lock(&file);
        f(&mut guard)
    }

    pub(super) fn read_data(&self, ino: u64, off: u64, size: u32) -> Result<Vec<u8>, i32> {
        self.with_file(ino, |f| f.read(self, off, u64::from(size)))
    }

    pub(super) fn write_data(&self, ino: u64, off: u64, data: &[u8]) -> Result<(), i32> {
        self.with_file(ino, |f| f.write(self, off, data))
    }

    /// Publishes this node's writes to `ino` for an `fsync` or `close` here, dropping them
    /// if that fails.
    pub(super) fn publish(&self, ino: u64) -> Result<(), i32> {
        match self.open_file(ino) {
            Some(file) => lock(&file).publish_or_drop(self),
            None => Ok(()),
        }
    }

    /// Publishes this node's writes to `ino` for another node's recall, keeping them if that
    /// fails.
    pub(super) fn publish_recalled(&self, ino: u64) -> Result<(), i32> {
        match self.open_file(ino) {
            Some(file) => lock(&file).publish_or_keep(self),
            None => Ok(()),
        }
    }

    /// Closes a handle; the last one here publishes and tells the metadata that this node no
    /// longer holds the file open.
    pub(super) fn release_fh(&self, ino: u64, fh: u64) -> Result<(), i32> {
        lock(&self.handles).remove(&fh);
        let Some(file) = self.open_file(ino) else {
            return Ok(());
        };
        let published = {
            let mut f = lock(&file);
            let published = f.publish_or_drop(self);
            f.handles = f.handles.saturating_sub(1);
            published
        };
        // An open of this node may have taken the file again meanwhile.
        if !self.dfs.forget_open(ino) {
            return published;
        }
        let me = self.dfs.opts.me;
        self.write(MetaOp::Release { ino, node: me })?;
        published
    }

    /// Drops the locks an owner of this node holds on `ino` (a close there).
    pub(super) fn drop_locks(&self, ino: u64, owner: u64) {
        if !lock(&self.lockers).remove(&(ino, owner)) {
            return;
        }
        let owner = LockOwner {
            node: self.dfs.opts.me,
            owner,
        };
        if let Err(e) = self.write(MetaOp::DropLocks { ino, owner }) {
            tracing::warn!(ino, errno = e, "locks not dropped at close");
        }
    }

    fn lock_of(&self, owner: u64, start: u64, end: u64, typ: i32, pid: u32) -> Option<Lock> {
        let kind = match typ {
            libc::F_RDLCK => LockKind::Read,
            libc::F_WRLCK => LockKind::Write,
            _ => return None,
        };
        Some(Lock {
            owner: LockOwner {
                node: self.dfs.opts.me,
                owner,
            },
            kind,
            start,
            end,
            pid,
        })
    }

    pub(super) fn get_lock(
        &self,
        ino: u64,
        owner: u64,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
    ) -> Result<Option<Lock>, i32> {
        let want = self
            .lock_of(owner, start, end, typ, pid)
            .ok_or(libc::EINVAL)?;
        match self.read(MetaRead::GetLock { ino, want })? {
            MetaReply::Lock(l) => Ok(l),
            _ => Err(libc::EIO),
        }
    }

    /// Takes or releases a lock; a blocking request polls until the lock is free (FUSE
    /// interrupts are not delivered by fuser, so a waiter cannot be interrupted).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn set_lock(
        &self,
        ino: u64,
        owner: u64,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
    ) -> Result<(), i32> {
        let lock_req = self.lock_of(owner, start, end, typ, pid);
        if lock_req.is_some() {
            lock(&self.lockers).insert((ino, owner));
        }
        let op = MetaOp::SetLock {
            ino,
            lock: lock_req,
            owner: LockOwner {
                node: self.dfs.opts.me,
                owner,
            },
            start,
            end,
        };
        loop {
            match self.write(op.clone()) {
                Err(libc::EAGAIN) if sleep => std::thread::sleep(LOCK_RETRY),
                r => return r.map(drop),
            }
        }
    }

    /// `fallocate` mode 0: makes the file at least `off + len` long (space is not reserved).
    pub(super) fn allocate(&self, ino: u64, off: u64, len: u64, mode: i32) -> Result<(), i32> {
        if mode != 0 {
            return Err(libc::EOPNOTSUPP);
        }
        let size = self.attr_of(ino)?.size;
        let end = off.checked_add(len).ok_or(libc::EFBIG)?;
        if end > size {
            self.set_attr(
                ino,
                SetAttr {
                    size: Some(end),
                    ..SetAttr::default()
                },
            )?;
        }
        Ok(())
    }

    /// Blocks and free blocks (4 KiB) of this node's data disk, and inodes in use.
    pub(super) fn totals(&self) -> (u64, u64, u64) {
        let s = self.dfs.node_status();
        let files = match self.dfs.local_read(&MetaRead::Totals) {
            Ok(MetaReply::Totals { inodes, .. }) => inodes,
            _ => 0,
        };
        (s.capacity_bytes / 4096, s.free_bytes / 4096, files)
    }
}
