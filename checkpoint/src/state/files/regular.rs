//! Files opened again by path: regular files (checked to be the same file, see [`super::identity`],
//! and against their size), directories, and
//! the harmless character devices (`/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`,
//! `/dev/urandom`, checked against their device number).

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

use super::identity::FileId;
use super::{open, FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;

/// A regular file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Regular {
    /// Absolute path.
    pub path: String,
    /// Size when dumped.
    pub size: u64,
    /// Which file it was (`None` in images made before identities were recorded: then the
    /// size alone is checked).
    #[serde(default)]
    pub id: Option<FileId>,
}

/// A directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// Absolute path.
    pub path: String,
}

/// A character device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Absolute path.
    pub path: String,
    /// Device number, checked at restore.
    pub rdev: u64,
}

/// The metadata of a file the image needs; an error names it.
pub(crate) fn metadata(path: &str) -> Result<std::fs::Metadata> {
    std::fs::metadata(path)
        .map_err(|e| Error::Conflict(format!("{path}: {e} (needed by the image)")))
}

/// Opens `path` as open file `cx.file` was opened, at its position.
fn reopen(path: &str, cx: &FileRestore<'_>) -> Result<OwnedFd> {
    let fd = open(path, cx.file.flags)?;
    if cx.file.pos != 0 {
        nix::unistd::lseek(&fd, cx.file.pos, nix::unistd::Whence::SeekSet)
            .map_err(|e| Error::io(path, e.into()))?;
    }
    Ok(fd)
}

/// `Persist` for a kind of file opened again by path: saved from what /proc says of the fd,
/// restored by opening the path as the open file was opened.
macro_rules! reopened_by_path {
    ($t:ident, |$e:ident| $save:expr) => {
        impl Persist for $t {
            type Saving<'a> = FileDump<'a>;
            type Restoring<'a> = FileRestore<'a>;
            type Made = OwnedFd;

            fn save(cx: &mut FileDump<'_>) -> Result<$t> {
                let $e = cx.e;
                Ok($save)
            }

            fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
                reopen(&self.path, cx)
            }
        }
    };
}

reopened_by_path!(Regular, |e| Regular {
    path: e.link.clone(),
    size: e.size,
    id: e.id,
});
reopened_by_path!(Directory, |e| Directory {
    path: e.link.clone(),
});
reopened_by_path!(Device, |e| Device {
    path: e.link.clone(),
    rdev: e.rdev,
});

impl Regular {
    /// Refuses a file that is gone, is another file of the same name, or changed (unless
    /// `allow_changed`).
    pub(crate) fn check(&self, allow_changed: bool) -> Result<()> {
        let md = metadata(&self.path)?;
        if let Some(why) = self
            .id
            .and_then(|id| id.differs(&FileId::of(&self.path, &md), allow_changed))
        {
            return Err(Error::Conflict(format!("{}: {why}", self.path)));
        }
        if md.len() != self.size && !allow_changed {
            return Err(Error::Conflict(format!(
                "{}: size is {} but was {} when dumped (file changed)",
                self.path,
                md.len(),
                self.size
            )));
        }
        Ok(())
    }
}

impl Directory {
    /// Refuses a directory that is gone.
    pub(crate) fn check(&self) -> Result<()> {
        metadata(&self.path).map(drop)
    }
}

impl Device {
    /// Refuses a path that is no longer the same device.
    pub(crate) fn check(&self) -> Result<()> {
        if metadata(&self.path)?.rdev() != self.rdev {
            return Err(Error::Conflict(format!(
                "{}: is another device than when dumped",
                self.path
            )));
        }
        Ok(())
    }
}

/// Refuses a path that is gone or no longer a FIFO.
pub(crate) fn check_fifo(path: &str) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if !metadata(path)?.file_type().is_fifo() {
        return Err(Error::Conflict(format!("{path}: is no longer a FIFO")));
    }
    Ok(())
}
