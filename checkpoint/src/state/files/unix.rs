//! Unix socket pairs whose two ends are in the tree, with the bytes queued at each end.
//!
//! Sockets of other families are refused before anything is frozen; so are listening and bound
//! Unix sockets and datagram sockets with messages queued. What a socket is connected to is
//! told by sock_diag (the peer's inode); queued bytes are copied with `MSG_PEEK`. Restore makes
//! a `socketpair` and sends each end's queued bytes from the other end.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::{set_status_flags, FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::sys::fd as sfd;

/// sock_diag's state of a listening socket (`TCP_LISTEN`).
const LISTENING: u8 = 10;

/// A Unix socket pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketPairImage {
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub sotype: i32,
    /// Bytes waiting to be read at end 0 and end 1 (stream sockets).
    pub queued: [Vec<u8>; 2],
}

/// One end of a Unix socket pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairEnd {
    /// Index into [`crate::image::Shared::socketpairs`].
    pub pair: u32,
    /// Which end (0 or 1).
    pub end: u8,
}

/// Socket pair ends met so far by a dump: (pair index, end), by socket inode.
pub(crate) type Seen = HashMap<u64, (u32, u8)>;

/// Refuses sockets other than Unix ones (read through a copy of the fd; nothing is stopped).
pub(crate) fn check(pid: i32, fd: i32, pidfd: &OwnedFd) -> Result<()> {
    let mine = sfd::pidfd_getfd(pidfd.as_fd(), fd)
        .map_err(|e| Error::sys(pid, format!("pidfd_getfd fd {fd}"), e))?;
    let (domain, sotype, _) = sfd::socket_kind(mine.as_fd())
        .map_err(|e| Error::sys(pid, format!("fd {fd} socket"), e))?;
    if domain == libc::AF_UNIX {
        return Ok(());
    }
    let name = match (domain, sotype) {
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) => "a TCP socket".to_string(),
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) => "a UDP socket".to_string(),
        (libc::AF_NETLINK, _) => "a netlink socket".to_string(),
        (libc::AF_PACKET, _) => "a packet socket".to_string(),
        (d, t) => format!("a socket of family {d} type {t}"),
    };
    Err(Error::unsupported(pid, format!("fd {fd} is {name}")))
}

/// The inode in a `socket:[N]` link.
pub(crate) fn ino_of(link: &str) -> u64 {
    link.split('[')
        .nth(1)
        .and_then(|s| s.trim_end_matches(']').parse().ok())
        .unwrap_or(0)
}

fn diag<'t>(cx: &'t FileDump<'_>) -> Option<&'t sfd::UnixDiag> {
    cx.tree.unix.get(&(ino_of(&cx.e.link) as u32))
}

/// True for a socket not connected to another socket of the tree; a listening one is refused.
pub(crate) fn leads_outside(cx: &FileDump<'_>) -> Result<bool> {
    let d = diag(cx).cloned().unwrap_or_default();
    if d.peer != 0 && cx.tree.tree_socks.contains(&(d.peer as u64)) {
        return Ok(false);
    }
    if d.state == LISTENING {
        return Err(cx.refuse("is a listening Unix socket"));
    }
    Ok(true)
}

/// Bytes queued for reading at the socket (refused for a datagram socket: messages would lose
/// their boundaries).
fn queued(cx: &FileDump<'_>, sock: &OwnedFd, sotype: i32, rqueue: u32) -> Result<Vec<u8>> {
    if rqueue == 0 {
        return Ok(Vec::new());
    }
    if sotype != libc::SOCK_STREAM {
        return Err(cx.refuse("is a Unix datagram socket with queued messages"));
    }
    let data =
        sfd::peek_socket(sock.as_fd(), rqueue as usize).map_err(|e| cx.failed("peek socket", e))?;
    if data.len() != rqueue as usize {
        return Err(Error::Conflict(format!(
            "pid {}: fd {}: peeked {} of {rqueue} queued bytes",
            cx.pid,
            cx.e.fd,
            data.len()
        )));
    }
    Ok(data)
}

impl Persist for PairEnd {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<PairEnd> {
        let ino = ino_of(&cx.e.link);
        let mine = cx.take()?;
        let (_, sotype, _) =
            sfd::socket_kind(mine.as_fd()).map_err(|er| cx.failed("socket", er))?;
        let d = diag(cx).cloned().unwrap_or_default();
        if d.name.as_ref().is_some_and(|n| !n.is_empty()) {
            return Err(cx.refuse("is a bound Unix socket"));
        }
        if let Some(&(pair, end)) = cx.seen.pairs.get(&ino) {
            return Ok(PairEnd { pair, end });
        }
        let data = queued(cx, &mine, sotype, d.rqueue)?;
        if let Some(&(pair, end)) = cx.seen.pairs.get(&(d.peer as u64)) {
            let me = 1 - end;
            cx.seen.pairs.insert(ino, (pair, me));
            cx.shared.socketpairs[pair as usize].queued[me as usize] = data;
            return Ok(PairEnd { pair, end: me });
        }
        let pair = cx.shared.socketpairs.len() as u32;
        cx.shared.socketpairs.push(SocketPairImage {
            sotype,
            queued: [data, Vec::new()],
        });
        cx.seen.pairs.insert(ino, (pair, 0));
        Ok(PairEnd { pair, end: 0 })
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        let (pair, end) = (self.pair, self.end);
        if !cx.making.pairs.contains_key(&pair) {
            let sp = cx.shared.socketpairs.get(pair as usize).ok_or_else(|| {
                Error::bad_image("inventory.rec", format!("unknown socket pair {pair}"))
            })?;
            cx.making.pairs.insert(pair, make(sp)?);
        }
        let fd = cx
            .making
            .pairs
            .get_mut(&pair)
            .and_then(|p| p[end as usize].take())
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "socket pair {pair} end {end} used by two open files"
                ))
            })?;
        set_status_flags(fd.as_fd(), cx.file.flags, "socket")?;
        Ok(fd)
    }
}

/// Socket pairs made so far by a restore: the ends not handed out yet.
pub(crate) type Making = HashMap<u32, [Option<OwnedFd>; 2]>;

/// A socket pair with the queued bytes of `sp` waiting at each end.
fn make(sp: &SocketPairImage) -> Result<[Option<OwnedFd>; 2]> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let ty = SockType::try_from(sp.sotype).map_err(|e| Error::io("socketpair", e.into()))?;
    let (a, b) = socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| Error::io("socketpair", e.into()))?;
    // bytes waiting at end 0 were sent from end 1, and the other way round
    for (from, bytes) in [(&b, &sp.queued[0]), (&a, &sp.queued[1])] {
        std::fs::File::from(from.try_clone().map_err(|e| Error::io("socketpair", e))?)
            .write_all(bytes)
            .map_err(|e| Error::io("socketpair", e))?;
    }
    Ok([Some(a), Some(b)])
}
