//! Unix socket pairs whose two ends are in the tree, with the bytes queued at each end (a
//! stream socket whose peer was closed counts: its restored twin has that end closed).
//!
//! Sockets of other families are refused before anything is frozen; so are datagram pairs with
//! messages queued and connected sockets bound to a name (accepted connections). What a socket
//! is connected to is told by sock_diag (the peer's inode); queued bytes are copied with
//! `MSG_PEEK`. Restore makes a `socketpair` and sends each end's queued bytes from the other
//! end. Sockets connected to nothing are `unix_alone`'s.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::{set_status_flags, FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::sys::fd as sfd;

/// A Unix socket pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketPairImage {
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub sotype: i32,
    /// What waits to be read at end 0 and end 1: the messages of a datagram or seqpacket
    /// pair, in order; for a stream pair, its bytes (in one or more runs).
    pub queued: [Vec<Vec<u8>>; 2],
    /// The socket options of end 0 and end 1 that differ from a fresh socket's.
    pub options: [Vec<super::sockopt::SockOpt>; 2],
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

/// Refuses sockets other than Unix ones and the TCP sockets `tcp` restores (read through a
/// copy of the fd; nothing is stopped).
pub(crate) fn check(pid: i32, fd: i32, pidfd: &OwnedFd) -> Result<()> {
    let mine = sfd::pidfd_getfd(pidfd.as_fd(), fd)
        .map_err(|e| Error::sys(pid, format!("pidfd_getfd fd {fd}"), e))?;
    let (domain, sotype, proto) = sfd::socket_kind(mine.as_fd())
        .map_err(|e| Error::sys(pid, format!("fd {fd} socket"), e))?;
    if domain == libc::AF_UNIX {
        return Ok(());
    }
    let inet = domain == libc::AF_INET || domain == libc::AF_INET6;
    if inet && sotype == libc::SOCK_STREAM && proto == libc::IPPROTO_TCP {
        let why = super::tcp::refusal(mine.as_fd())
            .map_err(|e| Error::sys(pid, format!("fd {fd} TCP_INFO"), e))?;
        return match why {
            Some(why) => Err(Error::unsupported(pid, format!("fd {fd} {why}"))),
            None => Ok(()),
        };
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

/// What sock_diag says of the socket of `cx`.
pub(crate) fn diag<'t>(cx: &'t FileDump<'_>) -> Option<&'t sfd::UnixDiag> {
    cx.tree.unix.get(&(ino_of(&cx.e.link) as u32))
}

/// What a Unix socket of the tree is connected to.
pub(crate) enum Role {
    /// A socket of the tree, or a stream socket whose peer was closed.
    Pair,
    /// Nothing (never connected, bound, listening).
    Alone,
    /// A socket outside the tree.
    Outside,
}

/// sock_diag's state of a connected socket (`TCP_ESTABLISHED`).
const CONNECTED: u8 = 1;

/// What the socket of `cx` is connected to.
pub(crate) fn role(cx: &FileDump<'_>) -> Result<Role> {
    let d = diag(cx).cloned().unwrap_or_default();
    if d.state == super::unix_alone::LISTENING {
        return Ok(Role::Alone);
    }
    if d.peer != 0 {
        return Ok(if cx.tree.tree_socks.contains(&(d.peer as u64)) {
            Role::Pair
        } else {
            Role::Outside
        });
    }
    if d.state != CONNECTED {
        return Ok(Role::Alone);
    }
    // connected, but its peer was closed (sock_diag shows no peer then), which shut both
    // ways down here
    let mine = cx.take()?;
    let (_, sotype, _) = sfd::socket_kind(mine.as_fd()).map_err(|er| cx.failed("socket", er))?;
    Ok(if d.shutdown == 3 && sotype != libc::SOCK_DGRAM {
        Role::Pair
    } else {
        Role::Outside
    })
}

/// What is queued for reading at the socket; refused when some of it is control data (file
/// descriptors or credentials in flight) or an empty datagram.
fn queued(cx: &FileDump<'_>, sock: &OwnedFd, sotype: i32, rqueue: u32) -> Result<Vec<Vec<u8>>> {
    let stream = sotype == libc::SOCK_STREAM;
    // a datagram socket's rqueue is the length of its first message only (0 for an empty
    // one): datagram sockets are always read
    if stream && rqueue == 0 {
        return Ok(Vec::new());
    }
    let p = sfd::peek_socket(sock.as_fd(), stream.then_some(rqueue as usize))
        .map_err(|e| cx.failed("peek socket", e))?;
    if p.control {
        return Err(cx.refuse(
            "is a Unix socket with file descriptors or credentials in flight (SCM_RIGHTS, SCM_CREDENTIALS)",
        ));
    }
    if p.empty {
        return Err(cx.refuse("is a Unix socket with an empty datagram queued"));
    }
    let got: usize = p.messages.iter().map(Vec::len).sum();
    if stream && got != rqueue as usize {
        return Err(Error::Conflict(format!(
            "pid {}: fd {}: peeked {got} of {rqueue} queued bytes",
            cx.pid, cx.e.fd
        )));
    }
    Ok(p.messages)
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
        // shut down by `shutdown` (not by a peer that was closed, which comes back as it was)
        if d.shutdown != 0 && d.peer != 0 {
            return Err(cx.refuse("is a Unix socket shut down one or both ways (shutdown)"));
        }
        let data = queued(cx, &mine, sotype, d.rqueue)?;
        let opts = super::sockopt::save(mine.as_fd(), libc::AF_UNIX, sotype)
            .map_err(|er| cx.failed("socket options", er))?;
        if let Some(&(pair, end)) = cx.seen.pairs.get(&(d.peer as u64)) {
            let me = 1 - end;
            cx.seen.pairs.insert(ino, (pair, me));
            let sp = &mut cx.shared.socketpairs[pair as usize];
            sp.queued[me as usize] = data;
            sp.options[me as usize] = opts;
            return Ok(PairEnd { pair, end: me });
        }
        let pair = cx.shared.socketpairs.len() as u32;
        cx.shared.socketpairs.push(SocketPairImage {
            sotype,
            queued: [data, Vec::new()],
            options: [opts, Vec::new()],
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

/// Sends `m` without waiting (a send that would wait is an error, not a hang): a stream in as
/// many sends as it takes, a message in one.
fn send_all(fd: std::os::fd::BorrowedFd<'_>, m: &[u8], stream: bool) -> Result<()> {
    use nix::sys::socket::{send, MsgFlags};
    let mut done = 0;
    while done < m.len() || (done == 0 && !stream) {
        let n = send(
            fd.as_raw_fd(),
            &m[done..],
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        )
        .map_err(|e| Error::io("socketpair: queue the saved data again", e.into()))?;
        if !stream && n != m.len() {
            return Err(Error::Conflict("socketpair: a message was cut".into()));
        }
        done += n.max(1);
    }
    Ok(())
}

/// Socket pairs made so far by a restore: the ends not handed out yet.
pub(crate) type Making = HashMap<u32, [Option<OwnedFd>; 2]>;

/// A socket pair with the queued bytes of `sp` waiting at each end.
fn make(sp: &SocketPairImage) -> Result<[Option<OwnedFd>; 2]> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let ty = SockType::try_from(sp.sotype).map_err(|e| Error::io("socketpair", e.into()))?;
    let (a, b) = socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| Error::io("socketpair", e.into()))?;
    // what waits at end 0 was sent from end 1, and the other way round; one send per message
    for (from, messages) in [(&b, &sp.queued[0]), (&a, &sp.queued[1])] {
        for m in messages {
            send_all(from.as_fd(), m, sp.sotype == libc::SOCK_STREAM)?;
        }
    }
    for (end, opts) in [(&a, &sp.options[0]), (&b, &sp.options[1])] {
        super::sockopt::restore(end.as_fd(), libc::AF_UNIX, opts)?;
    }
    Ok([Some(a), Some(b)])
}
