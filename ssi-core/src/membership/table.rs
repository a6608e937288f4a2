//! The member table of one node: every other member it has heard of, indexed by node id, with
//! the shuffled round-robin probe order and the members' probe data.
//!
//! Built to hold 10,000 members in each of 10,000 simulated nodes in one process, so each entry
//! is 32 bytes and nothing is searched linearly:
//!
//! ```text
//!   node id --(two-level index, 256 ids a page)--> slot --> entries[slot]   32 B, fixed
//!                                                      \--> arena[off..]    probe data bytes
//!   active: [slot, ...]  alive and suspect members; [..cursor] probed this round
//!   dead:   [slot, ...]  members declared dead (contacted now and then: partitions heal)
//! ```
//!
//! A dead or departed member keeps its slot (at most 65,535 ids exist), so that an identity
//! declared dead cannot come back with an old generation. Only a node that was itself declared
//! dead forgets its own death verdicts (see [`Table::forget_dead`]); the forgotten slots stay
//! allocated but unreachable.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use rand::seq::SliceRandom;
use rand::RngExt;

use crate::node::{NodeId, NodeIdentity};

use super::message::State;

/// Position of a member in the table.
pub type Slot = u16;

const NOT_LISTED: u16 = u16::MAX;
/// `list_pos` of a forgotten entry.
const FORGOTTEN: u16 = u16::MAX - 1;
/// Most members a table holds: ids 1..=65535 but this node's own (slots and list positions
/// stay below the two markers above).
const MAX_MEMBERS: usize = 65534;
const NO_INFO: u32 = u32::MAX;
const V6_FLAG: u64 = 1 << 63;

/// An address in 8 bytes: IPv4 in place, IPv6 kept beside the table by slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PackedAddr(u64);

#[derive(Clone, Copy, Debug)]
struct Entry {
    gen: u64,
    addr: PackedAddr,
    info_seq: u32,
    info_off: u32,
    incarnation: u16,
    id: NodeId,
    /// Position in `active` (alive, suspect) or `dead` (dead), by state.
    list_pos: u16,
    state: State,
    info_len: u8,
}

/// Arena bytes kept for a body of `len` bytes: rounded up to 8, so that a body whose length
/// changes by a few bytes is rewritten in place.
fn room(len: u8) -> usize {
    (usize::from(len) + 7) & !7
}

/// Which list a member in `state` is on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum List {
    Active,
    Dead,
    None,
}

fn list_of(state: State) -> List {
    match state {
        State::Alive | State::Suspect => List::Active,
        State::Dead => List::Dead,
        State::Left => List::None,
    }
}

/// What decides between two claims about the same node id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    /// Generation (run) of the node.
    pub gen: u64,
    /// Incarnation within that run.
    pub incarnation: u16,
    /// State claimed.
    pub state: State,
}

/// Whether claim `new` replaces claim `old` about the same node id.
///
/// A higher generation always wins. Within a generation, `Dead` and `Left` are final (`Left`
/// may still replace `Dead`: a leave notice overtaken by a death verdict); `Dead`/`Left`
/// replace a live state at the same or a higher incarnation; `Suspect` replaces `Alive` at the
/// same or a higher incarnation; anything else needs a higher incarnation (SWIM's rules, with
/// memberlist's refusal of a stale death verdict).
pub fn overrides(old: Version, new: Version) -> bool {
    use std::cmp::Ordering::*;
    use State::*;
    match new.gen.cmp(&old.gen) {
        Greater => true,
        Less => false,
        Equal => match (old.state, new.state) {
            (Left, _) => false,
            (Dead, Left) => true,
            (Dead, _) => false,
            (_, Dead | Left) | (Alive, Suspect) => new.incarnation >= old.incarnation,
            (Alive | Suspect, Alive) | (Suspect, Suspect) => new.incarnation > old.incarnation,
        },
    }
}

/// Node id to slot in O(1), 512 bytes per 256 ids in use.
#[derive(Debug)]
struct IdIndex {
    pages: Vec<Option<Box<[Slot; 256]>>>,
}

impl IdIndex {
    fn new() -> Self {
        IdIndex {
            pages: (0..256).map(|_| None).collect(),
        }
    }

    fn get(&self, id: NodeId) -> Option<Slot> {
        let [hi, lo] = id.0.to_be_bytes();
        let page = self.pages[usize::from(hi)].as_ref()?;
        let slot = page[usize::from(lo)];
        (slot != NOT_LISTED).then_some(slot)
    }

    fn set(&mut self, id: NodeId, slot: Slot) {
        let [hi, lo] = id.0.to_be_bytes();
        let page = self.pages[usize::from(hi)].get_or_insert_with(|| Box::new([NOT_LISTED; 256]));
        page[usize::from(lo)] = slot;
    }

    fn unset(&mut self, id: NodeId) {
        let [hi, lo] = id.0.to_be_bytes();
        if let Some(page) = self.pages[usize::from(hi)].as_mut() {
            page[usize::from(lo)] = NOT_LISTED;
        }
    }
}

/// Every member one node knows of, itself excluded.
#[derive(Debug)]
pub struct Table {
    entries: Vec<Entry>,
    index: IdIndex,
    v6: BTreeMap<Slot, SocketAddrV6>,
    /// Slots of alive and suspect members; `active[..cursor]` were probed this round.
    active: Vec<Slot>,
    cursor: usize,
    /// Slots of dead members.
    dead: Vec<Slot>,
    /// Slots reachable by id.
    live: usize,
    /// Probe-data bodies, referenced by `(info_off, info_len)`.
    arena: Vec<u8>,
    garbage: usize,
}

impl Table {
    /// An empty table with room for `expected` members.
    pub fn with_capacity(expected: usize) -> Self {
        let expected = expected.min(usize::from(u16::MAX));
        Table {
            entries: Vec::with_capacity(expected),
            index: IdIndex::new(),
            v6: BTreeMap::new(),
            active: Vec::with_capacity(expected),
            cursor: 0,
            dead: Vec::new(),
            live: 0,
            arena: Vec::new(),
            garbage: 0,
        }
    }

    /// Members known, in any state.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Alive and suspect members.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Members declared dead.
    pub fn dead_len(&self) -> usize {
        self.dead.len()
    }

    /// All members' slots, in insertion order.
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        (0..self.entries.len())
            .map(|i| i as Slot)
            .filter(|&s| self.is_live(s))
    }

    /// Whether `slot` holds a member (not one forgotten).
    pub fn is_live(&self, slot: Slot) -> bool {
        self.entry(slot).list_pos != FORGOTTEN
    }

    /// The slot of node `id`.
    pub fn slot(&self, id: NodeId) -> Option<Slot> {
        self.index.get(id)
    }

    fn entry(&self, slot: Slot) -> &Entry {
        &self.entries[usize::from(slot)]
    }

    /// Generation, incarnation and state of `slot`.
    pub fn version(&self, slot: Slot) -> Version {
        let e = self.entry(slot);
        Version {
            gen: e.gen,
            incarnation: e.incarnation,
            state: e.state,
        }
    }

    /// State of `slot`.
    pub fn state(&self, slot: Slot) -> State {
        self.entry(slot).state
    }

    /// Node id of `slot`.
    pub fn id(&self, slot: Slot) -> NodeId {
        self.entry(slot).id
    }

    /// Full identity of `slot`.
    pub fn identity(&self, slot: Slot) -> NodeIdentity {
        let e = self.entry(slot);
        NodeIdentity {
            id: e.id,
            addr: self.unpack(slot, e.addr),
            gen: e.gen,
        }
    }

    fn pack(&mut self, slot: Slot, addr: SocketAddr) -> PackedAddr {
        match addr {
            SocketAddr::V4(a) => {
                self.v6.remove(&slot);
                PackedAddr(u64::from(a.ip().to_bits()) << 16 | u64::from(a.port()))
            }
            SocketAddr::V6(a) => {
                self.v6.insert(slot, a);
                PackedAddr(V6_FLAG)
            }
        }
    }

    fn unpack(&self, slot: Slot, p: PackedAddr) -> SocketAddr {
        if p.0 & V6_FLAG != 0 {
            if let Some(a) = self.v6.get(&slot) {
                return SocketAddr::V6(*a);
            }
        }
        let ip = Ipv4Addr::from_bits((p.0 >> 16) as u32);
        SocketAddr::V4(SocketAddrV4::new(ip, (p.0 & 0xffff) as u16))
    }

    /// Adds a member never seen before; returns its slot, or `None` when the table is full
    /// (only possible with more ids than `NodeId` has).
    pub fn insert<R: RngExt>(
        &mut self,
        identity: &NodeIdentity,
        incarnation: u16,
        state: State,
        rng: &mut R,
    ) -> Option<Slot> {
        if self.entries.len() >= MAX_MEMBERS {
            return None;
        }
        let slot = self.entries.len() as Slot;
        let addr = self.pack(slot, identity.addr);
        self.entries.push(Entry {
            gen: identity.gen,
            addr,
            info_seq: 0,
            info_off: NO_INFO,
            incarnation,
            id: identity.id,
            list_pos: NOT_LISTED,
            state,
            info_len: 0,
        });
        self.index.set(identity.id, slot);
        self.live += 1;
        self.list(slot, state, rng);
        Some(slot)
    }

    /// Records a new claim about `slot` (same node id). A new generation keeps the probe data
    /// shown until the new run publishes its own.
    pub fn set<R: RngExt>(
        &mut self,
        slot: Slot,
        identity: &NodeIdentity,
        incarnation: u16,
        state: State,
        rng: &mut R,
    ) {
        let was = self.entry(slot).state;
        let addr = if self.identity(slot).addr == identity.addr {
            self.entry(slot).addr
        } else {
            self.pack(slot, identity.addr)
        };
        let e = &mut self.entries[usize::from(slot)];
        if e.gen != identity.gen {
            e.info_seq = 0;
        }
        e.gen = identity.gen;
        e.addr = addr;
        e.incarnation = incarnation;
        e.state = state;
        if list_of(was) != list_of(state) {
            self.unlist(slot, was);
            self.list(slot, state, rng);
        }
    }

    fn list<R: RngExt>(&mut self, slot: Slot, state: State, rng: &mut R) {
        match list_of(state) {
            List::Active => self.activate(slot, rng),
            List::Dead => {
                self.dead.push(slot);
                self.entries[usize::from(slot)].list_pos = (self.dead.len() - 1) as u16;
            }
            List::None => {}
        }
    }

    fn unlist(&mut self, slot: Slot, state: State) {
        match list_of(state) {
            List::Active => self.deactivate(slot),
            List::Dead => {
                let pos = usize::from(self.entry(slot).list_pos);
                self.dead.swap_remove(pos);
                if let Some(&moved) = self.dead.get(pos) {
                    self.entries[usize::from(moved)].list_pos = pos as u16;
                }
            }
            List::None => {}
        }
        self.entries[usize::from(slot)].list_pos = NOT_LISTED;
    }

    fn place(&mut self, pos: usize) {
        let slot = self.active[pos];
        self.entries[usize::from(slot)].list_pos = pos as u16;
    }

    /// Puts `slot` at a random place among the members not yet probed this round.
    fn activate<R: RngExt>(&mut self, slot: Slot, rng: &mut R) {
        self.active.push(slot);
        let last = self.active.len() - 1;
        let pos = rng.random_range(self.cursor..=last);
        self.active.swap(pos, last);
        self.place(pos);
        self.place(last);
    }

    /// Takes `slot` out of the active list, keeping the probed/unprobed split of this round.
    fn deactivate(&mut self, slot: Slot) {
        let mut pos = usize::from(self.entry(slot).list_pos);
        if pos < self.cursor {
            // Swap it with the last probed member, then make it the first unprobed one.
            self.cursor -= 1;
            self.active.swap(pos, self.cursor);
            self.place(pos);
            pos = self.cursor;
        }
        let last = self.active.len() - 1;
        self.active.swap(pos, last);
        self.active.pop();
        if pos < self.active.len() {
            self.place(pos);
        }
    }

    /// The next member to probe: every active member once per round, in an order shuffled
    /// afresh each round (SWIM's bound on the time to first probe a failed member).
    pub fn next_probe<R: RngExt>(&mut self, rng: &mut R) -> Option<Slot> {
        if self.active.is_empty() {
            return None;
        }
        if self.cursor >= self.active.len() {
            self.active.shuffle(rng);
            for pos in 0..self.active.len() {
                self.place(pos);
            }
            self.cursor = 0;
        }
        let slot = self.active[self.cursor];
        self.cursor += 1;
        Some(slot)
    }

    /// A uniformly random dead member.
    pub fn random_dead<R: RngExt>(&self, rng: &mut R) -> Option<Slot> {
        if self.dead.is_empty() {
            return None;
        }
        Some(self.dead[rng.random_range(0..self.dead.len())])
    }

    /// Forgets every member declared dead, as if never heard of: what a node does when it
    /// learns that it was itself declared dead, since its own verdicts from that time (a
    /// partition, a long pause) are the likely wrong ones. It then asks for the full state,
    /// which brings back the members really dead as dead and the others as alive.
    pub fn forget_dead(&mut self) {
        for slot in std::mem::take(&mut self.dead) {
            let e = &mut self.entries[usize::from(slot)];
            e.list_pos = FORGOTTEN;
            let id = e.id;
            if e.info_off != NO_INFO {
                self.garbage += room(e.info_len);
            }
            e.info_off = NO_INFO;
            e.info_len = 0;
            self.index.unset(id);
            self.live -= 1;
        }
    }

    /// A uniformly random active member.
    pub fn random_active<R: RngExt>(&self, rng: &mut R) -> Option<Slot> {
        if self.active.is_empty() {
            return None;
        }
        Some(self.active[rng.random_range(0..self.active.len())])
    }

    /// The probe data of `slot` for its current generation: publication number and body.
    pub fn info(&self, slot: Slot) -> Option<(u32, &[u8])> {
        let e = self.entry(slot);
        if e.info_seq == 0 {
            return None;
        }
        self.body(e).map(|b| (e.info_seq, b))
    }

    /// The last probe data `slot` published, of this generation or an earlier one.
    pub fn last_info(&self, slot: Slot) -> Option<&[u8]> {
        self.body(self.entry(slot))
    }

    fn body(&self, e: &Entry) -> Option<&[u8]> {
        if e.info_off == NO_INFO {
            return None;
        }
        let off = e.info_off as usize;
        Some(&self.arena[off..off + usize::from(e.info_len)])
    }

    /// Stores publication `seq` (above 0) of `slot`'s probe data; `body` is at most 255 bytes.
    pub fn set_info(&mut self, slot: Slot, seq: u32, body: &[u8]) {
        let Ok(len) = u8::try_from(body.len()) else {
            return;
        };
        let e = self.entries[usize::from(slot)];
        let off = if e.info_off != NO_INFO && room(e.info_len) == room(len) {
            // Same room: rewrite in place (the common case, figures of about the same width).
            let off = e.info_off as usize;
            self.arena[off..off + body.len()].copy_from_slice(body);
            e.info_off
        } else {
            if e.info_off != NO_INFO {
                self.garbage += room(e.info_len);
            }
            let Ok(off) = u32::try_from(self.arena.len()) else {
                return;
            };
            if self.arena.len() + room(len) > self.arena.capacity() {
                // Grow by an eighth, not double: this is most of a simulated member's memory.
                let more = (self.arena.len() / 8).max(4096);
                self.arena.reserve_exact(more);
            }
            self.arena.extend_from_slice(body);
            self.arena.resize(off as usize + room(len), 0);
            off
        };
        let e = &mut self.entries[usize::from(slot)];
        e.info_off = off;
        e.info_len = len;
        e.info_seq = seq;
        if self.garbage > 4096 && self.garbage * 4 > self.arena.len() {
            self.compact();
        }
    }

    /// Rewrites the arena without the bodies that were replaced.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for e in &mut self.entries {
            if e.info_off != NO_INFO {
                let off = e.info_off as usize;
                let new_off = arena.len() as u32;
                arena.extend_from_slice(&self.arena[off..off + room(e.info_len)]);
                e.info_off = new_off;
            }
        }
        self.arena = arena;
        self.garbage = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;
    use std::collections::HashSet;

    use State::*;

    fn v(gen: u64, incarnation: u16, state: State) -> Version {
        Version {
            gen,
            incarnation,
            state,
        }
    }

    fn ident(id: u16, gen: u64) -> NodeIdentity {
        NodeIdentity {
            id: NodeId(id),
            addr: SocketAddr::from(([10, 77, 1, (id % 250) as u8], 7000 + id % 1000)),
            gen,
        }
    }

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(7)
    }

    #[test]
    fn an_entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn higher_generation_always_wins() {
        for old in [Alive, Suspect, Dead, Left] {
            for new in [Alive, Suspect, Dead, Left] {
                assert!(overrides(v(1, 9, old), v(2, 0, new)), "{old:?} -> {new:?}");
                assert!(!overrides(v(2, 0, old), v(1, 9, new)), "{old:?} -> {new:?}");
            }
        }
    }

    #[test]
    fn swim_precedence_within_a_generation() {
        assert!(overrides(v(1, 1, Alive), v(1, 2, Alive)));
        assert!(!overrides(v(1, 2, Alive), v(1, 2, Alive)));
        assert!(overrides(v(1, 2, Alive), v(1, 2, Suspect)));
        assert!(!overrides(v(1, 2, Alive), v(1, 1, Suspect)));
        assert!(
            !overrides(v(1, 2, Suspect), v(1, 2, Alive)),
            "refuting needs a higher incarnation"
        );
        assert!(overrides(v(1, 2, Suspect), v(1, 3, Alive)));
        assert!(!overrides(v(1, 2, Suspect), v(1, 2, Suspect)));
        assert!(overrides(v(1, 2, Suspect), v(1, 2, Dead)));
        assert!(
            !overrides(v(1, 3, Alive), v(1, 2, Dead)),
            "stale death verdict"
        );
    }

    #[test]
    fn dead_and_left_are_final_but_left_beats_dead() {
        for new in [Alive, Suspect, Dead] {
            assert!(!overrides(v(1, 0, Dead), v(1, 9, new)), "{new:?}");
        }
        for new in [Alive, Suspect, Dead, Left] {
            assert!(!overrides(v(1, 0, Left), v(1, 9, new)), "{new:?}");
        }
        assert!(overrides(v(1, 5, Dead), v(1, 0, Left)));
    }

    #[test]
    fn members_are_found_by_id_and_keep_their_address() {
        let mut t = Table::with_capacity(4);
        let mut r = rng();
        let a = t.insert(&ident(300, 1), 0, Alive, &mut r).expect("slot");
        let v6: SocketAddr = "[fd00::1]:7700".parse().expect("addr");
        let b_ident = NodeIdentity {
            id: NodeId(65535),
            addr: v6,
            gen: 4,
        };
        let b = t.insert(&b_ident, 2, Suspect, &mut r).expect("slot");
        assert_eq!(t.slot(NodeId(300)), Some(a));
        assert_eq!(t.slot(NodeId(65535)), Some(b));
        assert_eq!(t.slot(NodeId(301)), None);
        assert_eq!(t.identity(a), ident(300, 1));
        assert_eq!(t.identity(b), b_ident);
        // Moving to IPv4 forgets the IPv6 address.
        t.set(b, &ident(65535, 5), 0, Alive, &mut r);
        assert_eq!(t.identity(b), ident(65535, 5));
        assert_eq!(t.active_len(), 2);
        t.set(a, &ident(300, 1), 0, Dead, &mut r);
        assert_eq!(t.active_len(), 1);
        assert_eq!(t.version(a), v(1, 0, Dead));
    }

    #[test]
    fn each_active_member_is_probed_once_per_round() {
        let mut t = Table::with_capacity(64);
        let mut r = rng();
        for id in 1..=50 {
            t.insert(&ident(id, 1), 0, Alive, &mut r);
        }
        // Churn in the middle of a round: remove some probed and unprobed members, add others.
        let mut round = HashSet::new();
        for _ in 0..20 {
            round.insert(t.next_probe(&mut r).expect("member"));
        }
        let probed: Vec<Slot> = round.iter().copied().take(5).collect();
        for &s in &probed {
            let id = t.identity(s);
            t.set(s, &id, 0, Dead, &mut r);
        }
        let unprobed: Vec<Slot> = t.active[t.cursor..].iter().copied().take(5).collect();
        for &s in &unprobed {
            let id = t.identity(s);
            t.set(s, &id, 0, Dead, &mut r);
        }
        for id in 51..=60 {
            t.insert(&ident(id, 1), 0, Alive, &mut r);
        }
        while t.cursor < t.active.len() {
            let s = t.next_probe(&mut r).expect("member");
            assert!(round.insert(s), "slot {s} probed twice in one round");
        }
        let live: HashSet<Slot> = t.active.iter().copied().collect();
        assert_eq!(live.len(), 50 - 10 + 10);
        assert!(live.is_subset(&round), "a live member was skipped");
        for pos in 0..t.active.len() {
            assert_eq!(usize::from(t.entry(t.active[pos]).list_pos), pos);
        }
    }

    #[test]
    fn dead_members_are_listed_and_can_be_forgotten() {
        let mut t = Table::with_capacity(8);
        let mut r = rng();
        for id in 1..=6 {
            t.insert(&ident(id, 1), 0, Alive, &mut r);
        }
        for id in [2, 4, 5] {
            let s = t.slot(NodeId(id)).expect("known");
            t.set(s, &ident(id, 1), 0, Dead, &mut r);
        }
        let s5 = t.slot(NodeId(5)).expect("known");
        t.set(s5, &ident(5, 1), 0, Left, &mut r);
        assert_eq!((t.active_len(), t.dead_len(), t.len()), (3, 2, 6));
        for _ in 0..20 {
            let d = t.random_dead(&mut r).expect("dead");
            assert!([2, 4].contains(&t.id(d).0));
        }
        t.forget_dead();
        assert_eq!((t.active_len(), t.dead_len(), t.len()), (3, 0, 4));
        assert_eq!(t.slot(NodeId(2)), None);
        assert_eq!(t.slots().count(), 4);
        // A forgotten member heard of again is a new member.
        let again = t.insert(&ident(2, 1), 0, Alive, &mut r).expect("slot");
        assert_eq!(t.slot(NodeId(2)), Some(again));
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn probe_data_is_kept_per_generation_and_the_arena_is_compacted() {
        let mut t = Table::with_capacity(2);
        let mut r = rng();
        let a = t.insert(&ident(1, 1), 0, Alive, &mut r).expect("slot");
        let b = t.insert(&ident(2, 1), 0, Alive, &mut r).expect("slot");
        assert_eq!(t.info(a), None);
        t.set_info(a, 1, b"abc");
        t.set_info(b, 1, b"xy");
        t.set_info(a, 2, b"def");
        assert_eq!(t.info(a), Some((2, &b"def"[..])));
        assert_eq!(t.arena.len(), 16, "same room rewritten in place");
        t.set_info(a, 3, b"abcdefgh");
        assert_eq!(t.arena.len(), 16, "still 8 bytes");
        t.set_info(a, 3, b"def");
        for seq in 3..3000u32 {
            let body = vec![b'z'; (seq % 7 + 1) as usize];
            t.set_info(a, seq, &body);
            assert_eq!(t.info(a), Some((seq, &body[..])));
        }
        assert!(
            t.arena.len() < 9000,
            "arena not compacted: {}",
            t.arena.len()
        );
        assert_eq!(t.info(b), Some((1, &b"xy"[..])));
        // A new generation shows the old data until it publishes.
        t.set(b, &ident(2, 2), 0, Alive, &mut r);
        assert_eq!(t.info(b), None);
        assert_eq!(t.last_info(b), Some(&b"xy"[..]));
    }
}
