//! The global scheduler: where new processes go.
//!
//! This is the default placement policy, least-loaded; the pluggable probes, filters and
//! policies of the full scheduler build on the same [`Candidate`] view.
#![forbid(unsafe_code)]

pub mod placement;

pub use placement::{least_loaded, Candidate, Request};
