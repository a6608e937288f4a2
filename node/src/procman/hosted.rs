//! The lifecycle of each global pid this node has to do with: one [`HostedState`] per gpid,
//! changed only by the guard methods of [`Hosted`], each of which names the transition it
//! allows and refuses the others.
//!
//! ```text
//!   (init spawned it) Starting --record--> Running <----------------- arrived --+
//!                        |                  |   ^                               |
//!                  (exit kept for           |   | end_leaving (aborted)         |
//!                   the record)     begin_leaving                     Incoming --take_in--> Arriving
//!                                           v   |                     (restoring)          (held)
//!                                         Leaving --commit--> Leaving{committed}            |
//!                                           |                       |                   discard
//!                                   exit: Exited               end_leaving (moved)
//!                                                                   v
//!                                                               Departed (its copy here dies;
//!                                                                that death is not its exit)
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ssi_core::process::{Caller, ExitStatus};
use ssi_core::NodeId;

use super::Record;

/// A signal sent to a process of this node: (gpid, signal, who sent it).
pub type SentSignal = (i32, i32, Caller);

/// Where one gpid stands on this node.
#[derive(Debug)]
pub enum HostedState {
    /// Started by the namespace init, its record not made yet; its exit, if it came first.
    Starting {
        /// The exit that came before the record.
        early_exit: Option<ExitStatus>,
    },
    /// Runs here.
    Running {
        /// Its record.
        rec: Arc<Record>,
        /// Its epoch (see `ssi_core::rpc::MigrationId`).
        epoch: u64,
    },
    /// Being moved to `to`; signals sent here meanwhile are kept for the target.
    Leaving {
        /// Its record.
        rec: Arc<Record>,
        /// The target.
        to: NodeId,
        /// The epoch of this attempt.
        epoch: u64,
        /// Signals sent meanwhile.
        signals: Vec<SentSignal>,
        /// The source decided to commit: its copy here is being killed, and that death is
        /// not the process's exit.
        committed: bool,
        /// That copy's death came already.
        copy_ended: bool,
    },
    /// Moved to `to` (or lost with it); its copy here is dying, and that death is not its
    /// exit. Kept until that death came and its followers were told where it went.
    Departed {
        /// Its record, until its followers were told.
        rec: Option<Arc<Record>>,
        /// Where it went.
        to: NodeId,
        /// Since when.
        since: Instant,
        /// The copy's death came.
        copy_ended: bool,
    },
    /// Being received from `from`: the restore helper builds it; no record yet.
    Incoming {
        /// The source.
        from: NodeId,
        /// The attempt's epoch.
        epoch: u64,
    },
    /// Received from `from`, whole and held stopped, with its record, until the source
    /// commits.
    Arriving {
        /// Its record.
        rec: Arc<Record>,
        /// The source.
        from: NodeId,
        /// The attempt's epoch.
        epoch: u64,
    },
    /// Ended; kept for a follower to collect its status.
    Exited {
        /// Its record.
        rec: Arc<Record>,
        /// When it ended.
        at: Instant,
    },
}

impl HostedState {
    /// The record, if it has one.
    pub fn record(&self) -> Option<&Arc<Record>> {
        match self {
            HostedState::Running { rec, .. }
            | HostedState::Leaving { rec, .. }
            | HostedState::Arriving { rec, .. }
            | HostedState::Exited { rec, .. } => Some(rec),
            _ => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            HostedState::Starting { .. } => "starting",
            HostedState::Running { .. } => "running",
            HostedState::Leaving { .. } => "leaving",
            HostedState::Departed { .. } => "departed",
            HostedState::Incoming { .. } => "incoming",
            HostedState::Arriving { .. } => "arriving",
            HostedState::Exited { .. } => "exited",
        }
    }
}

/// How `ssi ps` shows a gpid of this node that is on its way (see [`Hosted::moving`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moving {
    /// The source.
    pub from: NodeId,
    /// The target.
    pub to: NodeId,
}

/// What an exit of a pid means for its state.
#[derive(Debug)]
pub enum ExitMeans {
    /// The end of a process with a record: tell its followers.
    End(Arc<Record>),
    /// Nothing to tell (no record yet, kept for it; a copy that moved away; no such gpid).
    Nothing,
}

/// Every gpid's state on this node.
#[derive(Debug, Default)]
pub struct Hosted {
    states: HashMap<i32, HostedState>,
}

/// How long a departed copy's coming death is remembered.
const KEEP_DEPARTED: Duration = Duration::from_secs(60);

impl Hosted {
    /// The state of `gpid`.
    #[cfg(test)]
    pub fn get(&self, gpid: i32) -> Option<&HostedState> {
        self.states.get(&gpid)
    }

    /// The record of `gpid`, in any state that has one.
    pub fn record(&self, gpid: i32) -> Option<Arc<Record>> {
        self.states.get(&gpid).and_then(|s| s.record().cloned())
    }

    fn refuse<T>(&self, gpid: i32, what: &str) -> Result<T> {
        let now = self.states.get(&gpid).map_or("unknown", HostedState::name);
        bail!("process {gpid} is {now} here: cannot {what}")
    }

    /// The init started `gpid` (or a restore will): an exit before its record is kept for it.
    pub fn expect(&mut self, gpid: i32) {
        self.states
            .entry(gpid)
            .or_insert(HostedState::Starting { early_exit: None });
    }

    /// Starting (or unknown) -> Running with `rec`; the exit that came first, if any.
    pub fn run(&mut self, gpid: i32, rec: Arc<Record>, epoch: u64) -> Result<Option<ExitStatus>> {
        let early = match self.states.get(&gpid) {
            None | Some(HostedState::Departed { .. }) | Some(HostedState::Exited { .. }) => None,
            Some(HostedState::Starting { early_exit }) => *early_exit,
            Some(_) => return self.refuse(gpid, "start it"),
        };
        let state = match early {
            Some(_) => HostedState::Exited {
                rec,
                at: Instant::now(),
            },
            None => HostedState::Running { rec, epoch },
        };
        self.states.insert(gpid, state);
        Ok(early)
    }

    /// Running -> Leaving for a move to `to`: the attempt's epoch, above the tree's and at
    /// least `floor` (the clock, so that a new process under a reused pid starts above the
    /// old one's).
    pub fn begin_leaving(&mut self, gpid: i32, to: NodeId, floor: u64) -> Result<u64> {
        if !matches!(self.states.get(&gpid), Some(HostedState::Running { .. })) {
            return self.refuse(gpid, "move it");
        }
        let Some(HostedState::Running { rec, epoch }) = self.states.remove(&gpid) else {
            return self.refuse(gpid, "move it");
        };
        let epoch = floor.max(epoch + 1);
        self.states.insert(
            gpid,
            HostedState::Leaving {
                rec,
                to,
                epoch,
                signals: Vec::new(),
                committed: false,
                copy_ended: false,
            },
        );
        Ok(epoch)
    }

    /// Leaving: the source commits; the record, whose followers are told that it moved.
    pub fn commit_leaving(&mut self, gpid: i32) -> Result<Arc<Record>> {
        match self.states.get_mut(&gpid) {
            Some(HostedState::Leaving { rec, committed, .. }) => {
                *committed = true;
                Ok(rec.clone())
            }
            _ => self.refuse(gpid, "commit its move"),
        }
    }

    /// Leaving -> Departed (`moved`: until its copy's death comes, if it did not yet) or back
    /// to Running (keeping the attempt's epoch, so that the next attempt's is above it): the
    /// record and the signals sent meanwhile.
    pub fn end_leaving(
        &mut self,
        gpid: i32,
        moved: bool,
    ) -> Option<(Arc<Record>, Vec<SentSignal>)> {
        if !matches!(self.states.get(&gpid), Some(HostedState::Leaving { .. })) {
            return None;
        }
        let Some(HostedState::Leaving {
            rec,
            to,
            epoch,
            signals,
            copy_ended,
            ..
        }) = self.states.remove(&gpid)
        else {
            return None;
        };
        let state = if moved {
            HostedState::Departed {
                rec: Some(rec.clone()),
                to,
                since: Instant::now(),
                copy_ended,
            }
        } else {
            HostedState::Running {
                rec: rec.clone(),
                epoch,
            }
        };
        self.states.insert(gpid, state);
        Some((rec, signals))
    }

    /// A signal was sent to `gpid` (of a tree on its way out): kept for the target. Whether
    /// `gpid` is a committed copy that is gone here (the signal only goes to the target).
    pub fn signalled(&mut self, gpid: i32, sig: i32, caller: &Caller) -> bool {
        let mut gone = false;
        for (g, s) in &mut self.states {
            if let HostedState::Leaving {
                signals, committed, ..
            } = s
            {
                signals.push((gpid, sig, caller.clone()));
                gone |= *g == gpid && *committed;
            }
        }
        gone
    }

    /// Nothing of `gpid` here -> Incoming from `from`: refused if this node has a tree under
    /// that pid, or the death of a copy that left is still to come.
    pub fn begin_incoming(&mut self, gpid: i32, from: NodeId, epoch: u64) -> Result<()> {
        match self.states.get(&gpid) {
            None | Some(HostedState::Exited { .. }) => {}
            Some(_) => return self.refuse(gpid, "take it in"),
        }
        self.states
            .insert(gpid, HostedState::Incoming { from, epoch });
        Ok(())
    }

    /// Incoming -> Arriving with `rec` (the tree is whole and held).
    pub fn take_in(&mut self, gpid: i32, rec: Arc<Record>) -> Result<()> {
        let Some(HostedState::Incoming { from, epoch }) = self.states.get(&gpid) else {
            return self.refuse(gpid, "take it in");
        };
        let (from, epoch) = (*from, *epoch);
        self.states
            .insert(gpid, HostedState::Arriving { rec, from, epoch });
        Ok(())
    }

    /// Arriving -> Running (the source committed and the tree was let go).
    pub fn arrived(&mut self, gpid: i32) -> Result<()> {
        if !matches!(self.states.get(&gpid), Some(HostedState::Arriving { .. })) {
            return self.refuse(gpid, "let it run");
        }
        let Some(HostedState::Arriving { rec, epoch, .. }) = self.states.remove(&gpid) else {
            return self.refuse(gpid, "let it run");
        };
        self.states
            .insert(gpid, HostedState::Running { rec, epoch });
        Ok(())
    }

    /// Incoming or Arriving -> nothing (or Exited, until its followers are told): the
    /// migration failed here. The record it had, if any.
    pub fn discard_incoming(&mut self, gpid: i32) -> Option<Arc<Record>> {
        match self.states.get(&gpid) {
            Some(HostedState::Incoming { .. }) => {
                self.states.remove(&gpid);
                None
            }
            Some(HostedState::Arriving { rec, .. }) => {
                let rec = rec.clone();
                let at = Instant::now();
                self.states.insert(
                    gpid,
                    HostedState::Exited {
                        rec: rec.clone(),
                        at,
                    },
                );
                Some(rec)
            }
            _ => None,
        }
    }

    /// What an exit of `pid` means. A process that ends while it runs or is on its way out
    /// (not committed) is Exited; one not recorded yet keeps the exit for its record.
    pub fn exited(&mut self, pid: i32, status: ExitStatus) -> ExitMeans {
        let Some(state) = self.states.get_mut(&pid) else {
            return ExitMeans::Nothing;
        };
        match state {
            HostedState::Starting { early_exit } => {
                *early_exit = Some(status);
                ExitMeans::Nothing
            }
            HostedState::Running { rec, .. }
            | HostedState::Leaving {
                rec,
                committed: false,
                ..
            } => {
                let rec = rec.clone();
                *state = HostedState::Exited {
                    rec: rec.clone(),
                    at: Instant::now(),
                };
                ExitMeans::End(rec)
            }
            HostedState::Departed { rec: None, .. } => {
                self.states.remove(&pid);
                ExitMeans::Nothing
            }
            HostedState::Departed { copy_ended, .. } | HostedState::Leaving { copy_ended, .. } => {
                *copy_ended = true;
                ExitMeans::Nothing
            }
            _ => ExitMeans::Nothing,
        }
    }

    /// `rec`, the record of `gpid`, has delivered its end: it goes (unless the gpid has a
    /// newer record: a tree that came back).
    pub fn ended(&mut self, gpid: i32, rec: &Arc<Record>) {
        let ours = |r: &Arc<Record>| Arc::ptr_eq(r, rec);
        match self.states.get_mut(&gpid) {
            Some(HostedState::Departed {
                rec: r @ Some(_),
                copy_ended,
                ..
            }) if r.as_ref().is_some_and(ours) => {
                if *copy_ended {
                    self.states.remove(&gpid);
                } else {
                    *r = None;
                }
            }
            Some(s) if s.record().is_some_and(ours) => {
                self.states.remove(&gpid);
            }
            _ => {}
        }
    }

    /// Forgets what is kept too long: ends nobody collected, deaths of departed copies that
    /// never came.
    pub fn sweep(&mut self, keep_exited: Duration) {
        self.states.retain(|_, s| match s {
            HostedState::Exited { at, .. } => at.elapsed() < keep_exited,
            HostedState::Departed { since, .. } => since.elapsed() < KEEP_DEPARTED,
            _ => true,
        });
    }

    /// The trees on their way here or away, by root, as `ssi ps` shows them.
    pub fn moving(&self, me: NodeId) -> Vec<(i32, Moving)> {
        self.states
            .iter()
            .filter_map(|(g, s)| match s {
                HostedState::Leaving { to, .. } => Some((*g, Moving { from: me, to: *to })),
                HostedState::Incoming { from, .. } | HostedState::Arriving { from, .. } => Some((
                    *g,
                    Moving {
                        from: *from,
                        to: me,
                    },
                )),
                _ => None,
            })
            .collect()
    }

    /// Where `gpid` went, if it left this node (its copy here is gone or going).
    pub fn departed_to(&self, gpid: i32) -> Option<NodeId> {
        match self.states.get(&gpid) {
            Some(HostedState::Departed { to, .. }) => Some(*to),
            _ => None,
        }
    }

    /// Trees whose copy here is gone or going (departed): not listed.
    pub fn departed(&self) -> Vec<i32> {
        self.states
            .iter()
            .filter(|(_, s)| matches!(s, HostedState::Departed { .. }))
            .map(|(g, _)| *g)
            .collect()
    }

    /// How many records (running, moving or ended and kept) belong to `uid`.
    pub fn kept_by(&self, uid: u32) -> usize {
        self.states
            .values()
            .filter_map(HostedState::record)
            .filter(|rec| rec.uid == uid)
            .count()
    }

    /// The running trees, by root, with their records.
    pub fn running(&self) -> impl Iterator<Item = (i32, &Arc<Record>)> {
        self.states.iter().filter_map(|(g, s)| match s {
            HostedState::Running { rec, .. } => Some((*g, rec)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Arc<Record> {
        Arc::new(Record::detached_for_tests())
    }

    #[test]
    fn an_exit_before_the_record_is_kept_for_it() {
        let mut h = Hosted::default();
        h.expect(4100);
        assert!(matches!(
            h.exited(4100, ExitStatus::Code(3)),
            ExitMeans::Nothing
        ));
        let early = h.run(4100, rec(), 0).expect("record");
        assert_eq!(early, Some(ExitStatus::Code(3)));
        assert!(matches!(h.get(4100), Some(HostedState::Exited { .. })));
    }

    #[test]
    fn a_move_goes_running_leaving_departed_and_its_copys_death_is_not_an_exit() {
        let mut h = Hosted::default();
        h.run(4100, rec(), 5).expect("record");
        let epoch = h.begin_leaving(4100, NodeId(2), 0).expect("leave");
        assert_eq!(epoch, 6);
        assert!(
            h.begin_leaving(4100, NodeId(3), 0).is_err(),
            "one move at a time"
        );
        assert_eq!(
            h.moving(NodeId(1)),
            vec![(
                4100,
                Moving {
                    from: NodeId(1),
                    to: NodeId(2)
                }
            )]
        );
        h.commit_leaving(4100).expect("commit");
        assert!(!h.signalled(4101, 15, &root()), "a child still here");
        assert!(h.signalled(4100, 9, &root()), "the committed root is gone");
        assert!(matches!(
            h.exited(4100, ExitStatus::Signal(9)),
            ExitMeans::Nothing
        ));
        let (r, signals) = h.end_leaving(4100, true).expect("leaving");
        assert_eq!(signals.len(), 2);
        assert_eq!(h.departed(), vec![4100], "until its followers are told");
        assert_eq!(h.departed_to(4100), Some(NodeId(2)), "signals go there");
        h.ended(4100, &r);
        assert_eq!(h.departed_to(4100), None);
        assert!(h.get(4100).is_none(), "its copy's death came already");
        // a copy whose death is still to come blocks a return until it comes
        h.run(4200, rec(), 0).expect("record");
        h.begin_leaving(4200, NodeId(2), 0).expect("leave");
        h.commit_leaving(4200).expect("commit");
        let (r, _) = h.end_leaving(4200, true).expect("leaving");
        h.ended(4200, &r);
        assert_eq!(h.departed(), vec![4200]);
        assert!(h.begin_incoming(4200, NodeId(2), 9).is_err());
        assert!(matches!(
            h.exited(4200, ExitStatus::Signal(9)),
            ExitMeans::Nothing
        ));
        h.begin_incoming(4200, NodeId(2), 9).expect("back");
    }

    #[test]
    fn an_aborted_move_runs_on_with_the_attempts_epoch() {
        let mut h = Hosted::default();
        h.run(4100, rec(), 5).expect("record");
        let epoch = h.begin_leaving(4100, NodeId(2), 100).expect("leave");
        assert_eq!(epoch, 100);
        h.end_leaving(4100, false).expect("leaving");
        assert_eq!(h.begin_leaving(4100, NodeId(2), 0).expect("again"), 101);
    }

    #[test]
    fn an_incoming_tree_is_taken_in_then_runs_or_is_discarded() {
        let mut h = Hosted::default();
        h.begin_incoming(4100, NodeId(1), 7).expect("incoming");
        assert!(
            h.begin_incoming(4100, NodeId(3), 8).is_err(),
            "one at a time"
        );
        assert!(h.arrived(4100).is_err(), "not before it is taken in");
        h.take_in(4100, rec()).expect("take in");
        h.arrived(4100).expect("arrived");
        assert!(matches!(
            h.get(4100),
            Some(HostedState::Running { epoch: 7, .. })
        ));
        h.begin_incoming(4200, NodeId(1), 1).expect("incoming");
        assert!(h.discard_incoming(4200).is_none(), "no record yet");
        assert!(h.get(4200).is_none());
    }

    fn root() -> Caller {
        Caller {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
        }
    }
}
