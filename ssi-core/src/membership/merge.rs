//! Taking in what others say: datagrams, membership updates (SWIM precedence), claims about
//! this node (refutation, renewal), probe data, and the events each change makes.

use rand::RngExt;

use crate::node::NodeIdentity;

use super::dissemination::SELF;
use super::message::{self, Accusers, DecodeError, Header, InfoItem, Kind, Packet, State, Update};
use super::suspicion::{self, Suspicion, CONFIRMATIONS};
use super::table::{overrides, Slot, Version};
use super::{MemberEvent, Membership, Status, Timer};

/// How an update reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Gossip: news, spread it on if it changes what we know.
    Gossip,
    /// A state transfer (join feed, snapshot, a datagram's sender): what the cluster already
    /// knows, kept but not spread on.
    Transfer,
}

fn alive(identity: &NodeIdentity, incarnation: u16) -> Update {
    Update {
        identity: identity.clone(),
        incarnation,
        state: State::Alive,
        accusers: Accusers::default(),
    }
}

impl<R: RngExt> Membership<R> {
    /// Handles a decoded datagram: its sender, its piggy-backed items, then what it asks for.
    pub(super) fn receive(&mut self, packet: Packet<'_>) {
        let Header {
            from,
            incarnation,
            kind,
        } = packet.header;
        if from.id == self.me.id {
            if from.gen > self.me.gen {
                self.supersede();
            } else if from.gen < self.me.gen {
                // An older run of our node id: tell it it is superseded.
                let me = self.update_of(SELF);
                self.send(from, Kind::Gossip, Some(me));
            }
            return;
        }
        let correction = self.learn_sender(&from, incarnation);
        let origin = if kind == Kind::Feed {
            Origin::Transfer
        } else {
            Origin::Gossip
        };
        for u in &packet.updates {
            self.apply_update(u, origin);
            self.heard_suspicion(u, from.id);
        }
        for item in &packet.infos {
            self.apply_info(item, origin);
        }
        if self.status != Status::Active {
            return;
        }
        if std::mem::take(&mut self.resync) {
            // We just renewed and forgot our death verdicts: the sender is alive, ask it for
            // the full state.
            self.send(from.clone(), Kind::Announce, None);
        }
        match kind {
            Kind::Ping { seq } => {
                // The correction rides on the answer.
                self.send(from, Kind::Ack { seq }, correction);
                return;
            }
            Kind::Ack { seq } => self.on_ack(&from, seq),
            Kind::PingReq { seq, target } => self.on_ping_req(from.clone(), seq, target),
            Kind::IndirectAck { seq, target } => self.acked(seq, target),
            Kind::Nack { seq, target } => self.on_nack(seq, target),
            Kind::Announce => {
                // The feed holds every member, the announcer's own record included.
                self.on_announce(from);
                return;
            }
            Kind::Feed | Kind::Gossip => {}
        }
        if let Some(c) = correction {
            self.send(from, Kind::Gossip, Some(c));
        }
    }

    /// Lets a node in: spreads its arrival and sends it the full state.
    fn on_announce(&mut self, from: NodeIdentity) {
        if let Some(slot) = self.table.slot(from.id) {
            let v = self.table.version(slot);
            if v.gen == from.gen && v.state.is_active() {
                self.updates.push(slot);
            }
        }
        self.send_feed(from);
    }

    /// Checks the probe-data bodies this node would keep (new to it); refusing the datagram
    /// then leaves everything unchanged. Bodies it already has are forwarded as they were.
    pub(super) fn check_infos(&self, packet: &Packet<'_>) -> Result<(), DecodeError> {
        for item in &packet.infos {
            let keep = match self.table.slot(item.id) {
                None => item.id != self.me.id,
                Some(slot) => {
                    self.table.version(slot).gen != item.gen
                        || self.table.info(slot).is_none_or(|(seq, _)| item.seq > seq)
                }
            };
            if keep {
                message::check_info_body(item.body)?;
            }
        }
        Ok(())
    }

    /// Takes a datagram's sender as alive at the incarnation it states. Returns what to tell
    /// the sender when it is a run we know is over (dead, or replaced by a newer one), so that
    /// it renews itself or stops.
    pub(super) fn learn_sender(&mut self, from: &NodeIdentity, incarnation: u16) -> Option<Update> {
        if let Some(slot) = self.table.slot(from.id) {
            let v = self.table.version(slot);
            let over = from.gen < v.gen || (from.gen == v.gen && !v.state.is_active());
            if over {
                // The last datagrams of a member that left need no answer.
                let left = from.gen == v.gen && v.state == State::Left;
                return (!left).then(|| self.update_of(slot));
            }
        }
        self.apply_update(&alive(from, incarnation), Origin::Transfer);
        None
    }

    /// Applies one membership update.
    pub(super) fn apply_update(&mut self, u: &Update, origin: Origin) {
        if u.identity.id == self.me.id {
            self.about_me(u);
            return;
        }
        let new = Version {
            gen: u.identity.gen,
            incarnation: u.incarnation,
            state: u.state,
        };
        let slot = match self.table.slot(u.identity.id) {
            None => {
                let Some(slot) =
                    self.table
                        .insert(&u.identity, u.incarnation, u.state, &mut self.rng)
                else {
                    return;
                };
                if u.state.is_active() {
                    self.event(MemberEvent::Up(u.identity.clone()));
                }
                if u.state == State::Suspect {
                    self.start_suspicion(slot, u);
                }
                slot
            }
            Some(slot) => {
                let old = self.table.version(slot);
                if overrides(old, new) {
                    let old_identity = self.table.identity(slot);
                    self.table
                        .set(slot, &u.identity, u.incarnation, u.state, &mut self.rng);
                    self.suspicions.end(slot);
                    if u.state == State::Suspect {
                        self.start_suspicion(slot, u);
                    }
                    self.transition(old_identity, old.state, &u.identity, u.state);
                    slot
                } else if old == new && new.state == State::Suspect {
                    if !self.confirm(slot, &u.accusers) {
                        return;
                    }
                    slot
                } else {
                    return;
                }
            }
        };
        if origin == Origin::Gossip {
            self.updates.push(slot);
        }
    }

    /// The events of a member's change of state.
    fn transition(&mut self, old: NodeIdentity, was: State, new: &NodeIdentity, is: State) {
        let event = if old.gen != new.gen {
            if is.is_active() {
                Some(MemberEvent::Replaced {
                    old,
                    new: new.clone(),
                })
            } else if was.is_active() {
                Some(final_event(new, is))
            } else {
                None
            }
        } else {
            match (was, is) {
                (State::Alive | State::Suspect, State::Dead) | (_, State::Left) => {
                    Some(final_event(new, is))
                }
                _ => None,
            }
        };
        if let Some(e) = event {
            self.event(e);
        }
    }

    /// Confirmations expected before a suspicion reaches its shortest timeout: every member
    /// but the suspect and the first accuser could confirm.
    pub(super) fn expected_confirmations(&self) -> usize {
        CONFIRMATIONS.min(self.cluster_size().saturating_sub(2))
    }

    fn suspicion_bounds(&self) -> (std::time::Duration, std::time::Duration) {
        suspicion::bounds(
            self.cfg.suspect_to_down,
            self.cfg.suspect_max_factor,
            self.cluster_size(),
        )
    }

    fn start_suspicion(&mut self, slot: Slot, u: &Update) {
        let (min, max) = self.suspicion_bounds();
        let confirmations = u.accusers.len().saturating_sub(1);
        let timeout = suspicion::timeout(min, max, confirmations, self.expected_confirmations());
        self.suspicions.start(
            slot,
            Suspicion {
                gen: u.identity.gen,
                incarnation: u.incarnation,
                started: self.clock,
                accusers: u.accusers,
                deadline: self.clock + timeout,
                last_chance: false,
            },
        );
        self.schedule(
            timeout,
            Timer::Suspicion {
                id: u.identity.id,
                gen: u.identity.gen,
                incarnation: u.incarnation,
            },
        );
    }

    /// Adds independent accusers to a suspicion; true if any was new (then it is news).
    fn confirm(&mut self, slot: Slot, accusers: &Accusers) -> bool {
        let (min, max) = self.suspicion_bounds();
        let expected = self.expected_confirmations();
        let Some(deadline) = self.suspicions.confirm(slot, accusers, min, max, expected) else {
            return false;
        };
        let v = self.table.version(slot);
        let id = self.table.id(slot);
        self.schedule(
            deadline.saturating_sub(self.clock),
            Timer::Suspicion {
                id,
                gen: v.gen,
                incarnation: v.incarnation,
            },
        );
        true
    }

    /// A claim about this node itself.
    fn about_me(&mut self, u: &Update) {
        if self.status != Status::Active {
            return;
        }
        match u.identity.gen.cmp(&self.me.gen) {
            std::cmp::Ordering::Greater => self.supersede(),
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => match u.state {
                State::Alive => {}
                State::Suspect => {
                    if u.incarnation >= self.incarnation {
                        self.refute(u.incarnation);
                    }
                }
                // Some member holds this run for dead: final there, so only a new run helps.
                State::Dead | State::Left => self.renew(),
            },
        }
    }

    /// A newer run of our node id exists: this one is stale and stops.
    fn supersede(&mut self) {
        self.status = Status::Defunct;
        self.event(MemberEvent::Defunct);
    }

    /// Answers a suspicion with a higher incarnation (Lifeguard: and takes it as a sign that
    /// this node is slow, probing less eagerly).
    fn refute(&mut self, suspected: u16) {
        match suspected.checked_add(1) {
            Some(i) => {
                self.incarnation = i;
                self.updates.push(SELF);
                self.prober.worse(1);
            }
            None => self.renew(),
        }
    }

    /// Comes back under the next generation after being declared dead, forgetting the death
    /// verdicts of its previous run (likely made while it was cut off) and asking for the full
    /// state again.
    fn renew(&mut self) {
        self.me.gen += 1;
        self.incarnation = 0;
        self.table.forget_dead();
        self.resync = true;
        self.event(MemberEvent::Rejoined(self.me.clone()));
        self.updates.push(SELF);
        self.own.renew();
        self.maybe_publish();
    }

    /// Applies one probe-data item.
    pub(super) fn apply_info(&mut self, item: &InfoItem<'_>, origin: Origin) {
        if item.id == self.me.id || item.seq == 0 {
            return;
        }
        let slot = match self.table.slot(item.id) {
            Some(slot) => slot,
            None => {
                // A member we missed the arrival of (or forgot): the publication names it.
                let identity = NodeIdentity {
                    id: item.id,
                    addr: item.addr,
                    gen: item.gen,
                };
                self.apply_update(&alive(&identity, 0), Origin::Transfer);
                let Some(slot) = self.table.slot(item.id) else {
                    return;
                };
                slot
            }
        };
        let v = self.table.version(slot);
        if v.gen != item.gen {
            return;
        }
        if self
            .table
            .info(slot)
            .is_some_and(|(seq, _)| seq >= item.seq)
        {
            return;
        }
        self.table.set_info(slot, item.seq, item.body);
        if origin == Origin::Gossip && v.state.is_active() {
            self.infos.push(slot);
        }
    }
}

fn final_event(identity: &NodeIdentity, state: State) -> MemberEvent {
    if state == State::Left {
        MemberEvent::Left(identity.clone())
    } else {
        MemberEvent::Dead(identity.clone())
    }
}
