//! Keeping chunks whole: re-replication after a node death (leader), dropping stale chunk
//! files (every node), scrub on request, and the figures of `ssi dfs status`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{lock, Dfs, RPC_TIMEOUT};
use crate::chunks::Health;
use crate::meta::{ChunkRef, Ino, MetaOp, MetaRead, MetaReply};
use crate::net::proto::{Request, Response};
use crate::placement;
use crate::status::{NodeStatus, ScrubReport, Status};

/// How long `ssi dfs status` waits for the metadata to answer before saying it does not.
const STATUS_WAIT: Duration = Duration::from_secs(3);
const REPAIR_PERIOD: Duration = Duration::from_secs(2);
/// Chunk files are collected only after this many rounds of the repair loop.
const GC_EVERY: u32 = 15;
/// A chunk file younger than this is never collected (it may belong to a commit under way).
const GC_MIN_AGE_SECS: u64 = 120;
/// Chunks re-replicated per round, to keep the metadata log and the network moderate.
const BATCH: usize = 64;

/// Runs until the process ends.
pub async fn run(dfs: Arc<Dfs>) {
    let mut round = 0u32;
    loop {
        tokio::time::sleep(REPAIR_PERIOD).await;
        round = round.wrapping_add(1);
        if dfs.raft.current_leader().await == Some(u64::from(dfs.opts.me)) {
            if let Err(e) = rereplicate(&dfs).await {
                tracing::warn!(error = %e, "dfs re-replication round failed");
            }
        }
        if round % GC_EVERY == 0 {
            if let Err(e) = collect(&dfs).await {
                tracing::warn!(error = %e, "dfs chunk collection failed");
            }
        }
    }
}

async fn all_chunks(dfs: &Dfs, linear: bool) -> crate::Result<Vec<(Ino, u64, ChunkRef)>> {
    let answer = if linear {
        dfs.read(MetaRead::Chunks).await
    } else {
        dfs.local_read(&MetaRead::Chunks)
    };
    match answer {
        Ok(MetaReply::Chunks(c)) => Ok(c),
        other => Err(crate::Error::Raft(format!("chunk list: {other:?}"))),
    }
}

/// Copies chunks that have fewer alive replicas than wanted to new nodes.
async fn rereplicate(dfs: &Dfs) -> crate::Result<()> {
    let alive = dfs.alive();
    let want = dfs.opts.replicas.min(alive.len()).max(1);
    let chunks = all_chunks(dfs, false).await?;
    let short: Vec<_> = chunks
        .into_iter()
        .filter(|(_, _, c)| c.replicas.iter().filter(|r| alive.contains(r)).count() < want)
        .collect();
    for (ino, idx, c) in short.into_iter().take(BATCH) {
        let live: Vec<u16> = c
            .replicas
            .iter()
            .copied()
            .filter(|r| alive.contains(r))
            .collect();
        if live.is_empty() {
            continue;
        }
        let mut replicas = live.clone();
        for target in placement::order(ino, idx, None, &alive) {
            if replicas.len() >= want {
                break;
            }
            if replicas.contains(&target) {
                continue;
            }
            let req = Request::Fetch {
                ino,
                idx,
                version: c.version,
                crc: c.crc,
                from: live.clone(),
            };
            let copied = if target == dfs.opts.me {
                dfs.fetch(ino, idx, c.version, c.crc, &live).await.ok()
            } else {
                match dfs.peers.call(target, &req, RPC_TIMEOUT).await {
                    Ok(Response::Fetched(n)) => Some(n),
                    _ => None,
                }
            };
            if let Some(n) = copied {
                replicas.push(target);
                let mut p = lock(&dfs.progress);
                p.copied += 1;
                p.copied_bytes += n;
            }
        }
        if replicas.len() > live.len() {
            let op = MetaOp::SetReplicas {
                ino,
                idx,
                version: c.version,
                replicas,
            };
            // A chunk rewritten meanwhile answers ESTALE: its new version has its own replicas.
            let _ = dfs.write(op).await;
        }
    }
    Ok(())
}

/// Drops this node's chunk files that the metadata no longer names: older versions, and
/// chunks of deleted files or past the end of truncated ones, unless the file is open here.
async fn collect(dfs: &Dfs) -> crate::Result<()> {
    let current: HashMap<(Ino, u64), u64> = all_chunks(dfs, true)
        .await?
        .into_iter()
        .map(|(ino, idx, c)| ((ino, idx), c.version))
        .collect();
    let files = tokio::task::block_in_place(|| dfs.chunks.list())?;
    for f in files {
        if f.age_secs < GC_MIN_AGE_SECS || dfs.is_busy(f.ino) {
            continue;
        }
        let stale = match current.get(&(f.ino, f.idx)) {
            Some(v) => f.version < *v,
            None => true,
        };
        if stale {
            tracing::debug!(
                ino = f.ino,
                idx = f.idx,
                version = f.version,
                "stale chunk dropped"
            );
            dfs.chunks.remove(f.ino, f.idx, f.version);
        }
    }
    Ok(())
}

impl Dfs {
    /// Checks every replica of every chunk and rewrites the damaged or missing ones from an
    /// intact copy.
    pub async fn scrub(&self) -> crate::Result<ScrubReport> {
        let mut report = ScrubReport::default();
        for (ino, idx, c) in all_chunks(self, true).await? {
            let mut good = Vec::new();
            let mut bad = Vec::new();
            for r in &c.replicas {
                let health = if *r == self.opts.me {
                    tokio::task::block_in_place(|| self.chunks.check(ino, idx, c.version, c.crc))
                        .ok()
                } else {
                    let req = Request::Check {
                        ino,
                        idx,
                        version: c.version,
                        crc: c.crc,
                    };
                    match self.peers.call(*r, &req, RPC_TIMEOUT).await {
                        Ok(Response::Checked(h)) => Some(h),
                        _ => None,
                    }
                };
                report.checked += 1;
                match health {
                    Some(Health::Good) => good.push(*r),
                    Some(Health::Damaged) => {
                        report.damaged += 1;
                        bad.push(*r);
                    }
                    Some(Health::Missing) => {
                        report.missing += 1;
                        bad.push(*r);
                    }
                    // Unreachable: re-replication handles dead nodes.
                    None => {}
                }
            }
            if good.is_empty() && !bad.is_empty() {
                report.lost += 1;
                continue;
            }
            for r in bad {
                let fixed = if r == self.opts.me {
                    self.fetch(ino, idx, c.version, c.crc, &good).await.is_ok()
                } else {
                    let req = Request::Fetch {
                        ino,
                        idx,
                        version: c.version,
                        crc: c.crc,
                        from: good.clone(),
                    };
                    matches!(
                        self.peers.call(r, &req, RPC_TIMEOUT).await,
                        Ok(Response::Fetched(_))
                    )
                };
                report.repaired += u64::from(fixed);
            }
        }
        Ok(report)
    }

    /// This node's figures.
    pub fn node_status(&self) -> NodeStatus {
        let (capacity_bytes, free_bytes) = nix::sys::statvfs::statvfs(self.chunks.root())
            .map(|s| {
                let frag = s.fragment_size();
                (s.blocks() * frag, s.blocks_available() * frag)
            })
            .unwrap_or((0, 0));
        let files = self.chunks.list().unwrap_or_default();
        let applied = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        let progress = *lock(&self.progress);
        NodeStatus {
            rereplicated: progress.copied,
            rereplicated_bytes: progress.copied_bytes,
            node: self.opts.me,
            role: self.role(),
            capacity_bytes,
            free_bytes,
            used_bytes: files.iter().map(|f| f.len).sum(),
            chunk_files: files.len() as u64,
            applied,
        }
    }

    /// The whole file system's figures, asking every alive node.
    pub async fn status(&self) -> crate::Result<Status> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let to16 = |id: u64| u16::try_from(id).unwrap_or(0);
        let mut status = Status {
            leader: metrics.current_leader.map(to16),
            voters: membership.voter_ids().map(to16).collect(),
            learners: membership.learner_ids().map(to16).collect(),
            changing_voters: membership.get_joint_config().len() > 1,
            replicas: u32::try_from(self.opts.replicas).unwrap_or(u32::MAX),
            ..Status::default()
        };
        let alive = self.alive();
        match self.read_within(MetaRead::Totals, STATUS_WAIT).await {
            Ok(MetaReply::Totals { inodes, bytes }) => {
                status.inodes = inodes;
                status.bytes = bytes;
                let want = self.opts.replicas.min(alive.len()).max(1);
                let chunks = all_chunks(self, true).await?;
                status.chunks = chunks.len() as u64;
                status.under_replicated = chunks
                    .iter()
                    .filter(|(_, _, c)| {
                        c.replicas.iter().filter(|r| alive.contains(r)).count() < want
                    })
                    .count() as u64;
            }
            _ => {
                status.unavailable = Some(self.no_quorum().unwrap_or_else(|| {
                    format!(
                        "no metadata leader answered within {} s",
                        STATUS_WAIT.as_secs()
                    )
                }));
            }
        }
        for node in alive {
            if node == self.opts.me {
                status.nodes.push(self.node_status());
            } else if let Ok(Response::Status(s)) =
                self.peers.call(node, &Request::Status, RPC_TIMEOUT).await
            {
                status.nodes.push(s);
            }
        }
        status.rereplicated = status.nodes.iter().map(|n| n.rereplicated).sum();
        status.rereplicated_bytes = status.nodes.iter().map(|n| n.rereplicated_bytes).sum();
        Ok(status)
    }
}
