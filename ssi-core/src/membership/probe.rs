//! The SWIM probe cycle, with Lifeguard's local health.
//!
//! ```text
//!  every probe period (x health multiplier):
//!    finish last probe: acked -> health better; silent -> health worse by the nacks missing,
//!                       then: first failure -> probe it again next period (retry);
//!                             second failure -> suspected: told to the suspect (ping)
//!                               and to a few members, who check it at their next probe;
//!                             already suspect -> confirmed: told to its accusers
//!    next target (the retry, else a check, else shuffled round-robin) <-- Ping(seq)
//!  after probe_rtt (x multiplier), no Ack:
//!    k random members <-- PingReq(seq, target)
//!        each relays Ping(seq') to target; Ack -> IndirectAck(seq); silence -> Nack(seq)
//! ```
//!
//! The retry costs one probe period of detection time and is what keeps suspicions rare on a
//! lossy network: at 5% loss a probe with 3 indirect paths fails by chance about once in 1,600
//! tries, which at 10,000 members would be a dozen suspicions a second, each broadcast to
//! everyone; two probes in a row fail about once in 2.6 million.
//!
//! Local health (0..=8) multiplies the probe period and timeouts: a node that misses nacks it
//! was owed, has to refute suspicions of itself, or whose own timers run late (its runtime
//! tells it so), is probably the slow one, so it probes less eagerly and waits longer before
//! accusing others.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::RngExt;

use crate::node::{NodeId, NodeIdentity};

use super::merge::Origin;
use super::message::{Accusers, Kind, State, Update, MAX_ACCUSERS};
use super::table::Slot;
use super::{Membership, Timer};

const MAX_HEALTH: u8 = 8;
/// Relayed probes in flight at most (a burst of ping-reqs cannot grow memory without bound).
const MAX_RELAYS: usize = 1024;

/// The probe in flight.
#[derive(Clone, Copy, Debug)]
struct Probe {
    seq: u32,
    slot: Slot,
    gen: u64,
    acked: bool,
    /// Members asked to probe indirectly.
    asked: u8,
    nacks: u8,
    /// Whether this probe retries one that failed.
    retry: bool,
}

/// A probe this node relays for another.
#[derive(Clone, Debug)]
struct Relay {
    requester: NodeIdentity,
    seq: u32,
    target: NodeId,
}

/// Probe state of one node.
#[derive(Debug, Default)]
pub struct Prober {
    next_seq: u32,
    current: Option<Probe>,
    /// A member whose probe failed once, to probe again next (slot, generation).
    retry: Option<(Slot, u64)>,
    /// A suspect to check with a probe of our own next (slot, generation): we heard of the
    /// suspicion first-hand, from its accuser, and our failure would confirm it.
    check: Option<(Slot, u64)>,
    relays: BTreeMap<u32, Relay>,
    health: u8,
    /// When the last hold-up of this node ended, on the core's clock (see `held_up`).
    held_up_until: Duration,
}

impl Prober {
    fn seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    /// Lifeguard's multiplier of probe period and timeouts.
    pub fn multiplier(&self) -> u32 {
        u32::from(self.health) + 1
    }

    /// Local health got worse by `by`.
    pub fn worse(&mut self, by: u8) {
        self.health = self.health.saturating_add(by).min(MAX_HEALTH);
    }

    /// The timer due at `due` ran `late` after it: this node was held up. Timers due before
    /// the end of a hold-up already counted are the same hold-up.
    pub fn held_up(&mut self, due: Duration, late: Duration) {
        if due >= self.held_up_until {
            self.held_up_until = due + late;
            self.worse(1);
        }
    }

    fn better(&mut self) {
        self.health = self.health.saturating_sub(1);
    }
}

impl<R: RngExt> Membership<R> {
    pub(super) fn probe_tick(&mut self) {
        if let Some(p) = self.prober.current.take() {
            self.finish_probe(p);
        }
        let mult = self.prober.multiplier();
        self.schedule(self.cfg.probe_period * mult, Timer::Probe);
        self.contact_the_dead();
        let retry = self.prober.retry.take().filter(|&(slot, gen)| {
            let v = self.table.version(slot);
            v.gen == gen && v.state.is_active()
        });
        let check = self
            .prober
            .check
            .take()
            .filter(|&(slot, gen)| self.should_check(slot, gen));
        let Some(slot) = retry
            .or(check)
            .map(|(slot, _)| slot)
            .or_else(|| self.table.next_probe(&mut self.rng))
        else {
            return;
        };
        let seq = self.prober.seq();
        let target = self.table.identity(slot);
        self.prober.current = Some(Probe {
            seq,
            slot,
            gen: target.gen,
            acked: false,
            asked: 0,
            nacks: 0,
            retry: retry.is_some(),
        });
        self.send(target, Kind::Ping { seq }, None);
        self.schedule(self.cfg.probe_rtt * mult, Timer::ProbeTimeout { seq });
    }

    /// Pings a random dead member now and then, so that each one hears from the cluster
    /// about once per probe period in all: a member wrongly declared dead (a partition that
    /// healed, a long pause) gets told and renews itself, or tells us we are the dead ones.
    fn contact_the_dead(&mut self) {
        let dead = self.table.dead_len();
        if dead == 0 || self.rng.random_range(0..self.cluster_size()) >= dead {
            return;
        }
        if let Some(slot) = self.table.random_dead(&mut self.rng) {
            let seq = self.prober.seq();
            let to = self.table.identity(slot);
            self.send(to, Kind::Ping { seq }, None);
        }
    }

    fn finish_probe(&mut self, p: Probe) {
        if p.acked {
            self.prober.better();
            return;
        }
        // Nacks prove our own network works; each one missing hints it does not.
        let missed = if p.asked > 0 {
            p.asked - p.nacks.min(p.asked)
        } else {
            1
        };
        self.prober.worse(missed);
        let v = self.table.version(p.slot);
        if v.gen != p.gen || !v.state.is_active() {
            return;
        }
        if !p.retry && v.state == State::Alive {
            self.prober.retry = Some((p.slot, p.gen));
            return;
        }
        self.accuse(p.slot, v.incarnation);
    }

    /// Suspects `slot` on the strength of our own failed probe. A new suspicion goes at once
    /// to the suspect (carried first on a ping: alive, it refutes in its answer) and to
    /// `gossip_fanout` members, who check it with probes of their own. A confirmation goes at
    /// once to the members that suspected it before us: their timeouts shrink with it.
    fn accuse(&mut self, slot: Slot, incarnation: u16) {
        let confirming = self.table.state(slot) == State::Suspect;
        let accusation = Update {
            identity: self.table.identity(slot),
            incarnation,
            state: State::Suspect,
            accusers: Accusers::one(self.me.id),
        };
        self.apply_update(&accusation, Origin::Gossip);
        let now = self.update_of(slot);
        if now.state != State::Suspect || now.incarnation != incarnation {
            return;
        }
        let to: Vec<NodeIdentity> = if confirming {
            let me = self.me.id;
            now.accusers
                .as_slice()
                .iter()
                .filter(|&&id| id != me)
                .filter_map(|&id| self.active_identity(id))
                .collect()
        } else {
            let seq = self.prober.seq();
            self.send(now.identity.clone(), Kind::Ping { seq }, None);
            let fanout = usize::try_from(self.cfg.gossip_fanout).unwrap_or(1);
            self.pick_members(fanout, Some(slot))
                .into_iter()
                .map(|s| self.table.identity(s))
                .collect()
        };
        for member in to {
            self.send(member, Kind::Gossip, Some(now.clone()));
        }
    }

    /// Whether to check suspect `slot` (generation `gen`) with a probe of our own: it is still
    /// suspect, and its suspicion lacks confirmations we could add.
    fn should_check(&self, slot: Slot, gen: u64) -> bool {
        let v = self.table.version(slot);
        if v.gen != gen || v.state != State::Suspect {
            return false;
        }
        self.suspicions.get(slot).is_some_and(|s| {
            s.accusers.len() < MAX_ACCUSERS && !s.accusers.as_slice().contains(&self.me.id)
        })
    }

    /// Takes note of a suspicion heard from one of its accusers (`from`): we check the suspect
    /// at our next probe, so that a crashed member is confirmed within a probe period or two
    /// instead of whenever its turn comes in others' probe rounds.
    pub(super) fn heard_suspicion(&mut self, u: &Update, from: NodeId) {
        if u.state != State::Suspect || !u.accusers.as_slice().contains(&from) {
            return;
        }
        if let Some(slot) = self.table.slot(u.identity.id) {
            if self.should_check(slot, u.identity.gen) && self.prober.check.is_none() {
                self.prober.check = Some((slot, u.identity.gen));
            }
        }
    }

    pub(super) fn probe_timeout(&mut self, seq: u32) {
        let Some(p) = self.prober.current.filter(|p| p.seq == seq && !p.acked) else {
            return;
        };
        let target = self.table.identity(p.slot);
        let k = usize::try_from(self.cfg.indirect_probes).unwrap_or(0);
        let helpers = self.pick_members(k, Some(p.slot));
        for &h in &helpers {
            let to = self.table.identity(h);
            self.send(
                to,
                Kind::PingReq {
                    seq,
                    target: target.clone(),
                },
                None,
            );
        }
        if let Some(p) = self.prober.current.as_mut() {
            p.asked = u8::try_from(helpers.len()).unwrap_or(u8::MAX);
        }
    }

    pub(super) fn on_ack(&mut self, from: &NodeIdentity, seq: u32) {
        if let Some(r) = self.prober.relays.get(&seq) {
            if r.target == from.id {
                if let Some(r) = self.prober.relays.remove(&seq) {
                    let kind = Kind::IndirectAck {
                        seq: r.seq,
                        target: r.target,
                    };
                    // The target's state as it just told us: it may refute a suspicion.
                    let state = self.table.slot(r.target).map(|s| self.update_of(s));
                    self.send(r.requester, kind, state);
                }
            }
            return;
        }
        self.acked(seq, from.id);
    }

    pub(super) fn acked(&mut self, seq: u32, target: NodeId) {
        let table = &self.table;
        if let Some(p) = self.prober.current.as_mut() {
            if p.seq == seq && table.id(p.slot) == target {
                p.acked = true;
            }
        }
    }

    pub(super) fn on_nack(&mut self, seq: u32, target: NodeId) {
        let table = &self.table;
        if let Some(p) = self.prober.current.as_mut() {
            if p.seq == seq && table.id(p.slot) == target {
                p.nacks = p.nacks.saturating_add(1);
            }
        }
    }

    pub(super) fn on_ping_req(&mut self, requester: NodeIdentity, seq: u32, target: NodeIdentity) {
        if target.id == self.me.id {
            let kind = Kind::IndirectAck {
                seq,
                target: self.me.id,
            };
            self.send(requester, kind, None);
            return;
        }
        if self.prober.relays.len() >= MAX_RELAYS {
            return;
        }
        let mine = self.prober.seq();
        self.prober.relays.insert(
            mine,
            Relay {
                requester,
                seq,
                target: target.id,
            },
        );
        self.send(target, Kind::Ping { seq: mine }, None);
        // Answer before the requester's probe period ends.
        let wait = self.cfg.probe_rtt.mul_f64(0.8);
        self.schedule(wait, Timer::RelayTimeout { seq: mine });
    }

    pub(super) fn relay_timeout(&mut self, seq: u32) {
        if let Some(r) = self.prober.relays.remove(&seq) {
            let kind = Kind::Nack {
                seq: r.seq,
                target: r.target,
            };
            self.send(r.requester, kind, None);
        }
    }

    /// Probes a suspect once more, directly and through `indirect_probes` others, each
    /// datagram carrying the suspicion so that the suspect refutes it if alive. Any answer
    /// carries its current incarnation, which ends the suspicion.
    fn last_chance(&mut self, slot: Slot) {
        let target = self.table.identity(slot);
        let suspicion = self.update_of(slot);
        let seq = self.prober.seq();
        self.send(target.clone(), Kind::Ping { seq }, None);
        let k = usize::try_from(self.cfg.indirect_probes).unwrap_or(0);
        for h in self.pick_members(k, Some(slot)) {
            let to = self.table.identity(h);
            let kind = Kind::PingReq {
                seq,
                target: target.clone(),
            };
            self.send(to, kind, Some(suspicion.clone()));
        }
    }

    pub(super) fn suspicion_timeout(&mut self, id: NodeId, gen: u64, incarnation: u16) {
        let Some(slot) = self.table.slot(id) else {
            return;
        };
        let v = self.table.version(slot);
        if v.state != State::Suspect || v.gen != gen || v.incarnation != incarnation {
            return;
        }
        let Some(s) = self.suspicions.get(slot).copied() else {
            return;
        };
        if self.clock < s.deadline {
            return;
        }
        let confirmations = s.accusers.len().saturating_sub(1);
        if !s.last_chance && confirmations < self.expected_confirmations() {
            // Nobody confirmed: most likely a false suspicion whose refutation we missed
            // (push gossip leaves a few members out). Ask the suspect itself, directly and
            // through others, before declaring it dead; a member that really crashed is
            // confirmed by its other probers and does not wait for this.
            self.suspicions.give_last_chance(slot);
            self.last_chance(slot);
            let wait = self.cfg.probe_period * self.prober.multiplier();
            self.schedule(
                wait,
                Timer::Suspicion {
                    id,
                    gen,
                    incarnation,
                },
            );
            return;
        }
        let verdict = Update {
            identity: self.table.identity(slot),
            incarnation,
            state: State::Dead,
            accusers: Accusers::default(),
        };
        self.apply_update(&verdict, Origin::Gossip);
    }
}
