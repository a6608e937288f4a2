//! The `ssi` command's definition, shared with the tools that generate its manual pages and
//! shell completions. The commands themselves live in the binary (`main.rs`).

pub mod args;
