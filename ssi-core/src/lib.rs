//! The ssi cluster fabric: node identity and configuration, membership (SWIM), the
//! authenticated wire protocol between daemons, resource probes and the cluster-wide view.
//!
//! Nothing here knows about ptrace or processes' insides; it is the network and bookkeeping
//! layer that every other crate builds on.

pub mod auth;
pub mod config;
pub mod control;
pub mod enroll;
pub mod error;
pub mod gossip;
pub mod grid;
pub mod limits;
pub mod membership;
pub mod node;
pub mod pids;
pub mod pki;
pub mod probe;
pub mod process;
pub mod rpc;
pub mod sched;
pub mod tls;
pub mod view;
pub mod wire;

pub use error::{Error, Result};
pub use node::{NodeId, NodeIdentity};
