//! Every raw system call and `unsafe` block of the crate lives under this module.
//!
//! The rest of the crate sees safe functions that return `io::Result` (or the crate's error).
//! Kernel quirks are explained where they are met.

pub mod fd;
pub mod mem;
pub mod ptrace;
pub mod sched;
pub mod spawn;

use std::io;

/// Turns a `-1` return of a libc call into the thread's `errno`.
pub(crate) fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Same as [`cvt`] for `c_int` results.
pub(crate) fn cvt_i(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
