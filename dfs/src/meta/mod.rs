//! The metadata state machine: a pure, deterministic core with no I/O.
//!
//! ```text
//!   FUSE request on any node --> MetaOp (times stamped there) --> replicated log (raft)
//!                                                                      |
//!                          every replica, in log order:  MetaState::apply(op)
//!                                                                      |
//!                   answer to the proposer  <--  Result<MetaReply, errno>
//!                   inodes freed            -->  their chunks are deleted by each node
//! ```
//!
//! It holds inodes, directories, symlinks, hard links, extended attributes, chunk references,
//! which nodes have each file open (an unlinked inode lives while open anywhere) and the
//! cluster's record locks. Permission checks are the kernel's (`default_permissions`); this
//! core checks what only it can: existence, emptiness, loops, names.

mod attrs;
pub mod locks;
mod namespace;
pub mod ops;
#[cfg(test)]
mod tests;
pub mod types;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use locks::{Lock, LockKind, LockOwner};
pub use ops::{Errno, MetaOp, MetaRead, MetaReply, NewNode, SetAttr, SetTime};
pub use types::{
    Attr, ChunkRef, Dir, DirItem, Ino, Inode, Kind, Timespec, CHUNK_SIZE, NAME_MAX, ROOT,
};

/// The whole metadata of the file system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    inodes: BTreeMap<Ino, Inode>,
    dirs: BTreeMap<Ino, Dir>,
    locks: BTreeMap<Ino, Vec<Lock>>,
    next_ino: Ino,
    /// Inodes deleted by the last applied ops, with their chunks, for the nodes to free.
    #[serde(skip)]
    freed: Vec<(Ino, Vec<(u64, ChunkRef)>)>,
}

impl Default for MetaState {
    fn default() -> Self {
        MetaState::new()
    }
}

fn errno<T>(e: i32) -> Result<T, Errno> {
    Err(e)
}

impl MetaState {
    /// A file system holding only its root directory (mode 0755, owned by root).
    pub fn new() -> MetaState {
        let root = Inode {
            kind: Kind::Dir,
            perm: 0o755,
            uid: 0,
            gid: 0,
            nlink: 2,
            size: 0,
            atime: Timespec::default(),
            mtime: Timespec::default(),
            ctime: Timespec::default(),
            btime: Timespec::default(),
            rdev: 0,
            target: Vec::new(),
            parent: ROOT,
            xattrs: BTreeMap::new(),
            chunks: BTreeMap::new(),
            open_on: Default::default(),
        };
        MetaState {
            inodes: BTreeMap::from([(ROOT, root)]),
            dirs: BTreeMap::from([(ROOT, Dir::new())]),
            locks: BTreeMap::new(),
            next_ino: ROOT + 1,
            freed: Vec::new(),
        }
    }

    /// Applies one change; the same op on the same state gives the same result everywhere.
    pub fn apply(&mut self, op: MetaOp) -> Result<MetaReply, Errno> {
        match op {
            MetaOp::Create {
                parent,
                name,
                node,
                open_on,
                now,
            } => self.create(parent, name, node, open_on, now),
            MetaOp::Link {
                ino,
                parent,
                name,
                now,
            } => self.link(ino, parent, name, now),
            MetaOp::Unlink { parent, name, now } => self.remove(parent, &name, false, now),
            MetaOp::Rmdir { parent, name, now } => self.remove(parent, &name, true, now),
            MetaOp::Rename {
                parent,
                name,
                new_parent,
                new_name,
                flags,
                now,
            } => self.rename(parent, &name, new_parent, new_name, flags, now),
            MetaOp::SetAttr { ino, set, now } => self.set_attr(ino, set, now),
            MetaOp::SetXattr {
                ino,
                name,
                value,
                flags,
                now,
            } => self.set_xattr(ino, name, value, flags, now),
            MetaOp::RemoveXattr { ino, name, now } => self.remove_xattr(ino, &name, now),
            MetaOp::Open { ino, node } => self.open(ino, node),
            MetaOp::Release { ino, node } => self.release(ino, node),
            MetaOp::Commit {
                ino,
                size,
                chunks,
                now,
            } => self.commit(ino, size, chunks, now),
            MetaOp::SetLock {
                ino,
                lock,
                owner,
                start,
                end,
            } => self.set_lock(ino, lock, owner, start, end),
            MetaOp::DropLocks { ino, owner } => {
                if let Some(held) = self.locks.get_mut(&ino) {
                    locks::unlock(held, owner, 0, u64::MAX);
                }
                Ok(MetaReply::Done)
            }
            MetaOp::NodeGone { node } => Ok(self.node_gone(node)),
            MetaOp::SetReplicas {
                ino,
                idx,
                version,
                replicas,
            } => self.set_replicas(ino, idx, version, replicas),
        }
    }

    /// Answers a question without changing anything.
    pub fn read(&self, q: &MetaRead) -> Result<MetaReply, Errno> {
        match q {
            MetaRead::Lookup { parent, name } => {
                if name.len() > NAME_MAX {
                    return errno(libc::ENAMETOOLONG);
                }
                let dir = self.dirs.get(parent).ok_or(libc::ENOTDIR)?;
                let ino = match name.as_slice() {
                    b"." => *parent,
                    b".." => self.inode(*parent)?.parent,
                    n => dir.get(n).ok_or(libc::ENOENT)?,
                };
                Ok(MetaReply::Attr(self.inode(ino)?.attr(ino)))
            }
            MetaRead::GetAttr { ino } => Ok(MetaReply::Attr(self.inode(*ino)?.attr(*ino))),
            MetaRead::ReadDir { ino, after, max } => self.read_dir(*ino, *after, *max),
            MetaRead::ReadLink { ino } => {
                let i = self.inode(*ino)?;
                if i.kind != Kind::Symlink {
                    return errno(libc::EINVAL);
                }
                Ok(MetaReply::Bytes(i.target.clone()))
            }
            MetaRead::GetXattr { ino, name } => {
                let v = self.inode(*ino)?.xattrs.get(name).ok_or(libc::ENODATA)?;
                Ok(MetaReply::Bytes(v.clone()))
            }
            MetaRead::ListXattr { ino } => Ok(MetaReply::Names(
                self.inode(*ino)?.xattrs.keys().cloned().collect(),
            )),
            MetaRead::GetLock { ino, want } => Ok(MetaReply::Lock(
                self.locks
                    .get(ino)
                    .and_then(|held| locks::conflict(held, want).copied()),
            )),
            MetaRead::Totals => Ok(MetaReply::Totals {
                inodes: self.inodes.len() as u64,
                bytes: self.inodes.values().map(|i| i.size).sum(),
            }),
            MetaRead::Chunks => Ok(MetaReply::Chunks(
                self.inodes
                    .iter()
                    .flat_map(|(ino, i)| i.chunks.iter().map(|(idx, c)| (*ino, *idx, c.clone())))
                    .collect(),
            )),
        }
    }

    /// Inodes deleted since the last call, with the chunks that held their data.
    pub fn take_freed(&mut self) -> Vec<(Ino, Vec<(u64, ChunkRef)>)> {
        std::mem::take(&mut self.freed)
    }

    /// Whether inode `ino` exists (for cleaning up chunks of deleted files).
    pub fn exists(&self, ino: Ino) -> bool {
        self.inodes.contains_key(&ino)
    }

    fn inode(&self, ino: Ino) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn inode_mut(&mut self, ino: Ino) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn read_dir(&self, ino: Ino, after: u64, max: u32) -> Result<MetaReply, Errno> {
        let dir = self.dirs.get(&ino).ok_or(libc::ENOTDIR)?;
        let me = self.inode(ino)?;
        let mut out = Vec::new();
        let dots = [(1u64, b".".to_vec(), ino), (2, b"..".to_vec(), me.parent)];
        for (cookie, name, i) in dots {
            if after < cookie {
                out.push(DirItem {
                    name,
                    ino: i,
                    kind: Kind::Dir,
                    cookie,
                });
            }
        }
        for (cookie, name) in dir.by_cookie.range(after.max(2) + 1..) {
            if out.len() >= max as usize {
                break;
            }
            let child = dir.get(name).ok_or(libc::EIO)?;
            out.push(DirItem {
                name: name.clone(),
                ino: child,
                kind: self.inode(child)?.kind,
                cookie: *cookie,
            });
        }
        Ok(MetaReply::Dir(out))
    }

    /// Deletes an inode that has no name and is open nowhere.
    fn maybe_free(&mut self, ino: Ino) {
        let gone = self
            .inodes
            .get(&ino)
            .is_some_and(|i| i.nlink == 0 && i.open_on.is_empty());
        if gone {
            if let Some(i) = self.inodes.remove(&ino) {
                self.dirs.remove(&ino);
                self.locks.remove(&ino);
                self.freed.push((ino, i.chunks.into_iter().collect()));
            }
        }
    }

    fn node_gone(&mut self, node: u16) -> MetaReply {
        for held in self.locks.values_mut() {
            held.retain(|l| l.owner.node != node);
        }
        self.locks.retain(|_, held| !held.is_empty());
        let open: Vec<Ino> = self
            .inodes
            .iter_mut()
            .filter_map(|(ino, i)| i.open_on.remove(&node).then_some(*ino))
            .collect();
        for ino in open {
            self.maybe_free(ino);
        }
        MetaReply::Done
    }
}
