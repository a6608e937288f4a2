//! The source helper: it carries out its daemon's orders on the tree (pre-copy rounds while
//! it runs, the freeze and last image, then killing or resuming the frozen copy) and reports
//! each step. The decisions are the daemon's (see [`crate::protocol::Source`]).

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use checkpoint::{
    AfterDump, DirSink, DumpOptions, FrozenTree, Periodic, PreCopy, SealKey, StreamSink,
};

use crate::control::{self, Order, Report};
use crate::framing::{Direction, FrameReader, FrameWriter, Kind};
use crate::protocol::Verdict;
use crate::{Error, Result};

/// Waits up to `timeout` for `fd` to be readable (or closed).
pub(crate) fn readable(fd: impl AsFd, timeout: Duration) -> bool {
    wait_readable(&[fd.as_fd()], timeout).is_some()
}

/// Waits up to `timeout` for one of `fds` to be readable (or closed): its index.
fn wait_readable(fds: &[std::os::fd::BorrowedFd<'_>], timeout: Duration) -> Option<usize> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
        .unwrap_or(PollTimeout::MAX);
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    match poll(&mut polled, ms) {
        Ok(n) if n > 0 => polled.iter().position(|p| {
            p.revents().is_some_and(|r| {
                !(r & (PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)).is_empty()
            })
        }),
        _ => None,
    }
}

/// The target's word on the data stream: it holds the tree (the restore's time), or why it
/// failed.
fn answer<R: Read>(back: &mut FrameReader<R>) -> Result<u64> {
    let (kind, payload) = back.recv().map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Target("it closed the data stream".into())
        } else {
            Error::Target(format!("no word from it: {e}"))
        }
    })?;
    match kind {
        Kind::Failed => Err(Error::Target(
            String::from_utf8_lossy(&payload).into_owned(),
        )),
        Kind::Prepared => {
            let micros: [u8; 8] = payload
                .try_into()
                .map_err(|_| Error::Protocol("a Prepared frame of the wrong size".into()))?;
            Ok(u64::from_le_bytes(micros))
        }
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

/// Where the copy stands.
enum Stage {
    /// Not started: the first round (or the freeze, with no pre-copy) starts it.
    Idle,
    /// Pre-copy rounds under way.
    Copying(PreCopy),
    /// Frozen, last image sent.
    Frozen(FrozenTree),
}

/// The data stream and the control socket of a source helper.
struct Out<'a, C: AsFd>
where
    for<'b> &'b C: Read + std::io::Write,
{
    pid: i32,
    conn: &'a C,
    w: FrameWriter<&'a C>,
    back: FrameReader<&'a C>,
    ctl: &'a UnixStream,
    rounds: u32,
}

/// Migrates the tree under `pid` out on `conn` (frames authenticated with `key`), by the
/// orders read on `ctl`, where it reports each step. On `Verdict(Commit)` the frozen copy is
/// killed; on `Verdict(Abort)`, on any failure, or if the daemon goes away, it runs on.
pub fn run<C>(pid: i32, conn: &C, key: &[u8; 32], ctl: &UnixStream) -> Result<()>
where
    C: AsFd,
    for<'a> &'a C: Read + std::io::Write,
{
    let mut out = Out {
        pid,
        conn,
        w: FrameWriter::new(conn, key, Direction::ToTarget),
        back: FrameReader::new(conn, key, Direction::ToSource),
        ctl,
        rounds: 0,
    };
    let mut copy = Stage::Idle;
    let r = out.obey(&mut copy);
    if let Err(e) = &r {
        // the target undoes what it did (it may be gone already); a frozen copy resumes
        let _ = out.w.send(Kind::Failed, e.to_string().as_bytes());
        if let Stage::Frozen(frozen) = copy {
            frozen.resume()?;
        }
    }
    r
}

impl<C: AsFd> Out<'_, C>
where
    for<'b> &'b C: Read + std::io::Write,
{
    fn report(&mut self, r: &Report) -> Result<()> {
        control::send(&mut self.ctl, r)
    }

    /// Carries out orders until the verdict.
    fn obey(&mut self, copy: &mut Stage) -> Result<()> {
        loop {
            let order = control::recv::<Order>(&mut self.ctl)?;
            match (order, std::mem::replace(copy, Stage::Idle)) {
                (Some(Order::Round), Stage::Idle) => {
                    *copy = Stage::Copying(self.first_round()?);
                }
                (Some(Order::Round), Stage::Copying(mut pc)) => {
                    self.round(&mut pc)?;
                    *copy = Stage::Copying(pc);
                }
                (Some(Order::Freeze), state @ (Stage::Idle | Stage::Copying(_))) => {
                    let pc = match state {
                        Stage::Copying(pc) => Some(pc),
                        _ => None,
                    };
                    *copy = Stage::Frozen(self.freeze(pc)?);
                    self.wait_answer()?;
                }
                (Some(Order::Verdict(Verdict::Commit)), Stage::Frozen(frozen)) => {
                    // SIGKILL first: from here the copy can never run again, whatever happens
                    // to this helper; reaping it can come after the report
                    for &p in frozen.pids() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(p),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    self.report(&Report::Killed)?;
                    frozen.kill()?;
                    return Ok(());
                }
                // the daemon stops the migration, or went away: the tree runs on
                (Some(Order::Verdict(Verdict::Abort)) | None, state) => {
                    let _ = self
                        .w
                        .send(Kind::Failed, b"the source resumed its copy of the process");
                    if let Stage::Frozen(frozen) = state {
                        frozen.resume()?;
                    }
                    return Ok(());
                }
                (Some(other), state) => {
                    *copy = state;
                    return Err(Error::Protocol(format!("unexpected order {other:?}")));
                }
            }
        }
    }

    fn first_round(&mut self) -> Result<PreCopy> {
        let t = Instant::now();
        let (pc, first) = PreCopy::start(self.pid, &mut StreamSink::new(&mut self.w))?;
        self.end_round(first.page_bytes, t)?;
        Ok(pc)
    }

    fn round(&mut self, pc: &mut PreCopy) -> Result<()> {
        let t = Instant::now();
        let out = pc.round(&mut StreamSink::new(&mut self.w), None)?;
        self.end_round(out.page_bytes, t)
    }

    /// Ends a pre-copy image (a target that spoke meanwhile has failed) and reports it.
    fn end_round(&mut self, page_bytes: u64, t: Instant) -> Result<()> {
        if let Err(e) = self.w.end_image(Kind::RoundEnd) {
            return Err(send_failed(self.conn, &mut self.back, e));
        }
        if readable(self.conn, Duration::ZERO) {
            answer(&mut self.back)?;
            return Err(Error::Protocol(
                "the target answered before the last image".into(),
            ));
        }
        self.rounds += 1;
        let r = Report::Round {
            page_bytes,
            millis: t.elapsed().as_millis() as u64,
            sent: self.w.sent,
        };
        self.report(&r)
    }

    /// Freezes the tree and sends its last image (all of it without pre-copy); the tree stays
    /// frozen.
    fn freeze(&mut self, pc: Option<PreCopy>) -> Result<FrozenTree> {
        let opts = DumpOptions {
            after: AfterDump::KeepFrozen,
            ..Default::default()
        };
        let frozen_at = Instant::now();
        let out = match pc {
            Some(pc) => pc.finish(&opts, &mut StreamSink::new(&mut self.w))?,
            None => checkpoint::dump(self.pid, &opts, None, &mut StreamSink::new(&mut self.w))?,
        };
        let frozen = out
            .frozen
            .ok_or_else(|| Error::Protocol("the dump did not hand back the frozen tree".into()))?;
        if let Err(e) = self.w.end_image(Kind::FinalEnd) {
            frozen.resume()?;
            return Err(send_failed(self.conn, &mut self.back, e));
        }
        let r = Report::Frozen {
            page_bytes: out.page_bytes,
            micros: frozen_at.elapsed().as_micros() as u64,
            sent: self.w.sent,
            pids: frozen.pids().to_vec(),
        };
        if let Err(e) = self.report(&r) {
            frozen.resume()?;
            return Err(e);
        }
        Ok(frozen)
    }

    /// After the last image: the target's word, reported, unless the daemon speaks first (its
    /// verdict is then read by `obey`).
    fn wait_answer(&mut self) -> Result<()> {
        let fds = [self.conn.as_fd(), self.ctl.as_fd()];
        if wait_readable(&fds, Duration::MAX) != Some(0) {
            return Ok(());
        }
        let r = match answer(&mut self.back) {
            Ok(micros) => Report::TargetHolds { micros },
            Err(e) => Report::NoAnswer(e.to_string()),
        };
        self.report(&r)
    }
}

/// Writes a checkpoint of the tree under `pid` to `dir`, sealed with `seal` for user `owner`
/// (0: root); the tree is killed unless `leave_running`.
pub fn checkpoint_to_dir(
    pid: i32,
    dir: &Path,
    leave_running: bool,
    seal: &SealKey,
    owner: u32,
) -> Result<Report> {
    let opts = DumpOptions {
        after: if leave_running {
            AfterDump::Resume
        } else {
            AfterDump::Kill
        },
        ..Default::default()
    };
    let mut sink = DirSink::new(dir)?.seal(seal, owner, None)?;
    let out = checkpoint::dump(pid, &opts, None, &mut sink)?;
    Ok(Report::Written {
        page_bytes: out.page_bytes,
        pids: out.pids,
    })
}

/// Periodic checkpoints of the tree under `pid`, one per [`Order::Checkpoint`] read on `ctl`,
/// each answered by a report, until the daemon closes the socket. A failed image is reported
/// and removed; the next order starts a new chain.
pub fn periodic(pid: i32, seal: &SealKey, ctl: &UnixStream) -> Result<()> {
    let mut per = Periodic::new(pid);
    // The seal tag of the last image written: the next image of the chain extends it.
    let mut last: Option<[u8; 32]> = None;
    loop {
        let order: Option<Order> = control::recv(&mut &*ctl)?;
        let (dir, parent) = match order {
            None => return Ok(()),
            Some(Order::Checkpoint { dir, parent }) => (dir, parent),
            Some(other) => {
                return Err(Error::Protocol(format!(
                    "periodic checkpoints: unexpected order {other:?}"
                )))
            }
        };
        let after = if parent.is_some() { last } else { None };
        let report = match periodic_image(&mut per, &dir, parent, seal, after) {
            Ok((r, tag)) => {
                last = Some(tag);
                r
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                per = Periodic::new(pid);
                last = None;
                Report::Failed(e.to_string())
            }
        };
        control::send(&mut &*ctl, &report)?;
    }
}

/// One periodic image into `dir`, sealed as root's after the image whose seal's tag is
/// `after`, made durable once the tree runs again; gives the report and the new seal's tag.
fn periodic_image(
    per: &mut Periodic,
    dir: &Path,
    parent: Option<String>,
    seal: &SealKey,
    after: Option<[u8; 32]>,
) -> Result<(Report, [u8; 32])> {
    let mut sink = DirSink::new(dir)?.seal_after(seal, 0, after);
    let out = per.checkpoint(&mut sink, parent)?;
    sync_dir(dir)?;
    let tag = sink
        .tag()
        .ok_or_else(|| Error::Protocol("a periodic image was written without its seal".into()))?;
    Ok((
        Report::Checkpointed {
            page_bytes: out.page_bytes,
            parent_bytes: out.parent_bytes,
            freeze_micros: u64::try_from(out.frozen_for.as_micros()).unwrap_or(u64::MAX),
            pids: out.pids,
        },
        tag,
    ))
}

/// Syncs every file of `dir`, then `dir` itself (its entries).
fn sync_dir(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(crate::io("read the image directory"))? {
        let e = e.map_err(crate::io("read the image directory"))?;
        std::fs::File::open(e.path())
            .and_then(|f| f.sync_all())
            .map_err(crate::io("sync an image file"))?;
    }
    match std::fs::File::open(dir).and_then(|f| f.sync_all()) {
        // a file system without fsync of directories (some FUSE ones) makes entries durable
        // as it creates them
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EINVAL | nix::libc::ENOSYS)
            ) =>
        {
            Ok(())
        }
        r => r.map_err(crate::io("sync the image directory")),
    }
}
