//! Dump: check, freeze, collect, write. The driver decides the order; what each kind of
//! state is and how it is read lives in `state/`.
//!
//! ```text
//!  check     every part's refusals, from /proc, nothing frozen yet     (check.rs, state::check)
//!  freeze    ptrace seize + interrupt every thread, until the set is stable     (freeze.rs)
//!  collect   per process: its parts, by injected calls and from /proc; its memory (present
//!            pages minus those unchanged since the parent image); the tree's open files and
//!            shared memory; the inventory                                     (collect.rs)
//!  write     inventory and shared objects, shared memory, each process and its pages
//!                                                                               (write.rs)
//!  after     kill, resume, stop, or keep the tree frozen for the caller
//! ```
//! A pre-dump saves memory only and lets the tree run while its pages are copied: tracking was
//! armed first, so a page changed during the copy is saved again by the next dump.

mod check;
mod collect;
pub(crate) mod freeze;
pub(crate) mod parasite;
mod session;
mod write;

use std::collections::HashMap;
use std::time::Instant;

pub use freeze::FrozenTree;

use crate::error::Result;
use crate::image::{Image, ImageSink};
use crate::progress::{self, Phase, Progress};
use crate::vdso;
use session::Session;

/// What happens to the tree once its image is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AfterDump {
    /// Kill every process (like CRIU's default).
    #[default]
    Kill,
    /// Let it run on (`--leave-running`).
    Resume,
    /// Leave it stopped with SIGSTOP (resume with SIGCONT); survives the dumper's exit.
    Stop,
    /// Keep it frozen under ptrace and hand it back in [`DumpOutcome::frozen`], for the caller
    /// to kill once the image is safely restored elsewhere, or to resume.
    KeepFrozen,
}

/// How to dump.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// What happens to the tree afterwards (ignored by pre-dumps, which always resume).
    pub after: AfterDump,
    /// Save memory only and start tracking writes; the tree keeps running.
    pub pre_dump: bool,
    /// For a pre-dump: leave the tracker (a userfaultfd) in the process itself, at a high fd
    /// number, so that a dump made by another process later can take it (the `ssi` CLI does).
    /// Otherwise the tracker lives in the calling process (see [`PreCopy`]).
    pub tracker_in_process: bool,
    /// Where the parent image lies relative to this image's directory (written into the
    /// inventory so that `Image::load` finds the chain).
    pub parent_path: Option<String>,
    /// Told how the dump goes (see [`crate::progress`]).
    pub progress: Option<Progress>,
}

/// What a dump did.
#[derive(Debug)]
pub struct DumpOutcome {
    /// Id of the image written.
    pub image_id: u64,
    /// Pids of the tree, parents first.
    pub pids: Vec<i32>,
    /// Bytes of page data written (process pages and shared memory).
    pub page_bytes: u64,
    /// Bytes of page data left in the parent chain.
    pub parent_bytes: u64,
    /// How long the tree was stopped: from the freeze to the end of the image (for a pre-dump,
    /// until it was let go, before its memory was copied). With [`AfterDump::KeepFrozen`] the
    /// tree is still stopped; this is the time until the image was complete.
    pub frozen_for: std::time::Duration,
    /// The frozen tree, with [`AfterDump::KeepFrozen`].
    pub frozen: Option<FrozenTree>,
}

/// Dumps the tree under `pid` into `sink`. With `prev`, only pages changed since that image
/// (a pre-dump of the same tree) are written; the rest are referenced.
pub fn dump(
    pid: i32,
    opts: &DumpOptions,
    prev: Option<&Image>,
    sink: &mut dyn ImageSink,
) -> Result<DumpOutcome> {
    let mut session = Session::default();
    if let Some(p) = prev {
        session.adopt_parent(p)?;
    }
    run(pid, opts, &mut session, sink)
}

/// Iterative pre-copy of a live tree: a first full copy of memory while it runs, rounds that
/// copy what changed since, then a final dump of the frozen tree with the last changes.
/// Each call writes one image whose parent is the previous one; restore the last with the
/// chain (`Image::read_stream(r, Some(previous))` for streams, `Image::load` for directories).
///
/// Trackers live in this value: it must stay on the thread that created it (ptrace).
#[derive(Debug)]
pub struct PreCopy {
    root: i32,
    session: Session,
}

impl PreCopy {
    /// Starts tracking writes in every process of the tree and writes a first copy of memory.
    pub fn start(pid: i32, sink: &mut dyn ImageSink) -> Result<(PreCopy, DumpOutcome)> {
        let mut pc = PreCopy {
            root: pid,
            session: Session::default(),
        };
        let out = pc.round(sink, None)?;
        Ok((pc, out))
    }

    /// Writes the pages changed since the previous round (the tree keeps running).
    pub fn round(
        &mut self,
        sink: &mut dyn ImageSink,
        parent_path: Option<String>,
    ) -> Result<DumpOutcome> {
        let opts = DumpOptions {
            pre_dump: true,
            parent_path,
            ..Default::default()
        };
        run(self.root, &opts, &mut self.session, sink)
    }

    /// Freezes the tree and writes the full image with the pages changed since the last round.
    pub fn finish(mut self, opts: &DumpOptions, sink: &mut dyn ImageSink) -> Result<DumpOutcome> {
        let opts = DumpOptions {
            pre_dump: false,
            ..opts.clone()
        };
        run(self.root, &opts, &mut self.session, sink)
    }
}

/// Periodic checkpoints of a running tree (fault tolerance): each call freezes the tree,
/// writes a whole image (restorable on its own with its parents) and lets the tree run on;
/// after the first, an image holds only the pages written since the previous one, the others
/// being referenced in its parent. Tracking lasts as long as this value.
///
/// Trackers live in this value: it must stay on the thread that created it (ptrace).
#[derive(Debug)]
pub struct Periodic {
    root: i32,
    session: Session,
}

impl Periodic {
    /// Checkpoints of the tree under `pid` (nothing is done before the first).
    pub fn new(pid: i32) -> Periodic {
        Periodic {
            root: pid,
            session: Session {
                keep_tracking: true,
                ..Session::default()
            },
        }
    }

    /// Writes the next image of the chain into `sink` and lets the tree run on. With
    /// `parent_path` (where the previous image lies, relative to this one), only the pages
    /// written since the previous image are written; without, a new chain starts and every
    /// present page is written.
    pub fn checkpoint(
        &mut self,
        sink: &mut dyn ImageSink,
        parent_path: Option<String>,
    ) -> Result<DumpOutcome> {
        if parent_path.is_none() || self.session.parent_id.is_none() {
            self.session.rebase();
        }
        let chained = self.session.parent_id.is_some();
        let opts = DumpOptions {
            after: AfterDump::Resume,
            parent_path: parent_path.filter(|_| chained),
            ..Default::default()
        };
        run(self.root, &opts, &mut self.session, sink)
    }
}

fn run(
    root: i32,
    opts: &DumpOptions,
    session: &mut Session,
    sink: &mut dyn ImageSink,
) -> Result<DumpOutcome> {
    progress::report(opts.progress.as_ref(), Phase::Preparing, 0, 0);
    let local = vdso::local()?;
    let (frozen, left_out) = check::freeze_settled(root, opts, session)?;
    let frozen_at = Instant::now();
    let pids: Vec<i32> = frozen
        .pids()
        .iter()
        .copied()
        .filter(|p| !left_out.contains(p))
        .collect();
    session.forget_changed(&pids);
    let mut tree = collect::tree(&frozen, &pids, opts, session, &local)?;
    let repaired = std::mem::take(&mut tree.repaired);
    // A pre-dump lets the tree run while its memory is copied.
    let (frozen, frozen_for) = if opts.pre_dump {
        frozen.resume()?;
        (None, Some(frozen_at.elapsed()))
    } else {
        (Some(frozen), None)
    };
    // bound after the tree, so that on an early return its sockets leave repair mode before
    // the tree runs again
    let repaired = repaired;
    let page_bytes = write::image(&tree, sink, opts.pre_dump, opts.progress.as_ref())?;
    let image_id = tree.inventory.image_id;
    let mut present = HashMap::new();
    let mut parent_bytes = 0;
    for c in tree.procs {
        parent_bytes += c.plan.parent_bytes;
        present.insert(c.image.pid, c.plan.present);
    }
    session.image_written(image_id, present);
    let mut out = DumpOutcome {
        image_id,
        pids,
        page_bytes,
        parent_bytes,
        frozen_for: frozen_for.unwrap_or_else(|| frozen_at.elapsed()),
        frozen: None,
    };
    if let Some(f) = frozen {
        if matches!(opts.after, AfterDump::Kill) {
            // its connections end silently: their sockets are closed in repair mode
            f.kill()?;
            repaired.close_in_repair();
        } else {
            drop(repaired); // back to normal before the tree runs
            out.frozen = after(f, opts.after)?;
        }
    }
    if !opts.pre_dump && !session.keep_tracking {
        // Tracking ends with the final dump. Closing a userfaultfd write-unprotects every page
        // it covers, so it is done last, when the tree is already gone or running again.
        session.trackers.clear();
    }
    Ok(out)
}

/// Kills, resumes or stops the frozen tree, or hands it back.
fn after(f: FrozenTree, what: AfterDump) -> Result<Option<FrozenTree>> {
    match what {
        AfterDump::Kill => f.kill()?,
        AfterDump::Resume => f.resume()?,
        AfterDump::Stop => {
            for &p in f.pids() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGSTOP,
                );
            }
            f.resume()?
        }
        AfterDump::KeepFrozen => return Ok(Some(f)),
    }
    Ok(None)
}
