//! Moving a running process tree between nodes, and cluster-level checkpoint and restart.
//!
//! Two layers. The [`protocol`] is two state machines without I/O, the source and the target
//! of one migration attempt, with the simulation that checks them; the node daemons drive them.
//! The helpers (processes each daemon starts inside its pid namespace) do the work on the tree
//! and the data path, by the daemons' orders on their control sockets ([`control`]):
//!
//! ```text
//!  source daemon ==== RPC: MigrateIn / Ready (authenticated TCP) ==== target daemon
//!       | hands the connection and a key derived from the session to its helper |
//!  source helper ([`outbound`])  ===== frames ([`framing`]) =====  target helper ([`inbound`])
//!   Round: pre-copy image      --image 1 (all memory)-->   build the tree stopped, its pages
//!   Round: dirty pages         --image 2 (changes)----->   bring it up to date
//!   Freeze: last image         --final image----------->   last pages, all other state:
//!                                                          the whole tree, held stopped
//!   "the target holds it"      <-------- Prepared -----    (its daemon took it in: Announce)
//!  source daemon decides: takes the input, Verdict(Commit): the frozen copy is killed
//!       ============= RPC: Commit(input) =============>  target daemon: Release, the tree runs
//!       <============ Committed ======================
//! ```
//!
//! Downtime is from the freeze to the source daemon's news that the tree runs on the target.
#![forbid(unsafe_code)]

pub mod control;
pub mod framing;
pub mod inbound;
pub mod outbound;
pub mod protocol;

pub use control::{Job, Order, Report};
pub use protocol::{Policy, Verdict};

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
    /// The other side of the migration failed and said why (it undid what it did), or said
    /// nothing.
    #[error("the other node: {0}")]
    Target(String),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}
