//! Changes of names: create, link, unlink, rmdir, rename.

use std::collections::BTreeMap;

use super::ops::{Errno, MetaReply, NewNode};
use super::types::{Dir, Ino, Inode, Kind, Timespec, NAME_MAX};
use super::{errno, MetaState};

const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;

fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.len() > NAME_MAX {
        return errno(libc::ENAMETOOLONG);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return errno(libc::EINVAL);
    }
    Ok(())
}

impl MetaState {
    /// The directory `parent`, checked to be one.
    fn dir(&self, parent: Ino) -> Result<&Dir, Errno> {
        self.inode(parent)?;
        self.dirs.get(&parent).ok_or(libc::ENOTDIR)
    }

    fn dir_mut(&mut self, parent: Ino) -> Result<&mut Dir, Errno> {
        self.dirs.get_mut(&parent).ok_or(libc::ENOTDIR)
    }

    fn touch_dir(&mut self, dir: Ino, now: Timespec) -> Result<(), Errno> {
        let d = self.inode_mut(dir)?;
        d.mtime = now;
        d.ctime = now;
        Ok(())
    }

    pub(super) fn create(
        &mut self,
        parent: Ino,
        name: Vec<u8>,
        node: NewNode,
        open_on: Option<u16>,
        now: Timespec,
    ) -> Result<MetaReply, Errno> {
        check_name(&name)?;
        if self.dir(parent)?.get(&name).is_some() {
            return errno(libc::EEXIST);
        }
        let p = self.inode(parent)?;
        let (mut perm, mut gid) = (node.perm & 0o7777, node.gid);
        if p.perm & libc::S_ISGID as u16 != 0 {
            gid = p.gid;
            let in_group = node.uid == 0 || node.gid == p.gid || node.groups.contains(&p.gid);
            if node.kind == Kind::Dir {
                perm |= libc::S_ISGID as u16;
            } else if !in_group && perm & libc::S_IXGRP as u16 != 0 {
                perm &= !(libc::S_ISGID as u16);
            }
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let is_dir = node.kind == Kind::Dir;
        let inode = Inode {
            kind: node.kind,
            perm,
            uid: node.uid,
            gid,
            nlink: if is_dir { 2 } else { 1 },
            size: node.target.len() as u64,
            atime: now,
            mtime: now,
            ctime: now,
            btime: now,
            rdev: node.rdev,
            target: node.target,
            parent,
            xattrs: BTreeMap::new(),
            chunks: BTreeMap::new(),
            open_on: open_on.into_iter().collect(),
        };
        let attr = inode.attr(ino);
        self.inodes.insert(ino, inode);
        if is_dir {
            self.dirs.insert(ino, Dir::new());
            self.inode_mut(parent)?.nlink += 1;
        }
        self.dir_mut(parent)?.insert(name, ino);
        self.touch_dir(parent, now)?;
        Ok(MetaReply::Attr(attr))
    }

    pub(super) fn link(
        &mut self,
        ino: Ino,
        parent: Ino,
        name: Vec<u8>,
        now: Timespec,
    ) -> Result<MetaReply, Errno> {
        check_name(&name)?;
        if self.inode(ino)?.kind == Kind::Dir {
            return errno(libc::EPERM);
        }
        if self.dir(parent)?.get(&name).is_some() {
            return errno(libc::EEXIST);
        }
        let i = self.inode_mut(ino)?;
        if i.nlink == 0 {
            return errno(libc::ENOENT);
        }
        i.nlink += 1;
        i.ctime = now;
        let attr = i.attr(ino);
        self.dir_mut(parent)?.insert(name, ino);
        self.touch_dir(parent, now)?;
        Ok(MetaReply::Attr(attr))
    }

    /// Checks that `ino` may be removed as a directory (`dir`) or not.
    fn check_removable(&self, ino: Ino, dir: bool) -> Result<(), Errno> {
        match (self.inode(ino)?.kind == Kind::Dir, dir) {
            (true, false) => errno(libc::EISDIR),
            (false, true) => errno(libc::ENOTDIR),
            (true, true) if !self.dir(ino)?.by_name.is_empty() => errno(libc::ENOTEMPTY),
            _ => Ok(()),
        }
    }

    /// Drops one name of `ino` (already taken out of its directory `parent`).
    fn unlinked(&mut self, parent: Ino, ino: Ino, now: Timespec) -> Result<(), Errno> {
        let i = self.inode_mut(ino)?;
        i.ctime = now;
        if i.kind == Kind::Dir {
            i.nlink = 0;
            self.inode_mut(parent)?.nlink -= 1;
        } else {
            i.nlink = i.nlink.saturating_sub(1);
        }
        self.maybe_free(ino);
        Ok(())
    }

    pub(super) fn remove(
        &mut self,
        parent: Ino,
        name: &[u8],
        dir: bool,
        now: Timespec,
    ) -> Result<MetaReply, Errno> {
        if name == b"." {
            return errno(libc::EINVAL);
        }
        if name == b".." {
            return errno(libc::ENOTEMPTY);
        }
        let ino = self.dir(parent)?.get(name).ok_or(libc::ENOENT)?;
        self.check_removable(ino, dir)?;
        self.dir_mut(parent)?.remove(name);
        self.unlinked(parent, ino, now)?;
        self.touch_dir(parent, now)?;
        Ok(MetaReply::Done)
    }

    /// Whether `ino` is `ancestor` or inside it.
    fn is_within(&self, mut ino: Ino, ancestor: Ino) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            match self.inodes.get(&ino) {
                Some(i) if i.parent != ino => ino = i.parent,
                _ => return false,
            }
        }
    }

    pub(super) fn rename(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: Vec<u8>,
        flags: u32,
        now: Timespec,
    ) -> Result<MetaReply, Errno> {
        check_name(name).map_err(|e| if e == libc::EINVAL { libc::EBUSY } else { e })?;
        check_name(&new_name)?;
        let src = self.dir(parent)?.get(name).ok_or(libc::ENOENT)?;
        let dst = self.dir(new_parent)?.get(&new_name);
        let src_dir = self.inode(src)?.kind == Kind::Dir;
        if src_dir && self.is_within(new_parent, src) {
            return errno(libc::EINVAL);
        }
        if flags & RENAME_EXCHANGE != 0 {
            let dst = dst.ok_or(libc::ENOENT)?;
            if self.inode(dst)?.kind == Kind::Dir && self.is_within(parent, dst) {
                return errno(libc::EINVAL);
            }
            return self.exchange(parent, name, src, new_parent, &new_name, dst, now);
        }
        if let Some(dst) = dst {
            if flags & RENAME_NOREPLACE != 0 {
                return errno(libc::EEXIST);
            }
            if dst == src {
                return Ok(MetaReply::Done);
            }
            match (src_dir, self.inode(dst)?.kind == Kind::Dir) {
                (false, true) => return errno(libc::EISDIR),
                (true, false) => return errno(libc::ENOTDIR),
                _ => self.check_removable(dst, src_dir)?,
            }
            self.dir_mut(new_parent)?.remove(&new_name);
            self.unlinked(new_parent, dst, now)?;
        }
        self.dir_mut(parent)?.remove(name);
        self.dir_mut(new_parent)?.insert(new_name, src);
        self.moved(src, parent, new_parent, now)?;
        Ok(MetaReply::Done)
    }

    /// Fixes parents and times after `ino` moved from `from` to `to`.
    fn moved(&mut self, ino: Ino, from: Ino, to: Ino, now: Timespec) -> Result<(), Errno> {
        let i = self.inode_mut(ino)?;
        i.ctime = now;
        if i.kind == Kind::Dir && from != to {
            i.parent = to;
            self.inode_mut(from)?.nlink -= 1;
            self.inode_mut(to)?.nlink += 1;
        }
        self.touch_dir(from, now)?;
        self.touch_dir(to, now)
    }

    #[allow(clippy::too_many_arguments)]
    fn exchange(
        &mut self,
        parent: Ino,
        name: &[u8],
        src: Ino,
        new_parent: Ino,
        new_name: &[u8],
        dst: Ino,
        now: Timespec,
    ) -> Result<MetaReply, Errno> {
        self.dir_mut(parent)?.remove(name);
        self.dir_mut(new_parent)?.remove(new_name);
        self.dir_mut(parent)?.insert(name.to_vec(), dst);
        self.dir_mut(new_parent)?.insert(new_name.to_vec(), src);
        self.moved(src, parent, new_parent, now)?;
        self.moved(dst, new_parent, parent, now)?;
        Ok(MetaReply::Done)
    }
}
