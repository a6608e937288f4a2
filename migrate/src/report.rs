//! What a helper tells its daemon (one JSON object per line on the control socket), and what
//! the daemon answers.

use serde::{Deserialize, Serialize};

/// A helper's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// A pre-copy round was sent while the tree ran.
    Round {
        /// Round number (0: the first full copy).
        n: u32,
        /// Page bytes in this round.
        page_bytes: u64,
        /// Time the round took.
        millis: u64,
        /// Bytes sent on the data stream so far, framing included.
        sent: u64,
    },
    /// The tree is frozen and its last image sent; it waits for the target.
    Frozen {
        /// Page bytes in the last image.
        page_bytes: u64,
        /// Time from the freeze to the end of the last image, in microseconds.
        micros: u64,
        /// Bytes sent on the data stream in all, framing included.
        sent: u64,
    },
    /// An image was written to a directory (cluster checkpoint).
    Written {
        /// Page bytes written.
        page_bytes: u64,
        /// Pids of the tree.
        pids: Vec<i32>,
    },
    /// The tree runs again on this node.
    Restored {
        /// Its root.
        root: i32,
        /// All its pids.
        pids: Vec<i32>,
        /// Time restore took, in microseconds.
        micros: u64,
    },
    /// The last image is sent but the target's answer did not come; the tree is held frozen
    /// until the daemon's verdict: commit (the target daemon took it in) kills it, abort
    /// resumes it.
    Unanswered {
        /// Why there is no answer.
        error: String,
    },
    /// The helper failed; nothing it did is left half-done.
    Failed {
        /// One line.
        error: String,
    },
}

/// What a daemon tells a migration helper it starts, first, on the control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    /// Frames on the data stream are authenticated with this key, which both daemons derive
    /// from their authenticated session.
    pub key: [u8; 32],
}

/// The daemon's decision once the tree runs on the target (to the source helper: kill the
/// frozen copy or resume it; to the target helper: tell the source, or undo).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The target runs the tree: kill the source.
    Commit,
    /// The target failed: let the source run on.
    Abort,
}
