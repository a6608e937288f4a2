//! The placement index: the alive nodes kept in the orders the built-in policies choose by,
//! updated as probe data arrives, so that a decision walks from the best end of one order
//! instead of scanning every node.
//!
//! ```text
//!   update(sample) / remove(id) / add_pending(id)            first(order, request)
//!        |                                                          |
//!        v                                                          v
//!   nodes: id -> NodeSample      group: all nodes, or the nodes of the rarest label asked for
//!   groups: all, one per label     walk its order from the best end, return the first node
//!     ids       (round-robin)      that fits the request (CPUs, memory, every label)
//!     pressure  (least-loaded, pack's fallback)
//!     memory    (memory-aware)
//!     procs     (spread)
//!     room      (pack: nodes with a free CPU)
//! ```
//!
//! Each order is a `BTreeSet` of (key, node id), so an update costs O(log n) per order and a
//! decision O(log n) plus the nodes it passes over: none for a request without constraints,
//! the nodes lacking the CPUs or memory asked for otherwise (a request only a few nodes
//! fit walks far; the worst case is a scan, as before). The keys are the policies' own
//! comparisons (`policy.rs`), so the index chooses exactly what a scan of the same samples
//! chooses; `tests` check this on random clusters.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use ssi_core::NodeId;

use crate::sample::{NodeSample, Request};

/// A float ordered by `total_cmp`, as the policies compare pressures.
#[derive(Clone, Copy, Debug)]
struct Ordered(f64);

impl PartialEq for Ordered {
    fn eq(&self, o: &Self) -> bool {
        self.0.total_cmp(&o.0).is_eq()
    }
}
impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ordered {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// An order a policy chooses by; the best node comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Least load per CPU, then lowest id (`least-loaded`).
    Pressure,
    /// Most available memory, then least load per CPU, then lowest id (`memory-aware`).
    Memory,
    /// Fewest hosted and pending processes, then least load per CPU, then lowest id (`spread`).
    Procs,
    /// Nodes with a free CPU, busiest first (highest load per CPU, then highest id: `pack`).
    Room,
}

/// Whether `n` still has about a CPU free (`pack` fills such nodes first).
pub fn has_room(n: &NodeSample) -> bool {
    n.load + f64::from(n.pending) + 1.0 <= f64::from(n.cpus) + 0.5
}

/// The keys of one node in every order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Keys {
    pressure: Ordered,
    mem: Reverse<u64>,
    procs: u64,
    room: bool,
}

impl Keys {
    fn of(n: &NodeSample) -> Keys {
        Keys {
            pressure: Ordered(n.pressure()),
            mem: Reverse(n.mem_free_bytes),
            procs: u64::from(n.procs) + u64::from(n.pending),
            room: has_room(n),
        }
    }
}

/// The orders of one group of nodes (all of them, or those carrying one label).
#[derive(Debug, Default)]
struct Group {
    ids: BTreeSet<NodeId>,
    pressure: BTreeSet<(Ordered, NodeId)>,
    memory: BTreeSet<(Reverse<u64>, Ordered, NodeId)>,
    procs: BTreeSet<(u64, Ordered, NodeId)>,
    room: BTreeSet<(Ordered, NodeId)>,
}

impl Group {
    fn insert(&mut self, id: NodeId, k: Keys) {
        self.ids.insert(id);
        self.pressure.insert((k.pressure, id));
        self.memory.insert((k.mem, k.pressure, id));
        self.procs.insert((k.procs, k.pressure, id));
        if k.room {
            self.room.insert((k.pressure, id));
        }
    }

    fn remove(&mut self, id: NodeId, k: Keys) {
        self.ids.remove(&id);
        self.remove_keys(id, k);
    }

    fn remove_keys(&mut self, id: NodeId, k: Keys) {
        self.pressure.remove(&(k.pressure, id));
        self.memory.remove(&(k.mem, k.pressure, id));
        self.procs.remove(&(k.procs, k.pressure, id));
        self.room.remove(&(k.pressure, id));
    }

    /// Moves `id` from its `old` keys to `new` ones in every order (it stays in the group).
    fn rekey(&mut self, id: NodeId, old: Keys, new: Keys) {
        self.remove_keys(id, old);
        self.insert(id, new);
    }

    fn walk(&self, order: Order) -> Box<dyn Iterator<Item = NodeId> + '_> {
        match order {
            Order::Pressure => Box::new(self.pressure.iter().map(|e| e.1)),
            Order::Memory => Box::new(self.memory.iter().map(|e| e.2)),
            Order::Procs => Box::new(self.procs.iter().map(|e| e.2)),
            Order::Room => Box::new(self.room.iter().rev().map(|e| e.1)),
        }
    }
}

/// The alive nodes as placement sees them, indexed by every built-in policy's order.
#[derive(Debug, Default)]
pub struct PlacementIndex {
    nodes: BTreeMap<NodeId, (NodeSample, Keys)>,
    all: Group,
    /// Label name -> label value -> the nodes carrying it (looked up by `&str`, no copy).
    labels: HashMap<String, HashMap<String, Group>>,
}

impl PlacementIndex {
    /// An empty index.
    pub fn new() -> Self {
        PlacementIndex::default()
    }

    /// Nodes indexed.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is indexed.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The sample of node `id`, if indexed.
    pub fn get(&self, id: NodeId) -> Option<&NodeSample> {
        self.nodes.get(&id).map(|(s, _)| s)
    }

    /// Every sample, by node id (for the balancer, external policies and `ssi sched show`).
    pub fn samples(&self) -> Vec<NodeSample> {
        self.nodes.values().map(|(s, _)| s.clone()).collect()
    }

    /// Adds node `sample.id` or replaces what was known of it; O(log n) per order when only
    /// figures changed, plus its labels' groups when those changed.
    pub fn update(&mut self, sample: NodeSample) {
        let keys = Keys::of(&sample);
        if let Some((old, old_keys)) = self.nodes.get(&sample.id) {
            if *old == sample {
                return;
            }
            if old.labels == sample.labels && *old_keys == keys {
                // Name or figures no order looks at: nothing to re-sort.
                self.nodes.insert(sample.id, (sample, keys));
                return;
            }
        }
        self.remove(sample.id);
        let id = sample.id;
        self.all.insert(id, keys);
        for (k, v) in &sample.labels {
            self.labels
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .insert(id, keys);
        }
        self.nodes.insert(id, (sample, keys));
    }

    /// Forgets node `id` (dead, left, suspect).
    pub fn remove(&mut self, id: NodeId) {
        let Some((old, keys)) = self.nodes.remove(&id) else {
            return;
        };
        self.all.remove(id, keys);
        for (k, v) in &old.labels {
            let Some(values) = self.labels.get_mut(k.as_str()) else {
                continue;
            };
            if let Some(g) = values.get_mut(v.as_str()) {
                g.remove(id, keys);
                if g.ids.is_empty() {
                    values.remove(v.as_str());
                }
            }
            if values.is_empty() {
                self.labels.remove(k.as_str());
            }
        }
    }

    /// Changes node `id`'s count of recent placements by `delta` (never below 0), re-keying
    /// it in place in its groups' orders (a placement's cost: no sample copied).
    pub fn add_pending(&mut self, id: NodeId, delta: i32) {
        let PlacementIndex { nodes, all, labels } = self;
        let Some((s, keys)) = nodes.get_mut(&id) else {
            return;
        };
        s.pending = s.pending.saturating_add_signed(delta);
        let new = Keys::of(s);
        if new == *keys {
            return;
        }
        let old = std::mem::replace(keys, new);
        all.rekey(id, old, new);
        for (k, v) in &s.labels {
            if let Some(g) = labels
                .get_mut(k.as_str())
                .and_then(|values| values.get_mut(v.as_str()))
            {
                g.rekey(id, old, new);
            }
        }
    }

    /// Forgets every node for which `keep` is false.
    pub fn retain(&mut self, keep: impl Fn(NodeId) -> bool) {
        let gone: Vec<NodeId> = self.nodes.keys().copied().filter(|&id| !keep(id)).collect();
        for id in gone {
            self.remove(id);
        }
    }

    /// The group to walk for `req`: the smallest of its labels' groups, or all nodes; `None`
    /// when a label it asks for is on no node.
    fn group(&self, req: &Request) -> Option<&Group> {
        let mut best = &self.all;
        for (k, v) in &req.constraints {
            let g = self.labels.get(k.as_str())?.get(v.as_str())?;
            if g.ids.len() < best.ids.len() {
                best = g;
            }
        }
        Some(best)
    }

    fn fits(&self, id: NodeId, req: &Request) -> bool {
        self.nodes.get(&id).is_some_and(|(s, _)| req.fits(s))
    }

    /// The first node in `order` that fits `req`.
    pub fn first(&self, order: Order, req: &Request) -> Option<NodeId> {
        self.group(req)?.walk(order).find(|&id| self.fits(id, req))
    }

    /// The first node that fits `req` with an id above `after` (none: from the lowest),
    /// wrapping around to the lowest ids (`round-robin`).
    pub fn next_after(&self, after: Option<NodeId>, req: &Request) -> Option<NodeId> {
        let ids = &self.group(req)?.ids;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        ids.range((start, Bound::Unbounded))
            .chain(ids.iter())
            .copied()
            .find(|&id| self.fits(id, req))
    }
}

#[cfg(test)]
mod tests;
