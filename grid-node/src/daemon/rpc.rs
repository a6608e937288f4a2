//! The RPC server: other daemons connect over TCP, authenticate with the cluster key, then
//! send requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use ssi_core::gossip::RateLimited;
use ssi_core::membership::MemberRecord;
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::wire::SecureStream;
use ssi_core::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use super::Node;

/// Accepts daemon connections forever.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    // Anything a remote peer can trigger is rate-limited in the log.
    let refusals = Arc::new(Mutex::new(RateLimited::new(Duration::from_secs(10))));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let node = node.clone();
                let refusals = refusals.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(&node, stream, peer).await {
                        let mut limit = refusals.lock().await;
                        if let Some(held) = limit.admit() {
                            tracing::warn!(%peer, error = %e, held_back = held, "rpc connection refused or failed");
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "rpc accept failed"),
        }
    }
}

async fn connection(node: &Node, stream: TcpStream, peer: SocketAddr) -> Result<(), Error> {
    let mut conn = SecureStream::server(stream, &node.key, peer.to_string()).await?;
    while let Some(req) = conn.recv::<RpcRequest>().await? {
        let resp = answer(node, req, peer).await;
        conn.send(&resp).await?;
    }
    Ok(())
}

async fn answer(node: &Node, req: RpcRequest, peer: SocketAddr) -> RpcResponse {
    match req {
        RpcRequest::Join { identity, name } => match admit(node, identity, &name, peer).await {
            Ok(resp) => resp,
            Err(e) => RpcResponse::Error {
                message: e.to_string(),
            },
        },
    }
}

/// Lets a node in unless its id is held by another live node.
async fn admit(
    node: &Node,
    joiner: ssi_core::NodeIdentity,
    name: &str,
    peer: SocketAddr,
) -> Result<RpcResponse, Error> {
    if let Some(holder) = node.gossip.active_identity(joiner.id).await? {
        // The same address means the same node restarted (its old run cannot hold the port).
        if holder.addr != joiner.addr {
            let reason = format!(
                "node id {} is already alive at {} (gen {}); {} at {} must use another id",
                joiner.id, holder.addr, holder.gen, name, joiner.addr
            );
            tracing::warn!(%peer, "refused join: {reason}");
            return Ok(RpcResponse::JoinRefused { reason });
        }
    }
    let seed = node.gossip.identity().await?;
    let members = node.gossip.snapshot().await?;
    node.gossip
        .admit(MemberRecord {
            identity: joiner.clone(),
            incarnation: 0,
            active: true,
            suspect: false,
        })
        .await?;
    tracing::info!(node = %joiner.id, %name, addr = %joiner.addr, "admitted joining node");
    Ok(RpcResponse::JoinAccepted { seed, members })
}
