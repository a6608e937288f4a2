//! Cluster membership: who is alive, suspect, dead or gone, with SWIM (the `foca` crate).
//!
//! This is a protocol core with no I/O: the caller feeds it packets and timer events, and it
//! emits [`Output`]s (datagrams to send, timers to arm, membership events) that a runtime turns
//! into real I/O. The daemon's runtime is [`crate::gossip`] (UDP + tokio timers); the
//! simulator of the testbed drives the very same core with a simulated clock and network.
//!
//! ```text
//!   datagram / timer / info / leave
//!              |
//!              v
//!   +---------------------+      custom broadcasts      +-------------+
//!   | Membership          |---------------------------->| InfoStore   |
//!   |  foca (SWIM)        |  (probe data, leave notes)  | (shared)    |
//!   +---------------------+                             +-------------+
//!              |
//!              v
//!   Output::Send / Output::Schedule / Output::Event
//! ```
//!
//! On top of SWIM's alive/suspect/down, a node leaving on purpose broadcasts a leave notice
//! before declaring itself down, so others show it as `left`, not `dead`.

pub mod broadcast;
pub mod sim;

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use foca::{Foca, Member, Notification, PostcardCodec, Runtime, State, Timer};
use rand::RngExt;

use crate::config::GossipConfig;
use crate::error::{Error, Result};
use crate::node::{NodeId, NodeIdentity};
use crate::probe::ProbeData;
use crate::view::{MemberState, NodeView};

use broadcast::{Gossiped, Handler};

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
    /// The cluster declared this node dead and it cannot come back.
    Defunct,
}

/// A timer the core asked for, to be handed back through [`Membership::handle_timer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerEvent(Timer<NodeIdentity>);

/// What one node knows of another, as exchanged when a node joins.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberRecord {
    /// The member.
    pub identity: NodeIdentity,
    /// Its incarnation.
    pub incarnation: u16,
    /// Alive, suspect or down.
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

/// Collects what foca asks for during one call.
#[derive(Debug, Default)]
struct Outbox {
    out: Vec<Output>,
    notes: Vec<foca::OwnedNotification<NodeIdentity>>,
}

impl Runtime<NodeIdentity> for Outbox {
    fn notify(&mut self, notification: Notification<'_, NodeIdentity>) {
        self.notes.push(notification.to_owned());
    }

    fn send_to(&mut self, to: NodeIdentity, data: &[u8]) {
        self.out.push(Output::Send {
            to,
            data: data.to_vec(),
        });
    }

    fn submit_after(&mut self, timer: Timer<NodeIdentity>, after: Duration) {
        self.out.push(Output::Schedule {
            timer: TimerEvent(timer),
            after,
        });
    }
}

/// The membership protocol core of one node.
pub struct Membership<R> {
    foca: Foca<NodeIdentity, PostcardCodec, R, Handler>,
    handler: Handler,
    name: String,
    info_seq: u64,
    outbox: Outbox,
    left: bool,
}

impl<R: RngExt> std::fmt::Debug for Membership<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("identity", self.foca.identity())
            .field("name", &self.name)
            .finish()
    }
}

/// foca's settings from ours.
fn foca_config(g: &GossipConfig) -> foca::Config {
    let size = NonZeroU32::new(g.expected_size.max(1)).unwrap_or(NonZeroU32::MIN);
    let mut c = foca::Config::new_lan(size);
    c.probe_period = g.probe_period;
    c.probe_rtt = g.probe_rtt;
    c.suspect_to_down_after = g.suspect_to_down;
    c.max_packet_size = NonZeroUsize::new(MAX_PACKET).unwrap_or(NonZeroUsize::MIN);
    if let Some(p) = c.periodic_gossip.as_mut() {
        p.frequency = g.gossip_interval;
    }
    // Keep the verdict on dead members for a day so that a stale identity cannot come back.
    c.remove_down_after = Some(Duration::from_secs(24 * 3600));
    c
}

fn member_error(e: foca::Error) -> Error {
    Error::Membership(e.to_string())
}

impl<R: RngExt> Membership<R> {
    /// A core for the node `me` called `name`.
    pub fn new(me: NodeIdentity, name: String, config: &GossipConfig, rng: R) -> Self {
        let handler = Handler::default();
        let foca = Foca::with_custom_broadcast(
            me,
            foca_config(config),
            rng,
            PostcardCodec,
            handler.clone(),
        );
        Membership {
            foca,
            handler,
            name,
            info_seq: 0,
            outbox: Outbox::default(),
            left: false,
        }
    }

    /// This node's current identity (it changes when the node renews itself).
    pub fn identity(&self) -> &NodeIdentity {
        self.foca.identity()
    }

    /// Number of other active members.
    pub fn active_members(&self) -> usize {
        self.foca.num_members()
    }

    /// Feeds a received datagram (already authenticated).
    pub fn handle_packet(&mut self, data: &[u8]) -> Result<()> {
        let r = self.foca.handle_data(data, &mut self.outbox);
        self.settle();
        r.map_err(member_error)
    }

    /// Feeds a timer event scheduled earlier through [`Output::Schedule`].
    pub fn handle_timer(&mut self, timer: TimerEvent) -> Result<()> {
        let r = self.foca.handle_timer(timer.0, &mut self.outbox);
        self.settle();
        r.map_err(member_error)
    }

    /// Asks `seed` to let us in.
    pub fn announce(&mut self, seed: NodeIdentity) -> Result<()> {
        let r = self.foca.announce(seed, &mut self.outbox);
        self.settle();
        r.map_err(member_error)
    }

    /// Adopts a membership snapshot (from a join handshake).
    pub fn apply(&mut self, members: Vec<MemberRecord>) -> Result<()> {
        let updates = members.into_iter().map(|m| {
            let state = match (m.active, m.suspect) {
                (false, _) => State::Down,
                (true, true) => State::Suspect,
                (true, false) => State::Alive,
            };
            Member::new(m.identity, m.incarnation, state)
        });
        let r = self.foca.apply_many(updates, true, &mut self.outbox);
        self.settle();
        r.map_err(member_error)
    }

    /// Everything this node knows, itself included, to hand to a joining node.
    pub fn snapshot(&self) -> Vec<MemberRecord> {
        let mut all: Vec<_> = self
            .foca
            .iter_membership_state()
            .map(|m| MemberRecord {
                identity: m.id().clone(),
                incarnation: m.incarnation(),
                active: m.state() != State::Down,
                suspect: m.state() == State::Suspect,
            })
            .collect();
        if !self.left {
            all.push(MemberRecord {
                identity: self.foca.identity().clone(),
                incarnation: 0,
                active: true,
                suspect: false,
            });
        }
        all
    }

    /// The active member holding node id `id`, if any (this node included).
    pub fn active_identity(&self, id: NodeId) -> Option<NodeIdentity> {
        if self.foca.identity().id == id && !self.left {
            return Some(self.foca.identity().clone());
        }
        self.foca
            .iter_members()
            .find(|m| m.id().id == id)
            .map(|m| m.id().clone())
    }

    /// Publishes this node's probe data to the cluster.
    pub fn publish(&mut self, probe: ProbeData) -> Result<()> {
        self.info_seq += 1;
        let me = self.foca.identity();
        let item = Gossiped::Info {
            id: me.id,
            gen: me.gen,
            seq: self.info_seq,
            name: self.name.clone(),
            probe,
        };
        self.add_broadcast(&item)
    }

    /// Leaves the cluster on purpose: others will show this node as `left`.
    pub fn leave(&mut self) -> Result<()> {
        let me = self.foca.identity().clone();
        self.add_broadcast(&Gossiped::Leave {
            id: me.id,
            gen: me.gen,
        })?;
        // Spread the notice before the down update, then declare ourselves down.
        let r = self
            .foca
            .gossip(&mut self.outbox)
            .and_then(|()| self.foca.leave_cluster(&mut self.outbox));
        self.left = true;
        self.settle();
        r.map_err(member_error)
    }

    fn add_broadcast(&mut self, item: &Gossiped) -> Result<()> {
        let bytes = postcard::to_stdvec(item).map_err(|e| Error::Membership(e.to_string()))?;
        self.foca
            .add_broadcast(&bytes)
            .map(|_| ())
            .map_err(member_error)
    }

    /// Takes what the core asked for since the last call.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.outbox.out.drain(..)
    }

    /// Turns foca's notifications and received leave notices into events.
    fn settle(&mut self) {
        use foca::OwnedNotification as N;
        let notes: Vec<_> = self.outbox.notes.drain(..).collect();
        for note in notes {
            let event = match note {
                N::MemberUp(id) => MemberEvent::Up(id),
                N::MemberDown(id) if self.handler.store().has_left(id.id, id.gen) => {
                    MemberEvent::Left(id)
                }
                N::MemberDown(id) => MemberEvent::Dead(id),
                N::Rename(old, new) => MemberEvent::Replaced { old, new },
                N::Active => MemberEvent::Joined,
                N::Idle => MemberEvent::Alone,
                N::Defunct => MemberEvent::Defunct,
                N::Rejoin(id) => MemberEvent::Rejoined(id),
            };
            self.outbox.out.push(Output::Event(event));
        }
        // A leave notice that arrives after the member was already declared down turns a
        // `dead` verdict into `left`.
        let leaves: Vec<_> = self.handler.store().new_leaves.drain(..).collect();
        for (id, gen) in leaves {
            let down = self.foca.iter_membership_state().find(|m| {
                m.id().id == id && m.id().gen == gen && m.state() == State::Down
            });
            if let Some(m) = down {
                let ident = m.id().clone();
                self.outbox
                    .out
                    .push(Output::Event(MemberEvent::Left(ident)));
            }
        }
    }

    /// One row per node known (alive, suspect, dead or left), this node included, by node id.
    pub fn view(&self) -> Vec<NodeView> {
        let me = self.foca.identity();
        let store = self.handler.store();
        let row = |ident: &NodeIdentity, state: MemberState, incarnation: u16| {
            let info = store.info.get(&ident.id);
            let probe = info.map(|i| i.probe.clone()).unwrap_or_default();
            NodeView {
                id: ident.id,
                name: info.map_or_else(|| "?".to_string(), |i| i.name.clone()),
                addr: ident.addr.to_string(),
                state,
                incarnation,
                gen: ident.gen,
                cpus: probe.cpus,
                mem_total_bytes: probe.mem_total_bytes,
                mem_free_bytes: probe.mem_free_bytes,
                load1: probe.load1,
                load5: probe.load5,
                load15: probe.load15,
                ssi_procs: probe.ssi_procs,
                local: ident.id == me.id,
            }
        };
        let mine = if self.left {
            MemberState::Left
        } else {
            MemberState::Alive
        };
        let mut rows = vec![row(me, mine, 0)];
        for m in self.foca.iter_membership_state() {
            let ident = m.id();
            let state = match m.state() {
                State::Alive => MemberState::Alive,
                State::Suspect => MemberState::Suspect,
                State::Down if store.has_left(ident.id, ident.gen) => MemberState::Left,
                State::Down => MemberState::Dead,
            };
            rows.push(row(ident, state, m.incarnation()));
        }
        rows.sort_by_key(|r| r.id);
        rows
    }
}

#[cfg(test)]
mod tests;
