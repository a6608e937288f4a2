//! The trait every kind of process state implements, and the views of a process it works on.
//!
//! Each kind of state (threads, signals, credentials, each kind of open file, ...) is one module
//! under `state/` with one type the image keeps. That type knows how to read itself from a live
//! process ([`Persist::save`]) and how to bring itself back ([`Persist::restore`]), the way
//! Firecracker's devices save to and restore from their own state types. The drivers (`dump`,
//! `restore`) only decide when each part runs and with what view of the process:
//!
//! ```text
//!   dump driver                               restore driver
//!   freeze the tree                           build the tree (clone3 set_tid), memory
//!   per process: ProcDump ──save──> State     per process: State ──restore──> ProcRestore
//!   write the image                           registers, then every task goes
//! ```
//! Most parts save from a [`ProcDump`] (a frozen process with an injection session) and restore
//! into a [`ProcRestore`] (a held process and what the restorer made for the whole tree). Parts
//! that are not per process choose their own views: an open file saves from the fd table of the
//! tree and restores into an fd of the restorer, which each process then takes.

use std::collections::HashMap;

use crate::dump::parasite::Parasite;
use crate::error::Result;
use crate::image::ProcessImage;
use crate::restore::holder::Holder;
use crate::state::files;

/// One kind of process state, saved into `Self` (what the image keeps) and restored from it.
pub(crate) trait Persist: Sized {
    /// The view `save` reads the live state through.
    type Saving<'a>;
    /// The view `restore` brings it back through.
    type Restoring<'a>;
    /// What a restore makes: nothing for state set inside a process, an fd for an open file.
    type Made;

    /// Reads the state.
    fn save(cx: &mut Self::Saving<'_>) -> Result<Self>;

    /// Brings the state back.
    fn restore(&self, cx: &mut Self::Restoring<'_>) -> Result<Self::Made>;
}

/// A frozen process being saved: what /proc said of it, and an injection session in its main
/// thread for what only the process itself can tell.
pub(crate) struct ProcDump<'a> {
    /// Its pid.
    pub pid: i32,
    /// It is the root of the tree (its parent is outside).
    pub is_root: bool,
    /// Its threads, main thread first, all stopped.
    pub tids: &'a [i32],
    /// Signals taken out of each thread while it was being stopped, by tid.
    pub taken: &'a HashMap<i32, Vec<Vec<u8>>>,
    /// The signal that had stopped it by job control, if it was stopped.
    pub stopped_by: Option<i32>,
    /// /proc/PID/status.
    pub status: &'a procfs::process::Status,
    /// System calls run inside it.
    pub par: &'a mut Parasite,
}

/// A held process whose memory is complete, being given the rest of its state.
pub(crate) struct ProcRestore<'a> {
    /// The process, stopped under ptrace, with a scratch area.
    pub h: &'a mut Holder,
    /// Its image (a part may need another's state: the threads' ids, the fd table).
    pub p: &'a ProcessImage,
    /// What the restorer made for the whole tree.
    pub tree: &'a TreeMade<'a>,
}

/// What the restorer made for the whole tree before any process gets its state.
pub(crate) struct TreeMade<'a> {
    /// The restorer's pid (the processes take their fds from it).
    pub restorer: i32,
    /// The open files of the tree.
    pub files: &'a files::Made,
    /// The tree's shared objects as the image has them.
    pub shared: &'a crate::image::Shared,
    /// The restorer's fd of each shared memory object, by id.
    pub shmem: &'a HashMap<u32, std::os::fd::OwnedFd>,
    /// Every process has the restorer's own credentials: none to set.
    pub same_creds: bool,
}
