//! Progress of a dump or a restore, for callers that show it (`ssi dump` and `ssi restore` draw
//! a bar). A caller sets [`DumpOptions::progress`](crate::DumpOptions::progress) or
//! [`RestoreOptions::progress`](crate::RestoreOptions::progress); the drivers call it as they
//! go, from the thread that runs them:
//!
//! ```text
//!  Preparing (0, 0) -> Memory (done, total) ... -> Finishing (total, total)
//! ```
//! The bytes are those of page data (process memory and shared memory) written to the image,
//! or into the restored processes.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

/// Where a dump or a restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Dump: checking and freezing the tree, reading its state. Restore: checking the image,
    /// creating the processes.
    Preparing,
    /// Copying page data: bytes done of bytes in all.
    Memory,
    /// Restore: files, signals, threads, registers, then letting the tree go. Dump: ending
    /// the image, then killing, resuming or stopping the tree.
    Finishing,
}

/// A callback told the phase, the bytes of page data done and the bytes in all (0 until
/// [`Phase::Memory`]).
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(Phase, u64, u64) + Send + Sync>);

impl Progress {
    /// Wraps `f`.
    pub fn new(f: impl Fn(Phase, u64, u64) + Send + Sync + 'static) -> Progress {
        Progress(Arc::new(f))
    }

    pub(crate) fn report(&self, phase: Phase, done: u64, total: u64) {
        (self.0)(phase, done.min(total), total);
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress")
    }
}

/// Reports `phase` through `progress`, if there is one.
pub(crate) fn report(progress: Option<&Progress>, phase: Phase, done: u64, total: u64) {
    if let Some(p) = progress {
        p.report(phase, done, total);
    }
}

/// Bytes copied so far out of a known total, told to a [`Progress`] every [`STEP`] bytes.
#[derive(Debug)]
pub(crate) struct Meter<'a> {
    progress: Option<&'a Progress>,
    done: u64,
    total: u64,
    told: u64,
}

/// Bytes between two reports: often enough for a bar, rarely enough to cost nothing.
const STEP: u64 = 1 << 20;

impl<'a> Meter<'a> {
    /// A meter of `total` bytes; reports the start of [`Phase::Memory`].
    pub(crate) fn start(progress: Option<&'a Progress>, total: u64) -> Meter<'a> {
        report(progress, Phase::Memory, 0, total);
        Meter {
            progress,
            done: 0,
            total,
            told: 0,
        }
    }

    /// Counts `n` more bytes.
    pub(crate) fn add(&mut self, n: u64) {
        self.done += n;
        if self.done >= self.told + STEP {
            self.told = self.done;
            report(self.progress, Phase::Memory, self.done, self.total);
        }
    }

    /// The copy is over: reports [`Phase::Finishing`].
    pub(crate) fn finish(self) {
        report(self.progress, Phase::Finishing, self.total, self.total);
    }

    /// `w`, counting the bytes written through it.
    pub(crate) fn writer<'m, W: Write + ?Sized>(&'m mut self, w: &'m mut W) -> Metered<'m, 'a, W> {
        Metered { w, meter: self }
    }
}

/// A writer that counts what passes into a [`Meter`] (record headers included: a few bytes
/// per record of up to megabytes of pages).
pub(crate) struct Metered<'m, 'a, W: Write + ?Sized> {
    w: &'m mut W,
    meter: &'m mut Meter<'a>,
}

impl<W: Write + ?Sized> Write for Metered<'_, '_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.w.write(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Seen = Arc<Mutex<Vec<(Phase, u64, u64)>>>;

    fn recorder() -> (Progress, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let p = Progress::new(move |ph, d, t| s.lock().expect("lock").push((ph, d, t)));
        (p, seen)
    }

    #[test]
    fn a_meter_reports_every_step_and_never_past_the_total() {
        let (p, seen) = recorder();
        let total = 3 * STEP;
        let mut m = Meter::start(Some(&p), total);
        let mut sink = Vec::new();
        {
            let mut w = m.writer(&mut sink);
            for _ in 0..7 {
                w.write_all(&vec![0u8; (STEP / 2) as usize]).expect("write");
            }
        }
        m.finish();
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(sink.len() as u64, 7 * STEP / 2);
        assert_eq!(
            seen,
            [
                (Phase::Memory, 0, total),
                (Phase::Memory, STEP, total),
                (Phase::Memory, 2 * STEP, total),
                (Phase::Memory, 3 * STEP, total),
                // 3.5 steps written (headers counted): capped at the total
                (Phase::Finishing, total, total),
            ]
        );
    }

    #[test]
    fn no_progress_no_reports() {
        let mut m = Meter::start(None, 10);
        m.add(STEP * 2);
        m.finish();
    }
}
