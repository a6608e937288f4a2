//! The grid state replicated on every node: a [`GridStore`] with primary-backup replication.
//!
//! The primary is the alive (or suspect) member with the lowest node id, as this node's
//! membership view sees it. Every operation goes to the primary, which orders the changes
//! (a sequence number each), applies them to its copy, and sends each change to every other
//! member before it answers; a member whose copy is behind gets the whole state instead. A
//! node that becomes primary first takes the most advanced copy among the members (so a
//! restarted node 1 with an old or empty copy does not win). Every node keeps its copy in a
//! file of its state directory, so the state also outlives restarts of the whole cluster.
//!
//! This is not consensus: the DFS's Raft log is not in this build. Two nodes whose views of
//! the membership differ (a network partition) can both act as primary, and the copy that is
//! taken over later wins; a change acknowledged to a client is on every member the primary
//! saw, so the loss of any one node (including the primary) loses nothing acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{anyhow, Result};
use futures::future::BoxFuture;
use grid_node::store::{Entries, GridStore, Table};
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::NodeId;

use super::proto::{self, Answer, Op, Request};
use super::replica::{Change, Replica};
use crate::{peer, Node};

/// How long an operation keeps trying while the primary changes (a dead primary is declared
/// dead by the membership within its suspicion timeout).
const RETRY_FOR: Duration = Duration::from_secs(30);
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// The grid state of this node and the way to the primary.
#[derive(Debug)]
pub struct ReplicatedStore {
    node: Weak<Node>,
    me: NodeId,
    replica: Mutex<Replica>,
    /// Orders the operations this node does as primary.
    order: tokio::sync::Mutex<()>,
    /// Whether this node, as primary, holds the most advanced copy of the members it saw.
    caught_up: AtomicBool,
}

fn store_err(e: anyhow::Error) -> grid_node::Error {
    grid_node::Error::Store(format!("{e:#}"))
}

impl ReplicatedStore {
    /// The store of `node`, with its copy in `replica`.
    pub fn new(node: &Arc<Node>, replica: Replica) -> Arc<Self> {
        Arc::new(ReplicatedStore {
            node: Arc::downgrade(node),
            me: node.config.id,
            replica: Mutex::new(replica),
            order: tokio::sync::Mutex::new(()),
            caught_up: AtomicBool::new(false),
        })
    }

    fn replica(&self) -> std::sync::MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn node(&self) -> Result<Arc<Node>> {
        self.node
            .upgrade()
            .ok_or_else(|| anyhow!("the daemon is stopping"))
    }

    /// The members, lowest id (the primary) first.
    async fn members(node: &Node) -> Result<Vec<NodeId>> {
        let mut ids: Vec<NodeId> = node
            .gossip
            .view()
            .await?
            .into_iter()
            .filter(|n| n.state.is_active())
            .map(|n| n.id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Does `op` at the primary, retrying while the primary changes.
    async fn call(&self, op: Op) -> Result<Answer> {
        let deadline = tokio::time::Instant::now() + RETRY_FOR;
        loop {
            let node = self.node()?;
            let members = Self::members(&node).await?;
            let primary = members.first().copied().unwrap_or(self.me);
            let outcome = if primary == self.me {
                self.lead(&node, &members, op.clone()).await
            } else {
                ask(&node, primary, &Request::Op(op.clone())).await
            };
            let why = match outcome {
                Ok(Answer::NotPrimary) => format!("node {primary} is not the primary (yet)"),
                Ok(Answer::Error(e)) => return Err(anyhow!("node {primary}: {e}")),
                Ok(a) => return Ok(a),
                Err(e) => format!("{e:#}"),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(anyhow!("the grid state is unreachable: {why}"));
            }
            tracing::debug!(%primary, why, "grid store: retrying");
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Does `op` as the primary.
    async fn lead(&self, node: &Node, members: &[NodeId], op: Op) -> Result<Answer> {
        let _turn = self.order.lock().await;
        if !self.caught_up.load(Ordering::SeqCst) {
            self.catch_up(node, members).await?;
            self.caught_up.store(true, Ordering::SeqCst);
        }
        Ok(match op {
            Op::Get { table, key } => Answer::Value(self.replica().get(table, &key)),
            Op::Scan {
                table,
                prefix,
                after,
                limit,
            } => Answer::Entries(self.replica().scan(table, &prefix, after.as_deref(), limit)),
            Op::Cas {
                table,
                key,
                expected,
                new,
            } => {
                let change = Change {
                    table,
                    key,
                    value: new,
                };
                let seq = {
                    let mut r = self.replica();
                    if !r.holds(table, &change.key, expected.as_ref()) {
                        return Ok(Answer::Applied(false));
                    }
                    let seq = r.seq() + 1;
                    r.apply(seq, change.clone())?;
                    seq
                };
                self.replicate(node, members, seq, change).await;
                Answer::Applied(true)
            }
        })
    }

    /// Sends change `seq` to every other member (the whole state to one that is behind).
    async fn replicate(&self, node: &Node, members: &[NodeId], seq: u64, change: Change) {
        let req = Request::Apply { seq, change };
        let sends = members.iter().filter(|id| **id != self.me).map(|&id| {
            let req = &req;
            async move {
                let outcome = match ask(node, id, req).await {
                    Ok(Answer::Behind(at)) => {
                        tracing::info!(node = %id, at, seq, "grid store: sending the whole state to a copy that is behind");
                        let snap = self.replica().snapshot();
                        ask(node, id, &Request::Install(snap)).await
                    }
                    other => other,
                };
                match outcome {
                    Ok(Answer::Done) => {}
                    Ok(other) => tracing::warn!(node = %id, seq, answer = ?other, "grid store: change not taken"),
                    Err(e) => tracing::warn!(node = %id, seq, error = %format!("{e:#}"), "grid store: change not sent"),
                }
            }
        });
        futures::future::join_all(sends).await;
    }

    /// As a new primary: takes the most advanced copy among the members if it is ahead of ours.
    async fn catch_up(&self, node: &Node, members: &[NodeId]) -> Result<()> {
        let mine = self.replica().seq();
        let mut best: Option<(u64, NodeId)> = None;
        for &id in members.iter().filter(|id| **id != self.me) {
            match ask(node, id, &Request::Seq).await {
                Ok(Answer::Seq(s)) if s > best.map_or(mine, |b| b.0) => best = Some((s, id)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(node = %id, error = %format!("{e:#}"), "grid store: copy not compared")
                }
            }
        }
        if let Some((seq, id)) = best {
            match ask(node, id, &Request::Pull).await? {
                Answer::Snapshot(s) => {
                    tracing::info!(from = %id, seq, mine, "grid store: took the most advanced copy");
                    self.replica().install(s)?;
                }
                other => return Err(anyhow!("node {id} answered {other:?} to a pull")),
            }
        }
        tracing::info!(
            seq = self.replica().seq(),
            "grid store: this node is the primary"
        );
        Ok(())
    }

    /// Answers a request of another daemon about the store.
    pub async fn serve(&self, req: Request) -> Answer {
        let outcome = async {
            Ok::<_, anyhow::Error>(match req {
                Request::Op(op) => {
                    let node = self.node()?;
                    let members = Self::members(&node).await?;
                    if members.first() != Some(&self.me) {
                        Answer::NotPrimary
                    } else {
                        self.lead(&node, &members, op).await?
                    }
                }
                Request::Apply { seq, change } => {
                    // Another node leads: should this one lead later, it compares copies first.
                    self.caught_up.store(false, Ordering::SeqCst);
                    let mut r = self.replica();
                    if seq == r.seq() + 1 {
                        r.apply(seq, change)?;
                        Answer::Done
                    } else {
                        Answer::Behind(r.seq())
                    }
                }
                Request::Install(s) => {
                    self.caught_up.store(false, Ordering::SeqCst);
                    self.replica().install(s)?;
                    Answer::Done
                }
                Request::Seq => Answer::Seq(self.replica().seq()),
                Request::Pull => Answer::Snapshot(self.replica().snapshot()),
                Request::EnsureAccount(_) => Answer::Error("not a store request".into()),
            })
        };
        outcome
            .await
            .unwrap_or_else(|e| Answer::Error(format!("{e:#}")))
    }
}

/// Sends a grid request to node `id` and decodes its answer.
pub async fn ask(node: &Node, id: NodeId, req: &Request) -> Result<Answer> {
    match peer::ask(node, id, &RpcRequest::Grid(proto::encode(req)?)).await? {
        RpcResponse::Grid(bytes) => proto::decode(&bytes),
        RpcResponse::Error { message } => Ok(Answer::Error(message)),
        other => Err(anyhow!("node {id} answered {other:?}")),
    }
}

impl GridStore for ReplicatedStore {
    fn get(&self, table: Table, key: &str) -> BoxFuture<'_, grid_node::Result<Option<Vec<u8>>>> {
        let op = Op::Get {
            table,
            key: key.to_string(),
        };
        Box::pin(async move {
            match self.call(op).await.map_err(store_err)? {
                Answer::Value(v) => Ok(v),
                other => Err(store_err(anyhow!("unexpected answer {other:?}"))),
            }
        })
    }

    fn cas(
        &self,
        table: Table,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> BoxFuture<'_, grid_node::Result<bool>> {
        let op = Op::Cas {
            table,
            key: key.to_string(),
            expected,
            new,
        };
        Box::pin(async move {
            match self.call(op).await.map_err(store_err)? {
                Answer::Applied(b) => Ok(b),
                other => Err(store_err(anyhow!("unexpected answer {other:?}"))),
            }
        })
    }

    fn scan(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, grid_node::Result<Entries>> {
        let op = Op::Scan {
            table,
            prefix: prefix.to_string(),
            after: after.map(str::to_string),
            limit,
        };
        Box::pin(async move {
            match self.call(op).await.map_err(store_err)? {
                Answer::Entries(e) => Ok(e),
                other => Err(store_err(anyhow!("unexpected answer {other:?}"))),
            }
        })
    }
}
