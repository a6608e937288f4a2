//! One node's placement state: the policy, the load filters, the index of the alive nodes and
//! the placements that count as load until probes show them. The daemon feeds it the cluster
//! view as gossip brings it ([`Placer::sync`]) and asks it for decisions ([`Placer::place`]),
//! which need no view and no scan.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use ssi_core::view::NodeView;
use ssi_core::NodeId;

use crate::filter::FilterChain;
use crate::index::PlacementIndex;
use crate::policy::Policy;
use crate::sample::{NodeSample, Request};

/// Seconds a placement counts as load on its node (until probes show it).
pub const PENDING_S: f64 = 3.0;

/// What one placement decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// The node chosen, if any fits.
    pub node: Option<NodeId>,
    /// Its load per CPU when chosen.
    pub pressure: f64,
    /// Alive nodes the policy chose among (before the request's constraints).
    pub alive: usize,
    /// Why the policy's own choice was not used (an external policy that failed).
    pub failure: Option<String>,
}

impl Placement {
    /// The decision in one line, for the log and `ssi sched show`.
    pub fn reason<'a>(&'a self, policy: &'a str, what: &'a str, req: &'a Request) -> Reason<'a> {
        Reason {
            p: self,
            policy,
            what,
            req,
        }
    }
}

/// A [`Placement`] told in one line (see [`Placement::reason`]).
#[derive(Debug)]
pub struct Reason<'a> {
    p: &'a Placement,
    policy: &'a str,
    what: &'a str,
    req: &'a Request,
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(why) = &self.p.failure {
            write!(f, "external policy failed ({why}); least-loaded decided: ")?;
        }
        match self.p.node {
            Some(id) => write!(
                f,
                "{} chose node {id} for {} (load per CPU {:.2}; {} alive nodes)",
                self.policy, self.what, self.p.pressure, self.p.alive
            ),
            None => write!(
                f,
                "{}: no node fits {} ({:?})",
                self.policy, self.what, self.req
            ),
        }
    }
}

/// Placement state of one node.
#[derive(Debug)]
pub struct Placer {
    policy: Box<dyn Policy>,
    filters: FilterChain,
    index: PlacementIndex,
    /// Placements still counted as load: (time placed, node), oldest first.
    pending: VecDeque<(f64, NodeId)>,
    /// This node and its labels as they are now (not as last gossiped).
    me: NodeId,
    labels: BTreeMap<String, String>,
}

impl Placer {
    /// Placement for node `me` (carrying `labels`) with `policy` and `filters`.
    pub fn new(
        me: NodeId,
        labels: BTreeMap<String, String>,
        policy: Box<dyn Policy>,
        filters: FilterChain,
    ) -> Placer {
        Placer {
            policy,
            filters,
            index: PlacementIndex::new(),
            pending: VecDeque::new(),
            me,
            labels,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &dyn Policy {
        self.policy.as_ref()
    }

    /// Replaces the policy.
    pub fn set_policy(&mut self, policy: Box<dyn Policy>) {
        self.policy = policy;
    }

    /// The load filters.
    pub fn filters(&self) -> &FilterChain {
        &self.filters
    }

    /// This node's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The index (for benchmarks and tests).
    pub fn index(&self) -> &PlacementIndex {
        &self.index
    }

    /// The alive nodes as policies see them now (filters applied, recent placements counted).
    pub fn samples(&mut self, now_s: f64) -> Vec<NodeSample> {
        self.expire(now_s);
        self.index.samples()
    }

    /// Takes in the cluster view at `now_s` (seconds, any origin): alive members are indexed
    /// with their load filtered, the others forgotten. Only what changed is re-sorted.
    pub fn sync(&mut self, view: &[NodeView], now_s: f64) {
        self.expire(now_s);
        let mut alive = std::collections::HashSet::with_capacity(view.len());
        for mut s in NodeSample::from_view(view) {
            alive.insert(s.id);
            s.load = self.filters.apply(s.id, s.load, now_s);
            s.pending = self.index.get(s.id).map_or(0, |old| old.pending);
            if s.id == self.me {
                s.labels.clone_from(&self.labels);
            }
            self.index.update(s);
        }
        self.index.retain(|id| alive.contains(&id));
        // Placements on nodes that are gone no longer count.
        self.pending.retain(|(_, id)| alive.contains(id));
    }

    /// Counts a placement (or a move) on `id` as load for [`PENDING_S`] seconds.
    pub fn add_pending(&mut self, id: NodeId, now_s: f64) {
        self.pending.push_back((now_s, id));
        self.index.add_pending(id, 1);
    }

    fn expire(&mut self, now_s: f64) {
        while let Some(&(at, id)) = self.pending.front() {
            if now_s - at < PENDING_S {
                break;
            }
            self.pending.pop_front();
            self.index.add_pending(id, -1);
        }
    }

    /// Chooses the node for a new process at `now_s`; a chosen node gets the placement
    /// counted as pending load.
    pub fn place(&mut self, req: &Request, now_s: f64) -> Placement {
        self.expire(now_s);
        let node = self.policy.place_in(&self.index, req);
        let failure = self.policy.take_failure();
        let pressure = node
            .and_then(|id| self.index.get(id))
            .map_or(0.0, NodeSample::pressure);
        let alive = self.index.len();
        if let Some(id) = node {
            self.add_pending(id, now_s);
        }
        Placement {
            node,
            pressure,
            alive,
            failure,
        }
    }
}
