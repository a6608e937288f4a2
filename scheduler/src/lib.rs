//! The global customizable scheduler: probes, filters and policies.
//!
//! Empty until the scheduler issue.
#![forbid(unsafe_code)]
