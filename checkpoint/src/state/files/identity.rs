//! Which file a path names: a regular file the image holds open is reopened by path at
//! restore, and the file found there must be the one the process had, not another file of
//! the same name (a node-local `/tmp/x` of another node, say).
//!
//! - On the cluster file system (a FUSE mount of `ssid`), an inode number names one file on
//!   every node (the metadata never reuses one): the file found must be on a FUSE file system
//!   too, with the same inode number. A file is taken to be on it when its file system is a
//!   FUSE one (`statfs`, which answers in any mount namespace, unlike a mount table): a file
//!   of another FUSE file system is matched by inode number too, which refuses one that such
//!   a system numbers differently on each node.
//! - Elsewhere, the file is named by its device and inode number, which another node's file
//!   of the same name does not share (unless that node's disk is a copy of this one's: the
//!   modification time must then match too, see [`FileId::differs`]).

use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

/// What names a regular file across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// On the cluster file system, or another FUSE one (its inode number names the file on
    /// every node).
    pub dfs: bool,
    /// Device of the file system (meaningful off the cluster file system only).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
}

impl FileId {
    /// The identity of the file at `path` (a `/proc/PID/fd/N` link too), from its metadata.
    pub fn of(path: &str, md: &std::fs::Metadata) -> FileId {
        FileId {
            dfs: on_fuse(path),
            dev: md.dev(),
            ino: md.ino(),
            mtime: (md.mtime(), md.mtime_nsec()),
        }
    }

    /// Why `now` (the file found at restore) is not this file, if it is not. On the cluster
    /// file system the inode number decides (the size check tells a changed content); off it,
    /// device and inode, and a modification time that differs counts as a change, refused
    /// unless `allow_changed` (a copy of this node's disk on another node has the same device
    /// and inode numbers, and only the time can tell its file apart).
    pub fn differs(&self, now: &FileId, allow_changed: bool) -> Option<String> {
        match (self.dfs, now.dfs) {
            (true, false) => Some("was on the cluster file system, is not now".into()),
            (false, true) => Some("is on the cluster file system, was not when dumped".into()),
            (true, true) if self.ino != now.ino => Some(format!(
                "is cluster file {} but was {} when dumped (another file of that name)",
                now.ino, self.ino
            )),
            (false, false) if (self.dev, self.ino) != (now.dev, now.ino) => Some(format!(
                "is file {}:{} of this node but was {}:{} when dumped (another file of that \
                 name: a node-local file of another node?)",
                now.dev, now.ino, self.dev, self.ino
            )),
            (false, false) if self.mtime != now.mtime && !allow_changed => Some(format!(
                "modified at {}.{:09} but at {}.{:09} when dumped (file changed)",
                now.mtime.0, now.mtime.1, self.mtime.0, self.mtime.1
            )),
            _ => None,
        }
    }
}

/// Whether `path` is on a FUSE file system (`false` if `statfs` fails: the metadata, read
/// just before, then decides alone).
fn on_fuse(path: &str) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::FUSE_SUPER_MAGIC)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(dfs: bool, dev: u64, ino: u64, mtime: i64) -> FileId {
        FileId {
            dfs,
            dev,
            ino,
            mtime: (mtime, 0),
        }
    }

    #[test]
    fn files_here_are_not_on_fuse() {
        assert!(!on_fuse("/"));
        assert!(!on_fuse("/nonexistent/path"));
    }

    #[test]
    fn identity_by_inode_on_the_dfs_and_by_device_and_inode_elsewhere() {
        // the dfs: another node's mount has another device number, the same inode
        assert_eq!(id(true, 52, 7, 1).differs(&id(true, 99, 7, 2), false), None);
        assert!(id(true, 52, 7, 1)
            .differs(&id(true, 52, 8, 1), true)
            .unwrap()
            .contains("another file"));
        assert!(id(true, 52, 7, 1)
            .differs(&id(false, 52, 7, 1), true)
            .is_some());
        // local files: same device and inode, and the same time unless changes are allowed
        assert_eq!(id(false, 1, 5, 1).differs(&id(false, 1, 5, 1), false), None);
        assert!(id(false, 1, 5, 1)
            .differs(&id(false, 1, 5, 9), false)
            .unwrap()
            .contains("file changed"));
        assert_eq!(id(false, 1, 5, 1).differs(&id(false, 1, 5, 9), true), None);
        assert!(id(false, 1, 5, 1)
            .differs(&id(false, 1, 6, 1), true)
            .is_some());
        assert!(id(false, 1, 5, 1)
            .differs(&id(false, 2, 5, 1), true)
            .is_some());
        assert!(id(false, 1, 5, 1)
            .differs(&id(true, 1, 5, 1), true)
            .is_some());
    }
}
