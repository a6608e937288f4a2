//! TCP sockets that hold no connection: never connected (bound to an address or not) and
//! listening with no connection waiting to be accepted, IPv4 and IPv6.
//!
//! Dump: the state and the accept queue come from `TCP_INFO` (a socket whose connection ended
//! is told from one never connected by its segment counters); the address from
//! `getsockname`; socket options as `sockopt` saves them. A socket filter is refused.
//!
//! Restore: a fresh socket gets the saved options, is bound to the same address (with
//! `SO_REUSEADDR` for the moment of the bind, so that connections of the old socket still in
//! TIME_WAIT do not stand in the way) and listens with the same backlog.
//!
//! Connected sockets (and the other states of a connection) are refused: they are not
//! restored yet.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::{set_status_flags, sockopt, FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::sys::fd as sfd;

const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;

/// A TCP socket that holds no connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSocket {
    /// `AF_INET` or `AF_INET6`.
    pub family: i32,
    /// The address it is bound to (`sockaddr_in` or `sockaddr_in6` bytes), if bound.
    pub bound: Option<Vec<u8>>,
    /// Backlog of a listening socket.
    pub backlog: Option<i32>,
    /// Options that differ from a fresh socket's.
    pub options: Vec<sockopt::SockOpt>,
}

/// What `TCP_INFO` tells of a socket: `(state, accept queue, backlog, segments in and out)`.
fn info(fd: BorrowedFd<'_>) -> std::io::Result<(u8, u32, u32, u64)> {
    let b = sfd::getsockopt_sized(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 144)?;
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    // struct tcp_info: tcpi_state at 0, tcpi_unacked at 24, tcpi_sacked at 28 (for a
    // listening socket: accept queue and backlog), tcpi_segs_out at 136, tcpi_segs_in at 140
    let segs = u64::from(u32_at(136)) + u64::from(u32_at(140));
    Ok((
        b.first().copied().unwrap_or(0),
        u32_at(24),
        u32_at(28),
        segs,
    ))
}

/// Names of the kernel's TCP states.
fn state_name(s: u8) -> &'static str {
    match s {
        1 => "established",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        11 => "CLOSING",
        _ => "in an unknown state",
    }
}

/// Refuses a TCP socket a restore would not bring back (read through a copy of the fd of
/// `pid`; nothing is stopped). Returns the reason, to be named with the fd.
pub(crate) fn refusal(sock: BorrowedFd<'_>) -> std::io::Result<Option<String>> {
    let (state, waiting, _, segs) = info(sock)?;
    Ok(match state {
        TCP_LISTEN if waiting > 0 => Some(format!(
            "is a listening TCP socket with {waiting} connections waiting"
        )),
        TCP_LISTEN => None,
        TCP_CLOSE if segs > 0 => Some("is a TCP socket whose connection ended".into()),
        TCP_CLOSE => None,
        // refused once frozen if its peer is not in the tree (`tcp_conn`)
        TCP_ESTABLISHED => None,
        s => Some(format!(
            "is a connected TCP socket ({}; not restored yet)",
            state_name(s)
        )),
    }
    .or_else(|| match sfd::socket_filter_len(sock) {
        Ok(0) => None,
        _ => Some("is a TCP socket with a socket filter".into()),
    }))
}

/// Saves the TCP socket of `cx` as a connection or as a socket holding none.
pub(crate) fn save_kind(cx: &mut FileDump<'_>) -> Result<super::FileKind> {
    let mine = cx.take()?;
    let (state, _, _, _) = info(mine.as_fd()).map_err(|e| cx.failed("TCP_INFO", e))?;
    Ok(if state == TCP_ESTABLISHED {
        super::FileKind::TcpConn(super::tcp_conn::TcpConn::save(cx)?)
    } else {
        super::FileKind::Tcp(TcpSocket::save(cx)?)
    })
}

/// Whether the socket of `cx` is an inet one (the scan let only TCP ones through).
pub(crate) fn is_inet(cx: &FileDump<'_>) -> Result<bool> {
    let mine = cx.take()?;
    let (domain, _, _) = sfd::socket_kind(mine.as_fd()).map_err(|e| cx.failed("socket", e))?;
    Ok(domain == libc::AF_INET || domain == libc::AF_INET6)
}

impl Persist for TcpSocket {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<TcpSocket> {
        let mine = cx.take()?;
        let sock = mine.as_fd();
        if let Some(why) = refusal(sock).map_err(|e| cx.failed("TCP_INFO", e))? {
            return Err(cx.refuse(&why));
        }
        let (domain, _, _) = sfd::socket_kind(sock).map_err(|e| cx.failed("socket", e))?;
        let (state, _, backlog, _) = info(sock).map_err(|e| cx.failed("TCP_INFO", e))?;
        let name = sfd::sockname_raw(sock).map_err(|e| cx.failed("getsockname", e))?;
        // the port is the first field after the family in both address kinds
        let port = name
            .get(2..4)
            .map_or(0, |p| u16::from_be_bytes([p[0], p[1]]));
        let options = sockopt::save(sock, domain, libc::SOCK_STREAM)
            .map_err(|e| cx.failed("socket for comparison", e))?;
        Ok(TcpSocket {
            family: domain,
            bound: (port != 0).then_some(name),
            backlog: (state == TCP_LISTEN).then_some(backlog as i32),
            options,
        })
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        let fd =
            sfd::inet_socket(self.family, libc::SOCK_STREAM).map_err(|e| Error::io("socket", e))?;
        sockopt::restore(fd.as_fd(), self.family, &self.options)?;
        // reusable (address and port) while it binds and starts listening beside the tree's
        // connections on its port, the other sockets sharing the port and old sockets in
        // TIME_WAIT; then as it was
        let set = |opt: i32, on: bool| {
            let v = i32::from(on).to_ne_bytes();
            sfd::setsockopt_raw(fd.as_fd(), libc::SOL_SOCKET, opt, &v)
                .map_err(|e| Error::io(format!("setsockopt {opt} for the bind"), e))
        };
        let saved = |opt: i32| {
            self.options
                .iter()
                .any(|o| o.0 == libc::SOL_SOCKET && o.1 == opt)
        };
        let reusable = [libc::SO_REUSEADDR, libc::SO_REUSEPORT];
        for opt in reusable {
            set(opt, true)?;
        }
        if let Some(addr) = &self.bound {
            sfd::bind_raw(fd.as_fd(), addr).map_err(|e| Error::io("bind TCP socket", e))?;
        }
        if let Some(backlog) = self.backlog {
            sfd::listen(fd.as_fd(), backlog).map_err(|e| Error::io("listen", e))?;
        }
        for opt in reusable {
            if !saved(opt) {
                set(opt, false)?;
            }
        }
        set_status_flags(fd.as_fd(), cx.file.flags, "socket")?;
        Ok(fd)
    }
}
