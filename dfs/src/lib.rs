//! The shared distributed file system.
//!
//! Empty until the DFS issue.
#![forbid(unsafe_code)]
