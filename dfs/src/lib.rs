//! The shared distributed file system.
//!
//! Metadata lives in a replicated state machine ([`meta`]); file data in checksummed, versioned
//! chunks on several nodes ([`chunks`], placed by [`placement`]).
#![forbid(unsafe_code)]

pub mod chunks;
pub mod error;
pub mod fuse;
pub mod meta;
pub mod net;
pub mod placement;
pub mod raft;
pub mod service;
pub mod status;

pub use error::{Error, Result};
