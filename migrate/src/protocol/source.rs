//! The source of one migration attempt: it copies, freezes, and decides.
//!
//! ```text
//!   Offering --Accepted--> Copying --(Round ... Freeze)--> Waiting --Prepared--> Committing
//!      |                      |                              |                    |
//!   Refused               CopyFailed,                 no answer in time,     TakeInput, kill,
//!      |                  TreeEnded,                  target down,           Send(Commit) until
//!      v                  target down                 TreeEnded              Committed
//!   Aborted <-----------------+------------------------------+                    v
//!   (the copy runs on: Stayed / Ended)                                        Moved (or Lost)
//! ```

use std::time::Duration;

use ssi_core::NodeId;

use super::{
    backoff, Decision, Handover, Machine, MigrationId, MigrationMsg, Policy, Timeouts, Verdict,
};

/// What happens to the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceEvent {
    /// The target accepted the offer: the data stream is open and the helper runs.
    Accepted,
    /// The target refused the offer, or could not be asked.
    Refused(String),
    /// A pre-copy round went out: its page bytes.
    RoundSent(u64),
    /// The tree is frozen and its last image is out.
    Frozen,
    /// The copy failed before the last image was out (the helper, the data stream, or the
    /// target, which said why). The helper never froze the tree, or resumed it.
    CopyFailed(String),
    /// The target holds the whole tree, stopped (its word on the data stream).
    Prepared,
    /// After the last image, the data stream ended, failed or carried the target's failure
    /// instead of `Prepared`.
    NoAnswer(String),
    /// The tree ended (its root exited or was killed) on its own.
    TreeEnded,
    /// The input the frozen copy had not read, taken out (see [`SourceCmd::TakeInput`]).
    InputTaken(Handover),
    /// The frozen copy is dead (see [`SourceCmd::Verdict`]).
    Killed,
    /// A message from the target daemon.
    Received(MigrationMsg),
    /// The target's answer to the last [`SourceCmd::Send`]; `None` when none came.
    Answer(Option<MigrationMsg>),
    /// Membership shows the target down (dead or left).
    TargetDown,
    /// Membership shows the target up again.
    TargetUp,
    /// A timer armed by [`SourceCmd::Schedule`] is due.
    Timer(SourceTimer),
}

/// A source's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceTimer {
    /// The target had `Timeouts::answer` to say it holds the tree.
    Answer,
    /// Send the commit again (timers of an earlier `seq` are stale).
    Retry {
        /// Which arming.
        seq: u32,
    },
    /// The target has been down for `Timeouts::hold`: stop sending the commit.
    Hold {
        /// Which arming.
        seq: u32,
    },
}

/// What the source asks its runtime to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceCmd {
    /// Offer the tree to the target (`MigrateIn`); on `Ready`, start the helper on the data
    /// stream. Answered by `Accepted` or `Refused`.
    Offer,
    /// Helper: send a pre-copy round while the tree runs (the first: all its memory).
    Round,
    /// Helper: freeze the tree and send its last image.
    Freeze,
    /// Helper: kill the frozen copy (`Commit`, answered by `Killed`), or stop and resume it
    /// (`Abort`).
    Verdict(Verdict),
    /// Stop the input of the frozen copy and take out what it had not read (answered by
    /// `InputTaken`); input that comes later goes back to whoever sent it.
    TakeInput,
    /// Send a message to the target daemon; its answer comes back as `Answer`.
    Send(MigrationMsg),
    /// Answer the message just received.
    Reply(MigrationMsg),
    /// Feed `Timer(timer)` back after `after`.
    Schedule {
        /// The timer.
        timer: SourceTimer,
        /// Its delay.
        after: Duration,
    },
    /// Pass the signals sent to the tree here during the migration on to the target.
    ForwardSignals,
    /// Tell the user how it ended (once).
    Finish(Outcome),
}

/// How a migration ended, as the user is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The tree runs on the target.
    Moved,
    /// The tree runs on at the source; why it did not move.
    Stayed(String),
    /// The tree ended during the migration (it did not move).
    Ended,
    /// The tree was committed to the target, which went down holding the only copy.
    Lost(NodeId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Offering,
    /// Rounds and the freeze are under way.
    Copying,
    /// Frozen, last image out; waiting for `Prepared`.
    Waiting,
    /// Decided to commit.
    Committing(Commit),
    /// Decided to abort: the copy runs on here.
    Aborted,
}

/// What a commit has got so far.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Commit {
    input: Option<Handover>,
    killed: bool,
    /// The target confirmed, or will never (down too long, or it knows nothing of it).
    over: bool,
}

/// The source of one migration attempt (see the module doc).
#[derive(Debug)]
pub struct Source {
    id: MigrationId,
    to: NodeId,
    policy: Policy,
    timeouts: Timeouts,
    state: State,
    rounds: Vec<u64>,
    finished: bool,
    target_down: bool,
    retry_seq: u32,
    hold_seq: u32,
    pause: Option<Duration>,
    out: Vec<SourceCmd>,
}

impl Source {
    /// A source moving the tree of `id` to node `to`; its first command (`Offer`) is in the
    /// first [`Source::drain`].
    pub fn new(id: MigrationId, to: NodeId, policy: Policy, timeouts: Timeouts) -> Source {
        Source {
            id,
            to,
            policy,
            timeouts,
            state: State::Offering,
            rounds: Vec::new(),
            finished: false,
            target_down: false,
            retry_seq: 0,
            hold_seq: 0,
            pause: None,
            out: vec![SourceCmd::Offer],
        }
    }

    /// The attempt.
    pub fn id(&self) -> MigrationId {
        self.id
    }

    /// The target node.
    pub fn to(&self) -> NodeId {
        self.to
    }

    /// Page bytes of the pre-copy rounds sent.
    pub fn rounds(&self) -> &[u64] {
        &self.rounds
    }

    /// Whether the user has been told how it ended.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Whether the decision is to commit (the tree is, or will be, the target's).
    pub fn committed(&self) -> bool {
        matches!(self.state, State::Committing(_))
    }
}

impl Machine for Source {
    type Event = SourceEvent;
    type Command = SourceCmd;

    fn done(&self) -> bool {
        match &self.state {
            State::Aborted => true,
            State::Committing(c) => c.over,
            _ => false,
        }
    }

    fn drain(&mut self) -> Vec<SourceCmd> {
        std::mem::take(&mut self.out)
    }

    fn handle(&mut self, ev: SourceEvent) {
        if let SourceEvent::Received(msg) = ev {
            return self.received(msg);
        }
        match ev {
            SourceEvent::TargetDown => self.target_down = true,
            SourceEvent::TargetUp => {
                self.target_down = false;
                self.hold_seq += 1;
            }
            _ => {}
        }
        match &self.state {
            State::Offering => self.offering(ev),
            State::Copying => self.copying(ev),
            State::Waiting => self.waiting(ev),
            State::Committing(_) => self.committing(ev),
            // a helper that started after all is told to stop
            State::Aborted if ev == SourceEvent::Accepted => {
                self.out.push(SourceCmd::Verdict(Verdict::Abort))
            }
            State::Aborted => {}
        }
    }

    fn received(msg: MigrationMsg) -> SourceEvent {
        SourceEvent::Received(msg)
    }
}

impl Source {
    fn offering(&mut self, ev: SourceEvent) {
        match ev {
            SourceEvent::Accepted => {
                self.state = State::Copying;
                self.next_step();
            }
            SourceEvent::Refused(why) => self.abort(Outcome::Stayed(why), false, false),
            SourceEvent::TreeEnded => self.abort(Outcome::Ended, false, false),
            _ => {}
        }
    }

    fn copying(&mut self, ev: SourceEvent) {
        match ev {
            SourceEvent::RoundSent(bytes) => {
                self.rounds.push(bytes);
                self.next_step();
            }
            SourceEvent::Frozen => {
                self.state = State::Waiting;
                self.schedule(SourceTimer::Answer, self.timeouts.answer);
            }
            SourceEvent::CopyFailed(why) => self.abort(Outcome::Stayed(why), false, false),
            SourceEvent::TreeEnded => self.abort(Outcome::Ended, true, false),
            SourceEvent::TargetDown => {
                let why = format!("node {} went down", self.to);
                self.abort(Outcome::Stayed(why), true, false);
            }
            _ => {}
        }
    }

    fn waiting(&mut self, ev: SourceEvent) {
        match ev {
            SourceEvent::Prepared => self.commit(),
            SourceEvent::NoAnswer(why) | SourceEvent::CopyFailed(why) => {
                self.abort(Outcome::Stayed(why), true, true)
            }
            SourceEvent::Timer(SourceTimer::Answer) => {
                let why = format!(
                    "node {} did not say within {} s that it holds the process",
                    self.to,
                    self.timeouts.answer.as_secs()
                );
                self.abort(Outcome::Stayed(why), true, true);
            }
            SourceEvent::TargetDown => {
                let why = format!("node {} went down", self.to);
                self.abort(Outcome::Stayed(why), true, true);
            }
            SourceEvent::TreeEnded => self.abort(Outcome::Ended, true, true),
            _ => {}
        }
    }

    fn committing(&mut self, ev: SourceEvent) {
        let State::Committing(c) = &mut self.state else {
            return;
        };
        let over = c.over;
        match ev {
            SourceEvent::InputTaken(input) if c.input.is_none() => {
                c.input = Some(input);
                self.send_commit();
            }
            // it ended before its input was taken: its user was told, it must not run on
            SourceEvent::TreeEnded if c.input.is_none() => {
                self.abort(Outcome::Ended, true, true);
            }
            SourceEvent::Killed if !c.killed => {
                c.killed = true;
                self.send_commit();
            }
            SourceEvent::Answer(Some(MigrationMsg::Committed)) => self.confirmed(),
            SourceEvent::Answer(Some(MigrationMsg::Aborted | MigrationMsg::Unknown)) => {
                // the target discarded its copy (or restarted): none is left
                c.over = true;
                self.finish(Outcome::Lost(self.to));
            }
            SourceEvent::Answer(_) if !over => {
                let pause = backoff(&self.timeouts, self.pause);
                self.pause = Some(pause);
                let seq = self.retry_seq;
                self.schedule(SourceTimer::Retry { seq }, pause);
            }
            SourceEvent::Timer(SourceTimer::Retry { seq }) if seq == self.retry_seq && !over => {
                if let Some(input) = c.input.clone() {
                    self.out.push(SourceCmd::Send(MigrationMsg::Commit(input)));
                }
                self.retry_seq += 1;
            }
            SourceEvent::TargetDown if !over => {
                self.finish(Outcome::Lost(self.to));
                let seq = self.hold_seq;
                self.schedule(SourceTimer::Hold { seq }, self.timeouts.hold);
            }
            SourceEvent::Timer(SourceTimer::Hold { seq })
                if seq == self.hold_seq && self.target_down =>
            {
                c.over = true;
            }
            _ => {}
        }
    }

    /// Answers a message from the target.
    fn received(&mut self, msg: MigrationMsg) {
        let reply = match (&mut self.state, msg) {
            (State::Committing(_), MigrationMsg::Committed) => {
                self.confirmed();
                return;
            }
            (State::Waiting, MigrationMsg::Ask) => {
                // it holds the tree, or it would not ask: as good as `Prepared`
                self.commit();
                Decision::Undecided
            }
            (State::Committing(c), MigrationMsg::Ask) => match &c.input {
                Some(input) if c.killed => Decision::Commit(input.clone()),
                _ => Decision::Undecided,
            },
            (State::Aborted, MigrationMsg::Ask) => Decision::Abort,
            (_, MigrationMsg::Ask) => Decision::Undecided,
            _ => return,
        };
        self.out
            .push(SourceCmd::Reply(MigrationMsg::Decided(reply)));
    }

    fn next_step(&mut self) {
        let step = if self.policy.freeze_now(&self.rounds) {
            SourceCmd::Freeze
        } else {
            SourceCmd::Round
        };
        self.out.push(step);
    }

    fn commit(&mut self) {
        self.state = State::Committing(Commit {
            input: None,
            killed: false,
            over: false,
        });
        // input first: once the copy is dead its stdin pipe has no reader
        self.out.push(SourceCmd::TakeInput);
        self.out.push(SourceCmd::Verdict(Verdict::Commit));
    }

    fn send_commit(&mut self) {
        if let State::Committing(Commit {
            input: Some(input),
            killed: true,
            ..
        }) = &self.state
        {
            self.out
                .push(SourceCmd::Send(MigrationMsg::Commit(input.clone())));
        }
    }

    fn confirmed(&mut self) {
        if let State::Committing(c) = &mut self.state {
            if !c.over {
                c.over = true;
                self.out.push(SourceCmd::ForwardSignals);
            }
        }
        self.finish(Outcome::Moved);
    }

    /// Decides to abort: with `helper`, the helper is told to stop (resuming a frozen copy);
    /// with `tell`, the target is told to discard what it may hold.
    fn abort(&mut self, outcome: Outcome, helper: bool, tell: bool) {
        self.state = State::Aborted;
        if helper {
            self.out.push(SourceCmd::Verdict(Verdict::Abort));
        }
        if tell {
            self.out.push(SourceCmd::Send(MigrationMsg::Abort));
        }
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        if !self.finished {
            self.finished = true;
            self.out.push(SourceCmd::Finish(outcome));
        }
    }

    fn schedule(&mut self, timer: SourceTimer, after: Duration) {
        self.out.push(SourceCmd::Schedule { timer, after });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Machine;

    fn source(max_rounds: u32) -> Source {
        let id = MigrationId {
            gpid: 4100,
            epoch: 1,
            source_run: 7,
        };
        let policy = Policy {
            max_rounds,
            ..Policy::default()
        };
        let mut s = Source::new(id, NodeId(2), policy, Timeouts::default());
        assert_eq!(s.drain(), vec![SourceCmd::Offer]);
        s
    }

    fn input() -> Handover {
        Handover {
            bytes: b"abc".to_vec(),
            eof: true,
        }
    }

    #[test]
    fn a_commit_goes_out_once_the_copy_is_dead_and_its_input_taken() {
        let mut s = source(0);
        s.handle(SourceEvent::Accepted);
        assert_eq!(s.drain(), vec![SourceCmd::Freeze]);
        s.handle(SourceEvent::Frozen);
        s.drain();
        s.handle(SourceEvent::Prepared);
        assert_eq!(
            s.drain(),
            vec![SourceCmd::TakeInput, SourceCmd::Verdict(Verdict::Commit)]
        );
        s.handle(SourceEvent::InputTaken(input()));
        assert!(s.drain().is_empty(), "not before the copy is dead");
        s.handle(SourceEvent::Killed);
        assert_eq!(
            s.drain(),
            vec![SourceCmd::Send(MigrationMsg::Commit(input()))]
        );
        s.handle(SourceEvent::Answer(Some(MigrationMsg::Committed)));
        assert_eq!(
            s.drain(),
            vec![SourceCmd::ForwardSignals, SourceCmd::Finish(Outcome::Moved)]
        );
        assert!(s.done());
    }

    #[test]
    fn a_tree_that_ended_before_its_input_was_taken_is_not_committed() {
        let mut s = source(0);
        s.handle(SourceEvent::Accepted);
        s.handle(SourceEvent::Frozen);
        s.handle(SourceEvent::Prepared);
        s.drain();
        s.handle(SourceEvent::TreeEnded);
        assert_eq!(
            s.drain(),
            vec![
                SourceCmd::Verdict(Verdict::Abort),
                SourceCmd::Send(MigrationMsg::Abort),
                SourceCmd::Finish(Outcome::Ended)
            ]
        );
        s.handle(SourceEvent::Killed);
        assert!(s.drain().is_empty(), "no commit after all");
        assert!(s.done());
    }

    #[test]
    fn without_an_answer_the_source_resumes_and_tells_the_target() {
        let mut s = source(0);
        s.handle(SourceEvent::Accepted);
        s.handle(SourceEvent::Frozen);
        s.drain();
        s.handle(SourceEvent::Timer(SourceTimer::Answer));
        let cmds = s.drain();
        assert_eq!(cmds[0], SourceCmd::Verdict(Verdict::Abort));
        assert_eq!(cmds[1], SourceCmd::Send(MigrationMsg::Abort));
        assert!(matches!(cmds[2], SourceCmd::Finish(Outcome::Stayed(_))));
        // a late question is answered by the decision
        s.handle(SourceEvent::Received(MigrationMsg::Ask));
        assert_eq!(
            s.drain(),
            vec![SourceCmd::Reply(MigrationMsg::Decided(Decision::Abort))]
        );
    }

    #[test]
    fn a_question_while_waiting_counts_as_prepared() {
        let mut s = source(0);
        s.handle(SourceEvent::Accepted);
        s.handle(SourceEvent::Frozen);
        s.drain();
        s.handle(SourceEvent::Received(MigrationMsg::Ask));
        assert_eq!(
            s.drain(),
            vec![
                SourceCmd::TakeInput,
                SourceCmd::Verdict(Verdict::Commit),
                SourceCmd::Reply(MigrationMsg::Decided(Decision::Undecided))
            ]
        );
    }

    #[test]
    fn rounds_follow_the_policy() {
        let mut s = source(3);
        s.handle(SourceEvent::Accepted);
        assert_eq!(s.drain(), vec![SourceCmd::Round]);
        s.handle(SourceEvent::RoundSent(100 << 20));
        assert_eq!(s.drain(), vec![SourceCmd::Round]);
        s.handle(SourceEvent::RoundSent(1 << 20));
        assert_eq!(s.drain(), vec![SourceCmd::Freeze]);
        assert_eq!(s.rounds(), &[100 << 20, 1 << 20]);
    }

    #[test]
    fn a_target_down_after_the_commit_means_lost_and_then_no_more_sending() {
        let mut s = source(0);
        s.handle(SourceEvent::Accepted);
        s.handle(SourceEvent::Frozen);
        s.handle(SourceEvent::Prepared);
        s.handle(SourceEvent::InputTaken(input()));
        s.handle(SourceEvent::Killed);
        s.drain();
        s.handle(SourceEvent::TargetDown);
        let cmds = s.drain();
        assert_eq!(cmds[0], SourceCmd::Finish(Outcome::Lost(NodeId(2))));
        s.handle(SourceEvent::Timer(SourceTimer::Hold { seq: 0 }));
        assert!(s.done());
        // its decision still answers a target that comes back
        s.handle(SourceEvent::Received(MigrationMsg::Ask));
        assert_eq!(
            s.drain(),
            vec![SourceCmd::Reply(MigrationMsg::Decided(Decision::Commit(
                input()
            )))]
        );
    }
}
