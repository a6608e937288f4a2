//! The shared distributed file system.
//!
//! Metadata lives in a replicated state machine ([`meta`]); file data in checksummed, versioned
//! chunks on several nodes.
#![forbid(unsafe_code)]

pub mod meta;
