//! Established TCP connections whose two ends are both in the tree, through `TCP_REPAIR`.
//!
//! Dump (tree frozen): the peer's end must be a socket of the tree (found in the process'
//! `/proc/PID/net/tcp*` by the socket's inode); the socket is put in repair mode, which lets
//! the dumper read the sequence numbers of both queues and their bytes (`MSG_PEEK`), the
//! window (`TCP_REPAIR_WINDOW`), the timestamp clock and what was negotiated (MSS, window
//! scales, SACK, timestamps from `TCP_INFO`). The sockets stay in repair mode until the dump
//! ends: a socket closed in repair mode sends nothing, so when the dump kills the tree the
//! peer sees neither FIN nor RST (and both ends are in the tree, so no packet from outside
//! can meet the closed port meanwhile). If the tree runs on, repair mode is turned off first.
//!
//! Restore: a socket in repair mode gets its options and queue sequence numbers, is bound and
//! "connected" without a handshake, gets the negotiated options, window and timestamp, and its
//! queued bytes; once every open file of the tree is made (so both ends exist), repair mode is
//! turned off and the connection goes on (unacknowledged bytes are sent again).
//!
//! With `RestoreOptions::tcp_close` (CRIU's `--tcp-close`), connections come back closed
//! instead: a socket without an address, shut down both ways.
//!
//! Refused: a connection to a socket outside the tree (no network lock yet), a socket shut
//! down for reading, the other states of a connection (`tcp`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::{set_status_flags, sockopt, FileDump, FileRestore};
use crate::error::{Error, Result};
use crate::persist::Persist;
use crate::sys::fd as sfd;

const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_OPTIONS: i32 = 22;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const TCP_NO_QUEUE: i32 = 0;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;
const TCPOPT_MSS: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;

/// An established TCP connection (one end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpConn {
    /// `AF_INET` or `AF_INET6`.
    pub family: i32,
    /// Local address (`sockaddr_in` or `sockaddr_in6` bytes).
    pub local: Vec<u8>,
    /// Peer address.
    pub peer: Vec<u8>,
    /// Sequence number after the last byte queued for sending.
    pub send_seq: u32,
    /// Sequence number after the last byte received.
    pub recv_seq: u32,
    /// Bytes queued for sending, not acknowledged yet.
    pub send_queue: Vec<u8>,
    /// Bytes received, not read yet.
    pub recv_queue: Vec<u8>,
    /// Maximum segment size.
    pub mss: u32,
    /// Window scales `(send, receive)`, if negotiated.
    pub wscale: Option<(u8, u8)>,
    /// SACK negotiated.
    pub sack: bool,
    /// Timestamps negotiated, and the connection's timestamp clock.
    pub timestamp: Option<u32>,
    /// `struct tcp_repair_window` as read.
    pub window: Vec<u8>,
    /// Socket options that differ from a fresh socket's.
    pub options: Vec<sockopt::SockOpt>,
}

/// Sockets a dump put in repair mode: turned back to normal when dropped (the tree runs on),
/// or closed still in repair mode after the tree was killed ([`Repaired::close_in_repair`]).
/// Each with its `SO_REUSEADDR` value, which leaving repair mode resets.
#[derive(Debug, Default)]
pub(crate) struct Repaired(Vec<(OwnedFd, Vec<u8>)>);

impl Repaired {
    /// Closes the sockets in repair mode: the connections end without a packet.
    pub(crate) fn close_in_repair(mut self) {
        self.0.clear();
    }
}

impl Drop for Repaired {
    fn drop(&mut self) {
        for (fd, reuse) in &self.0 {
            let _ = repair(fd.as_fd(), false);
            let _ = sfd::setsockopt_raw(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, reuse);
        }
    }
}

fn set_int(fd: BorrowedFd<'_>, opt: i32, v: i32) -> std::io::Result<()> {
    sfd::setsockopt_raw(fd, libc::IPPROTO_TCP, opt, &v.to_ne_bytes())
}

fn get_u32(fd: BorrowedFd<'_>, opt: i32) -> std::io::Result<u32> {
    let b = sfd::getsockopt_raw(fd, libc::IPPROTO_TCP, opt)?;
    Ok(b.get(..4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_ne_bytes))
}

fn repair(fd: BorrowedFd<'_>, on: bool) -> std::io::Result<()> {
    set_int(fd, TCP_REPAIR, i32::from(on))
}

/// Turns repair mode off on restored connection `c` (once its peer exists too), which resets
/// `SO_REUSEADDR`: it is set again.
pub(crate) fn go_live(fd: BorrowedFd<'_>, c: &TcpConn) -> Result<()> {
    set_int(fd, TCP_REPAIR_QUEUE, TCP_NO_QUEUE)
        .and_then(|()| repair(fd, false))
        .map_err(|e| Error::io("TCP_REPAIR off", e))?;
    let reuse = c
        .options
        .iter()
        .find(|o| o.0 == libc::SOL_SOCKET && o.1 == libc::SO_REUSEADDR);
    if let Some((level, opt, v)) = reuse {
        sfd::setsockopt_raw(fd, *level, *opt, v).map_err(|e| Error::io("SO_REUSEADDR", e))?;
    }
    Ok(())
}

/// Whether the connection of socket inode `ino` of process `pid` leads to a socket of the
/// tree (its mirror entry in the process' /proc/PID/net/tcp or tcp6 has a tree inode).
fn peer_in_tree(cx: &FileDump<'_>, ino: u64) -> Result<bool> {
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{}/net/{table}", cx.pid);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .filter(|f: &Vec<&str>| f.len() > 9)
            .collect();
        let Some(me) = rows.iter().find(|f| f[9].parse::<u64>().ok() == Some(ino)) else {
            continue;
        };
        return Ok(rows.iter().any(|f| {
            f[1] == me[2]
                && f[2] == me[1]
                && f[9]
                    .parse::<u64>()
                    .is_ok_and(|i| i != 0 && cx.tree.tree_socks.contains(&i))
        }));
    }
    Ok(false)
}

/// Reads queue `which` of a socket in repair mode: its sequence number and bytes.
fn read_queue(fd: BorrowedFd<'_>, which: i32) -> std::io::Result<(u32, Vec<u8>)> {
    set_int(fd, TCP_REPAIR_QUEUE, which)?;
    let seq = get_u32(fd, TCP_QUEUE_SEQ)?;
    let len = sfd::socket_queue_len(fd, which == TCP_SEND_QUEUE)?;
    let data = sfd::peek_bytes(fd, len)?;
    if data.len() != len {
        return Err(std::io::Error::other(format!(
            "peeked {} of {len} queued bytes",
            data.len()
        )));
    }
    Ok((seq, data))
}

/// Everything about a socket in repair mode but its addresses and options.
fn read_repaired(fd: BorrowedFd<'_>, family: i32) -> std::io::Result<TcpConn> {
    let (send_seq, send_queue) = read_queue(fd, TCP_SEND_QUEUE)?;
    let (recv_seq, recv_queue) = read_queue(fd, TCP_RECV_QUEUE)?;
    set_int(fd, TCP_REPAIR_QUEUE, TCP_NO_QUEUE)?;
    let info = sfd::getsockopt_sized(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 8)?;
    // struct tcp_info: tcpi_options at 5 (timestamps 1, SACK 2, window scale 4), window
    // scales at 6 (send in the low 4 bits, receive in the high 4)
    let (opts, scales) = (
        info.get(5).copied().unwrap_or(0),
        info.get(6).copied().unwrap_or(0),
    );
    let timestamp = if opts & 1 != 0 {
        Some(get_u32(fd, TCP_TIMESTAMP)?)
    } else {
        None
    };
    Ok(TcpConn {
        family,
        local: Vec::new(),
        peer: Vec::new(),
        send_seq,
        recv_seq,
        send_queue,
        recv_queue,
        mss: get_u32(fd, libc::TCP_MAXSEG)?,
        wscale: (opts & 4 != 0).then_some((scales & 0xf, scales >> 4)),
        sack: opts & 2 != 0,
        timestamp,
        window: sfd::getsockopt_sized(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, 20)?,
        options: Vec::new(),
    })
}

impl Persist for TcpConn {
    type Saving<'a> = FileDump<'a>;
    type Restoring<'a> = FileRestore<'a>;
    type Made = OwnedFd;

    fn save(cx: &mut FileDump<'_>) -> Result<TcpConn> {
        let mine = cx.take()?;
        let sock = mine.as_fd();
        let ino = super::unix::ino_of(&cx.e.link);
        if !peer_in_tree(cx, ino)? {
            return Err(
                cx.refuse("is a TCP connection to a socket outside the tree (not restored yet)")
            );
        }
        if sfd::read_shut_down(sock).map_err(|e| cx.failed("poll", e))? {
            return Err(cx.refuse("is a TCP connection shut down for reading"));
        }
        let (family, _, _) = sfd::socket_kind(sock).map_err(|e| cx.failed("socket", e))?;
        // the segment size is the negotiated one, given back with the repair options (a
        // connection's MSS may be above what TCP_MAXSEG accepts)
        let mut options = sockopt::save(sock, family, libc::SOCK_STREAM)
            .map_err(|e| cx.failed("socket options", e))?;
        options.retain(|o| !(o.0 == libc::IPPROTO_TCP && o.1 == libc::TCP_MAXSEG));
        // the restore raises the buffers to queue the saved bytes: their sizes and locks are
        // always set back, in this order, last
        let buffers = [libc::SO_RCVBUF, libc::SO_SNDBUF, sockopt::SO_BUF_LOCK];
        options.retain(|o| !(o.0 == libc::SOL_SOCKET && buffers.contains(&o.1)));
        for opt in buffers {
            let v = sfd::getsockopt_raw(sock, libc::SOL_SOCKET, opt)
                .map_err(|e| cx.failed("buffer size", e))?;
            options.push((libc::SOL_SOCKET, opt, v));
        }
        let local = sfd::sockname_raw(sock).map_err(|e| cx.failed("getsockname", e))?;
        let peer = sfd::peername_raw(sock).map_err(|e| cx.failed("getpeername", e))?;
        if !cx.tree.frozen {
            // a running process would see its socket refuse to send
            return Ok(TcpConn {
                family,
                local,
                peer,
                send_seq: 0,
                recv_seq: 0,
                send_queue: Vec::new(),
                recv_queue: Vec::new(),
                mss: 0,
                wscale: None,
                sack: false,
                timestamp: None,
                window: Vec::new(),
                options,
            });
        }
        let reuse = sfd::getsockopt_raw(sock, libc::SOL_SOCKET, libc::SO_REUSEADDR)
            .map_err(|e| cx.failed("SO_REUSEADDR", e))?;
        repair(sock, true).map_err(|e| cx.failed("TCP_REPAIR", e))?;
        // from here the socket is put back to normal if anything fails
        let read = read_repaired(sock, family);
        cx.seen.repaired.0.push((mine, reuse));
        let conn = read.map_err(|e| cx.failed("read in repair mode", e))?;
        Ok(TcpConn {
            local,
            peer,
            options,
            ..conn
        })
    }

    fn restore(&self, cx: &mut FileRestore<'_>) -> Result<OwnedFd> {
        let io = |what: &str| {
            let what = what.to_string();
            move |e| Error::io(format!("TCP connection: {what}"), e)
        };
        let fd = sfd::inet_socket(self.family, libc::SOCK_STREAM).map_err(io("socket"))?;
        let s = fd.as_fd();
        if cx.tcp_close {
            // closed: no connection, shut down both ways (reads end, writes fail with EPIPE)
            sockopt::restore(s, self.family, &self.options)?;
            let _ = sfd::shutdown_both(s);
            set_status_flags(s, cx.file.flags, "socket")?;
            return Ok(fd);
        }
        repair(s, true).map_err(io("TCP_REPAIR"))?;
        // room for the saved bytes while they are queued again (the options, set last, give
        // the buffers their sizes and locks back)
        let room = (self.send_queue.len().max(self.recv_queue.len()) * 4 + (1 << 20)) as i32;
        for opt in [libc::SO_SNDBUFFORCE, libc::SO_RCVBUFFORCE] {
            sfd::setsockopt_raw(s, libc::SOL_SOCKET, opt, &room.to_ne_bytes())
                .map_err(io("buffer room"))?;
        }
        for (q, seq, data) in [
            (TCP_SEND_QUEUE, self.send_seq, &self.send_queue),
            (TCP_RECV_QUEUE, self.recv_seq, &self.recv_queue),
        ] {
            set_int(s, TCP_REPAIR_QUEUE, q).map_err(io("TCP_REPAIR_QUEUE"))?;
            let start = seq.wrapping_sub(data.len() as u32);
            set_int(s, TCP_QUEUE_SEQ, start as i32).map_err(io("TCP_QUEUE_SEQ"))?;
        }
        sfd::bind_raw(s, &self.local).map_err(io("bind"))?;
        sfd::connect_raw(s, &self.peer).map_err(io("connect in repair mode"))?;
        self.negotiated(s)?;
        for (q, data) in [
            (TCP_SEND_QUEUE, &self.send_queue),
            (TCP_RECV_QUEUE, &self.recv_queue),
        ] {
            set_int(s, TCP_REPAIR_QUEUE, q).map_err(io("TCP_REPAIR_QUEUE"))?;
            sfd::send_all(s, data).map_err(io("queue the saved bytes again"))?;
        }
        set_int(s, TCP_REPAIR_QUEUE, TCP_NO_QUEUE).map_err(io("TCP_REPAIR_QUEUE"))?;
        // the window is checked against the received sequence: after the receive queue
        if self.window.len() == 20 {
            sfd::setsockopt_raw(s, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &self.window)
                .map_err(io("TCP_REPAIR_WINDOW"))?;
        }
        sockopt::restore(s, self.family, &self.options)?;
        set_status_flags(s, cx.file.flags, "socket")?;
        Ok(fd)
    }
}

impl TcpConn {
    /// Gives a connected socket in repair mode what the handshake had negotiated and its
    /// timestamp clock.
    fn negotiated(&self, s: BorrowedFd<'_>) -> Result<()> {
        let io = |what: &'static str| move |e| Error::io(format!("TCP connection: {what}"), e);
        let mut opts: Vec<(u32, u32)> = vec![(TCPOPT_MSS, self.mss)];
        if let Some((snd, rcv)) = self.wscale {
            opts.push((TCPOPT_WINDOW, u32::from(snd) | (u32::from(rcv) << 16)));
        }
        if self.sack {
            opts.push((TCPOPT_SACK_PERM, 0));
        }
        if self.timestamp.is_some() {
            opts.push((TCPOPT_TIMESTAMP, 0));
        }
        let bytes: Vec<u8> = opts
            .iter()
            .flat_map(|(c, v)| c.to_ne_bytes().into_iter().chain(v.to_ne_bytes()))
            .collect();
        sfd::setsockopt_raw(s, libc::IPPROTO_TCP, TCP_REPAIR_OPTIONS, &bytes)
            .map_err(io("TCP_REPAIR_OPTIONS"))?;
        if let Some(ts) = self.timestamp {
            set_int(s, TCP_TIMESTAMP, ts as i32).map_err(io("TCP_TIMESTAMP"))?;
        }
        Ok(())
    }
}
