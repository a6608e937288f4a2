//! The source side: pre-copy rounds while the tree runs, then the frozen tree's last image,
//! then the verdict.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

use checkpoint::{AfterDump, DirSink, DumpOptions, PreCopy, StreamSink};

use crate::framing::{ChunkWriter, FINAL, ROUND};
use crate::report::{Report, Verdict};
use crate::{io, Error, Result};

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
fn verdict(ctl_in: &mut dyn BufRead) -> Verdict {
    let mut line = String::new();
    match ctl_in.read_line(&mut line) {
        Ok(n) if n > 0 => serde_json::from_str(line.trim()).unwrap_or(Verdict::Abort),
        _ => Verdict::Abort,
    }
}

/// Migrates the tree under `pid` out: images to `data`, reports to `ctl_out`, the verdict from
/// `ctl_in`. On commit the source tree is killed; on abort (or any failure) it runs on.
pub fn run(
    pid: i32,
    policy: &Policy,
    data: impl Write,
    ctl_out: &mut dyn Write,
    ctl_in: &mut dyn BufRead,
) -> Result<Verdict> {
    let mut w = ChunkWriter::new(data);
    let opts = DumpOptions {
        after: AfterDump::KeepFrozen,
        ..Default::default()
    };
    if policy.max_rounds == 0 {
        let frozen_at = Instant::now();
        let out = checkpoint::dump(pid, &opts, None, &mut StreamSink::new(&mut w))?;
        return conclude(out, &mut w, frozen_at, ctl_out, ctl_in);
    }
    let t = Instant::now();
    let (mut pc, first) = PreCopy::start(pid, &mut StreamSink::new(&mut w))?;
    w.end_image(ROUND).map_err(io("send an image"))?;
    say(
        ctl_out,
        &Report::Round {
            n: 0,
            page_bytes: first.page_bytes,
            millis: t.elapsed().as_millis() as u64,
        },
    )?;
    let mut last = first.page_bytes;
    for n in 1..policy.max_rounds {
        if last <= policy.stop_bytes {
            break;
        }
        let t = Instant::now();
        let out = pc.round(&mut StreamSink::new(&mut w), None)?;
        w.end_image(ROUND).map_err(io("send an image"))?;
        say(
            ctl_out,
            &Report::Round {
                n,
                page_bytes: out.page_bytes,
                millis: t.elapsed().as_millis() as u64,
            },
        )?;
        let converging = out.page_bytes * 100 <= last * policy.min_shrink_percent;
        last = out.page_bytes;
        if !converging {
            break;
        }
    }
    let frozen_at = Instant::now();
    let out = pc.finish(&opts, &mut StreamSink::new(&mut w))?;
    conclude(out, &mut w, frozen_at, ctl_out, ctl_in)
}

/// Sends the last image of the frozen tree, then kills or resumes it as the daemon decides.
fn conclude(
    out: checkpoint::DumpOutcome,
    w: &mut ChunkWriter<impl Write>,
    frozen_at: Instant,
    ctl_out: &mut dyn Write,
    ctl_in: &mut dyn BufRead,
) -> Result<Verdict> {
    let frozen = out
        .frozen
        .ok_or_else(|| Error::Protocol("the dump did not hand back the frozen tree".into()))?;
    let sent = w.end_image(FINAL).map_err(io("send the last image"));
    if let Err(e) = sent {
        frozen.resume()?;
        return Err(e);
    }
    say(
        ctl_out,
        &Report::Frozen {
            page_bytes: out.page_bytes,
            micros: frozen_at.elapsed().as_micros() as u64,
        },
    )?;
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
