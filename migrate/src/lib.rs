//! Live migration of a process tree, and cluster-level checkpoint and restart, as run by the
//! helper processes a node daemon starts inside its pid namespace.
//!
//! ```text
//!  source node                                                   target node
//!  migrate-out helper        daemon ===== RPC (TCP) ===== daemon        migrate-in helper
//!   PreCopy::start  --image 1-->  |  --------- bytes --------->  |  --> read image 1
//!   round (dirty)   --image 2-->  |                              |  --> read image 2 (parent 1)
//!   ... until few pages change    |                              |
//!   freeze + finish --final---->  |                              |  --> read final, restore,
//!                                 |  <------ restored ---------  |  <-- report "restored"
//!   <- "commit": kill the source  |
//!      (or "abort": resume it)    |
//! ```
//!
//! The helpers speak [`framing`] on their data stream (each image is a run of chunks ended by
//! an empty chunk and a kind byte) and [`report`] lines on their control socket; the daemons
//! only relay bytes. Downtime is from the freeze to the target's report that the tree runs.
#![forbid(unsafe_code)]

pub mod framing;
pub mod inbound;
pub mod outbound;
pub mod report;

pub use outbound::Policy;
pub use report::{Report, Verdict};

/// Errors of a migration step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Checkpoint or restore failed.
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::Error),
    /// The data stream or the control socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The peer broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}
