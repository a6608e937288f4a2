//! Checkpoint and restore of process trees with ptrace and /proc, on a stock Linux kernel.
//!
//! ```text
//!            dump()                                   restore()
//!  running tree ──freeze──> records ──> ImageSink     Image::load / read_stream ──> tree runs
//!                 (ptrace)   (image)    dir | stream   (checked first)          (clone3 set_tid)
//! ```
//! - [`dump()`] freezes the tree under a pid, writes an image, then kills, resumes, stops or
//!   hands back the frozen tree ([`AfterDump`]).
//! - [`PreCopy`] copies memory while the tree runs (dirty pages tracked with uffd-wp and
//!   PAGEMAP_SCAN), for live migration: `start`, `round`..., `finish`.
//! - [`Periodic`] writes a chain of whole images of a tree that runs on, each after the first
//!   with only the pages written since the previous one (fault tolerance).
//! - [`Image`] reads and checks an image from a directory or any `Read`; [`restore()`] brings
//!   it back with the same pids, in the caller's pid namespace.
//!
//! Needs root (ptrace of any process, `clone3` with `set_tid`, `PR_SET_MM_MAP` exe changes),
//! x86-64, Linux 6.7+ (PAGEMAP_SCAN). The image format is in docs/IMAGE.md.

#![warn(missing_docs)]

pub mod dump;
mod error;
pub mod image;
mod persist;
pub mod progress;
pub mod restore;
mod state;
mod sys;
pub mod track;
mod vdso;

pub use dump::{dump, AfterDump, DumpOptions, DumpOutcome, FrozenTree, Periodic, PreCopy};
pub use error::{Error, Result};
pub use image::{DirSink, Image, ImageSink, Seal, SealKey, StreamSink};
pub use progress::{Phase, Progress};
pub use restore::{restore, Bound, RestoreOptions, Restored, Restorer};
pub use sys::spawn::{clone_process, Forked};
