//! Placement policies: given the nodes that fit a request, choose one.
//!
//! | name | chooses |
//! |---|---|
//! | `least-loaded` | the least load per CPU (ties: lowest id) |
//! | `round-robin` | the next node after the last one chosen, in id order |
//! | `memory-aware` | the most available memory (ties: least load per CPU) |
//! | `pack` | the busiest node that still has a free CPU, else the least loaded: fills nodes one after another, leaving others idle |
//! | `spread` | the fewest hosted processes (ties: least load per CPU) |

use ssi_core::NodeId;

use crate::index::{has_room, Order, PlacementIndex};
use crate::sample::{NodeSample, Request};

/// A placement policy.
pub trait Policy: Send + std::fmt::Debug {
    /// Its name, as `ssi sched set` takes it.
    fn name(&self) -> &str;
    /// Chooses among `nodes` (all alive) one that fits `req`, or `None` if none fits.
    fn place(&mut self, nodes: &[NodeSample], req: &Request) -> Option<NodeId>;
    /// The same choice as [`Policy::place`] over the index's samples, made from the index's
    /// orders where the policy has one (the built-ins); others scan the samples.
    fn place_in(&mut self, index: &PlacementIndex, req: &Request) -> Option<NodeId> {
        self.place(&index.samples(), req)
    }
    /// Why the last decision was not the policy's own, if it was not (an external policy
    /// that failed); cleared by the call.
    fn take_failure(&mut self) -> Option<String> {
        None
    }
    /// A one-line account of how the policy has been doing, if it has one to give.
    fn report(&self) -> Option<String> {
        None
    }
}

fn fitting<'a>(nodes: &'a [NodeSample], req: &'a Request) -> impl Iterator<Item = &'a NodeSample> {
    nodes.iter().filter(move |n| req.fits(n))
}

fn by_pressure(a: &NodeSample, b: &NodeSample) -> std::cmp::Ordering {
    a.pressure().total_cmp(&b.pressure()).then(a.id.cmp(&b.id))
}

/// See the module table.
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastLoaded;

impl Policy for LeastLoaded {
    fn name(&self) -> &str {
        "least-loaded"
    }
    fn place(&mut self, nodes: &[NodeSample], req: &Request) -> Option<NodeId> {
        fitting(nodes, req)
            .min_by(|a, b| by_pressure(a, b))
            .map(|n| n.id)
    }
    fn place_in(&mut self, index: &PlacementIndex, req: &Request) -> Option<NodeId> {
        index.first(Order::Pressure, req)
    }
}

/// See the module table.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoundRobin {
    last: Option<NodeId>,
}

impl Policy for RoundRobin {
    fn name(&self) -> &str {
        "round-robin"
    }
    fn place(&mut self, nodes: &[NodeSample], req: &Request) -> Option<NodeId> {
        let mut ids: Vec<NodeId> = fitting(nodes, req).map(|n| n.id).collect();
        ids.sort();
        let next = match self.last {
            Some(last) => ids.iter().find(|&&id| id > last).or(ids.first()),
            None => ids.first(),
        }
        .copied();
        if next.is_some() {
            self.last = next;
        }
        next
    }
    fn place_in(&mut self, index: &PlacementIndex, req: &Request) -> Option<NodeId> {
        let next = index.next_after(self.last, req);
        if next.is_some() {
            self.last = next;
        }
        next
    }
}

/// See the module table.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryAware;

impl Policy for MemoryAware {
    fn name(&self) -> &str {
        "memory-aware"
    }
    fn place(&mut self, nodes: &[NodeSample], req: &Request) -> Option<NodeId> {
        fitting(nodes, req)
            .min_by(|a, b| {
                b.mem_free_bytes
                    .cmp(&a.mem_free_bytes)
                    .then(by_pressure(a, b))
            })
            .map(|n| n.id)
    }
    fn place_in(&mut self, index: &PlacementIndex, req: &Request) -> Option<NodeId> {
        index.first(Order::Memory, req)
    }
}

/// See the module table.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pack;

impl Policy for Pack {
    fn name(&self) -> &str {
        "pack"
    }
    fn place(&mut self, nodes: &[NodeSample], req: &Request) -> Option<NodeId> {
        let with_room = fitting(nodes, req)
            .filter(|n| has_room(n))
            .max_by(|a, b| by_pressure(a, b));
        with_room
            .or_else(|| fitting(nodes, req).min_by(|a, b| by_pressure(a, b)))
            .map(|n| n.id)
    }
    fn place_in(&mut self, index: &PlacementIndex, req: &Request) -> Option<NodeId> {
        index
            .first(Order::Room, req)
            .or_else(|| index.first(Order::Pressure, req))
    }
}

/// See the module table.
#[derive(Debug, Default, Clone, Copy)]
pub struct Spread;

impl Policy for Spread {
    fn name(&self) -> &str {
        "spread"
    }
    fn place(&mut self, nodes: &[NodeSample], req: &Request) -> Option<NodeId> {
        fitting(nodes, req)
            .min_by(|a, b| {
                (u64::from(a.procs) + u64::from(a.pending))
                    .cmp(&(u64::from(b.procs) + u64::from(b.pending)))
                    .then(by_pressure(a, b))
            })
            .map(|n| n.id)
    }
    fn place_in(&mut self, index: &PlacementIndex, req: &Request) -> Option<NodeId> {
        index.first(Order::Procs, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::node;

    fn nodes() -> Vec<NodeSample> {
        let mut v = vec![node(1, 2, 1.5), node(2, 8, 4.0), node(3, 2, 0.2)];
        v[0].procs = 1;
        v[1].procs = 9;
        v[2].procs = 4;
        v[1].mem_free_bytes = 16 << 30;
        v
    }

    #[test]
    fn least_loaded_goes_by_load_per_cpu() {
        assert_eq!(
            LeastLoaded.place(&nodes(), &Request::default()),
            Some(NodeId(3))
        );
    }

    #[test]
    fn round_robin_cycles_in_id_order() {
        let mut rr = RoundRobin::default();
        let got: Vec<u16> = (0..4)
            .filter_map(|_| rr.place(&nodes(), &Request::default()))
            .map(|n| n.0)
            .collect();
        assert_eq!(got, vec![1, 2, 3, 1]);
    }

    #[test]
    fn memory_aware_takes_the_most_free_memory() {
        assert_eq!(
            MemoryAware.place(&nodes(), &Request::default()),
            Some(NodeId(2))
        );
    }

    #[test]
    fn pack_fills_the_busiest_node_with_room() {
        // Node 1 (load 1.5 on 2 CPUs) is the busiest that still has about a CPU free.
        assert_eq!(Pack.place(&nodes(), &Request::default()), Some(NodeId(1)));
        let mut v = nodes();
        v[0].load = 2.0;
        // Node 1 is full now: node 2 (load 4 on 8) is the busiest with room.
        assert_eq!(Pack.place(&v, &Request::default()), Some(NodeId(2)));
        let full = vec![node(1, 1, 1.0), node(2, 1, 1.2)];
        assert_eq!(Pack.place(&full, &Request::default()), Some(NodeId(1)));
    }

    #[test]
    fn spread_takes_the_fewest_processes() {
        assert_eq!(Spread.place(&nodes(), &Request::default()), Some(NodeId(1)));
    }

    #[test]
    fn nothing_fits_nothing_placed() {
        let req = Request {
            cpus: Some(64),
            ..Request::default()
        };
        for mut p in crate::registry::builtins() {
            assert_eq!(p.place(&nodes(), &req), None, "{}", p.name());
        }
    }
}
