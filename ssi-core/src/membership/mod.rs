//! Cluster membership: who is alive, suspect, dead or gone, with our own SWIM.
//!
//! This is a protocol core with no I/O: the caller feeds it datagrams and timer events, and it
//! emits [`Output`]s (datagrams to send, timers to arm, membership events) that a runtime turns
//! into real I/O. The daemon's runtime is [`crate::gossip`] (UDP + tokio timers); the
//! simulator in [`sim`] drives the very same core with a simulated clock and network, up to
//! 10,000 members in one process. docs/MEMBERSHIP.md describes the protocol and its knobs.
//!
//! ```text
//!      datagram            timer                 announce / apply / publish / leave
//!         |                  |                                 |
//!         v                  v                                 v
//!   message::decode    probe cycle (probe.rs)            this module's API
//!         |            ping -> ping-req -> suspect             |
//!         v                  |                                 |
//!   merge.rs: SWIM precedence, refutation, renewal  <----------+
//!         |            suspicion.rs: Lifeguard timeouts -> dead
//!         v
//!   table.rs (members by id)   dissemination.rs (piggy-back queues)   info.rs (probe data)
//!         |
//!         v
//!   send.rs: datagrams with piggy-backed updates -> Output::Send / Schedule / Event
//! ```
//!
//! States are alive, suspect, dead and left (a graceful leave is its own final state, not a
//! death). A node id is the member's key; a node's runs are told apart by `gen`, and a higher
//! `gen` replaces a lower one whatever its state, which is how a restarted node, or one wrongly
//! declared dead, comes back.

mod dissemination;
mod info;
mod merge;
pub mod message;
mod probe;
mod send;
pub mod sim;
mod suspicion;
mod table;

use std::time::Duration;

use rand::RngExt;

use crate::config::GossipConfig;
use crate::error::{Error, Result};
use crate::node::{NodeId, NodeIdentity};
use crate::probe::ProbeData;
use crate::view::{MemberState, NodeView};

use dissemination::{Queue, SELF};
use info::{Allowance, OwnInfo};
use merge::Origin;
use message::{Accusers, Kind, State, Update};
use probe::Prober;
use suspicion::Suspicions;
use table::Table;

/// Largest gossip datagram payload (before the authentication envelope).
pub const MAX_PACKET: usize = 1400;

/// A change the core reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// A node became a member.
    Up(NodeIdentity),
    /// A node was declared dead.
    Dead(NodeIdentity),
    /// A node left on purpose.
    Left(NodeIdentity),
    /// A node came back under a new generation (restart), replacing `old`.
    Replaced {
        /// The previous identity.
        old: NodeIdentity,
        /// The new one.
        new: NodeIdentity,
    },
    /// This node knows at least one other member.
    Joined,
    /// This node knows no other member any more.
    Alone,
    /// The cluster declared this node dead and it came back as `NodeIdentity`.
    Rejoined(NodeIdentity),
    /// A newer run of this node id exists: this one must stop.
    Defunct,
}

/// What a timer is for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Timer {
    /// Finish the current probe and start the next.
    Probe,
    /// No direct ack yet for probe `seq`: ask others.
    ProbeTimeout { seq: u32 },
    /// The probe relayed as `seq` got no ack: tell the requester.
    RelayTimeout { seq: u32 },
    /// Gossip round.
    Gossip,
    /// A suspicion may have run out.
    Suspicion {
        id: NodeId,
        gen: u64,
        incarnation: u16,
    },
}

/// A timer the core asked for, to be handed back through [`Membership::handle_timer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerEvent {
    /// When it is due on the core's clock.
    at: Duration,
    timer: Timer,
}

/// What one node knows of another, as exchanged when a node joins.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberRecord {
    /// The member.
    pub identity: NodeIdentity,
    /// Its incarnation.
    pub incarnation: u16,
    /// Alive or suspect (false: dead or left).
    pub active: bool,
    /// Suspected (only meaningful when active).
    pub suspect: bool,
}

/// What the core asks its runtime to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send `data` to the node `to` (a datagram, before authentication).
    Send {
        /// Destination.
        to: NodeIdentity,
        /// Payload.
        data: Vec<u8>,
    },
    /// Call [`Membership::handle_timer`] with `timer` after `after`.
    Schedule {
        /// The timer event.
        timer: TimerEvent,
        /// Delay.
        after: Duration,
    },
    /// Something changed.
    Event(MemberEvent),
}

/// Where this node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// A member (or trying to become one).
    Active,
    /// Left on purpose; sends and answers nothing.
    Left,
    /// Superseded by a newer run of the same node id; sends and answers nothing.
    Defunct,
}

/// The membership protocol core of one node.
///
/// The core has no clock of its own: it counts time by the timers it gets back, each carrying
/// the instant it was due. That clock lags the real one by at most a gossip interval, which
/// only matters for the start of suspicions learnt between two timers.
pub struct Membership<R> {
    me: NodeIdentity,
    incarnation: u16,
    name: String,
    cfg: GossipConfig,
    rng: R,
    clock: Duration,
    status: Status,
    had_members: bool,
    /// Renewed since the last datagram: ask its sender for the full state.
    resync: bool,
    table: Table,
    suspicions: Suspicions,
    updates: Queue,
    infos: Queue,
    prober: Prober,
    own: OwnInfo,
    allowance: Allowance,
    out: Vec<Output>,
}

impl<R> std::fmt::Debug for Membership<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("identity", &self.me)
            .field("name", &self.name)
            .field("incarnation", &self.incarnation)
            .field("status", &self.status)
            .field("members", &self.table.len())
            .finish()
    }
}

fn membership_error(e: impl std::fmt::Display) -> Error {
    Error::Membership(e.to_string())
}

impl<R: RngExt> Membership<R> {
    /// A core for the node `me` called `name`. Its first timers are in the first [`drain`].
    ///
    /// [`drain`]: Membership::drain
    pub fn new(me: NodeIdentity, name: String, config: &GossipConfig, rng: R) -> Self {
        let expected = usize::try_from(config.expected_size).unwrap_or(usize::MAX);
        let mut m = Membership {
            me,
            incarnation: 0,
            name,
            cfg: config.clone(),
            rng,
            clock: Duration::ZERO,
            status: Status::Active,
            had_members: false,
            resync: false,
            table: Table::with_capacity(expected),
            suspicions: Suspicions::default(),
            updates: Queue::new(),
            infos: Queue::new(),
            prober: Prober::default(),
            own: OwnInfo::default(),
            allowance: Allowance::full(config.info_budget),
            out: Vec::new(),
        };
        // A random phase, so that members started together do not probe and gossip in step.
        let probe = m.jitter(m.cfg.probe_period);
        m.schedule(probe, Timer::Probe);
        let gossip = m.jitter(m.cfg.gossip_interval);
        m.schedule(gossip, Timer::Gossip);
        m
    }

    /// This node's current identity (it changes when the node renews itself).
    pub fn identity(&self) -> &NodeIdentity {
        &self.me
    }

    /// This node's current incarnation.
    pub fn incarnation(&self) -> u16 {
        self.incarnation
    }

    /// Number of other active (alive or suspect) members.
    pub fn active_members(&self) -> usize {
        self.table.active_len()
    }

    /// Feeds a received datagram (already authenticated). A malformed one is refused whole
    /// and changes nothing.
    pub fn handle_packet(&mut self, data: &[u8]) -> Result<()> {
        let packet = message::decode(data).map_err(membership_error)?;
        if self.status == Status::Active {
            self.check_infos(&packet).map_err(membership_error)?;
            self.receive(packet);
        }
        self.settle();
        Ok(())
    }

    /// Tells the core that the runtime is handling `timer` `late` after it was due (before
    /// [`handle_timer`]). Later than half a probe RTT, this node was held up (a loaded CPU, a
    /// pause): its own probes say little about others while it is the slow one, so its local
    /// health gets worse, once per hold-up however many timers it delayed.
    ///
    /// [`handle_timer`]: Membership::handle_timer
    pub fn timer_late(&mut self, timer: &TimerEvent, late: Duration) {
        if late > self.cfg.probe_rtt / 2 {
            self.prober.held_up(timer.at, late);
        }
    }

    /// Feeds a timer event scheduled earlier through [`Output::Schedule`].
    pub fn handle_timer(&mut self, timer: TimerEvent) -> Result<()> {
        self.clock = self.clock.max(timer.at);
        if self.status != Status::Active {
            return Ok(());
        }
        match timer.timer {
            Timer::Probe => self.probe_tick(),
            Timer::ProbeTimeout { seq } => self.probe_timeout(seq),
            Timer::RelayTimeout { seq } => self.relay_timeout(seq),
            Timer::Gossip => self.gossip_tick(),
            Timer::Suspicion {
                id,
                gen,
                incarnation,
            } => self.suspicion_timeout(id, gen, incarnation),
        }
        self.settle();
        Ok(())
    }

    /// Asks `seed` to let us in; it answers with its full state. Our own `alive` also goes
    /// out on every datagram we send from now on, so the cluster learns of us even if this
    /// announcement is lost.
    pub fn announce(&mut self, seed: NodeIdentity) -> Result<()> {
        if seed.id == self.me.id {
            return Err(Error::Membership(format!(
                "cannot announce to {seed}: it has our own node id"
            )));
        }
        if self.status != Status::Active {
            return Err(self.not_active());
        }
        self.updates.push(SELF);
        self.send(seed, Kind::Announce, None);
        self.settle();
        Ok(())
    }

    /// Adopts membership records (a seed's [`snapshot`] when joining, or a joiner's record on
    /// the seed). They are taken as the state of the cluster, not as news: nothing is gossiped
    /// on, except this node's answer if a record says it is suspect or dead.
    ///
    /// [`snapshot`]: Membership::snapshot
    pub fn apply(&mut self, members: Vec<MemberRecord>) -> Result<()> {
        if self.status != Status::Active {
            return Err(self.not_active());
        }
        for r in members {
            let state = match (r.active, r.suspect) {
                (false, _) => State::Dead,
                (true, true) => State::Suspect,
                (true, false) => State::Alive,
            };
            let update = Update {
                identity: r.identity,
                incarnation: r.incarnation,
                state,
                accusers: Accusers::default(),
            };
            self.apply_update(&update, Origin::Transfer);
        }
        self.settle();
        Ok(())
    }

    /// Everything this node knows, itself included, to hand to a joining node. Members that
    /// left show as inactive like dead ones; the feed that answers the joiner's announcement
    /// carries the difference and everyone's probe data.
    pub fn snapshot(&self) -> Vec<MemberRecord> {
        let mut all = Vec::with_capacity(self.table.len() + 1);
        if self.status == Status::Active {
            all.push(MemberRecord {
                identity: self.me.clone(),
                incarnation: self.incarnation,
                active: true,
                suspect: false,
            });
        }
        for slot in self.table.slots() {
            let v = self.table.version(slot);
            all.push(MemberRecord {
                identity: self.table.identity(slot),
                incarnation: v.incarnation,
                active: v.state.is_active(),
                suspect: v.state == State::Suspect,
            });
        }
        all
    }

    /// The active member holding node id `id`, if any (this node included).
    pub fn active_identity(&self, id: NodeId) -> Option<NodeIdentity> {
        if id == self.me.id {
            return (self.status == Status::Active).then(|| self.me.clone());
        }
        let slot = self.table.slot(id)?;
        self.table
            .state(slot)
            .is_active()
            .then(|| self.table.identity(slot))
    }

    /// Hands over this node's latest probe data. The first figures go out at once; later ones
    /// at most once per info period, which stretches with the cluster (see `info.rs`).
    pub fn publish(&mut self, probe: ProbeData) -> Result<()> {
        if self.status != Status::Active {
            return Err(self.not_active());
        }
        self.own.probe = Some(probe);
        self.own.dirty = true;
        self.maybe_publish();
        self.settle();
        Ok(())
    }

    /// Leaves the cluster on purpose: tells a few members at once, who spread it; others will
    /// show this node as `left`. The core sends and answers nothing afterwards.
    pub fn leave(&mut self) -> Result<()> {
        if self.status != Status::Active {
            return Ok(());
        }
        self.status = Status::Left;
        let farewell = self.update_of(SELF);
        let fanout = usize::try_from(self.cfg.gossip_fanout).unwrap_or(1).max(1) * 2;
        for slot in self.pick_members(fanout, None) {
            let to = self.table.identity(slot);
            self.send(to, Kind::Gossip, Some(farewell.clone()));
        }
        Ok(())
    }

    /// Takes what the core asked for since the last call.
    pub fn drain(&mut self) -> std::vec::IntoIter<Output> {
        // The buffer goes with its contents: after a join feed or a large `apply` it is big,
        // and 10,000 simulated members cannot each keep one.
        std::mem::take(&mut self.out).into_iter()
    }

    /// One row per node known (alive, suspect, dead or left), this node included, by node id.
    pub fn view(&self) -> Vec<NodeView> {
        let mut rows = Vec::with_capacity(self.table.len() + 1);
        let mine = match self.status {
            Status::Active => MemberState::Alive,
            Status::Left => MemberState::Left,
            Status::Defunct => MemberState::Dead,
        };
        let probe = self.own.probe.clone().unwrap_or_default();
        rows.push(row(
            &self.me,
            self.name.clone(),
            mine,
            self.incarnation,
            probe,
            true,
        ));
        for slot in self.table.slots() {
            let v = self.table.version(slot);
            let (name, probe) = self
                .table
                .last_info(slot)
                .and_then(info::decode)
                .unwrap_or_else(|| ("?".to_string(), ProbeData::default()));
            let state = match v.state {
                State::Alive => MemberState::Alive,
                State::Suspect => MemberState::Suspect,
                State::Dead => MemberState::Dead,
                State::Left => MemberState::Left,
            };
            let ident = self.table.identity(slot);
            rows.push(row(&ident, name, state, v.incarnation, probe, false));
        }
        rows.sort_by_key(|r| r.id);
        rows
    }

    fn not_active(&self) -> Error {
        Error::Membership(format!(
            "{} has {} the cluster",
            self.me,
            match self.status {
                Status::Left => "left",
                _ => "been superseded in",
            }
        ))
    }

    fn event(&mut self, e: MemberEvent) {
        self.out.push(Output::Event(e));
    }

    fn schedule(&mut self, after: Duration, timer: Timer) {
        self.out.push(Output::Schedule {
            timer: TimerEvent {
                at: self.clock + after,
                timer,
            },
            after,
        });
    }

    /// A random delay in `[0, d)`.
    fn jitter(&mut self, d: Duration) -> Duration {
        d.mul_f64(self.rng.random::<f64>())
    }

    /// Members in the cluster as this node sees it, itself included.
    fn cluster_size(&self) -> usize {
        self.table.active_len() + 1
    }

    /// Reports whether this node went from alone to among others, or back.
    fn settle(&mut self) {
        if self.status != Status::Active {
            return;
        }
        let has = self.table.active_len() > 0;
        if has != self.had_members {
            self.had_members = has;
            self.event(if has {
                MemberEvent::Joined
            } else {
                MemberEvent::Alone
            });
        }
    }
}

fn row(
    ident: &NodeIdentity,
    name: String,
    state: MemberState,
    incarnation: u16,
    probe: ProbeData,
    local: bool,
) -> NodeView {
    NodeView {
        id: ident.id,
        name,
        addr: ident.addr.to_string(),
        state,
        incarnation,
        gen: ident.gen,
        probe,
        local,
    }
}

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod invariants;
#[cfg(test)]
mod tests;
