//! The one raw system call of this crate: dropping supplementary groups on one thread.
//!
//! Staging a task's files must act as the task's account, yet the daemon is one process with
//! many threads running as root. Linux keeps credentials per thread, so a dedicated thread can
//! take the account's file-system ids (`setfsuid`/`setfsgid`, which also clear the file
//! capabilities such as CAP_DAC_OVERRIDE) and drop root's supplementary groups. glibc's
//! `setgroups` would change every thread of the process (it broadcasts the change), so the
//! group drop is made with the raw system call, which affects the calling thread only.

use std::io;

/// Makes the calling thread act on files as `uid`:`gid` with no supplementary groups. The
/// thread must not be used for anything else afterwards (there is no way back).
pub(crate) fn act_as_on_this_thread(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: setgroups(0, NULL) reads no memory; as a raw syscall it changes only this
    // thread's credentials, and the caller owns this thread until it exits.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    nix::unistd::setfsgid(gid.into());
    nix::unistd::setfsuid(uid.into());
    // setfsuid reports no error; asking again returns the current value.
    if nix::unistd::setfsuid(uid.into()).as_raw() != uid {
        return Err(io::Error::other(format!("setfsuid({uid}) was refused")));
    }
    Ok(())
}
