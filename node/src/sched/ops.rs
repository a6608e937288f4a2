//! `ssi sched show | set | balance`: the operation on this node's scheduler, and on every
//! alive node's.

use anyhow::Result;
use ssi_core::rpc::{RpcRequest, RpcResponse};
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

/// This node's answer to `op`, as JSON.
pub async fn local(node: &Node, op: &SchedOp) -> Result<String> {
    match op {
        SchedOp::Show => {}
        SchedOp::Set(policy, params) => {
            node.sched
                .set_policy(policy, super::state::params(params)?)?;
        }
        SchedOp::Balance => super::balance::once(node, true).await?,
    }
    let view = node.gossip.view().await?;
    Ok(serde_json::to_string(&node.sched.status(&view))?)
}

/// Applies `op` on every alive node (this one first); one JSON document per node.
pub async fn all(node: &Node, op: SchedOp) -> Result<Vec<String>> {
    let mut out = vec![local(node, &op).await?];
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
