//! The target of one migration attempt: it builds the tree, holds it stopped, and lets it go
//! only on the source's commit.
//!
//! ```text
//!   Receiving --Prepared--> TakingIn --TakenIn--> Held --Commit--> Releasing --Released--> Running
//!       |                      |                   |  \
//!   CopyFailed            TakeInFailed          Abort  ask the source until it decides;
//!       v                      v                   v    source down for `hold`: Lost
//!   Discarded <----------------+-------------------+
//! ```

use std::time::Duration;

use ssi_core::NodeId;

use super::{Decision, Handover, Machine, MigrationId, MigrationMsg, Timeouts};

/// What happens to the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetEvent {
    /// The helper holds the whole tree, restored and stopped.
    Prepared,
    /// The tree has its record here (see [`TargetCmd::TakeIn`]).
    TakenIn,
    /// Making its record failed.
    TakeInFailed(String),
    /// The copy failed before the tree was whole or held (the helper, the data stream, or the
    /// source, which said why); the helper killed what it built.
    CopyFailed(String),
    /// The helper let the tree go: it runs here.
    Released,
    /// Letting it go failed; the helper killed it.
    ReleaseFailed(String),
    /// A message from the source daemon.
    Received(MigrationMsg),
    /// The source's answer to the last [`TargetCmd::Send`]; `None` when none came.
    Answer(Option<MigrationMsg>),
    /// Membership shows the source down (dead or left).
    SourceDown,
    /// Membership shows the source up again.
    SourceUp,
    /// A timer armed by [`TargetCmd::Schedule`] is due.
    Timer(TargetTimer),
}

/// A target's timers (those of an earlier `seq` are stale).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetTimer {
    /// Ask the source for its decision.
    Ask {
        /// Which arming.
        seq: u32,
    },
    /// The source has been down for `Timeouts::hold`.
    Hold {
        /// Which arming.
        seq: u32,
    },
}

/// What the target asks its runtime to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetCmd {
    /// Make the held tree's record (state arriving); answered by `TakenIn` or `TakeInFailed`.
    TakeIn,
    /// Helper: tell the source, on the data stream, that the tree is held here.
    Announce,
    /// Put this input in front of the tree's input here.
    Feed(Handover),
    /// Helper: let the tree go; answered by `Released` or `ReleaseFailed`.
    Release,
    /// Helper: kill what it holds or built (telling the source why if the stream still goes);
    /// and the record, if any, goes.
    Discard(String),
    /// Send a message to the source daemon; its answer comes back as `Answer`.
    Send(MigrationMsg),
    /// Answer the message just received.
    Reply(MigrationMsg),
    /// Feed `Timer(timer)` back after `after`.
    Schedule {
        /// The timer.
        timer: TargetTimer,
        /// Its delay.
        after: Duration,
    },
    /// How it ended here (once).
    Finish(TargetOutcome),
}

/// How a migration ended on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetOutcome {
    /// The tree runs here.
    Running,
    /// Nothing of it is left here; why.
    Discarded(String),
    /// The held tree was discarded because the source node stayed down: the tree is lost
    /// with that node.
    Lost(NodeId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Receiving,
    TakingIn,
    Held,
    /// Letting the tree go; `reply`: the commit came as a message to answer (else as the
    /// answer to a question, and the source gets a `Committed` of its own).
    Releasing {
        reply: bool,
    },
    Running,
    Discarded,
}

/// The target of one migration attempt (see the module doc).
#[derive(Debug)]
pub struct Target {
    id: MigrationId,
    from: NodeId,
    timeouts: Timeouts,
    state: State,
    source_down: bool,
    ask_seq: u32,
    hold_seq: u32,
    out: Vec<TargetCmd>,
}

impl Target {
    /// The target of `id`, whose source is node `from`, once it accepted the offer and started
    /// its helper.
    pub fn new(id: MigrationId, from: NodeId, timeouts: Timeouts) -> Target {
        Target {
            id,
            from,
            timeouts,
            state: State::Receiving,
            source_down: false,
            ask_seq: 0,
            hold_seq: 0,
            out: Vec::new(),
        }
    }

    /// The attempt.
    pub fn id(&self) -> MigrationId {
        self.id
    }

    /// The source node.
    pub fn from(&self) -> NodeId {
        self.from
    }

    /// Whether the tree runs here.
    pub fn running(&self) -> bool {
        self.state == State::Running
    }
}

impl Machine for Target {
    type Event = TargetEvent;
    type Command = TargetCmd;

    fn done(&self) -> bool {
        matches!(self.state, State::Running | State::Discarded)
    }

    fn drain(&mut self) -> Vec<TargetCmd> {
        std::mem::take(&mut self.out)
    }

    fn handle(&mut self, ev: TargetEvent) {
        match ev {
            TargetEvent::Received(msg) => self.received(msg),
            TargetEvent::SourceDown => {
                self.source_down = true;
                if self.state == State::Held {
                    let seq = self.hold_seq;
                    self.schedule(TargetTimer::Hold { seq }, self.timeouts.hold);
                }
            }
            TargetEvent::SourceUp => {
                self.source_down = false;
                self.hold_seq += 1;
            }
            ev => match self.state {
                State::Receiving | State::TakingIn => self.building(ev),
                State::Held => self.held(ev),
                State::Releasing { reply } => self.releasing(ev, reply),
                State::Running | State::Discarded => {}
            },
        }
    }

    fn received(msg: MigrationMsg) -> TargetEvent {
        TargetEvent::Received(msg)
    }
}

impl Target {
    fn building(&mut self, ev: TargetEvent) {
        match (self.state, ev) {
            (State::Receiving, TargetEvent::Prepared) => {
                self.state = State::TakingIn;
                self.out.push(TargetCmd::TakeIn);
            }
            (State::TakingIn, TargetEvent::TakenIn) => {
                self.state = State::Held;
                self.out.push(TargetCmd::Announce);
                self.ask_later();
                if self.source_down {
                    let seq = self.hold_seq;
                    self.schedule(TargetTimer::Hold { seq }, self.timeouts.hold);
                }
            }
            (State::TakingIn, TargetEvent::TakeInFailed(why)) => self.discard(why),
            (_, TargetEvent::CopyFailed(why)) => {
                // the helper already killed what it built
                self.state = State::Discarded;
                self.out
                    .push(TargetCmd::Finish(TargetOutcome::Discarded(why)));
            }
            _ => {}
        }
    }

    fn held(&mut self, ev: TargetEvent) {
        match ev {
            TargetEvent::Answer(Some(MigrationMsg::Decided(d))) => match d {
                Decision::Commit(input) => self.release(Some(input), false),
                Decision::Restarted => self.release(None, false),
                Decision::Abort => self.discard("the source resumed its copy".into()),
                Decision::Unknown => {
                    self.discard("the source knows nothing of this migration".into())
                }
                Decision::Undecided => self.ask_later(),
            },
            TargetEvent::Answer(_) => self.ask_later(),
            TargetEvent::Timer(TargetTimer::Ask { seq }) if seq == self.ask_seq => {
                self.ask_seq += 1;
                self.out.push(TargetCmd::Send(MigrationMsg::Ask));
            }
            TargetEvent::Timer(TargetTimer::Hold { seq })
                if seq == self.hold_seq && self.source_down =>
            {
                self.state = State::Discarded;
                let why = format!("node {} stayed down", self.from);
                self.out.push(TargetCmd::Discard(why));
                self.out
                    .push(TargetCmd::Finish(TargetOutcome::Lost(self.from)));
            }
            // the helper went away: what it held went with it
            TargetEvent::CopyFailed(why) => self.discard(why),
            _ => {}
        }
    }

    fn releasing(&mut self, ev: TargetEvent, reply: bool) {
        match ev {
            TargetEvent::Released => {
                self.state = State::Running;
                let msg = MigrationMsg::Committed;
                self.out.push(if reply {
                    TargetCmd::Reply(msg)
                } else {
                    TargetCmd::Send(msg)
                });
                self.out.push(TargetCmd::Finish(TargetOutcome::Running));
            }
            TargetEvent::ReleaseFailed(why) => {
                self.state = State::Discarded;
                if reply {
                    self.out.push(TargetCmd::Reply(MigrationMsg::Aborted));
                }
                self.out
                    .push(TargetCmd::Finish(TargetOutcome::Discarded(why)));
            }
            _ => {}
        }
    }

    /// Answers a message from the source.
    fn received(&mut self, msg: MigrationMsg) {
        let reply = match (self.state, msg) {
            (State::Held, MigrationMsg::Commit(input)) => {
                // the answer comes once the tree runs (`Released`)
                return self.release(Some(input), true);
            }
            (State::Receiving | State::TakingIn | State::Held, MigrationMsg::Abort) => {
                self.discard("the source resumed its copy".into());
                MigrationMsg::Aborted
            }
            (State::Running, MigrationMsg::Commit(_) | MigrationMsg::Abort) => {
                MigrationMsg::Committed
            }
            (State::Discarded, MigrationMsg::Commit(_) | MigrationMsg::Abort) => {
                MigrationMsg::Aborted
            }
            _ => return,
        };
        self.out.push(TargetCmd::Reply(reply));
    }

    fn release(&mut self, input: Option<Handover>, reply: bool) {
        self.state = State::Releasing { reply };
        if let Some(input) = input {
            self.out.push(TargetCmd::Feed(input));
        }
        self.out.push(TargetCmd::Release);
    }

    fn discard(&mut self, why: String) {
        self.state = State::Discarded;
        self.out.push(TargetCmd::Discard(why.clone()));
        self.out
            .push(TargetCmd::Finish(TargetOutcome::Discarded(why)));
    }

    /// Asks the source again in a while: it decides within moments of hearing that the tree
    /// is held, so a question is only for a word that was lost.
    fn ask_later(&mut self) {
        let seq = self.ask_seq;
        self.schedule(TargetTimer::Ask { seq }, self.timeouts.retry_max);
    }

    fn schedule(&mut self, timer: TargetTimer, after: Duration) {
        self.out.push(TargetCmd::Schedule { timer, after });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Machine;

    fn held() -> Target {
        let id = MigrationId {
            gpid: 4100,
            epoch: 1,
            source_run: 7,
        };
        let mut t = Target::new(id, NodeId(1), Timeouts::default());
        t.handle(TargetEvent::Prepared);
        assert_eq!(t.drain(), vec![TargetCmd::TakeIn]);
        t.handle(TargetEvent::TakenIn);
        let cmds = t.drain();
        assert_eq!(cmds[0], TargetCmd::Announce);
        assert!(matches!(
            cmds[1],
            TargetCmd::Schedule {
                timer: TargetTimer::Ask { .. },
                ..
            }
        ));
        t
    }

    fn input() -> Handover {
        Handover {
            bytes: b"xyz".to_vec(),
            eof: false,
        }
    }

    #[test]
    fn a_commit_feeds_the_input_once_and_lets_the_tree_go() {
        let mut t = held();
        t.handle(TargetEvent::Received(MigrationMsg::Commit(input())));
        assert_eq!(
            t.drain(),
            vec![TargetCmd::Feed(input()), TargetCmd::Release]
        );
        t.handle(TargetEvent::Released);
        assert_eq!(
            t.drain(),
            vec![
                TargetCmd::Reply(MigrationMsg::Committed),
                TargetCmd::Finish(TargetOutcome::Running)
            ]
        );
        // the same commit again: answered, not fed again
        t.handle(TargetEvent::Received(MigrationMsg::Commit(input())));
        assert_eq!(t.drain(), vec![TargetCmd::Reply(MigrationMsg::Committed)]);
    }

    #[test]
    fn a_held_tree_never_goes_without_a_decision() {
        let mut t = held();
        t.handle(TargetEvent::SourceDown);
        t.drain();
        for seq in 0..5 {
            t.handle(TargetEvent::Timer(TargetTimer::Ask { seq }));
            assert_eq!(t.drain(), vec![TargetCmd::Send(MigrationMsg::Ask)]);
            t.handle(TargetEvent::Answer(None));
            t.drain();
        }
        assert!(!t.running());
        // down for `hold`: discarded, lost with the source
        t.handle(TargetEvent::Timer(TargetTimer::Hold { seq: 0 }));
        let cmds = t.drain();
        assert!(matches!(cmds[0], TargetCmd::Discard(_)));
        assert_eq!(cmds[1], TargetCmd::Finish(TargetOutcome::Lost(NodeId(1))));
    }

    #[test]
    fn a_source_that_came_back_cancels_the_hold() {
        let mut t = held();
        t.handle(TargetEvent::SourceDown);
        t.handle(TargetEvent::SourceUp);
        t.drain();
        t.handle(TargetEvent::Timer(TargetTimer::Hold { seq: 0 }));
        assert!(t.drain().is_empty());
        t.handle(TargetEvent::Answer(Some(MigrationMsg::Decided(
            Decision::Restarted,
        ))));
        assert_eq!(t.drain(), vec![TargetCmd::Release]);
    }
}
