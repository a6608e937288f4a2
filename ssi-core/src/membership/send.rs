//! Composing datagrams: what rides on each, gossip rounds, and the full-state feed for a
//! joining node.
//!
//! Every datagram carries, after its header, as many membership updates as fit (fewest
//! transmissions first), then probe-data items in the room left, within the byte allowance of
//! `info_budget` per second. A gossip round sends datagrams holding nothing else to
//! `gossip_fanout` random members while membership updates are queued; otherwise at most one,
//! when a datagram's worth of probe data is queued and allowed.

use rand::RngExt;

use crate::node::NodeIdentity;

use super::dissemination::{retransmit_limit, SELF};
use super::info::{self, INFO_TRANSMISSIONS};
use super::message::{Accusers, Header, InfoItem, Kind, State, Update, Writer};
use super::table::Slot;
use super::{Membership, Status, Timer, MAX_PACKET};

impl<R: RngExt> Membership<R> {
    /// The update that describes `slot` (or this node, for [`SELF`]) now.
    pub(super) fn update_of(&self, slot: Slot) -> Update {
        if slot == SELF {
            return Update {
                identity: self.me.clone(),
                incarnation: self.incarnation,
                state: if self.status == Status::Left {
                    State::Left
                } else {
                    State::Alive
                },
                accusers: Accusers::default(),
            };
        }
        let v = self.table.version(slot);
        let accusers = match v.state {
            State::Suspect => self
                .suspicions
                .get(slot)
                .map(|s| s.accusers)
                .unwrap_or_default(),
            _ => Accusers::default(),
        };
        Update {
            identity: self.table.identity(slot),
            incarnation: v.incarnation,
            state: v.state,
            accusers,
        }
    }

    fn info_of(&self, slot: Slot) -> Option<InfoItem<'_>> {
        if slot == SELF {
            return (self.own.seq > 0).then_some(InfoItem {
                id: self.me.id,
                addr: self.me.addr,
                gen: self.me.gen,
                seq: self.own.seq,
                body: &self.own.body,
            });
        }
        let (seq, body) = self.table.info(slot)?;
        let identity = self.table.identity(slot);
        Some(InfoItem {
            id: identity.id,
            addr: identity.addr,
            gen: identity.gen,
            seq,
            body,
        })
    }

    fn info_of_live(&self, slot: Slot) -> Option<InfoItem<'_>> {
        if slot != SELF && !self.table.is_live(slot) {
            return None;
        }
        self.info_of(slot)
    }

    fn header(&self, kind: Kind) -> Header {
        Header {
            from: self.me.clone(),
            incarnation: self.incarnation,
            kind,
        }
    }

    /// Sends a datagram of `kind` to `to`, `urgent` first, then what is queued.
    pub(super) fn send(&mut self, to: NodeIdentity, kind: Kind, urgent: Option<Update>) {
        let mut w = Writer::new(&self.header(kind));
        if let Some(u) = urgent {
            w.push_update(&u);
        }
        // Lifeguard's buddy system: a suspect we talk to hears of it first, to refute at once.
        if let Some(slot) = self.table.slot(to.id) {
            let v = self.table.version(slot);
            if v.state == State::Suspect && v.gen == to.gen {
                w.push_update(&self.update_of(slot));
            }
        }
        self.piggyback(&mut w);
        self.out.push(super::Output::Send {
            to,
            data: w.finish(),
        });
    }

    fn piggyback(&mut self, w: &mut Writer) {
        let limit = retransmit_limit(self.cfg.retransmit_mult, self.cluster_size());
        let mut updates = std::mem::take(&mut self.updates);
        updates.select(limit, |slot| {
            // A forgotten member's item retires unsent.
            if slot != SELF && !self.table.is_live(slot) {
                return true;
            }
            w.push_update(&self.update_of(slot))
        });
        self.updates = updates;
        // Probe data: only in the room left, and within the byte allowance.
        self.allowance.refill(self.clock, self.cfg.info_budget);
        let allowed = self.allowance.available();
        let before = w.room();
        let mut infos = std::mem::take(&mut self.infos);
        infos.select(INFO_TRANSMISSIONS, |slot| {
            if before - w.room() >= allowed {
                return false;
            }
            match self.info_of_live(slot) {
                Some(item) => w.push_info(&item),
                // Nothing to send any more: let it count and retire.
                None => true,
            }
        });
        self.infos = infos;
        self.allowance.spend(before - w.room());
    }

    /// Up to `k` distinct random active members, `except` excluded (it may have stopped
    /// being active: a probe's target declared dead while the probe was in flight).
    pub(super) fn pick_members(&mut self, k: usize, except: Option<Slot>) -> Vec<Slot> {
        let except_active =
            except.is_some_and(|s| matches!(self.table.state(s), State::Alive | State::Suspect));
        let available = self
            .table
            .active_len()
            .saturating_sub(usize::from(except_active));
        let k = k.min(available);
        let mut picked = Vec::with_capacity(k);
        // Rejection sampling: cheap while k is small against the cluster, bounded otherwise.
        let mut tries = 0;
        while picked.len() < k && tries < 8 * k + 8 {
            tries += 1;
            let Some(s) = self.table.random_active(&mut self.rng) else {
                break;
            };
            if Some(s) != except && !picked.contains(&s) {
                picked.push(s);
            }
        }
        picked
    }

    /// Bytes one probe-data item of ours takes in a datagram.
    fn info_item_size(&self) -> usize {
        self.own.body.len().max(24) + 16
    }

    /// Publishes our probe data if some is waiting and the info period has passed.
    pub(super) fn maybe_publish(&mut self) {
        let period = info::period(
            self.cfg.info_interval,
            self.cfg.info_budget,
            self.cluster_size(),
            self.info_item_size(),
        );
        if self.own.due(self.clock, period) {
            self.own.publish(&self.name, self.clock);
            self.infos.push(SELF);
        }
    }

    pub(super) fn gossip_tick(&mut self) {
        self.schedule(self.cfg.gossip_interval, Timer::Gossip);
        self.maybe_publish();
        let fanout = usize::try_from(self.cfg.gossip_fanout).unwrap_or(1);
        self.allowance.refill(self.clock, self.cfg.info_budget);
        let k = if !self.updates.is_empty() {
            fanout
        } else if self.infos.len() * self.info_item_size() >= MAX_PACKET / 2
            && self.allowance.available() >= MAX_PACKET
        {
            // A datagram of probe data alone, when enough is queued and allowed; smaller
            // amounts ride on probes and acks.
            1
        } else {
            0
        };
        for slot in self.pick_members(k, None) {
            let to = self.table.identity(slot);
            self.send(to, Kind::Gossip, None);
        }
    }

    /// Sends the whole state, as many datagrams as it takes, to a node that announced itself.
    pub(super) fn send_feed(&mut self, to: NodeIdentity) {
        let mut datagrams = Vec::new();
        let mut w = Writer::new(&self.header(Kind::Feed));
        if let Some(item) = self.info_of(SELF) {
            w.push_info(&item);
        }
        for slot in self.table.slots() {
            let u = self.update_of(slot);
            let item = self.info_of(slot);
            // A member's state and its probe data travel in the same datagram.
            let fits = |w: &mut Writer| w.push_update(&u) && item.is_none_or(|i| w.push_info(&i));
            if !fits(&mut w) {
                let full = std::mem::replace(&mut w, Writer::new(&self.header(Kind::Feed)));
                datagrams.push(full.finish());
                fits(&mut w);
            }
        }
        if w.items() > 0 {
            datagrams.push(w.finish());
        }
        for data in datagrams {
            self.out.push(super::Output::Send {
                to: to.clone(),
                data,
            });
        }
    }
}
