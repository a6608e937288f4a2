//! The cluster offered to a grid as one grid node: virtual organisations and credentials,
//! account mapping, access policies, the job service and resource advertisement.
//!
//! Nothing is here yet: these services are being built (see docs/ARCHITECTURE.md).
#![forbid(unsafe_code)]
