//! The programs of ssi: the node daemon `ssid` and the CLI `ssi`.
//!
//! The library part holds what both binaries (and the end-to-end tests) share: the daemon's
//! subsystems and the CLI's commands.

pub mod cli;
pub mod daemon;
mod sys;
