//! Changes of one inode: attributes, extended attributes, data, opens, locks, replicas.

use super::locks::{self, Lock, LockOwner};
use super::ops::{Errno, MetaReply, SetAttr, SetTime};
use super::types::{ChunkRef, Ino, Kind, Timespec, CHUNK_SIZE};
use super::{errno, MetaState};

const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;
/// Largest extended attribute value, as the kernel allows.
const XATTR_SIZE_MAX: usize = 65536;

fn resolve(t: SetTime, now: Timespec) -> Timespec {
    match t {
        SetTime::Now => now,
        SetTime::At(t) => t,
    }
}

/// Drops the chunks of a file past `size` and shortens the last one.
fn cut(chunks: &mut std::collections::BTreeMap<u64, ChunkRef>, size: u64) {
    let first_gone = size.div_ceil(CHUNK_SIZE);
    chunks.retain(|idx, _| *idx < first_gone);
    if size % CHUNK_SIZE != 0 {
        if let Some(last) = chunks.get_mut(&(size / CHUNK_SIZE)) {
            let keep = u32::try_from(size % CHUNK_SIZE).unwrap_or(u32::MAX);
            last.valid = last.valid.min(keep);
        }
    }
}

impl MetaState {
    pub(super) fn set_attr(
        &mut self,
        ino: Ino,
        set: SetAttr,
        now: Timespec,
    ) -> Result<MetaReply, Errno> {
        let i = self.inode_mut(ino)?;
        if let Some(size) = set.size {
            match i.kind {
                Kind::Dir => return errno(libc::EISDIR),
                Kind::File => {}
                _ => return errno(libc::EINVAL),
            }
            cut(&mut i.chunks, size);
            i.size = size;
            i.mtime = now;
        }
        if let Some(p) = set.perm {
            i.perm = p & 0o7777;
        }
        if let Some(u) = set.uid {
            i.uid = u;
        }
        if let Some(g) = set.gid {
            i.gid = g;
        }
        if let Some(t) = set.atime {
            i.atime = resolve(t, now);
        }
        if let Some(t) = set.mtime {
            i.mtime = resolve(t, now);
        }
        i.ctime = now;
        Ok(MetaReply::Attr(i.attr(ino)))
    }

    pub(super) fn set_xattr(
        &mut self,
        ino: Ino,
        name: Vec<u8>,
        value: Vec<u8>,
        flags: i32,
        now: Timespec,
    ) -> Result<MetaReply, Errno> {
        if name.is_empty() || name.len() > 255 {
            return errno(libc::ERANGE);
        }
        if value.len() > XATTR_SIZE_MAX {
            return errno(libc::E2BIG);
        }
        let i = self.inode_mut(ino)?;
        let exists = i.xattrs.contains_key(&name);
        if flags & XATTR_CREATE != 0 && exists {
            return errno(libc::EEXIST);
        }
        if flags & XATTR_REPLACE != 0 && !exists {
            return errno(libc::ENODATA);
        }
        i.xattrs.insert(name, value);
        i.ctime = now;
        Ok(MetaReply::Done)
    }

    pub(super) fn remove_xattr(
        &mut self,
        ino: Ino,
        name: &[u8],
        now: Timespec,
    ) -> Result<MetaReply, Errno> {
        let i = self.inode_mut(ino)?;
        i.xattrs.remove(name).ok_or(libc::ENODATA)?;
        i.ctime = now;
        Ok(MetaReply::Done)
    }

    pub(super) fn open(&mut self, ino: Ino, node: u16) -> Result<MetaReply, Errno> {
        let i = self.inode_mut(ino)?;
        i.open_on.insert(node);
        let chunks = i.chunks.iter().map(|(k, v)| (*k, v.clone())).collect();
        Ok(MetaReply::Opened(i.attr(ino), chunks))
    }

    pub(super) fn release(&mut self, ino: Ino, node: u16) -> Result<MetaReply, Errno> {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.open_on.remove(&node);
            self.maybe_free(ino);
        }
        Ok(MetaReply::Done)
    }

    pub(super) fn commit(
        &mut self,
        ino: Ino,
        size: u64,
        chunks: Vec<(u64, ChunkRef)>,
        now: Timespec,
    ) -> Result<MetaReply, Errno> {
        let i = self.inode_mut(ino)?;
        if i.kind != Kind::File {
            return errno(libc::EINVAL);
        }
        i.chunks.extend(chunks);
        cut(&mut i.chunks, size);
        i.size = size;
        i.mtime = now;
        i.ctime = now;
        Ok(MetaReply::Attr(i.attr(ino)))
    }

    pub(super) fn set_lock(
        &mut self,
        ino: Ino,
        lock: Option<Lock>,
        owner: LockOwner,
        start: u64,
        end: u64,
    ) -> Result<MetaReply, Errno> {
        self.inode(ino)?;
        let held = self.locks.entry(ino).or_default();
        let result = match lock {
            Some(l) => locks::set(held, l).map_err(|_| libc::EAGAIN),
            None => {
                locks::unlock(held, owner, start, end);
                Ok(())
            }
        };
        if held.is_empty() {
            self.locks.remove(&ino);
        }
        result.map(|()| MetaReply::Done)
    }

    pub(super) fn set_replicas(
        &mut self,
        ino: Ino,
        idx: u64,
        version: u64,
        replicas: Vec<u16>,
    ) -> Result<MetaReply, Errno> {
        let chunk = self
            .inode_mut(ino)?
            .chunks
            .get_mut(&idx)
            .ok_or(libc::ENOENT)?;
        if chunk.version != version {
            return errno(libc::ESTALE);
        }
        chunk.replicas = replicas;
        Ok(MetaReply::Done)
    }
}
