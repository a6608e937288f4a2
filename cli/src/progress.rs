//! Progress bars of `ssi dump` and `ssi restore` (indicatif): the phase, the bytes of memory
//! copied, the rate. Drawn only when stdout is a terminal; in a pipe or a file the output stays
//! the plain summary line.

use std::io::IsTerminal;

use checkpoint::{Phase, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What each phase is called on the bar, for one command.
#[derive(Debug, Clone, Copy)]
pub struct Words {
    /// [`Phase::Preparing`].
    pub preparing: &'static str,
    /// [`Phase::Memory`].
    pub memory: &'static str,
}

/// `ssi dump`.
pub const DUMP: Words = Words {
    preparing: "freezing",
    memory: "saving memory",
};

/// `ssi restore`.
pub const RESTORE: Words = Words {
    preparing: "checking",
    memory: "restoring memory",
};

/// A bar on stdout fed by the checkpoint crate's progress callback, or none when stdout is not a
/// terminal. The bar clears itself when the memory is done: what follows (the summary line, or
/// the restored programs' own output) gets a clean terminal.
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
    words: Words,
}

impl Bar {
    /// A bar, when stdout is a terminal.
    pub fn on_terminal(words: Words) -> Option<Bar> {
        if !std::io::stdout().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
        let style = ProgressStyle::with_template(
            "{msg:16} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(words.preparing);
        bar.tick();
        Some(Bar { bar, words })
    }

    /// The callback to give the checkpoint crate.
    pub fn progress(&self) -> Progress {
        let (bar, words) = (self.bar.clone(), self.words);
        Progress::new(move |phase, done, total| feed(&bar, words, phase, done, total))
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // also on errors: the error line must not land in the middle of a bar
        self.bar.finish_and_clear();
    }
}

fn feed(bar: &ProgressBar, words: Words, phase: Phase, done: u64, total: u64) {
    match phase {
        Phase::Preparing => bar.set_message(words.preparing),
        Phase::Memory => {
            bar.set_message(words.memory);
            bar.set_length(total);
            bar.set_position(done);
        }
        Phase::Finishing => bar.finish_and_clear(),
    }
}
