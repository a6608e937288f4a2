//! Unix sockets connected to nothing: never connected, bound to a name (a path or an abstract
//! name), or listening with no connection waiting.
//!
//! Dump: type, name and backlog come from sock_diag; a path name is checked against the inode
//! sock_diag gives (`UNIX_DIAG_VFS`): a relative name must be found from the process' working
//! directory, and a socket whose file was removed is noted as such. Refused: connections
//! waiting to be accepted, datagrams queued, a relative name not found, a path now taken by
//! another file.
//!
//! Restore: the restorer makes the socket and binds it to the same name (a relative name from
//! the directory it was found in, in a thread of its own with its own working directory, so
//! that `getsockname` gives the very same name); a stale socket file left at the path is
//! removed first, but a path where a live socket answers fails the restore. The socket file
//! gets its mode and owner back; one that had been removed is removed again at once.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use serde::{Deserialize, Serialize};

use super::{set_status_flags, FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::sys::fd as sfd;

/// sock_diag's state of a listening socket (`TCP_LISTEN`).
pub(crate) const LISTENING: u8 = 10;

/// A Unix socket connected to nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixAlone {
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub sotype: i32,
    /// The name it is bound to, as bound (an abstract name starts with a NUL byte).
    pub name: Option<Vec<u8>>,
    /// For a path name: the directory a relative name resolves against, or "/".
    pub dir: String,
    /// For a path name: the socket file's mode and owner, `None` if the file was removed.
    pub file: Option<(u32, u32, u32)>,
    /// Backlog of a listening socket.
    pub backlog: Option<i32>,
    /// Socket options that differ from a fresh socket's.
    pub options: Vec<super::sockopt::SockOpt>,
}

impl UnixAlone {
    fn is_path(&self) -> bool {
        self.name.as_ref().is_some_and(|n| n.first() != Some(&0))
    }

    /// The absolute path of the socket file (path names only).
    fn path(&self) -> String {
        let name = String::from_utf8_lossy(self.name.as_deref().unwrap_or_default()).into_owned();
        if name.starts_with('/') {
            name
        } else {
            format!("{}/{name}", self.dir.trim_end_matches('/'))
        }
    }
}

/// Where a path name of `cx`'s process leads: `(directory it resolves against, mode, owner)`,
/// the file `None` if it was removed.
type Found = (String, Option<(u32, u32, u32)>);

fn find(cx: &FileDump<'_>, name: &[u8], vfs: Option<(u64, u64)>) -> Result<Found> {
    let name = String::from_utf8_lossy(name).into_owned();
    let (dir, path) = if name.starts_with('/') {
        ("/".to_string(), name.clone())
    } else {
        let cwd = std::fs::read_link(format!("/proc/{}/cwd", cx.pid))
            .map_err(|e| Error::io(format!("/proc/{}/cwd", cx.pid), e))?
            .to_string_lossy()
            .into_owned();
        let p = format!("{}/{name}", cwd.trim_end_matches('/'));
        (cwd, p)
    };
    match std::fs::symlink_metadata(&path) {
        Ok(md) if Some((md.dev(), md.ino())) == vfs => {
            Ok((dir, Some((md.mode() & 0o7777, md.uid(), md.gid()))))
        }
        Ok(_) if name.starts_with('/') => Err(cx.refuse(&format!(
            "is a Unix socket bound to {name}, which is now another file"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && name.starts_with('/') => {
            Ok((dir, None))
        }
        _ => Err(cx.refuse(&format!(
            "is a Unix socket bound to relative name {name}, not found from its working directory"
        ))),
    }
}

impl Persist for UnixAlone {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<UnixAlone> {
        let mine = cx.take()?;
        let (_, sotype, _) =
            sfd::socket_kind(mine.as_fd()).map_err(|er| cx.failed("socket", er))?;
        let d = super::unix::diag(cx).cloned().unwrap_or_default();
        let listening = d.state == LISTENING;
        if listening && d.rqueue > 0 {
            return Err(cx.refuse(&format!(
                "is a listening Unix socket with {} connections waiting",
                d.rqueue
            )));
        }
        if !listening && d.rqueue > 0 {
            return Err(cx.refuse("is a Unix socket connected to nothing with data queued"));
        }
        // a path name ends with the NUL the kernel stored; an abstract one keeps every byte
        let name = d.name.filter(|n| !n.is_empty()).map(|mut n| {
            if n[0] != 0 {
                while n.last() == Some(&0) {
                    n.pop();
                }
            }
            n
        });
        let (dir, file) = match &name {
            Some(n) if n[0] != 0 => find(cx, n, d.vfs)?,
            _ => (String::new(), None),
        };
        let options = super::sockopt::save(mine.as_fd(), libc::AF_UNIX, sotype)
            .map_err(|er| cx.failed("socket options", er))?;
        Ok(UnixAlone {
            sotype,
            name,
            dir,
            file,
            backlog: listening.then_some(d.wqueue as i32),
            options,
        })
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        let fd = sfd::unix_socket(self.sotype).map_err(|e| Error::io("socket", e))?;
        super::sockopt::restore(fd.as_fd(), libc::AF_UNIX, &self.options)?;
        if let Some(name) = &self.name {
            if self.is_path() {
                self.bind_path(fd.as_fd(), name)?;
            } else {
                sfd::unix_bind(fd.as_fd(), name)
                    .map_err(|e| Error::io("bind abstract Unix socket", e))?;
            }
        }
        if let Some(backlog) = self.backlog {
            sfd::listen(fd.as_fd(), backlog).map_err(|e| Error::io("listen", e))?;
        }
        set_status_flags(fd.as_fd(), cx.file.flags, "socket")?;
        Ok(fd)
    }
}

impl UnixAlone {
    /// Refuses, before anything is created, a path where something else than a stale socket
    /// file is.
    pub(crate) fn check(&self) -> Result<()> {
        if !self.is_path() {
            return Ok(());
        }
        let path = self.path();
        super::regular::metadata(&self.dir)?;
        match std::fs::symlink_metadata(&path) {
            Ok(md) if !md.file_type().is_socket() || self.file.is_none() => Err(Error::Conflict(
                format!("{path}: in the way of a Unix socket of the image"),
            )),
            Ok(_) if self.answers(&path) => Err(Error::Conflict(format!(
                "{path}: a live socket is bound there"
            ))),
            _ => Ok(()),
        }
    }

    /// Whether a live socket answers at `path`.
    fn answers(&self, path: &str) -> bool {
        sfd::unix_socket(self.sotype)
            .is_ok_and(|s| sfd::unix_connect(s.as_fd(), path.as_bytes()).is_ok())
    }

    /// Binds `fd` to path name `name` as it was bound (a relative name from its directory),
    /// then gives the file its mode and owner, or removes it if it had been removed.
    fn bind_path(&self, fd: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
        let path = self.path();
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
            if self.answers(&path) {
                return Err(Error::Conflict(format!(
                    "{path}: a live socket is bound there"
                )));
            }
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        let dir = self.dir.as_str();
        std::thread::scope(|s| {
            s.spawn(|| -> std::io::Result<()> {
                // a working directory of this thread's own
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
                std::env::set_current_dir(dir)?;
                sfd::unix_bind(fd, name)
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("bind thread panicked")))
        })
        .map_err(|e| Error::io(&path, e))?;
        match self.file {
            Some((mode, uid, gid)) => {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .and_then(|()| {
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    })
                    .map_err(|e| Error::io(&path, e))?;
            }
            None => std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?,
        }
        Ok(())
    }
}
