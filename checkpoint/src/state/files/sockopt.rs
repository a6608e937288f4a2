//! Socket options: a list of options is read from a socket and from a fresh socket of the same
//! family and type; those that differ are saved, and set again on the restored socket in the
//! list's order. Options outside the list are not seen (as with CRIU).

use std::os::fd::{AsFd, BorrowedFd};

use crate::error::{Error, Result};
use crate::sys::fd as sfd;

/// `SO_BUF_LOCK` (Linux 5.14; not in libc yet): which buffer sizes are locked.
pub(crate) const SO_BUF_LOCK: i32 = 72;

/// One saved option: `(level, name, value as getsockopt gave it)`.
pub type SockOpt = (i32, i32, Vec<u8>);

/// How an option's value read by `getsockopt` is given back to `setsockopt`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// As read.
    Same,
    /// A buffer size: the kernel doubles what it is given (set with the `*FORCE` option).
    Buffer(i32),
    /// A name: without its trailing NUL bytes.
    Name,
}

/// The options saved when they differ from a fresh socket's: `(level, name, how)`.
fn table(family: i32) -> Vec<(i32, i32, How)> {
    use libc::*;
    let mut v = vec![
        (SOL_SOCKET, SO_REUSEADDR, How::Same),
        (SOL_SOCKET, SO_REUSEPORT, How::Same),
        (SOL_SOCKET, SO_KEEPALIVE, How::Same),
        (SOL_SOCKET, SO_BROADCAST, How::Same),
        (SOL_SOCKET, SO_DONTROUTE, How::Same),
        (SOL_SOCKET, SO_OOBINLINE, How::Same),
        (SOL_SOCKET, SO_NO_CHECK, How::Same),
        (SOL_SOCKET, SO_PRIORITY, How::Same),
        (SOL_SOCKET, SO_RCVLOWAT, How::Same),
        (SOL_SOCKET, SO_MARK, How::Same),
        (SOL_SOCKET, SO_PASSCRED, How::Same),
        (SOL_SOCKET, SO_PASSSEC, How::Same),
        (SOL_SOCKET, SO_TIMESTAMP, How::Same),
        (SOL_SOCKET, SO_RXQ_OVFL, How::Same),
        (SOL_SOCKET, SO_BUSY_POLL, How::Same),
        (SOL_SOCKET, SO_LINGER, How::Same),
        (SOL_SOCKET, SO_RCVTIMEO, How::Same),
        (SOL_SOCKET, SO_SNDTIMEO, How::Same),
        (SOL_SOCKET, SO_RCVBUF, How::Buffer(SO_RCVBUFFORCE)),
        (SOL_SOCKET, SO_SNDBUF, How::Buffer(SO_SNDBUFFORCE)),
        (SOL_SOCKET, SO_BUF_LOCK, How::Same),
        (SOL_SOCKET, SO_BINDTODEVICE, How::Name),
    ];
    if family == AF_UNIX {
        return v;
    }
    v.extend([
        (IPPROTO_TCP, TCP_NODELAY, How::Same),
        (IPPROTO_TCP, TCP_CORK, How::Same),
        (IPPROTO_TCP, TCP_KEEPIDLE, How::Same),
        (IPPROTO_TCP, TCP_KEEPINTVL, How::Same),
        (IPPROTO_TCP, TCP_KEEPCNT, How::Same),
        (IPPROTO_TCP, TCP_SYNCNT, How::Same),
        (IPPROTO_TCP, TCP_LINGER2, How::Same),
        (IPPROTO_TCP, TCP_DEFER_ACCEPT, How::Same),
        (IPPROTO_TCP, TCP_WINDOW_CLAMP, How::Same),
        (IPPROTO_TCP, TCP_USER_TIMEOUT, How::Same),
        (IPPROTO_TCP, TCP_NOTSENT_LOWAT, How::Same),
        (IPPROTO_TCP, TCP_MAXSEG, How::Same),
        (IPPROTO_TCP, TCP_FASTOPEN, How::Same),
        (IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, How::Same),
        (IPPROTO_TCP, TCP_CONGESTION, How::Name),
    ]);
    if family == AF_INET6 {
        v.extend([
            (IPPROTO_IPV6, IPV6_V6ONLY, How::Same),
            (IPPROTO_IPV6, IPV6_UNICAST_HOPS, How::Same),
            (IPPROTO_IPV6, IPV6_TCLASS, How::Same),
            (IPPROTO_IPV6, IPV6_RECVERR, How::Same),
            (IPPROTO_IPV6, IPV6_MTU_DISCOVER, How::Same),
            (IPPROTO_IPV6, IPV6_TRANSPARENT, How::Same),
            (IPPROTO_IPV6, IPV6_FREEBIND, How::Same),
        ]);
    } else {
        v.extend([
            (IPPROTO_IP, IP_TOS, How::Same),
            (IPPROTO_IP, IP_TTL, How::Same),
            (IPPROTO_IP, IP_OPTIONS, How::Same),
            (IPPROTO_IP, IP_RECVERR, How::Same),
            (IPPROTO_IP, IP_MTU_DISCOVER, How::Same),
            (IPPROTO_IP, IP_FREEBIND, How::Same),
            (IPPROTO_IP, IP_TRANSPARENT, How::Same),
            (IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, How::Same),
        ]);
    }
    v
}

/// The options of `sock` that differ from those of a fresh socket of its family and type.
pub(crate) fn save(
    sock: BorrowedFd<'_>,
    family: i32,
    sotype: i32,
) -> std::io::Result<Vec<SockOpt>> {
    let fresh = if family == libc::AF_UNIX {
        sfd::unix_socket(sotype)?
    } else {
        sfd::inet_socket(family, sotype)?
    };
    let mut out = Vec::new();
    for (level, opt, _) in table(family) {
        let (Ok(v), Ok(f)) = (
            sfd::getsockopt_raw(sock, level, opt),
            sfd::getsockopt_raw(fresh.as_fd(), level, opt),
        ) else {
            continue;
        };
        if v != f {
            out.push((level, opt, v));
        }
    }
    // setting a buffer size locks it: the lock is set again after the sizes, as it was
    let sized = out
        .iter()
        .any(|o| o.0 == libc::SOL_SOCKET && (o.1 == libc::SO_RCVBUF || o.1 == libc::SO_SNDBUF));
    if sized
        && !out
            .iter()
            .any(|o| o.0 == libc::SOL_SOCKET && o.1 == SO_BUF_LOCK)
    {
        if let Ok(v) = sfd::getsockopt_raw(sock, libc::SOL_SOCKET, SO_BUF_LOCK) {
            out.push((libc::SOL_SOCKET, SO_BUF_LOCK, v));
        }
    }
    Ok(out)
}

/// Sets the saved options `opts` on `fd` (a socket of `family`).
pub(crate) fn restore(fd: BorrowedFd<'_>, family: i32, opts: &[SockOpt]) -> Result<()> {
    let t = table(family);
    for (level, opt, value) in opts {
        let how = t
            .iter()
            .find(|x| x.0 == *level && x.1 == *opt)
            .map_or(How::Same, |x| x.2);
        set_option(fd, *level, *opt, value, how)?;
    }
    Ok(())
}

/// Sets one saved option as it was read.
fn set_option(fd: BorrowedFd<'_>, level: i32, opt: i32, value: &[u8], how: How) -> Result<()> {
    let failed = |e| Error::io(format!("setsockopt level {level} option {opt}"), e);
    match how {
        How::Same => sfd::setsockopt_raw(fd, level, opt, value).map_err(failed),
        How::Buffer(force) => {
            let read = value
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, i32::from_ne_bytes);
            sfd::setsockopt_raw(fd, level, force, &(read / 2).to_ne_bytes()).map_err(failed)
        }
        How::Name => {
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            sfd::setsockopt_raw(fd, level, opt, &value[..end]).map_err(failed)
        }
    }
}
