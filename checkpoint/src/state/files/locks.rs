//! File locks: POSIX record locks (owned by a process), open file description locks
//! (`F_OFD_SETLK`) and `flock` locks (owned by an open file).
//!
//! Read from the `lock:` lines of /proc/PID/fdinfo, which show, for an fd, the POSIX locks of
//! the process on its inode and the OFD and flock locks of its open file. Restored by the same
//! calls injected into the restored process once its fds are in place: POSIX locks in the
//! process that held them, OFD and flock locks in the first process of the tree that holds the
//! open file. A lock that someone else holds meanwhile makes the restore fail, naming it.
//! Leases (`F_SETLEASE`) and mandatory locks are refused before anything is frozen.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::restore::holder::Holder;

/// Who owns a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// A POSIX record lock (`F_SETLK`), owned by the process.
    Posix,
    /// An open file description lock (`F_OFD_SETLK`), owned by the open file.
    Ofd,
    /// A `flock` lock, owned by the open file.
    Flock,
}

/// One lock on a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    /// Who owns it.
    pub kind: LockKind,
    /// A write (exclusive) lock, else a read (shared) one.
    pub write: bool,
    /// First byte locked.
    pub start: u64,
    /// Last byte locked, `None` up to the end of the file (and beyond).
    pub end: Option<u64>,
}

/// The locks of an fdinfo text; an error names a lock that cannot be restored.
pub(crate) fn parse(pid: i32, fd: i32, fdinfo: &str) -> Result<Vec<FileLock>> {
    let refuse = |what: &str| Err(Error::unsupported(pid, format!("fd {fd} {what}")));
    let mut out = Vec::new();
    for line in fdinfo.lines() {
        let Some(rest) = line.strip_prefix("lock:") else {
            continue;
        };
        // "1: POSIX  ADVISORY  WRITE 1234 fe:00:5678 10 29"
        let w: Vec<&str> = rest.split_whitespace().collect();
        if w.len() < 8 {
            continue;
        }
        let kind = match w[1] {
            "POSIX" => LockKind::Posix,
            "OFDLCK" => LockKind::Ofd,
            "FLOCK" => LockKind::Flock,
            "LEASE" | "DELEG" => return refuse("holds a lease (F_SETLEASE)"),
            other => return refuse(&format!("holds a lock of an unknown kind {other}")),
        };
        if w[2] != "ADVISORY" {
            return refuse(&format!("holds a {} lock", w[2].to_lowercase()));
        }
        let write = match w[3] {
            "WRITE" => true,
            "READ" => false,
            other => return refuse(&format!("holds a lock in state {other}")),
        };
        let (Ok(start), end) = (w[6].parse(), w[7]) else {
            continue;
        };
        out.push(FileLock {
            kind,
            write,
            start,
            end: end.parse().ok(),
        });
    }
    Ok(out)
}

impl FileLock {
    /// Takes the lock again in process `h`, which holds the file as `fd` (POSIX and OFD locks
    /// by `fcntl`, flock locks by `flock`, never waiting).
    pub(crate) fn take(&self, h: &mut Holder, fd: i32) -> Result<()> {
        let what = format!(
            "{:?} {} lock on fd {fd} from byte {}",
            self.kind,
            if self.write { "write" } else { "read" },
            self.start
        );
        if self.kind == LockKind::Flock {
            let op = if self.write {
                libc::LOCK_EX
            } else {
                libc::LOCK_SH
            } | libc::LOCK_NB;
            return h
                .call(&what, libc::SYS_flock, [fd as u64, op as u64, 0, 0, 0, 0])
                .map(drop);
        }
        // struct flock: short type, short whence, off_t start, off_t len, pid_t pid
        let ty = if self.write {
            libc::F_WRLCK
        } else {
            libc::F_RDLCK
        } as u64;
        let len = self.end.map_or(0, |e| e + 1 - self.start);
        h.task
            .put_words(0, &[ty | (libc::SEEK_SET as u64) << 16, self.start, len, 0])?;
        let cmd = match self.kind {
            LockKind::Posix => libc::F_SETLK,
            _ => libc::F_OFD_SETLK,
        };
        let at = h.scratch_at()?;
        h.call(&what, libc::SYS_fcntl, [fd as u64, cmd as u64, at, 0, 0, 0])
            .map(drop)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_lock_lines() {
        let text = "pos:\t0\nflags:\t0100002\nmnt_id:\t27\nino:\t10010722\n\
                    lock:\t1: POSIX  ADVISORY  WRITE 16244 fe:00:10010722 10 29\n\
                    lock:\t2: OFDLCK ADVISORY  READ -1 fe:00:10010722 100 EOF\n\
                    lock:\t3: FLOCK  ADVISORY  WRITE 16244 fe:00:10010722 0 EOF\n";
        let got = parse(1, 3, text).unwrap();
        let lock = |kind, write, start, end| FileLock {
            kind,
            write,
            start,
            end,
        };
        assert_eq!(
            got,
            vec![
                lock(LockKind::Posix, true, 10, Some(29)),
                lock(LockKind::Ofd, false, 100, None),
                lock(LockKind::Flock, true, 0, None),
            ]
        );
        let lease = "lock:\t1: LEASE  ACTIVE    READ 16244 fe:00:10010853 0 EOF\n";
        assert_eq!(
            parse(7, 4, lease).unwrap_err().to_string(),
            "pid 7: fd 4 holds a lease (F_SETLEASE): not supported"
        );
    }
}
