//! Talking to another daemon: an authenticated connection to its RPC server, and one request
//! with its answer.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::wire::SecureStream;
use ssi_core::NodeId;
use tokio::net::TcpStream;

use crate::node::Node;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a request waits for its answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

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
    Ok(SecureStream::client(stream, &node.tls, format!("node {id}")).await?)
}

/// Sends one request to node `id` and waits for one answer, for as long as it takes (a
/// migration or a checkpoint takes as long as copying the memory does).
pub async fn ask_untimed(node: &Node, id: NodeId, req: &RpcRequest) -> Result<RpcResponse> {
    let mut conn = connect(node, id).await?;
    conn.send(req).await?;
    conn.recv::<RpcResponse>()
        .await?
        .ok_or_else(|| anyhow!("node {id} closed the connection without answering"))
}

/// Sends one request to node `id` and waits for one answer, at most [`ANSWER_TIMEOUT`].
pub async fn ask(node: &Node, id: NodeId, req: &RpcRequest) -> Result<RpcResponse> {
    tokio::time::timeout(ANSWER_TIMEOUT, ask_untimed(node, id, req))
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
