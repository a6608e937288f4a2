//! The target side: apply each image as it arrives (the tree is built while the source still
//! runs, see `checkpoint::Restorer`), let the tree go with the last one, answer the source.

use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, RawFd};
use std::time::{Duration, Instant};

use checkpoint::{Image, RestoreOptions, Restored, Restorer};

use crate::framing::{Direction, FrameReader, FrameWriter, Kind};
use crate::outbound::{readable, verdict};
use crate::report::{Report, Verdict};
use crate::{io, Error, Result};

/// How long a failed target goes on reading the stream, so that the source reads why before
/// its writes fail.
const DRAIN_TIME: Duration = Duration::from_secs(30);
/// A failed target stops reading sooner once the source has sent nothing for this long (it
/// stalled, or it stopped sending and reads the reason).
const DRAIN_IDLE: Duration = Duration::from_secs(5);

/// Receives a tree on `conn` (frames authenticated with `key`) and restores it with `stdio` as
/// its outside standard streams; the tree's root becomes a child of the caller. Reports
/// `Restored` on `ctl_out` once the tree runs, and tells the source only when the daemon says
/// `Commit` on `ctl_in` (on `Abort` the tree is killed and the source told to resume).
pub fn run<C>(
    conn: &C,
    key: &[u8; 32],
    stdio: [RawFd; 3],
    ctl_out: &mut dyn Write,
    ctl_in: &mut dyn BufRead,
) -> Result<Report>
where
    C: AsFd + Sync,
    for<'a> &'a C: Read + Write,
{
    let mut r = FrameReader::new(conn, key, Direction::ToTarget);
    let mut back = FrameWriter::new(conn, key, Direction::ToSource);
    let got = receive(&mut r, stdio);
    let tree = match got {
        Ok(t) => t,
        Err(e) => {
            let _ = back.send(Kind::Failed, e.to_string().as_bytes());
            drain(conn);
            return Err(e);
        }
    };
    let report = Report::Restored {
        root: tree.root,
        pids: tree.pids.clone(),
        micros: tree.took.as_micros() as u64,
    };
    let mut line = serde_json::to_vec(&report).map_err(|e| Error::Protocol(e.to_string()))?;
    line.push(b'\n');
    ctl_out
        .write_all(&line)
        .map_err(io("report to the daemon"))?;
    match verdict(ctl_in) {
        Verdict::Commit => {
            // the tree runs here whatever happens to the source now
            let _ = back.send(Kind::Restored, &line);
            Ok(report)
        }
        Verdict::Abort => {
            for &p in tree.pids.iter().rev() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = tree.wait();
            let why = "this node could not take the process in";
            let _ = back.send(Kind::Failed, why.as_bytes());
            Err(Error::Protocol(why.into()))
        }
    }
}

/// Applies images until the final one; the tree runs when this returns.
fn receive<R: Read + Send>(r: &mut FrameReader<R>, stdio: [RawFd; 3]) -> Result<Restored> {
    let mut restorer = Restorer::new(RestoreOptions {
        stdio: Some(stdio),
        ..Default::default()
    })?;
    loop {
        let got = restorer.apply_stream(&mut *r)?;
        let end = r.finish_image().map_err(io("read the image stream"))?;
        match (got, end) {
            (None, Kind::RoundEnd) => {}
            (Some(tree), Kind::FinalEnd) => return Ok(tree),
            (got, end) => {
                return Err(Error::Protocol(format!(
                    "a {} image ended by {end:?}",
                    if got.is_some() { "final" } else { "pre-copy" }
                )))
            }
        }
    }
}

/// Reads and throws away what the source still sends, until it closes, pauses for
/// [`DRAIN_IDLE`], or for [`DRAIN_TIME`] at most.
fn drain<C>(conn: &C)
where
    C: AsFd,
    for<'a> &'a C: Read,
{
    let until = Instant::now() + DRAIN_TIME;
    let mut buf = vec![0u8; 1 << 16];
    let mut r = conn;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if !readable(conn, left.min(DRAIN_IDLE)) {
            return;
        }
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Restores `img` (a cluster checkpoint, loaded and judged by the caller) with `stdio` as the
/// tree's outside streams; the report to send.
pub fn restore_image(img: &Image, stdio: [RawFd; 3]) -> Result<Report> {
    let opts = RestoreOptions {
        stdio: Some(stdio),
        ..Default::default()
    };
    let restored = checkpoint::restore(img, &opts)?;
    Ok(Report::Restored {
        root: restored.root,
        pids: restored.pids,
        micros: restored.took.as_micros() as u64,
    })
}
