//! Requests about one process, routed to the node that hosts it: the cluster's process list
//! (with the processes lost with dead nodes), finding a process, signalling, migrating and
//! checkpointing it wherever it runs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ssi_core::process::{Caller, MigrationReport, ProcState, ProcessView};
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::view::MemberState;
use ssi_core::NodeId;

use crate::migration;
use crate::node::Node;
use crate::peer::{ask, ask_done, ask_untimed};

/// Every process of the cluster, one row per process: those of every alive node (a process
/// on its way between two nodes once, `migrating`), and those this or any alive node knows of
/// on nodes that died, `lost`. Lost rows shown to their owner (`caller`) are forgotten
/// everywhere.
pub async fn ps(node: &Node, caller: Option<&Caller>) -> Result<Vec<ProcessView>> {
    let view = node.gossip.view().await?;
    let me = node.config.id;
    let hosted: Vec<ProcessView> = match &node.procs {
        Ok(pm) => pm.ps(),
        Err(_) => Vec::new(),
    };
    let mut remembered: Vec<ProcessView> = node.directory().values().cloned().collect();
    let mut lists = vec![(me, hosted)];
    for (id, answer) in ask_all(node, &view, &RpcRequest::Ps).await {
        match answer {
            Ok(RpcResponse::Processes {
                hosted,
                remembered: theirs,
            }) => {
                lists.push((id, hosted));
                remembered.extend(theirs);
            }
            Ok(other) => tracing::warn!(node = %id, "unexpected answer to ps: {other:?}"),
            Err(e) => tracing::warn!(node = %id, error = %e, "ps: node did not answer"),
        }
    }
    let answered: Vec<NodeId> = lists.iter().map(|(id, _)| *id).collect();
    let mut rows = merge(lists);
    for p in rows.values_mut().filter(|p| p.node_name.is_empty()) {
        p.node_name = name_in(&view, p.node);
    }
    let dead = |n: NodeId| {
        view.iter()
            .any(|v| v.id == n && matches!(v.state, MemberState::Dead | MemberState::Left))
    };
    // what this node remembers follows the process, and goes once it ended (its node
    // answered without it)
    node.directory().retain(|gpid, p| match rows.get(gpid) {
        Some(now) => {
            *p = now.clone();
            true
        }
        None => dead(p.node) || !answered.contains(&p.node),
    });
    let mut lost = Vec::new();
    for p in remembered {
        if dead(p.node) && !rows.contains_key(&p.gpid) {
            lost.push(p.gpid);
            rows.insert(p.gpid, as_lost(p));
        }
    }
    if let Some(c) = caller {
        forget_seen(node, &view, &rows, &lost, c).await;
    }
    Ok(rows.into_values().collect())
}

/// Asks every alive node but this one, all at once.
async fn ask_all(
    node: &Node,
    view: &[ssi_core::view::NodeView],
    req: &RpcRequest,
) -> Vec<(NodeId, Result<RpcResponse>)> {
    let others: Vec<NodeId> = view
        .iter()
        .filter(|n| n.state.is_active() && n.id != node.config.id)
        .map(|n| n.id)
        .collect();
    futures::future::join_all(
        others
            .iter()
            .map(|&id| async move { (id, ask(node, id, req).await) }),
    )
    .await
}

/// One row per gpid from the nodes' lists: a row of a process that runs wins over rows that
/// say it is migrating, and the source's `migrating` row over the target's (both nodes list
/// a tree while it moves).
fn merge(lists: Vec<(NodeId, Vec<ProcessView>)>) -> BTreeMap<i32, ProcessView> {
    let rank = |from: NodeId, p: &ProcessView| match (p.state, p.node == from) {
        (ProcState::Migrating, false) => 0,
        (ProcState::Migrating, true) => 1,
        _ => 2,
    };
    let mut rows: BTreeMap<i32, (u8, ProcessView)> = BTreeMap::new();
    for (from, list) in lists {
        for p in list {
            let r = rank(from, &p);
            if rows.get(&p.gpid).is_none_or(|(best, _)| r > *best) {
                rows.insert(p.gpid, (r, p));
            }
        }
    }
    rows.into_iter().map(|(g, (_, p))| (g, p)).collect()
}

fn name_in(view: &[ssi_core::view::NodeView], id: NodeId) -> String {
    view.iter()
        .find(|n| n.id == id)
        .map_or_else(|| format!("node-{id}"), |n| n.name.clone())
}

fn as_lost(mut p: ProcessView) -> ProcessView {
    p.state = ProcState::Lost;
    p.cpu_percent = 0.0;
    p.rss_bytes = 0;
    p.to = None;
    p
}

/// Lost processes of `caller` that were just listed to them are forgotten here and on every
/// alive node (best effort).
async fn forget_seen(
    node: &Node,
    view: &[ssi_core::view::NodeView],
    rows: &BTreeMap<i32, ProcessView>,
    lost: &[i32],
    caller: &Caller,
) {
    let gpids: Vec<i32> = lost
        .iter()
        .filter(|g| rows.get(g).is_some_and(|p| p.uid == caller.uid))
        .copied()
        .collect();
    if gpids.is_empty() {
        return;
    }
    node.directory().retain(|g, _| !gpids.contains(g));
    ask_all(node, view, &RpcRequest::ForgetLost { gpids }).await;
}

/// The row of `gpid` in the cluster's list.
async fn find(node: &Node, gpid: i32) -> Result<ProcessView> {
    if let Ok(pm) = &node.procs {
        if let Some(p) = pm.ps().into_iter().find(|p| p.gpid == gpid) {
            return Ok(p);
        }
    }
    match ps(node, None).await?.into_iter().find(|p| p.gpid == gpid) {
        Some(p) if p.state == ProcState::Lost => {
            bail!("process {gpid} is lost with node {}: the node died", p.node)
        }
        Some(p) => Ok(p),
        None => bail!("no process {gpid} in the cluster"),
    }
}

/// Where `gpid` runs now (the node it leaves, while it migrates).
pub async fn locate(node: &Node, gpid: i32) -> Result<NodeId> {
    Ok(find(node, gpid).await?.node)
}

/// The node where `gpid` runs now, if it does: not while it is on its way between two nodes,
/// lost, or a zombie (the remains of a copy being discarded on a target).
pub async fn runs_at(node: &Node, gpid: i32) -> Option<NodeId> {
    let p = find(node, gpid).await.ok()?;
    let gone = matches!(
        p.state,
        ProcState::Migrating | ProcState::Lost | ProcState::Zombie
    );
    (!gone).then_some(p.node)
}

/// Sends `sig` to process `gpid` wherever it runs.
pub async fn kill(node: &Node, gpid: i32, sig: i32, caller: &Caller) -> Result<()> {
    let host = locate(node, gpid).await?;
    if host == node.config.id {
        return kill_here(node, gpid, sig, caller).await;
    }
    kill_at(node, host, gpid, sig, caller).await
}

/// Asks node `host` to send `sig` to its process `gpid`.
async fn kill_at(node: &Node, host: NodeId, gpid: i32, sig: i32, caller: &Caller) -> Result<()> {
    let req = RpcRequest::Kill {
        gpid,
        sig,
        caller: caller.clone(),
    };
    ask_done(node, host, &req).await
}

/// Moves `gpid`, hosted here, to node `to`, and counts the migration in the metrics.
pub async fn migrate_here(
    node: &Arc<Node>,
    gpid: i32,
    to: NodeId,
    rounds: Option<u32>,
    caller: &Caller,
) -> Result<MigrationReport> {
    if node.local_procs()?.is_ft(gpid) {
        bail!("process {gpid} is fault-tolerant (ssi run --ft): migrating it is not supported");
    }
    let r = migration::source::migrate_out(node, gpid, to, rounds, caller).await;
    node.metrics.migrated(r.as_ref().map_err(drop));
    r
}

/// Checkpoints the tree of `gpid`, hosted here, and counts the checkpoint in the metrics.
pub async fn checkpoint_here(
    node: &Node,
    gpid: i32,
    dir: &str,
    leave_running: bool,
    caller: &Caller,
) -> Result<(Vec<i32>, u64)> {
    let start = Instant::now();
    let r = migration::checkpoint::checkpoint(node, gpid, dir, leave_running, caller).await;
    node.metrics
        .checkpointed(start.elapsed(), r.as_ref().ok().map(|(_, bytes)| *bytes));
    r
}

/// Sends `sig` to process `gpid` of this node; one that has just left for another node (it
/// was listed here a moment ago) gets it there.
pub async fn kill_here(node: &Node, gpid: i32, sig: i32, caller: &Caller) -> Result<()> {
    let Some(to) = node.local_procs()?.kill(gpid, sig, caller).await? else {
        return Ok(());
    };
    tracing::info!(gpid, sig, %to, "signal for a process that just left passed on");
    kill_at(node, to, gpid, sig, caller).await
}

/// Moves `gpid` to node `to`, wherever it runs now.
pub async fn migrate(
    node: &Arc<Node>,
    gpid: i32,
    to: NodeId,
    rounds: Option<u32>,
    caller: &Caller,
) -> Result<MigrationReport> {
    let row = find(node, gpid).await?;
    let host = row.node;
    if host == node.config.id {
        return migrate_here(node, gpid, to, rounds, caller).await;
    }
    let req = RpcRequest::Migrate {
        gpid,
        to,
        rounds,
        caller: caller.clone(),
    };
    match ask_untimed(node, host, &req).await {
        Ok(RpcResponse::Migrated(r)) => Ok(r),
        Ok(RpcResponse::Error { message }) => bail!("{message}"),
        Ok(other) => bail!("unexpected answer from node {host}: {other:?}"),
        Err(e) => after_losing(node, row, to, e).await,
    }
}

/// How long `ssi migrate` waits for the cluster to say what became of a process whose source
/// node stopped answering.
const FIND_OUT: Duration = Duration::from_secs(30);

/// The node moving `row`'s process to `to` stopped answering before it said how it went:
/// finds out from the cluster, in words. A process that runs on nowhere once its node is dead
/// is lost with it, and listed so on every node.
async fn after_losing(
    node: &Node,
    row: ProcessView,
    to: NodeId,
    e: anyhow::Error,
) -> Result<MigrationReport> {
    let (gpid, host) = (row.gpid, row.node);
    let deadline = Instant::now() + FIND_OUT;
    loop {
        let dead = node
            .gossip
            .view()
            .await?
            .iter()
            .any(|n| n.id == host && !n.state.is_active());
        let now = ps(node, None).await?.into_iter().find(|p| p.gpid == gpid);
        match now {
            Some(p) if p.state == ProcState::Migrating && dead => bail!(
                "node {host} died after sending process {gpid}; node {to} holds it stopped and \
                 lets it run if node {host} comes back restarted, else it is lost with node {host}"
            ),
            Some(p) if p.state != ProcState::Migrating && p.state != ProcState::Lost => {
                if p.node == host {
                    bail!("node {host} stopped answering ({e:#}); process {gpid} runs on at node {host}");
                }
                let mut r = MigrationReport::new(gpid, host, p.node);
                r.note = Some(format!(
                    "node {host} went away before it reported; process {gpid} runs on node {}",
                    p.node
                ));
                return Ok(r);
            }
            Some(p) if p.state == ProcState::Lost => {
                bail!("process {gpid} is lost with node {}: it died during the migration to node {to}", p.node)
            }
            _ if dead => {
                node.directory().insert(gpid, row);
                bail!("process {gpid} is lost with node {host}: it died during the migration to node {to}");
            }
            _ => {}
        }
        if Instant::now() > deadline {
            bail!(
                "node {host} stopped answering during the migration of {gpid} ({e:#}); see ssi ps"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Checkpoints the tree of `gpid` into `dir` (on the node hosting it).
pub async fn checkpoint(
    node: &Node,
    gpid: i32,
    dir: String,
    leave_running: bool,
    caller: &Caller,
) -> Result<(Vec<i32>, u64)> {
    let host = locate(node, gpid).await?;
    if host == node.config.id {
        return checkpoint_here(node, gpid, &dir, leave_running, caller).await;
    }
    let req = RpcRequest::Checkpoint {
        gpid,
        dir,
        leave_running,
        caller: caller.clone(),
    };
    match ask_untimed(node, host, &req).await? {
        RpcResponse::Checkpointed { pids, page_bytes } => Ok((pids, page_bytes)),
        RpcResponse::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from node {host}: {other:?}"),
    }
}
