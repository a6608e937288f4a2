//! The scheduler's state as a node keeps it: placement of new processes started from this node,
//! re-balancing of the processes it hosts. Every decision is logged with its reason and kept
//! (the last [`KEEP_DECISIONS`]) for `ssi sched show`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use scheduler::filter::FilterChain;
use scheduler::probe::{CpuProbe, Probe};
use scheduler::{registry, Balancer, LocalProc, Move, Placer, Request};
use ssi_core::config::SchedConfig;
use ssi_core::sched::{BalanceConfig, Decision, DecisionKind, NodeSample, SchedStatus};
use ssi_core::view::NodeView;
use ssi_core::NodeId;

/// Decisions kept for `ssi sched show`.
pub const KEEP_DECISIONS: usize = 50;

struct State {
    policy_name: String,
    params: BTreeMap<String, String>,
    placer: Placer,
    balancer: Balancer,
    decisions: VecDeque<Decision>,
    cpu: CpuProbe,
}

/// The scheduler of this node.
pub struct Sched {
    me: NodeId,
    epoch: Instant,
    state: Mutex<State>,
}

impl std::fmt::Debug for Sched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sched").field("me", &self.me).finish()
    }
}

impl Sched {
    /// The scheduler of node `me` with `config` (policy and filters checked here).
    pub fn new(me: NodeId, config: &SchedConfig) -> Result<Sched> {
        let policy = registry::policy(&config.policy, &config.params)?;
        Ok(Sched {
            me,
            epoch: Instant::now(),
            state: Mutex::new(State {
                policy_name: config.policy.clone(),
                params: config.params.clone(),
                placer: Placer::new(
                    me,
                    config.labels.clone(),
                    policy,
                    FilterChain::new(&config.filters)?,
                ),
                balancer: Balancer::new(BalanceConfig::from(config)),
                decisions: VecDeque::new(),
                cpu: CpuProbe::default(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_s(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// This node's labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.lock().placer.labels().clone()
    }

    /// Measures the CPU use of the hosted processes (pids as /proc sees them); returns the
    /// node's total, in CPUs.
    pub fn measure(&self, hosted: &[i32], dt_s: f64) -> f64 {
        self.lock().cpu.measure(hosted, dt_s)
    }

    /// CPUs-worth each hosted pid (as /proc sees it) used over the last probe interval.
    pub fn cpu_by_pid(&self) -> HashMap<i32, f64> {
        self.lock().cpu.per_pid.clone()
    }

    /// Takes in the cluster view: the placement index follows what gossip brought.
    pub fn sync(&self, view: &[NodeView]) {
        let now = self.now_s();
        self.lock().placer.sync(view, now);
    }

    /// The nodes as policies see them: alive members, filters applied to their load, recent
    /// placements counted.
    fn samples(&self, st: &mut State, view: &[NodeView]) -> Vec<NodeSample> {
        let now = self.now_s();
        st.placer.sync(view, now);
        st.placer.samples(now)
    }

    fn record(st: &mut State, d: Decision) {
        match d.kind {
            DecisionKind::MoveFailed => {
                tracing::warn!(gpid = d.gpid, to = ?d.to, "re-balancing: {}", d.reason)
            }
            _ => {
                tracing::info!(kind = %d.kind, gpid = d.gpid, to = ?d.to, "scheduler: {}", d.reason)
            }
        }
        st.decisions.push_back(d);
        while st.decisions.len() > KEEP_DECISIONS {
            st.decisions.pop_front();
        }
    }

    fn decision(
        &self,
        kind: DecisionKind,
        gpid: Option<i32>,
        to: Option<NodeId>,
        reason: String,
    ) -> Decision {
        Decision {
            at_ms: ssi_core::auth::unix_ms(),
            node: self.me,
            kind,
            gpid,
            to,
            reason,
        }
    }

    /// Chooses the node for a new process from the placement index (kept up to date by
    /// `sched::follow`); the choice is recorded.
    pub fn place(&self, req: &Request, what: &str) -> Option<NodeId> {
        let now = self.now_s();
        let mut st = self.lock();
        let external = st.policy_name == "external";
        // An external policy may take up to its timeout: let the runtime move other tasks off
        // this thread meanwhile.
        let placement = if external {
            tokio::task::block_in_place(|| st.placer.place(req, now))
        } else {
            st.placer.place(req, now)
        };
        let reason = placement.reason(&st.policy_name, what, req).to_string();
        let d = self.decision(DecisionKind::Place, None, placement.node, reason);
        Self::record(&mut st, d);
        placement.node
    }

    /// Replaces the placement policy.
    pub fn set_policy(&self, name: &str, params: BTreeMap<String, String>) -> Result<()> {
        let policy = registry::policy(name, &params)?;
        let mut st = self.lock();
        let reason = format!("policy set to {name} (was {})", st.policy_name);
        st.placer.set_policy(policy);
        st.policy_name = name.to_string();
        st.params = params;
        let d = self.decision(DecisionKind::Policy, None, None, reason);
        Self::record(&mut st, d);
        Ok(())
    }

    /// Maybe one move of a local process (from `local`); `force` ignores the cooldown.
    pub fn balance(&self, view: &[NodeView], local: &[LocalProc], force: bool) -> Option<Move> {
        let now = self.now_s();
        let mut st = self.lock();
        let nodes = self.samples(&mut st, view);
        let mv = st.balancer.decide(self.me, &nodes, local, now, force);
        if let Some(m) = &mv {
            st.placer.add_pending(m.to, now);
        }
        mv
    }

    /// Records how a move went.
    pub fn moved(&self, m: &Move, outcome: Result<(), String>) {
        let mut st = self.lock();
        let d = match outcome {
            Ok(()) => self.decision(
                DecisionKind::Move,
                Some(m.gpid),
                Some(m.to),
                m.reason.clone(),
            ),
            Err(e) => self.decision(
                DecisionKind::MoveFailed,
                Some(m.gpid),
                Some(m.to),
                format!("{}; migration failed: {e}", m.reason),
            ),
        };
        Self::record(&mut st, d);
    }

    /// The balancing interval.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.lock().balancer.config.interval_s.max(0.1))
    }

    /// What `ssi sched show` gives for this node.
    pub fn status(&self, view: &[NodeView]) -> SchedStatus {
        let mut st = self.lock();
        let nodes = self.samples(&mut st, view);
        SchedStatus {
            node: self.me,
            policy: st.policy_name.clone(),
            params: st.params.clone(),
            policy_report: st.placer.policy().report(),
            filters: st.placer.filters().specs().to_vec(),
            balance: st.balancer.config.clone(),
            view: nodes,
            decisions: st.decisions.iter().cloned().collect(),
        }
    }
}

/// The request of `ssi run` options.
pub fn request(
    cpus: Option<u32>,
    mem_bytes: Option<u64>,
    constraints: &[(String, String)],
) -> Request {
    Request {
        cpus,
        mem_bytes,
        constraints: constraints.to_vec(),
    }
}

/// Parses `KEY=VALUE` pairs given to `ssi sched set --param`.
pub fn params(list: &[(String, String)]) -> Result<BTreeMap<String, String>> {
    if list.iter().any(|(k, _)| k.is_empty()) {
        return Err(anyhow!("a parameter needs a name: KEY=VALUE"));
    }
    Ok(list.iter().cloned().collect())
}
