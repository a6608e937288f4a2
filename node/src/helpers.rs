//! The helpers `ssid` starts inside its node's pid namespace to work on process trees
//! (`ssid helper`): each gets its job as a typed message ([`migrate::Job`]) first thing on its
//! control socket, and its descriptors as one [`HelperFds`], whose layout lives only here.
//!
//! * `MigrateOut`: pre-copy rounds, freeze, last image on the data stream, by the daemon's
//!   orders; then kill or resume the frozen copy;
//! * `MigrateIn`: images from the data stream, restored with the stdio descriptors as the
//!   tree's outside streams, held until the daemon says to let it go;
//! * `Checkpoint`: write the tree to a directory; for a user, every file is reached with the
//!   user's ids (see [`reach_files_as`]);
//! * `Periodic`: checkpoint a fault-tolerant tree into a directory at each order, the tree
//!   running on (see `crate::ft`);
//! * `Restore`: restore a directory's image with the stdio descriptors, for the user asking or
//!   the image's owner (see [`crate::image_trust`]).
//!
//! Each reports on its control socket ([`migrate::Report`]). A helper that dumps first mounts
//! a /proc of its own: the host's /proc shows pids of the root namespace, the dumper needs
//! those of the node's.

use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use std::path::Path;

use anyhow::{bail, Context, Result};
use checkpoint::{Bound, Image, SealKey};
use migrate::control::{self, Job, Report, User};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::image_trust;
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

/// Makes this helper (and the threads it starts) reach every file as `h` from now on: the
/// image directory a user named is created and written, or read, with the user's rights and
/// ownership, never root's. The helper keeps root's other powers (tracing the user's
/// processes, reading their /proc files, creating processes with chosen pids).
fn reach_files_as(h: &User) -> Result<()> {
    sys::reach_files_as(h.uid, h.gid, &h.groups)
        .with_context(|| format!("cannot take the file ids of uid {}", h.uid))
}

/// Loads the image in `dir` for the user a restart acts for (see [`image_trust`]): the
/// caller (`None`: root), who must own the image; for root, the image's owner unless that is
/// root. The image must carry a valid seal made with `key` for that owner. Files are reached
/// as that user from then on; the bound to restore it with is returned (`None`: root's image,
/// restored as it says).
fn trusted_image(
    dir: &Path,
    caller: Option<User>,
    key: &SealKey,
) -> Result<(Image, Option<Bound>)> {
    if let Some(h) = &caller {
        reach_files_as(h)?;
    }
    // Everything below reads the directory through one descriptor: whatever is renamed in
    // its place meanwhile is not read.
    let (_pin, pinned, dir_meta) = image_trust::pin(dir)?;
    let (uid, gid) = image_trust::owner(&pinned, dir)?;
    let holder = match caller {
        Some(h) if h.uid != uid => bail!(
            "{}: the image belongs to uid {uid}, not to you (uid {}): refused",
            dir.display(),
            h.uid
        ),
        Some(h) => Some(h),
        None if uid == 0 => {
            image_trust::root_may_trust(&dir_meta, dir)?;
            None
        }
        None => {
            let h = image_trust::user(uid, gid);
            reach_files_as(&h)?;
            Some(h)
        }
    };
    // messages name the directory asked for, not the descriptor it is read through
    let img = Image::load_sealed(&pinned, key).map_err(|e| {
        let (through, asked) = (pinned.display().to_string(), dir.display().to_string());
        anyhow::anyhow!("{}", e.to_string().replace(&through, &asked))
    })?;
    image_trust::check_sealed_owner(&img, uid, dir)?;
    Ok((img, holder.as_ref().map(image_trust::bound)))
}

/// Does `job`; the report to send last, if any (the migration helpers report as they go).
fn run(job: Job, ctl: &UnixStream) -> Result<Option<Report>> {
    match job {
        Job::MigrateOut { pid, key } => {
            own_proc()?;
            migrate::outbound::run(pid, &data_stream()?, &key, ctl)?;
            Ok(None)
        }
        Job::MigrateIn { key, bound } => {
            migrate::inbound::run(&data_stream()?, &key, bound, slot::STDIO, ctl)?;
            Ok(None)
        }
        Job::Checkpoint {
            pid,
            dir,
            leave_running,
            user,
            seal,
        } => {
            own_proc()?;
            if let Some(h) = &user {
                reach_files_as(h)?;
            }
            Ok(Some(migrate::outbound::checkpoint_to_dir(
                pid,
                &dir,
                leave_running,
                &SealKey::new(seal),
                user.map_or(0, |h| h.uid),
            )?))
        }
        Job::Periodic { pid, seal } => {
            own_proc()?;
            migrate::outbound::periodic(pid, &SealKey::new(seal), ctl)?;
            Ok(None)
        }
        Job::Restore { dir, user, seal } => {
            let (img, bound) = trusted_image(&dir, user, &SealKey::new(seal))?;
            Ok(Some(migrate::inbound::restore_image(
                &img,
                slot::STDIO,
                bound,
            )?))
        }
    }
}
