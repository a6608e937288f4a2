//! The migration protocol as two state machines without I/O: the [`Source`] and the [`Target`]
//! of one attempt to move a tree. Each takes events (a helper's report, a message from the
//! other daemon, a timer, news from membership) and emits commands (order the helper, send a
//! message, arm a timer, tell the user); the daemon's runtime does the I/O, and the simulation
//! in [`sim`] drives the very same machines with a simulated clock, network and faults.
//!
//! ```text
//!   source                                         target
//!   Offer --------------- MigrateIn -------------> (accepts: Ready)
//!   Round*, Freeze  ==== images (data stream) ===> helper applies them, holds the tree stopped
//!                   <======= Prepared ============  TakeIn (its record), Announce
//!   decide: commit  (or abort: Verdict(Abort) resumes the frozen copy, Send(Abort))
//!   TakeInput (the frozen copy reads no more)
//!   Verdict(Commit): the frozen copy is killed
//!   Send(Commit(input)) ----------------------->   Feed(input), Release: the tree runs here
//!                   <------ Committed -----------
//!   ForwardSignals, Finish(Moved)                  Finish(Running)
//! ```
//!
//! The rule that keeps a tree on one node: **only the source decides, and the target never
//! lets the tree go without the source's commit** (the fence: the commit carries the attempt's
//! [`MigrationId`], the epoch the target must hold). The source commits only once its copy is
//! dead, and may abort (resume its copy) at any time before, alone: whatever is lost, delayed or
//! repeated, and however long a partition lasts, two copies never run. A target holding the
//! restored tree without a decision asks the source until it gets one; it lets the tree go
//! without a commit only when the source answers from a later run (its copy died when it
//! restarted), and discards it when the source has been down for [`Timeouts::hold`] (the
//! tree is then lost with the source node). A target that fails before it holds the whole
//! tree simply discards it: the source cannot have committed.
//!
//! Input: the source takes out what its frozen copy had not read only once it has decided to
//! commit, and the commit carries it; the target feeds it once, however many times the commit
//! arrives, before the tree runs.

mod policy;
pub mod sim;
mod source;
mod target;

#[cfg(test)]
mod invariants;

use std::time::Duration;

pub use policy::Policy;
pub use source::{Outcome, Source, SourceCmd, SourceEvent, SourceTimer};
pub use ssi_core::rpc::{Decision, Handover, MigrationId, MigrationMsg};
pub use target::{Target, TargetCmd, TargetEvent, TargetOutcome, TargetTimer};

/// A protocol machine: events in, commands out, no I/O.
pub trait Machine {
    /// What happens to it.
    type Event;
    /// What it asks its runtime to do.
    type Command;
    /// Feeds one event.
    fn handle(&mut self, ev: Self::Event);
    /// Takes the commands emitted since the last call.
    fn drain(&mut self) -> Vec<Self::Command>;
    /// Whether nothing more can happen but answers to the other side.
    fn done(&self) -> bool;
    /// The event of a message from the other daemon.
    fn received(msg: MigrationMsg) -> Self::Event;
}

/// The protocol's time limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a source with its tree frozen and its last image sent waits for the target to
    /// say that it holds the tree, before it resumes its copy.
    pub answer: Duration,
    /// First pause before a message to the other daemon is sent again; it doubles each time,
    /// up to `retry_max`.
    pub retry: Duration,
    /// Longest pause between two sendings.
    pub retry_max: Duration,
    /// How long a target holding the restored tree waits for a decision while membership shows
    /// the source down, before it discards the tree (lost with the source); and how long a
    /// source that committed keeps sending the commit to a target shown down.
    pub hold: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            answer: Duration::from_secs(120),
            retry: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            hold: Duration::from_secs(600),
        }
    }
}

/// What a helper is told to do with the frozen source copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    /// The target will run the tree: kill the frozen copy.
    Commit,
    /// Stop, and resume the copy if it is frozen: it runs on here.
    Abort,
}

/// The next pause of a backoff that starts at `t.retry` and doubles up to `t.retry_max`.
fn backoff(t: &Timeouts, last: Option<Duration>) -> Duration {
    last.map_or(t.retry, |d| (d * 2).min(t.retry_max))
}

/// What a daemon answers a message about a migration it has no machine for: a question from a
/// target about a source run other than this one's learns that the source restarted (its copy
/// died with that run); anything else learns that nothing is known here.
pub fn answer_unknown(id: MigrationId, my_run: u64, msg: &MigrationMsg) -> Option<MigrationMsg> {
    match msg {
        MigrationMsg::Ask if id.source_run != my_run => {
            Some(MigrationMsg::Decided(Decision::Restarted))
        }
        MigrationMsg::Ask => Some(MigrationMsg::Decided(Decision::Unknown)),
        MigrationMsg::Commit(_) | MigrationMsg::Abort => Some(MigrationMsg::Unknown),
        _ => None,
    }
}
