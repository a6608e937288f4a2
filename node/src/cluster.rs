//! Operations that reach other nodes: connecting to a node's RPC server, listing and signalling
//! processes cluster-wide.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ssi_core::process::{Caller, MigrationReport, ProcState, ProcessView};
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::view::MemberState;
use ssi_core::wire::SecureStream;
use ssi_core::NodeId;
use tokio::net::TcpStream;

use super::Node;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// An authenticated connection to node `id`'s RPC server.
pub async fn connect(node: &Node, id: NodeId) -> Result<SecureStream<TcpStream>> {
    let target = node
        .gossip
        .active_identity(id)
        .await?
        .ok_or_else(|| anyhow!("node {id} is not alive"))?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.addr))
        .await
        .map_err(|_| anyhow!("node {id} at {}: connection timed out", target.addr))?
        .with_context(|| format!("node {id} at {}", target.addr))?;
    stream.set_nodelay(true).ok();
    Ok(SecureStream::client(stream, &node.key, format!("node {id}")).await?)
}

/// Sends one request to node `id` and waits for one answer.
pub async fn ask(node: &Node, id: NodeId, req: &RpcRequest) -> Result<RpcResponse> {
    let fut = async {
        let mut conn = connect(node, id).await?;
        conn.send(req).await?;
        conn.recv::<RpcResponse>()
            .await?
            .ok_or_else(|| anyhow!("node {id} closed the connection without answering"))
    };
    tokio::time::timeout(ANSWER_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("node {id} did not answer within {ANSWER_TIMEOUT:?}"))?
}

/// Sends one request to node `id` that is answered `Done` (or `Error`).
pub async fn ask_done(node: &Node, id: NodeId, req: &RpcRequest) -> Result<()> {
    match ask(node, id, req).await? {
        RpcResponse::Done => Ok(()),
        RpcResponse::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from node {id}: {other:?}"),
    }
}

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

/// Moves `gpid`, hosted here, to node `to`, and counts the migration in the metrics.
pub async fn migrate_here(
    node: &Node,
    gpid: i32,
    to: NodeId,
    rounds: Option<u32>,
    caller: &Caller,
) -> Result<MigrationReport> {
    let r = super::migration::migrate_out(node, gpid, to, rounds, caller).await;
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
    let start = std::time::Instant::now();
    let r = super::migration::checkpoint(node, gpid, dir, leave_running, caller).await;
    node.metrics
        .checkpointed(start.elapsed(), r.as_ref().ok().map(|(_, bytes)| *bytes));
    r
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
        return migrate_here(node, gpid, to, rounds, caller).await;
    }
    let req = RpcRequest::Migrate {
        gpid,
        to,
        rounds,
        caller: caller.clone(),
    };
    // A migration takes as long as it takes to copy the memory: no short answer timeout.
    let mut conn = connect(node, host).await?;
    conn.send(&req).await?;
    match conn.recv::<RpcResponse>().await? {
        Some(RpcResponse::Migrated(r)) => Ok(r),
        Some(RpcResponse::Error { message }) => bail!("{message}"),
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
        return checkpoint_here(node, gpid, &dir, leave_running, caller).await;
    }
    let req = RpcRequest::Checkpoint {
        gpid,
        dir,
        leave_running,
        caller: caller.clone(),
    };
    let mut conn = connect(node, host).await?;
    conn.send(&req).await?;
    match conn.recv::<RpcResponse>().await? {
        Some(RpcResponse::Checkpointed { pids, page_bytes }) => Ok((pids, page_bytes)),
        Some(RpcResponse::Error { message }) => bail!("{message}"),
        other => bail!("unexpected answer from node {host}: {other:?}"),
    }
}

/// What to do to every node's scheduler.
#[derive(Debug, Clone)]
pub enum SchedOp {
    /// Nothing: show it.
    Show,
    /// Set the policy.
    Set(String, Vec<(String, String)>),
    /// Balance now.
    Balance,
}

/// This node's answer to `op`, as JSON.
pub async fn sched_local(node: &Node, op: &SchedOp) -> Result<String> {
    match op {
        SchedOp::Show => {}
        SchedOp::Set(policy, params) => {
            node.sched
                .set_policy(policy, super::sched::params(params)?)?;
        }
        SchedOp::Balance => super::probes::balance_once(node, true).await?,
    }
    let view = node.gossip.view().await?;
    Ok(serde_json::to_string(&node.sched.status(&view))?)
}

/// Applies `op` on every alive node (this one first); one JSON document per node.
pub async fn sched_all(node: &Node, op: SchedOp) -> Result<Vec<String>> {
    let mut out = vec![sched_local(node, &op).await?];
    let view = node.gossip.view().await?;
    let others: Vec<NodeId> = view
        .iter()
        .filter(|n| n.state.is_active() && n.id != node.config.id)
        .map(|n| n.id)
        .collect();
    let req = match &op {
        SchedOp::Show => RpcRequest::SchedShow,
        SchedOp::Set(policy, params) => RpcRequest::SchedSet {
            policy: policy.clone(),
            params: params.clone(),
        },
        SchedOp::Balance => RpcRequest::SchedBalance,
    };
    let answers = futures::future::join_all(others.iter().map(|&id| {
        let req = req.clone();
        async move { (id, ask(node, id, &req).await) }
    }))
    .await;
    for (id, a) in answers {
        out.push(match a {
            Ok(RpcResponse::Sched(json)) => json,
            Ok(RpcResponse::Error { message }) => {
                serde_json::json!({ "node": id, "error": message }).to_string()
            }
            Ok(other) => {
                serde_json::json!({ "node": id, "error": format!("{other:?}") }).to_string()
            }
            Err(e) => serde_json::json!({ "node": id, "error": format!("{e:#}") }).to_string(),
        });
    }
    Ok(out)
}
