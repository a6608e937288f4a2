//! `ssi sched show | set | balance`: the operation on this node's scheduler, and on every
//! alive node's.

use std::sync::Arc;

use anyhow::Result;
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::sched::{SchedAnswer, SchedStatus};
use ssi_core::NodeId;

use crate::node::Node;
use crate::peer::ask;

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

/// This node's scheduler after `op`.
pub async fn local(node: &Arc<Node>, op: &SchedOp) -> Result<SchedStatus> {
    match op {
        SchedOp::Show => {}
        SchedOp::Set(policy, params) => {
            node.sched
                .set_policy(policy, super::state::params(params)?)?;
        }
        SchedOp::Balance => super::balance::once(node, true).await?,
    }
    let view = node.gossip.view().await?;
    Ok(node.sched.status(&view))
}

/// Applies `op` on every alive node (this one first); one answer per node.
pub async fn all(node: &Arc<Node>, op: SchedOp) -> Result<Vec<SchedAnswer>> {
    let mut out = vec![SchedAnswer::Status(local(node, &op).await?)];
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
        let failed = |error: String| SchedAnswer::Failed { node: id, error };
        out.push(match a {
            Ok(RpcResponse::Sched(status)) => SchedAnswer::Status(status),
            Ok(RpcResponse::Error { message }) => failed(message),
            Ok(other) => failed(format!("unexpected answer {other:?}")),
            Err(e) => failed(format!("{e:#}")),
        });
    }
    Ok(out)
}
