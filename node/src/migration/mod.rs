//! Moving, checkpointing and restarting process trees, driven from the daemons; the work on
//! the processes themselves is done by helpers (`ssid helper`) started inside the node's pid
//! namespace, where the tree's pids are its own (see the `migrate` crate).
//!
//! A migration is two machines of `migrate::protocol`, the [`source`] here and the [`target`]
//! on the other node, each driven by a task of its own ([`driver`]). It starts as an RPC
//! (`MigrateIn`, answered `Ready`) on an authenticated connection between the two daemons;
//! then each daemon hands that connection to its helper ([`stream`], [`helper`]), and the
//! helpers send the images to each other directly: the daemons copy no image byte. What the
//! daemons say to each other afterwards (commit, abort, the target's questions) are
//! `RpcRequest::Migration` messages, routed to the right task by the [`registry`].
//!
//! ```text
//!   route / sched::balance --> source::migrate_out --> driver --> helper (migrate-out)
//!   rpc (MigrateIn) ---------> target::migrate_in  --> driver --> helper (migrate-in)
//!   rpc (Migration) ---------> registry --> the driving task of that attempt
//! ```

pub mod checkpoint;
mod driver;
mod helper;
pub mod registry;
pub mod source;
mod stream;
pub mod target;
