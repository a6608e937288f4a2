//! The scheduler glue of the daemon: the scheduler's state on this node (placement policy,
//! filters, recent decisions), the re-balancing loop that moves local processes by migration,
//! and the `ssi sched` operations on every node.
//!
//! ```text
//!   ops.rs (ssi sched show/set/balance, here and on every node)
//!     |            \
//!     v             v
//!   balance.rs --> crate::migration (a move is a migration)
//!     |
//!     v
//!   state.rs (policy, filters, decisions, placement index; used by placement in crate::session)
//!     ^
//!   follow.rs (feeds the placement index the cluster view every 200 ms)
//! ```

pub mod balance;
pub mod follow;
pub mod ops;
pub mod state;

pub use state::Sched;
