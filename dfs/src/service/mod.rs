//! The DFS service of one node: its raft member, its chunk store, its listener, and the tasks
//! that keep the cluster's metadata voters and chunk replicas complete.
//!
//! ```text
//!   FUSE (this node) --write/read--> Dfs --leader here?--> raft (redb log, fsync)
//!                                       \--otherwise----> leader's DFS service (TCP)
//!   members task: bootstrap, voters = up to N alive nodes, learners = the rest, NodeGone
//!   repair task:  leader re-replicates chunks of dead nodes; every node drops stale chunks
//! ```

mod data;
pub use data::next_version;
mod members;
mod repair;
mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use ssi_core::tls::TlsContext;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::chunks::ChunkStore;
use crate::error::{Error, Result};
use crate::fuse::OpenFile;
use crate::meta::{MetaOp, MetaRead};
use crate::net::client::Peers;
use crate::net::proto::{Request, Response};
use crate::raft::store::{self, Applied, LogStore, StateMachine};
use crate::raft::{network::Network, Answer, NodeAddr, Raft};

/// How long a metadata request keeps retrying (leader changes) before it fails with `EIO`.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a metadata request keeps retrying once a majority of the voters is known dead.
const NO_QUORUM_GRACE: Duration = Duration::from_secs(3);
/// How long one request to another node may take.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a node's DFS.
#[derive(Debug, Clone)]
pub struct Options {
    /// This node's id.
    pub me: u16,
    /// Where the metadata store and the chunks live.
    pub data_dir: PathBuf,
    /// Address the DFS service listens on.
    pub listen: SocketAddr,
    /// Address other nodes reach it at.
    pub advertise: SocketAddr,
    /// Replicas of each chunk (fewer while the cluster is smaller).
    pub replicas: usize,
    /// Metadata voters (fewer while the cluster is smaller).
    pub voters: usize,
}

/// A node of the cluster as the DFS needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub id: u16,
    /// Address of its DFS service.
    pub addr: SocketAddr,
    /// Alive or suspect (not dead, not left).
    pub alive: bool,
}

/// Re-replication progress, counted by the nodes that led while it ran.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    copied: u64,
    copied_bytes: u64,
}

/// One node's DFS service.
pub struct Dfs {
    /// Settings.
    pub opts: Options,
    raft: Raft,
    state: Arc<RwLock<Applied>>,
    /// This node's chunks.
    pub chunks: ChunkStore,
    peers: Arc<Peers>,
    members: watch::Receiver<Vec<Member>>,
    progress: Mutex<Progress>,
    /// Files open on this node (their chunk files are never collected), shared by the FUSE
    /// threads and the listener (which publishes them when another node opens them).
    open: Mutex<HashMap<u64, Arc<Mutex<OpenFile>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Dfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dfs")
            .field("opts", &self.opts)
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

impl Dfs {
    /// Opens the node's stores, starts its raft member, listener and background tasks.
    pub async fn start(
        opts: Options,
        key: TlsContext,
        members: watch::Receiver<Vec<Member>>,
    ) -> Result<Arc<Dfs>> {
        std::fs::create_dir_all(&opts.data_dir).map_err(|e| Error::Io {
            path: opts.data_dir.clone(),
            source: e,
        })?;
        let db = store::open_db(&opts.data_dir.join("meta.redb"))?;
        let (freed_tx, mut freed_rx) = tokio::sync::mpsc::unbounded_channel();
        let sm = StateMachine::new(db.clone(), freed_tx)?;
        let state = sm.state.clone();
        let peers = Arc::new(Peers::new(key));
        let config = crate::raft::config()
            .validate()
            .map_err(|e| Error::Raft(e.to_string()))?;
        let raft = Raft::new(
            u64::from(opts.me),
            Arc::new(config),
            Network::new(peers.clone()),
            LogStore::new(db),
            sm,
        )
        .await
        .map_err(|e| Error::Raft(e.to_string()))?;
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|e| Error::Io {
                path: PathBuf::from(format!("tcp {}", opts.listen)),
                source: e,
            })?;
        let dfs = Arc::new(Dfs {
            chunks: ChunkStore::open(&opts.data_dir)?,
            opts,
            raft,
            state,
            peers,
            members,
            progress: Mutex::default(),
            open: Mutex::default(),
        });
        tokio::spawn(server::serve(dfs.clone(), listener));
        let chunks = dfs.chunks.clone();
        tokio::spawn(async move {
            while let Some((ino, _)) = freed_rx.recv().await {
                chunks.remove_inode(ino);
            }
        });
        tokio::spawn(members::run(dfs.clone()));
        tokio::spawn(repair::run(dfs.clone()));
        Ok(dfs)
    }

    /// Stops the raft member.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "dfs raft did not stop cleanly");
        }
    }

    /// Ids of the alive nodes (this one included).
    pub fn alive(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = self
            .members
            .borrow()
            .iter()
            .filter(|m| m.alive)
            .map(|m| m.id)
            .collect();
        if !ids.contains(&self.opts.me) {
            ids.push(self.opts.me);
        }
        ids.sort_unstable();
        ids
    }

    /// The file `ino` if it is open on this node.
    pub fn open_file(&self, ino: u64) -> Option<Arc<Mutex<OpenFile>>> {
        lock(&self.open).get(&ino).cloned()
    }

    /// Takes one more handle of the open file `ino` of this node, made from `fresh` if it is
    /// not open here yet.
    pub fn adopt_open(&self, ino: u64, fresh: OpenFile) {
        let mut open = lock(&self.open);
        let file = open
            .entry(ino)
            .or_insert_with(|| Arc::new(Mutex::new(fresh)));
        lock(file).handles += 1;
    }

    /// Forgets the open file `ino` if no handle of this node holds it any more; whether it did.
    pub fn forget_open(&self, ino: u64) -> bool {
        let mut open = lock(&self.open);
        let unused = open.get(&ino).is_some_and(|f| lock(f).handles == 0);
        if unused {
            open.remove(&ino);
        }
        unused
    }

    fn is_busy(&self, ino: u64) -> bool {
        lock(&self.open).contains_key(&ino)
    }

    /// Asks the other alive nodes of `holders` that hold `ino` open to publish what they wrote
    /// to it (an open, lookup or stat here then sees it, as after their `fsync`); whether one
    /// of them did. A node that does not answer is skipped: it is dead or about to be declared
    /// so, and its unpublished writes were never acknowledged.
    pub async fn recall(&self, ino: u64, holders: &[u16]) -> bool {
        let alive = self.alive();
        let asks = holders
            .iter()
            .filter(|n| **n != self.opts.me && alive.contains(n))
            .map(|n| async move {
                let r = self.peers.call(*n, &Request::Publish { ino }, OP_TIMEOUT).await;
                match r {
                    Ok(Response::Ok) => true,
                    other => {
                        tracing::warn!(ino, node = n, answer = ?other, "recall of unpublished writes failed");
                        false
                    }
                }
            });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .any(|ok| ok)
    }

    /// Proposes a change, through the leader wherever it is; retries across leader changes for
    /// up to [`OP_TIMEOUT`] (a few seconds once a majority of the voters is dead), then answers
    /// `EIO`.
    pub async fn write(&self, op: MetaOp) -> Answer {
        self.retrying(OP_TIMEOUT, || self.try_write(op.clone()))
            .await
    }

    /// Answers a question with the leader's current state (linearizable).
    pub async fn read(&self, q: MetaRead) -> Answer {
        self.retrying(OP_TIMEOUT, || self.try_read(q.clone())).await
    }

    /// [`Dfs::read`], giving up after `limit`.
    pub async fn read_within(&self, q: MetaRead, limit: Duration) -> Answer {
        self.retrying(limit, || self.try_read(q.clone())).await
    }

    /// Why the metadata cannot answer, if a majority of its voters is not alive.
    pub fn no_quorum(&self) -> Option<String> {
        let membership = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        let voters: Vec<u16> = membership
            .voter_ids()
            .filter_map(|v| u16::try_from(v).ok())
            .collect();
        let alive = self.alive();
        let up: Vec<String> = voters
            .iter()
            .filter(|v| alive.contains(v))
            .map(ToString::to_string)
            .collect();
        (!voters.is_empty() && up.len() * 2 <= voters.len()).then(|| {
            format!(
                "no majority of the metadata voters is alive ({} of {}: {})",
                up.len(),
                voters.len(),
                if up.is_empty() {
                    "none".into()
                } else {
                    up.join(", ")
                }
            )
        })
    }

    async fn retrying<F, Fut>(&self, limit: Duration, attempt: F) -> Answer
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Answer>>,
    {
        let start = Instant::now();
        loop {
            match attempt().await {
                Ok(answer) => return answer,
                Err(e) => {
                    let no_quorum = self.no_quorum();
                    let waited = start.elapsed();
                    if waited < limit && (no_quorum.is_none() || waited < NO_QUORUM_GRACE) {
                        tracing::debug!(error = %e, "metadata request retried");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    match no_quorum {
                        Some(why) => tracing::warn!(error = %e, "metadata request failed: {why}"),
                        None => tracing::warn!(error = %e, "metadata request failed"),
                    }
                    return Err(libc::EIO);
                }
            }
        }
    }

    async fn try_write(&self, op: MetaOp) -> Result<Answer> {
        match self.raft.client_write(op.clone()).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                self.forward(f.leader_id, f.leader_node, Request::Write(op))
                    .await
            }
            Err(e) => Err(Error::Raft(e.to_string())),
        }
    }

    async fn try_read(&self, q: MetaRead) -> Result<Answer> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(self.local_read(&q)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                self.forward(f.leader_id, f.leader_node, Request::Read(q))
                    .await
            }
            Err(e) => Err(Error::Raft(e.to_string())),
        }
    }

    /// Answers from this node's copy of the metadata (possibly behind the leader's).
    pub fn local_read(&self, q: &MetaRead) -> Answer {
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        s.meta.read(q)
    }

    async fn forward(
        &self,
        leader: Option<u64>,
        node: Option<NodeAddr>,
        req: Request,
    ) -> Result<Answer> {
        let leader = leader
            .and_then(|l| u16::try_from(l).ok())
            .filter(|l| *l != self.opts.me)
            .ok_or_else(|| Error::Raft("no leader".into()))?;
        if let Some(addr) = node.and_then(|n| n.addr.parse().ok()) {
            self.peers.set_addr(leader, addr);
        }
        match self.peers.call(leader, &req, RPC_TIMEOUT).await? {
            Response::Meta(answer) => Ok(answer),
            other => Err(Error::Peer {
                node: leader,
                reason: format!("did not answer as leader: {other:?}"),
            }),
        }
    }

    /// This node's raft role.
    fn role(&self) -> String {
        let m = self.raft.metrics().borrow().clone();
        if m.membership_config.membership().nodes().next().is_none() {
            return "uninitialized".into();
        }
        format!("{:?}", m.state).to_lowercase()
    }
}
