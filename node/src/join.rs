//! Joining the cluster: while this node knows no other member, it asks its seeds, in order,
//! to let it in. A seed refuses a node whose id another live node holds, and a node whose
//! certificate is not from the seed's cluster CA (or that does not accept the seed's) fails
//! the TLS handshake: both are fatal for this daemon.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::wire::SecureStream;
use ssi_core::Error;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::node::Node;

/// A reason for the daemon to stop on its own.
#[derive(Debug)]
pub(crate) enum Fatal {
    /// The cluster refused us (duplicate id, wrong key): exit with an error.
    Refused(String),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps this node in the cluster: joins through a seed whenever it is alone.
pub(crate) async fn run(node: Arc<Node>, fatal: mpsc::Sender<Fatal>) {
    let seeds = node.config.seeds.clone();
    if seeds.is_empty() {
        tracing::info!("no seeds: waiting for other nodes to join through us");
        return;
    }
    let mut warned = false;
    loop {
        match node.gossip.active_members().await {
            Ok(0) => {}
            Ok(_) => {
                warned = false;
                tokio::time::sleep(node.config.gossip.join_retry).await;
                continue;
            }
            Err(_) => return,
        }
        for seed in &seeds {
            match join_through(&node, *seed).await {
                Ok(()) => break,
                Err(e @ (Error::JoinRefused { .. } | Error::Auth { .. })) => {
                    let _ = fatal.send(Fatal::Refused(e.to_string())).await;
                    return;
                }
                Err(e) => {
                    if !warned {
                        tracing::info!(%seed, error = %e, "seed not reachable yet; will retry");
                    }
                }
            }
        }
        warned = true;
        tokio::time::sleep(node.config.gossip.join_retry).await;
    }
}

async fn join_through(node: &Node, seed: SocketAddr) -> Result<(), Error> {
    let what = format!("connect to seed {seed}");
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(seed))
        .await
        .map_err(|_| Error::net(&what, std::io::ErrorKind::TimedOut.into()))?
        .map_err(|e| Error::net(&what, e))?;
    let mut conn = SecureStream::client(stream, &node.tls, format!("seed {seed}")).await?;
    let identity = node.gossip.identity().await?;
    conn.send(&RpcRequest::Join {
        identity,
        name: node.config.name.clone(),
    })
    .await?;
    let answer = conn
        .recv::<RpcResponse>()
        .await?
        .ok_or_else(|| Error::Peer {
            peer: format!("seed {seed}"),
            reason: "closed the connection without answering".into(),
        })?;
    match answer {
        RpcResponse::JoinAccepted {
            seed: seed_id,
            members,
        } => {
            tracing::info!(seed = %seed_id, known = members.len(), "join accepted");
            node.gossip.join(seed_id, members).await
        }
        RpcResponse::JoinRefused { reason } => Err(Error::JoinRefused {
            peer: seed.to_string(),
            reason,
        }),
        RpcResponse::Error { message } => Err(Error::Peer {
            peer: format!("seed {seed}"),
            reason: message,
        }),
        other => Err(Error::Peer {
            peer: format!("seed {seed}"),
            reason: format!("unexpected answer to a join: {other:?}"),
        }),
    }
}
