//! Which file a path names: a regular file the image holds open is reopened by path at
//! restore, and the file found there must be the one the process had, not another file of
//! the same name (a node-local `/tmp/x` of another node, say).
//!
//! - On the cluster file system (a FUSE mount of `ssid`, source `ssi`), an
//!   inode number names one file on every node (the metadata never reuses one): the file
//!   found must be on the cluster file system too, with the same inode number.
//! - Elsewhere, the file is named by its device and inode number, which another node's file
//!   of the same name does not share (unless that node's disk is a copy of this one's: the
//!   modification time must then match too, see [`FileId::differs`]).

use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

/// Mount source of the cluster file system (`dfs::fuse::mount`), a FUSE file system (type
/// `fuse`, or `fuse.dfs` where the subtype is kept).
const DFS_SOURCE: &str = "ssi";

/// What names a regular file across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// On the cluster file system (its inode number is the same on every node).
    pub dfs: bool,
    /// Device of the file system (meaningful off the cluster file system only).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
}

impl FileId {
    /// The identity of a file from its metadata; `mountinfo` is the text of the
    /// `/proc/PID/mountinfo` of a process that sees it.
    pub fn of(md: &std::fs::Metadata, mountinfo: &str) -> FileId {
        FileId {
            dfs: on_dfs(md.dev(), mountinfo),
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

/// Whether device `dev` is a mount of the cluster file system, per a mountinfo text.
fn on_dfs(dev: u64, mountinfo: &str) -> bool {
    let want = format!("{}:{}", libc::major(dev), libc::minor(dev));
    mountinfo.lines().any(|line| {
        // "36 35 0:52 / /ssi rw,nosuid - fuse ssi rw,user_id=0,..."
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            return false;
        };
        let mut r = right.split_whitespace();
        left.split_whitespace().nth(2) == Some(want.as_str())
            && r.next().is_some_and(|t| t == "fuse" || t == "fuse.dfs")
            && r.next() == Some(DFS_SOURCE)
    })
}

/// This process's mountinfo (empty if unreadable: then nothing is on the cluster file system).
pub(crate) fn own_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const INFO: &str = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
                        36 22 0:52 / /ssi rw,nosuid,relatime - fuse ssi rw,user_id=0\n\
                        37 22 0:53 / /mnt/other rw - fuse.sshfs host:/ rw\n\
                        38 22 0:54 / /mnt/b rw - fuse.dfs ssi rw\n";

    fn id(dfs: bool, dev: u64, ino: u64, mtime: i64) -> FileId {
        FileId {
            dfs,
            dev,
            ino,
            mtime: (mtime, 0),
        }
    }

    #[test]
    fn the_cluster_mount_is_found_by_device() {
        assert!(on_dfs(libc::makedev(0, 52), INFO));
        assert!(on_dfs(libc::makedev(0, 54), INFO), "with its subtype");
        assert!(
            !on_dfs(libc::makedev(0, 53), INFO),
            "another FUSE file system"
        );
        assert!(!on_dfs(libc::makedev(8, 1), INFO));
        assert!(!on_dfs(libc::makedev(0, 52), ""));
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
