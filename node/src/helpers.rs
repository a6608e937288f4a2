//! The helpers `ssid` starts inside its node's pid namespace to work on process trees
//! (`ssid helper`): each gets its job as a typed message ([`migrate::Job`]) first thing on its
//! control socket, and its descriptors as one [`HelperFds`], whose layout lives only here.
//!
//! * `MigrateOut`: pre-copy rounds, freeze, last image on the data stream, by the daemon's
//!   orders; then kill or resume the frozen copy;
//! * `MigrateIn`: images from the data stream, restored with the stdio descriptors as the
//!   tree's outside streams, held until the daemon says to let it go;
//! * `Checkpoint`: write the tree to a directory;
//! * `Restore`: restore a directory's image with the stdio descriptors.
//!
//! Each reports on its control socket ([`migrate::Report`]). A helper that dumps first mounts
//! a /proc of its own: the host's /proc shows pids of the root namespace, the dumper needs
//! those of the node's.

use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result};
use migrate::control::{self, Job, Report};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::sys;

/// The first argument of `ssid` that makes it a helper.
pub const MODE: &str = "helper";

/// The descriptors a helper inherits, by what they are for.
#[derive(Debug)]
pub struct HelperFds {
    /// The control socket: the job and orders in, reports out.
    pub control: OwnedFd,
    /// Where its log goes (the daemon's stderr).
    pub log: OwnedFd,
    /// The data stream of a migration (the TCP connection the two daemons opened).
    pub data: Option<OwnedFd>,
    /// The outside standard streams of a tree it restores: stdin's read end, stdout's and
    /// stderr's write ends.
    pub stdio: Option<[OwnedFd; 3]>,
}

/// Where each descriptor sits in the helper: the numbers are known here only.
mod slot {
    use std::os::fd::RawFd;
    /// /dev/null.
    pub const STDIN: RawFd = 0;
    /// The data stream, or /dev/null.
    pub const DATA: RawFd = 1;
    /// The log.
    pub const LOG: RawFd = 2;
    /// The control socket.
    pub const CONTROL: RawFd = 3;
    /// The restored tree's stdin, stdout and stderr.
    pub const STDIO: [RawFd; 3] = [4, 5, 6];
}

impl HelperFds {
    /// The descriptors in the order the namespace init gives them (`fds[i]` becomes fd `i`);
    /// `null` fills the slots this helper does not use.
    pub fn in_order<'a>(&'a self, null: &'a OwnedFd) -> Vec<&'a OwnedFd> {
        let mut v = vec![null; 4];
        v[slot::STDIN as usize] = null;
        v[slot::DATA as usize] = self.data.as_ref().unwrap_or(null);
        v[slot::LOG as usize] = &self.log;
        v[slot::CONTROL as usize] = &self.control;
        if let Some(stdio) = &self.stdio {
            debug_assert_eq!(slot::STDIO, [4, 5, 6], "they follow the four above");
            v.extend(stdio.iter());
        }
        v
    }
}

/// Runs a helper: reads its job on its control socket, does it, reports how it went.
pub fn main() -> Result<()> {
    let ctl: UnixStream = sys::inherited_fd(slot::CONTROL).into();
    let mut out = &ctl;
    let outcome = (|| {
        let mut r = &ctl;
        let job: Job = control::recv(&mut r)?.context("ssid sent no job")?;
        run(job, &ctl)
    })();
    let report = outcome.unwrap_or_else(|e| Some(Report::Failed(format!("{e:#}"))));
    if let Some(r) = report {
        control::send(&mut out, &r).context("cannot report to ssid")?;
    }
    Ok(())
}

/// The data stream this helper inherited. A peer that stops moving it fails the migration
/// (see [`migrate::framing::STALL_TIMEOUT`]).
fn data_stream() -> Result<TcpStream> {
    let conn = TcpStream::from(sys::inherited_fd(slot::DATA));
    migrate::framing::limit_stalls(&conn, migrate::framing::STALL_TIMEOUT)
        .context("cannot set timeouts on the data stream")?;
    Ok(conn)
}

/// A mount namespace of our own with a /proc of the pid namespace we are in.
fn own_proc() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).context("cannot create a mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("cannot make mounts private")?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .context("cannot mount /proc for the node's pid namespace")
}

/// Does `job`; the report to send last, if any (the migration helpers report as they go).
fn run(job: Job, ctl: &UnixStream) -> Result<Option<Report>> {
    match job {
        Job::MigrateOut { pid, key } => {
            own_proc()?;
            migrate::outbound::run(pid, &data_stream()?, &key, ctl)?;
            Ok(None)
        }
        Job::MigrateIn { key } => {
            migrate::inbound::run(&data_stream()?, &key, slot::STDIO, ctl)?;
            Ok(None)
        }
        Job::Checkpoint {
            pid,
            dir,
            leave_running,
        } => {
            own_proc()?;
            Ok(Some(migrate::outbound::checkpoint_to_dir(
                pid,
                &dir,
                leave_running,
            )?))
        }
        Job::Restore { dir } => Ok(Some(migrate::inbound::restore_dir(&dir, slot::STDIO)?)),
    }
}
