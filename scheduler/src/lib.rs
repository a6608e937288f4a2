//! The global customizable scheduler, after Kerrighed's: **probes** measure each node (load,
//! free memory, CPU use of hosted processes, process count), **filters** smooth or threshold
//! what probes report, **policies** decide where new processes go, and the **balancer** moves
//! running processes off overloaded nodes.
//!
//! ```text
//!   procfs -> probes -> gossip -> filters -> PlacementIndex -> policy.place_in(request) -> node
//!                                                      \-> balancer.decide(local procs) -> move
//! ```
//!
//! Every node decides alone from the probe data gossiped to it: there is no global lock and no
//! central scheduler. Policies are trait objects chosen by name at run time
//! ([`registry::policy`]); an external policy is any program speaking JSON lines
//! ([`external`]).
#![forbid(unsafe_code)]

pub mod balance;
pub mod external;
pub mod filter;
pub mod index;
pub mod placer;
pub mod policy;
pub mod probe;
pub mod registry;
pub mod sample;

pub use balance::{BalanceConfig, Balancer, LocalProc, Move};
pub use index::PlacementIndex;
pub use placer::{Placement, Placer};
pub use policy::Policy;
pub use sample::{NodeSample, Request};

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An unknown policy, filter or probe name, or a bad parameter.
    #[error("{0}")]
    Config(String),
    /// An external policy failed (the default policy decides until it works again).
    #[error("external policy {program}: {reason}")]
    External {
        /// The program.
        program: String,
        /// What went wrong.
        reason: String,
    },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
