//! Live migration of running process trees between nodes.
//!
//! Empty until the migration issue: pre-copy rounds with dirty-page tracking, freeze,
//! final delta and restore on the target will live here.
#![forbid(unsafe_code)]
