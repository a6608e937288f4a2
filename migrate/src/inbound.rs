//! The target helper: it applies each image as it arrives (the tree is built while the source
//! still runs, see `checkpoint::Restorer`), holds the whole tree stopped after the last one,
//! and lets it go only when its daemon says so (the source committed, see
//! [`crate::protocol::Target`]).

use std::io::{Read, Write};
use std::os::fd::{AsFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use checkpoint::{Bound, Image, RestoreOptions, Restored, Restorer};

use crate::control::{self, Order, Report};
use crate::framing::{Direction, FrameReader, FrameWriter, Kind};
use crate::outbound::readable;
use crate::{io, Error, Result};

/// How long a failed target goes on reading the stream, so that the source reads why before
/// its writes fail.
const DRAIN_TIME: Duration = Duration::from_secs(30);
/// A failed target stops reading sooner once the source has sent nothing for this long (it
/// stalled, or it stopped sending and reads the reason).
const DRAIN_IDLE: Duration = Duration::from_secs(5);

/// Receives a tree on `conn` (frames authenticated with `key`) and restores it with `stdio` as
/// its outside standard streams; the tree's root becomes a child of the caller. Reports `Held`
/// on `ctl` once the whole tree is restored and stopped, then carries out the daemon's orders:
/// `Announce` (tell the source), `Release` (let it go), `Discard` (kill it). A daemon that
/// goes away discards it. A process asking for more than `bound` is refused before it is
/// created.
pub fn run<C>(
    conn: &C,
    key: &[u8; 32],
    bound: Option<Bound>,
    stdio: [RawFd; 3],
    ctl: &UnixStream,
) -> Result<()>
where
    C: AsFd + Sync,
    for<'a> &'a C: Read + Write,
{
    let mut r = FrameReader::new(conn, key, Direction::ToTarget);
    let mut back = FrameWriter::new(conn, key, Direction::ToSource);
    let mut restorer = Restorer::new(RestoreOptions {
        stdio: Some(stdio),
        bound,
        ..Default::default()
    })?;
    restorer.hold();
    let tree = match receive(&mut restorer, &mut r) {
        Ok(t) => t,
        Err(e) => {
            let _ = back.send(Kind::Failed, e.to_string().as_bytes());
            drain(conn);
            return Err(e);
        }
    };
    let micros = tree.took.as_micros() as u64;
    let mut ctl_w = ctl;
    control::send(
        &mut ctl_w,
        &Report::Held {
            root: tree.root,
            pids: tree.pids.clone(),
            micros,
        },
    )?;
    let mut ctl_r = ctl;
    loop {
        match control::recv::<Order>(&mut ctl_r)? {
            Some(Order::Announce) => {
                // a broken stream is the source's to notice: it decides without our word
                let _ = back.send(Kind::Prepared, &micros.to_le_bytes());
            }
            Some(Order::Release) => {
                restorer.release()?;
                return control::send(&mut ctl_w, &Report::Released);
            }
            Some(Order::Discard(why)) => {
                drop(restorer);
                let _ = back.send(Kind::Failed, why.as_bytes());
                return Err(Error::Protocol(why));
            }
            None => {
                return Err(Error::Protocol(
                    "ssid went away: the restored tree is discarded".into(),
                ))
            }
            Some(other) => return Err(Error::Protocol(format!("unexpected order {other:?}"))),
        }
    }
}

/// Applies images until the final one; the whole tree is held when this returns.
fn receive<R: Read + Send>(restorer: &mut Restorer, r: &mut FrameReader<R>) -> Result<Restored> {
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
/// tree's outside streams, bounded by `bound`; the report to send.
pub fn restore_image(img: &Image, stdio: [RawFd; 3], bound: Option<Bound>) -> Result<Report> {
    let opts = RestoreOptions {
        stdio: Some(stdio),
        bound,
        ..Default::default()
    };
    let restored = checkpoint::restore(img, &opts)?;
    Ok(Report::Restored {
        root: restored.root,
        pids: restored.pids,
        micros: restored.took.as_micros() as u64,
    })
}
