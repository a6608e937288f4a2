//! Live migration of a process tree, and cluster-level checkpoint and restart, as run by the
//! helper processes a node daemon starts inside its pid namespace.
//!
//! ```text
//!  source daemon ==== RPC: MigrateIn / Ready (authenticated TCP) ==== target daemon
//!       | hands the connection and a key derived from the session to its helper |
//!  migrate-out helper  ======== frames on the same connection ========  migrate-in helper
//!   PreCopy::start  --image 1 (all memory)-->   build the tree stopped, write its pages
//!   round (dirty)   --image 2 (changes)----->   bring it up to date
//!   ... until few pages change
//!   freeze + finish --final image----------->   last pages, all other state, let it go
//!                                               report "restored" to its daemon, which takes
//!                   <-------- restored ------   the tree in and says "commit"
//!   report to its daemon; on "commit" kill the frozen source (on "abort" resume it)
//! ```
//!
//! If the answer never comes after the last image (the connection broke, or a timeout), the
//! source helper reports `unanswered` and keeps the tree frozen; its daemon asks the target
//! daemon, which says whether it took the tree in and, if not, refuses to take it in from then
//! on. So the tree runs in one place only: the target's if it was taken in, else the source's.
//!
//! The helpers speak [`framing`] on the data stream and [`report`] lines on their control
//! sockets. Downtime is from the freeze to the source daemon's news that the tree runs.
#![forbid(unsafe_code)]

pub mod framing;
pub mod inbound;
pub mod outbound;
pub mod protocol;
pub mod report;

pub use outbound::Policy;
pub use report::{Report, Start, Verdict};

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
    /// The other side of the migration failed and said why (it undid what it did).
    #[error("the other node: {0}")]
    Target(String),
    /// The last image was sent but the target's answer never came: whether the tree runs
    /// there is not known from the data stream.
    #[error("no answer from the target: {0}")]
    Unanswered(String),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}
