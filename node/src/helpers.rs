//! The helpers `ssid` starts inside its node's pid namespace to work on process trees:
//!
//! * `migrate-out --pid P`: pre-copy and freeze the tree of P; images to the target on the
//!   connection at fd 1; reports on fd 3;
//! * `migrate-in`: images from the source on the connection at fd 0; restore with fds 4, 5, 6
//!   as the tree's outside streams;
//! * `checkpoint-out --pid P --dir D [--leave-running] [--uid U --gid G --groups G1,G2]`:
//!   write the tree of P to D; with `--uid`, every file is reached as that user (see
//!   [`reach_files_as`]);
//! * `restore-in --dir D [--uid U --gid G --groups G1,G2]`: restore the image in D with fds
//!   4, 5, 6 as outside streams, for the user `--uid` or the image's owner
//!   (see [`crate::image_trust`]).
//!
//! Each writes [`migrate::Report`] lines on fd 3; the migration helpers first read there the
//! key of their data stream ([`migrate::Start`]), then the daemon's verdict. A helper that
//! dumps first mounts a /proc of its own: the host's /proc shows pids of the root namespace,
//! the dumper needs those of the node's.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

use std::path::Path;

use anyhow::{bail, Context, Result};
use checkpoint::Image;
use migrate::Report;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::image_trust::{self, Holder};
use crate::sys;

/// Names of the helper modes.
pub const MODES: [&str; 4] = ["migrate-out", "migrate-in", "checkpoint-out", "restore-in"];

/// Runs helper `mode` with `args`; the outcome is reported on fd 3.
pub fn main(mode: &str, args: &[String]) -> Result<()> {
    let ctl: UnixStream = sys::inherited_fd(3).into();
    let mut out = ctl
        .try_clone()
        .context("cannot duplicate the control socket")?;
    let report = run(mode, args, &ctl).unwrap_or_else(|e| {
        Some(Report::Failed {
            error: format!("{e:#}"),
        })
    });
    if let Some(r) = report {
        let mut line = serde_json::to_vec(&r)?;
        line.push(b'\n');
        out.write_all(&line).context("cannot report to ssid")?;
    }
    Ok(())
}

fn value<'a>(args: &'a [String], flag: &str) -> Result<&'a str> {
    let i = args
        .iter()
        .position(|a| a == flag)
        .with_context(|| format!("{flag} missing"))?;
    args.get(i + 1)
        .map(String::as_str)
        .with_context(|| format!("{flag} needs a value"))
}

/// The key of the data stream, which the daemon sends first.
fn data_key(ctl_in: &mut dyn BufRead) -> Result<[u8; 32]> {
    let mut line = String::new();
    ctl_in
        .read_line(&mut line)
        .context("cannot read the data stream key from ssid")?;
    let start: migrate::Start =
        serde_json::from_str(line.trim()).context("bad start line from ssid")?;
    Ok(start.key)
}

/// A peer that stops moving the data stream fails the migration (see
/// [`migrate::framing::STALL_TIMEOUT`]).
fn limit_stalls(conn: &TcpStream) -> Result<()> {
    migrate::framing::limit_stalls(conn, migrate::framing::STALL_TIMEOUT)
        .context("cannot set timeouts on the data stream")
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

/// The user a helper acts for: `--uid U --gid G --groups G1,G2,...` in `args` (absent when
/// root asks for itself).
fn acting_for(args: &[String]) -> Result<Option<Holder>> {
    if !args.iter().any(|a| a == "--uid") {
        return Ok(None);
    }
    let uid: u32 = value(args, "--uid")?.parse().context("--uid")?;
    let gid: u32 = value(args, "--gid")?.parse().context("--gid")?;
    let groups: Vec<u32> = value(args, "--groups")?
        .split(',')
        .filter(|g| !g.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("--groups")?;
    Ok(Some(Holder { uid, gid, groups }))
}

/// Makes this helper (and the threads it starts) reach every file as `h` from now on: the
/// image directory a user named is created and written, or read, with the user's rights and
/// ownership, never root's. The helper keeps root's other powers (tracing the user's
/// processes, reading their /proc files, creating processes with chosen pids).
fn reach_files_as(h: &Holder) -> Result<()> {
    sys::reach_files_as(h.uid, h.gid, &h.groups)
        .with_context(|| format!("cannot take the file ids of uid {}", h.uid))
}

/// Loads the image in `dir` for the user a restart acts for (see [`image_trust`]): the
/// caller, who must own the image; for root, the image's owner unless that is root. Files are
/// reached as that user from then on, and an image asking for more than they hold is refused.
fn trusted_image(args: &[String], dir: &Path) -> Result<Image> {
    let caller = acting_for(args)?;
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
            image_trust::root_may_trust(&dir_meta).with_context(|| dir.display().to_string())?;
            None
        }
        None => {
            let h = Holder::of_user(uid, gid);
            reach_files_as(&h)?;
            Some(h)
        }
    };
    let img = Image::load(&pinned).with_context(|| dir.display().to_string())?;
    if let Some(h) = &holder {
        image_trust::check(&img, h).with_context(|| dir.display().to_string())?;
    }
    Ok(img)
}

/// Does the work of `mode`; the report to send last, if any (`migrate-out` reports as it goes).
fn run(mode: &str, args: &[String], ctl: &UnixStream) -> Result<Option<Report>> {
    let stdio = [4, 5, 6];
    match mode {
        "migrate-out" => {
            let pid: i32 = value(args, "--pid")?.parse().context("--pid")?;
            own_proc()?;
            let mut ctl_out = ctl.try_clone().context("control socket")?;
            let mut ctl_in = BufReader::new(ctl.try_clone().context("control socket")?);
            let key = data_key(&mut ctl_in)?;
            let conn = TcpStream::from(sys::inherited_fd(1));
            limit_stalls(&conn)?;
            let mut policy = migrate::Policy::default();
            if args.iter().any(|a| a == "--rounds") {
                policy.max_rounds = value(args, "--rounds")?.parse().context("--rounds")?;
            }
            migrate::outbound::run(pid, &policy, &conn, &key, &mut ctl_out, &mut ctl_in)?;
            Ok(None)
        }
        "migrate-in" => {
            let mut ctl_out = ctl.try_clone().context("control socket")?;
            let mut ctl_in = BufReader::new(ctl.try_clone().context("control socket")?);
            let key = data_key(&mut ctl_in)?;
            let conn = TcpStream::from(sys::inherited_fd(0));
            limit_stalls(&conn)?;
            // it reports the restored tree itself, before it tells the source
            migrate::inbound::run(&conn, &key, stdio, &mut ctl_out, &mut ctl_in)?;
            Ok(None)
        }
        "checkpoint-out" => {
            let pid: i32 = value(args, "--pid")?.parse().context("--pid")?;
            let dir = value(args, "--dir")?;
            own_proc()?;
            if let Some(h) = acting_for(args)? {
                reach_files_as(&h)?;
            }
            let leave = args.iter().any(|a| a == "--leave-running");
            Ok(Some(migrate::outbound::checkpoint_to_dir(
                pid,
                dir.as_ref(),
                leave,
            )?))
        }
        "restore-in" => {
            let dir = value(args, "--dir")?;
            let img = trusted_image(args, dir.as_ref())?;
            Ok(Some(migrate::inbound::restore_image(&img, stdio)?))
        }
        other => anyhow::bail!("unknown helper mode {other}"),
    }
}
