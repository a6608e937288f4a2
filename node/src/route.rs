//! Requests about one process, routed to the node that hosts it: the cluster's process list
//! (with the processes lost with dead nodes), finding a process, signalling, migrating and
//! checkpointing it wherever it runs.

use std::collections::HashMap;

use anyhow::{bail, Result};
use ssi_core::process::{Caller, MigrationReport, ProcState, ProcessView};
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::view::MemberState;
use ssi_core::NodeId;

use crate::migration;
use crate::node::Node;
use crate::peer::{ask, ask_done, ask_untimed};

/// Every process of the cluster: those of every alive node, and those lost with dead nodes.
pub async fn ps(node: &Node) -> Result<Vec<ProcessView>> {
    let view = node.gossip.view().await?;
    let me = node.config.id;
    let mut all: Vec<ProcessView> = match &node.procs {
        Ok(pm) => pm.ps(),
        Err(_) => Vec::new(),
    };
    let others: Vec<NodeId> = view
        .iter()
        .filter(|n| n.state.is_active() && n.id != me)
        .map(|n| n.id)
        .collect();
    let answers = futures::future::join_all(
        others
            .iter()
            .map(|&id| async move { (id, ask(node, id, &RpcRequest::Ps).await) }),
    )
    .await;
    let mut answered: HashMap<NodeId, Vec<i32>> = HashMap::new();
    answered.insert(me, all.iter().map(|p| p.gpid).collect());
    for (id, answer) in answers {
        match answer {
            Ok(RpcResponse::Processes(list)) => {
                answered.insert(id, list.iter().map(|p| p.gpid).collect());
                all.extend(list);
            }
            Ok(other) => tracing::warn!(node = %id, "unexpected answer to ps: {other:?}"),
            Err(e) => tracing::warn!(node = %id, error = %e, "ps: node did not answer"),
        }
    }
    // Remote processes started from here: lost when their node died, forgotten once their
    // (alive) node no longer has them.
    let dead: Vec<NodeId> = view
        .iter()
        .filter(|n| matches!(n.state, MemberState::Dead | MemberState::Left))
        .map(|n| n.id)
        .collect();
    let mut dir = node.directory();
    dir.retain(|gpid, p| {
        dead.contains(&p.node) || answered.get(&p.node).is_none_or(|l| l.contains(gpid))
    });
    for p in dir.values() {
        if dead.contains(&p.node) && !all.iter().any(|q| q.gpid == p.gpid) {
            let mut lost = p.clone();
            lost.state = ProcState::Lost;
            lost.cpu_percent = 0.0;
            lost.rss_bytes = 0;
            all.push(lost);
        }
    }
    drop(dir);
    all.sort_by_key(|p| p.gpid);
    Ok(all)
}

/// Where `gpid` runs now.
pub async fn locate(node: &Node, gpid: i32) -> Result<NodeId> {
    if let Ok(pm) = &node.procs {
        if pm.ps().iter().any(|p| p.gpid == gpid) {
            return Ok(node.config.id);
        }
    }
    let list = ps(node).await?;
    match list.iter().find(|p| p.gpid == gpid) {
        Some(p) if p.state == ProcState::Lost => {
            bail!("process {gpid} is lost: node {} died", p.node)
        }
        Some(p) => Ok(p.node),
        None => bail!("no process {gpid} in the cluster"),
    }
}

/// Sends `sig` to process `gpid` wherever it runs.
pub async fn kill(node: &Node, gpid: i32, sig: i32, caller: &Caller) -> Result<()> {
    let host = locate(node, gpid).await?;
    if host == node.config.id {
        return node.local_procs()?.kill(gpid, sig, caller).await;
    }
    let req = RpcRequest::Kill {
        gpid,
        sig,
        caller: caller.clone(),
    };
    ask_done(node, host, &req).await
}

/// Moves `gpid` to node `to`, wherever it runs now.
pub async fn migrate(
    node: &Node,
    gpid: i32,
    to: NodeId,
    rounds: Option<u32>,
    caller: &Caller,
) -> Result<MigrationReport> {
    let host = locate(node, gpid).await?;
    if host == node.config.id {
        return migration::migrate_out(node, gpid, to, rounds, caller).await;
    }
    let req = RpcRequest::Migrate {
        gpid,
        to,
        rounds,
        caller: caller.clone(),
    };
    match ask_untimed(node, host, &req).await? {
        RpcResponse::Migrated(r) => Ok(r),
        RpcResponse::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from node {host}: {other:?}"),
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
        return migration::checkpoint(node, gpid, &dir, leave_running, caller).await;
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
