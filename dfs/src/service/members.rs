//! Who holds the metadata: bootstrap, voters and learners kept in step with the alive nodes,
//! and the opens and locks of nodes that died dropped.
//!
//! - The first start: the alive node with the lowest id initialises a one-voter cluster once
//!   the membership view has been stable for [`SETTLE`] and every other alive node says it is
//!   uninitialised (so two halves never found two file systems while they can see each other).
//! - The leader adds every alive node as a learner (each node then applies the log and holds
//!   a copy of the metadata), and keeps `voters` of them voting: a dead voter is replaced by
//!   an alive learner that holds the log (and keeps its seat while there is none), dead
//!   learners are removed.
//! - When a node stops being alive, the leader proposes `NodeGone` once: its opens and locks
//!   end. A node proposes it for itself when it starts, for those of its previous run.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;

use super::Dfs;
use crate::meta::MetaOp;
use crate::net::proto::{Request, Response};
use crate::raft::NodeAddr;

/// How long the view of alive nodes must hold still before a first node bootstraps.
const SETTLE: Duration = Duration::from_secs(3);
const PERIOD: Duration = Duration::from_millis(500);
/// Log entries a learner may lag and still be made a voter.
const CATCH_UP_SLACK: u64 = 16;

/// Runs until the process ends.
pub async fn run(dfs: Arc<Dfs>) {
    let mut gone: HashSet<u16> = HashSet::new();
    let mut announced_self = false;
    let mut last_view: Vec<u16> = Vec::new();
    let mut stable_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(PERIOD).await;
        let view = dfs.members.borrow().clone();
        for m in &view {
            dfs.peers.set_addr(m.id, m.addr);
        }
        let alive = dfs.alive();
        if alive != last_view {
            last_view = alive.clone();
            stable_since = tokio::time::Instant::now();
        }
        let initialized = dfs.raft.is_initialized().await.unwrap_or(false);
        if !initialized {
            if stable_since.elapsed() >= SETTLE && alive.first() == Some(&dfs.opts.me) {
                bootstrap(&dfs, &alive).await;
            }
            continue;
        }
        if !announced_self {
            announced_self = matches!(
                dfs.write(MetaOp::NodeGone { node: dfs.opts.me }).await,
                Ok(_)
            );
        }
        if dfs.raft.current_leader().await != Some(u64::from(dfs.opts.me)) {
            continue;
        }
        for m in view.iter().filter(|m| m.id != dfs.opts.me) {
            if m.alive {
                gone.remove(&m.id);
            } else if gone.insert(m.id) {
                dfs.peers.forget(m.id);
                if dfs.write(MetaOp::NodeGone { node: m.id }).await.is_err() {
                    gone.remove(&m.id);
                }
            }
        }
        if let Err(e) = reconcile(&dfs, &alive).await {
            tracing::warn!(error = %e, "dfs voter change failed");
        }
    }
}

/// Initialises a one-voter cluster of this node if no other alive node holds metadata.
async fn bootstrap(dfs: &Dfs, alive: &[u16]) {
    for node in alive.iter().filter(|n| **n != dfs.opts.me) {
        match dfs
            .peers
            .call(*node, &Request::Status, super::RPC_TIMEOUT)
            .await
        {
            Ok(Response::Status(s)) if s.role == "uninitialized" => {}
            _ => return,
        }
    }
    let me = BTreeMap::from([(u64::from(dfs.opts.me), dfs.node_addr(dfs.opts.me))]);
    match dfs.raft.initialize(me).await {
        Ok(()) => tracing::info!(node = dfs.opts.me, "dfs metadata initialised"),
        Err(e) => tracing::warn!(error = %e, "dfs bootstrap failed"),
    }
}

/// Adds alive nodes as learners, replaces dead voters, removes dead learners.
async fn reconcile(dfs: &Dfs, alive: &[u16]) -> crate::Result<()> {
    let metrics = dfs.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.clone();
    if membership.membership().get_joint_config().len() > 1 {
        return Ok(());
    }
    // A learner votes only once it holds nearly the whole log: the joint configuration of a
    // voter change then lasts one round trip, not the learner's catch-up (while it lasts, the
    // old voters must all stay reachable).
    let last = metrics.last_log_index.unwrap_or(0);
    let caught_up = |id: &u64| {
        metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(id).cloned().flatten())
            .is_some_and(|m| m.index + CATCH_UP_SLACK >= last)
    };
    let nodes: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let alive: BTreeSet<u64> = alive.iter().map(|n| u64::from(*n)).collect();
    let err = |e: openraft::error::RaftError<u64, _>| crate::Error::Raft(e.to_string());
    for id in alive.difference(&nodes) {
        let addr = dfs.node_addr(u16::try_from(*id).unwrap_or(0));
        dfs.raft.add_learner(*id, addr, false).await.map_err(err)?;
    }
    let target = dfs.opts.voters.max(1);
    let mut new_voters: BTreeSet<u64> = voters.intersection(&alive).copied().collect();
    for id in &alive {
        if new_voters.len() >= target {
            break;
        }
        if nodes.contains(id) && caught_up(id) {
            new_voters.insert(*id);
        }
    }
    // A dead voter keeps its seat until a caught-up node takes it: shrinking to two voters
    // would make the next change need both of them (Raft's joint configuration), so a second
    // death during it would stop the metadata.
    let keep = voters.len().min(target);
    for id in voters.difference(&alive) {
        if new_voters.len() < keep {
            new_voters.insert(*id);
        }
    }
    if new_voters != voters && !new_voters.is_empty() {
        tracing::info!(?voters, ?new_voters, "dfs metadata voters change");
        dfs.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(new_voters.clone()), true)
            .await
            .map_err(err)?;
    }
    let dead: BTreeSet<u64> = nodes
        .iter()
        .filter(|id| !alive.contains(id) && !new_voters.contains(id))
        .copied()
        .collect();
    if !dead.is_empty() {
        dfs.raft
            .change_membership(ChangeMembers::RemoveNodes(dead), false)
            .await
            .map_err(err)?;
    }
    Ok(())
}

impl Dfs {
    /// The raft node record of `id` (its DFS address, from the membership view).
    pub(super) fn node_addr(&self, id: u16) -> NodeAddr {
        let addr = if id == self.opts.me {
            Some(self.opts.advertise)
        } else {
            self.peers.addr(id)
        };
        NodeAddr {
            addr: addr.map(|a| a.to_string()).unwrap_or_default(),
        }
    }
}
