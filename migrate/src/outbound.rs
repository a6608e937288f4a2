//! The source side: pre-copy rounds while the tree runs, then the frozen tree's last image,
//! then the target's answer and the daemon's verdict.

use std::io::{BufRead, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use checkpoint::{AfterDump, DirSink, DumpOptions, PreCopy, StreamSink};

use crate::framing::{Direction, FrameReader, FrameWriter, Kind};
use crate::report::{Report, Verdict};
use crate::{io, Error, Result};

/// How long the source waits for the target's answer once the last image is sent.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// When to stop copying while the tree runs and freeze it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Rounds at most, the first full copy included; 0 is stop-and-copy (freeze at once and
    /// copy everything while frozen).
    pub max_rounds: u32,
    /// Freeze once a round copies at most this many page bytes.
    pub stop_bytes: u64,
    /// Freeze once a round copies more than this share (in percent) of the previous one: the
    /// tree writes about as fast as we copy, more rounds would not shrink the last delta.
    pub min_shrink_percent: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_rounds: 8,
            stop_bytes: 4 << 20,
            min_shrink_percent: 80,
        }
    }
}

fn say(ctl: &mut dyn Write, r: &Report) -> Result<()> {
    let mut line = serde_json::to_vec(r).map_err(|e| Error::Protocol(e.to_string()))?;
    line.push(b'\n');
    ctl.write_all(&line).map_err(io("report to the daemon"))?;
    ctl.flush().map_err(io("report to the daemon"))
}

/// Reads the daemon's verdict; a closed socket counts as an abort.
pub(crate) fn verdict(ctl_in: &mut dyn BufRead) -> Verdict {
    let mut line = String::new();
    match ctl_in.read_line(&mut line) {
        Ok(n) if n > 0 => serde_json::from_str(line.trim()).unwrap_or(Verdict::Abort),
        _ => Verdict::Abort,
    }
}

/// Waits up to `timeout` for `fd` to be readable (or closed).
pub(crate) fn readable(fd: impl AsFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
        .unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, ms), Ok(n) if n > 0)
}

/// The target's answer on the data stream: why it failed, or its report that the tree runs.
fn answer<R: Read>(back: &mut FrameReader<R>) -> Result<Report> {
    let (kind, payload) = back.recv().map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Unanswered("it closed the data stream".into())
        } else {
            Error::Unanswered(format!("read the target's answer: {e}"))
        }
    })?;
    match kind {
        Kind::Failed => Err(Error::Target(
            String::from_utf8_lossy(&payload).into_owned(),
        )),
        Kind::Restored => serde_json::from_slice(&payload)
            .map_err(|e| Error::Protocol(format!("bad report from the target: {e}"))),
        other => Err(Error::Protocol(format!("unexpected {other:?} frame"))),
    }
}

/// A failure to send: the target's own reason if it gave one (it stops reading when it fails).
fn send_failed<R: Read>(conn: impl AsFd, back: &mut FrameReader<R>, e: std::io::Error) -> Error {
    if readable(conn, Duration::from_secs(2)) {
        if let Err(why @ Error::Target(_)) = answer(back) {
            return why;
        }
    }
    Error::Io {
        what: "send an image",
        source: e,
    }
}

/// Migrates the tree under `pid` out: images to the target on `conn` (frames authenticated
/// with `key`), reports to `ctl_out`, the verdict from `ctl_in`. On commit the source tree is
/// killed; on abort (or any failure) it runs on.
pub fn run<C>(
    pid: i32,
    policy: &Policy,
    conn: &C,
    key: &[u8; 32],
    ctl_out: &mut dyn Write,
    ctl_in: &mut dyn BufRead,
) -> Result<Verdict>
where
    C: AsFd,
    for<'a> &'a C: Read + Write,
{
    let mut w = FrameWriter::new(conn, key, Direction::ToTarget);
    let mut back = FrameReader::new(conn, key, Direction::ToSource);
    let r = copy(pid, policy, conn, &mut w, &mut back, ctl_out, ctl_in);
    if let Err(e) = &r {
        // the target undoes what it did (it may be gone already)
        let _ = w.send(Kind::Failed, e.to_string().as_bytes());
    }
    r
}

fn copy<C>(
    pid: i32,
    policy: &Policy,
    conn: &C,
    w: &mut FrameWriter<&C>,
    back: &mut FrameReader<&C>,
    ctl_out: &mut dyn Write,
    ctl_in: &mut dyn BufRead,
) -> Result<Verdict>
where
    C: AsFd,
    for<'a> &'a C: Read + Write,
{
    let opts = DumpOptions {
        after: AfterDump::KeepFrozen,
        ..Default::default()
    };
    if policy.max_rounds == 0 {
        let frozen_at = Instant::now();
        let out = checkpoint::dump(pid, &opts, None, &mut StreamSink::new(&mut *w))?;
        return conclude(out, conn, w, back, frozen_at, ctl_out, ctl_in);
    }
    let t = Instant::now();
    let (mut pc, first) = PreCopy::start(pid, &mut StreamSink::new(&mut *w))?;
    end_round(conn, w, back)?;
    say(
        ctl_out,
        &Report::Round {
            n: 0,
            page_bytes: first.page_bytes,
            millis: t.elapsed().as_millis() as u64,
            sent: w.sent,
        },
    )?;
    let mut last = first.page_bytes;
    for n in 1..policy.max_rounds {
        if last <= policy.stop_bytes {
            break;
        }
        let t = Instant::now();
        let out = pc.round(&mut StreamSink::new(&mut *w), None)?;
        end_round(conn, w, back)?;
        say(
            ctl_out,
            &Report::Round {
                n,
                page_bytes: out.page_bytes,
                millis: t.elapsed().as_millis() as u64,
                sent: w.sent,
            },
        )?;
        let converging = out.page_bytes * 100 <= last * policy.min_shrink_percent;
        last = out.page_bytes;
        if !converging {
            break;
        }
    }
    let frozen_at = Instant::now();
    let out = pc.finish(&opts, &mut StreamSink::new(&mut *w))?;
    conclude(out, conn, w, back, frozen_at, ctl_out, ctl_in)
}

/// Ends a pre-copy image; a target that spoke meanwhile has failed.
fn end_round<C>(conn: &C, w: &mut FrameWriter<&C>, back: &mut FrameReader<&C>) -> Result<()>
where
    C: AsFd,
    for<'a> &'a C: Read + Write,
{
    if let Err(e) = w.end_image(Kind::RoundEnd) {
        return Err(send_failed(conn, back, e));
    }
    if readable(conn, Duration::ZERO) {
        answer(back)?;
        return Err(Error::Protocol(
            "the target answered before the last image".into(),
        ));
    }
    Ok(())
}

/// Sends the end of the frozen tree's last image, waits for the target, then kills or resumes
/// the tree as the daemon decides.
fn conclude<C>(
    out: checkpoint::DumpOutcome,
    conn: &C,
    w: &mut FrameWriter<&C>,
    back: &mut FrameReader<&C>,
    frozen_at: Instant,
    ctl_out: &mut dyn Write,
    ctl_in: &mut dyn BufRead,
) -> Result<Verdict>
where
    C: AsFd,
    for<'a> &'a C: Read + Write,
{
    let frozen = out
        .frozen
        .ok_or_else(|| Error::Protocol("the dump did not hand back the frozen tree".into()))?;
    if let Err(e) = w.end_image(Kind::FinalEnd) {
        frozen.resume()?;
        return Err(send_failed(conn, back, e));
    }
    say(
        ctl_out,
        &Report::Frozen {
            page_bytes: out.page_bytes,
            micros: frozen_at.elapsed().as_micros() as u64,
            sent: w.sent,
        },
    )?;
    let restored = if readable(conn, ANSWER_TIMEOUT) {
        answer(back)
    } else {
        Err(Error::Unanswered(format!(
            "none within {} s",
            ANSWER_TIMEOUT.as_secs()
        )))
    };
    let restored = match restored {
        Ok(r @ Report::Restored { .. }) => r,
        // the target said it failed: it undid what it built
        Err(e @ Error::Target(_)) => {
            frozen.resume()?;
            return Err(e);
        }
        // The target may run the tree or not: its daemon knows. Until ours has asked, the
        // tree stays frozen here.
        other => {
            let e = match other {
                Ok(r) => Error::Unanswered(format!("unexpected answer {r:?}")),
                Err(e) => e,
            };
            let asked = say(
                ctl_out,
                &Report::Unanswered {
                    error: e.to_string(),
                },
            );
            if let Err(said) = asked {
                frozen.resume()?;
                return Err(said);
            }
            return match verdict(ctl_in) {
                Verdict::Commit => {
                    frozen.kill()?;
                    Ok(Verdict::Commit)
                }
                Verdict::Abort => {
                    frozen.resume()?;
                    Err(e)
                }
            };
        }
    };
    say(ctl_out, &restored)?;
    let v = verdict(ctl_in);
    match v {
        Verdict::Commit => frozen.kill()?,
        Verdict::Abort => frozen.resume()?,
    }
    Ok(v)
}

/// Writes a checkpoint of the tree under `pid` to `dir`; the tree is killed unless
/// `leave_running`.
pub fn checkpoint_to_dir(pid: i32, dir: &Path, leave_running: bool) -> Result<Report> {
    let opts = DumpOptions {
        after: if leave_running {
            AfterDump::Resume
        } else {
            AfterDump::Kill
        },
        ..Default::default()
    };
    let out = checkpoint::dump(pid, &opts, None, &mut DirSink::new(dir)?)?;
    Ok(Report::Written {
        page_bytes: out.page_bytes,
        pids: out.pids,
    })
}
