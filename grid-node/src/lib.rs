//! The cluster offered to a grid as one grid node: virtual organisations and credentials,
//! account mapping, access policies, the job service and resource advertisement.
//!
//! This crate is a library run inside `ssid`. What it needs from the daemon comes through
//! three seams, so that it can be built and tested on its own:
//! - [`store::GridStore`]: the replicated table of VOs, account leases, tasks and policies;
//! - [`tes::Runner`]: "run this executor through placement and tell me how it ended";
//! - [`credential::CertAuthority`]: the cluster CA, passed in as certificate and key.
#![deny(unsafe_code)]

pub mod accounts;
pub mod credential;
pub mod error;
pub mod policy;
pub mod resources;
pub mod store;
#[allow(unsafe_code)]
mod sys;
pub mod tes;
pub mod vo;

pub use error::{Error, Result};
