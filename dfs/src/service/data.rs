//! Moving chunk data between nodes: local copies for reading, replicas for writing, copies
//! for re-replication.

use crate::error::{Error, Result};
use crate::meta::{ChunkRef, Ino};
use crate::net::proto::{Request, Response};
use crate::placement;

use super::{Dfs, OP_TIMEOUT, RPC_TIMEOUT};

/// Errors of a replica's disk that fail a write at once, with that errno.
const DISK_ERRNOS: [i32; 3] = [libc::ENOSPC, libc::EDQUOT, libc::EROFS];

/// The version a node writes after `old`: a higher count, with the writer's id in the low 16
/// bits so that two nodes never write the same version of a chunk.
pub fn next_version(old: Option<u64>, me: u16) -> u64 {
    ((old.unwrap_or(0) >> 16) + 1) << 16 | u64::from(me)
}

impl Dfs {
    pub(super) fn peers_key(&self) -> &ssi_core::tls::TlsContext {
        self.peers.key()
    }

    /// Makes sure this node holds the version of a chunk that `chunk` names (fetching it from
    /// a replica, checking its crc32c).
    pub async fn ensure_local(&self, ino: Ino, idx: u64, chunk: &ChunkRef) -> Result<()> {
        if self.chunks.has(ino, idx, chunk.version) {
            return Ok(());
        }
        self.fetch(ino, idx, chunk.version, chunk.crc, &chunk.replicas)
            .await
            .map(drop)
    }

    /// Copies a chunk version here from the first of `from` that has it intact; gives the
    /// bytes copied.
    pub async fn fetch(
        &self,
        ino: Ino,
        idx: u64,
        version: u64,
        crc: u32,
        from: &[u16],
    ) -> Result<u64> {
        let mut last = String::from("no replica to copy from");
        for node in from.iter().filter(|n| **n != self.opts.me) {
            let req = Request::GetChunk {
                ino,
                idx,
                version,
                crc,
            };
            match self.peers.call(*node, &req, RPC_TIMEOUT).await {
                Ok(Response::Chunk(Some(data))) if crc32c::crc32c(&data) == crc => {
                    let len = data.len() as u64;
                    tokio::task::block_in_place(|| self.chunks.put(ino, idx, version, &data))?;
                    return Ok(len);
                }
                Ok(Response::Chunk(_)) => last = format!("node {node}: no intact copy"),
                Ok(other) => last = format!("node {node}: {other:?}"),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Error::Peer {
            node: self.opts.me,
            reason: format!("chunk {ino}/{idx} v{version}: {last}"),
        })
    }

    /// Sends a chunk version this node holds to other nodes until it is on as many replicas
    /// as the cluster allows (this node first); gives the replicas. Returns only once every
    /// replica has synced it. A node that fails is tried again, or left out once the
    /// membership declares it dead (the number wanted shrinks with the alive nodes), for up
    /// to [`OP_TIMEOUT`].
    pub async fn replicate(
        &self,
        ino: Ino,
        idx: u64,
        version: u64,
        keep: Option<u64>,
        data: &[u8],
    ) -> Result<Vec<u16>> {
        let deadline = tokio::time::Instant::now() + OP_TIMEOUT;
        let mut replicas = vec![self.opts.me];
        loop {
            let alive = self.alive();
            let want = self.opts.replicas.min(alive.len()).max(1);
            replicas.retain(|r| *r == self.opts.me || alive.contains(r));
            if replicas.len() >= want {
                return Ok(replicas);
            }
            let batch: Vec<u16> = placement::order(ino, idx, Some(self.opts.me), &alive)
                .into_iter()
                .filter(|n| !replicas.contains(n))
                .take(want - replicas.len())
                .collect();
            let sends = batch.iter().map(|n| {
                let req = Request::PutChunk {
                    ino,
                    idx,
                    version,
                    keep: keep.into_iter().collect(),
                    data: data.to_vec(),
                };
                async move { (*n, self.peers.call(*n, &req, RPC_TIMEOUT).await) }
            });
            let mut failed = false;
            for (node, result) in futures::future::join_all(sends).await {
                match result {
                    Ok(Response::Ok) => replicas.push(node),
                    // A full (or read-only) disk will not take it on a retry either.
                    Ok(Response::Refused(errno, reason)) if DISK_ERRNOS.contains(&errno) => {
                        return Err(Error::Refused {
                            node,
                            errno,
                            reason,
                        });
                    }
                    Ok(other) => {
                        failed = true;
                        tracing::warn!(node, ?other, "chunk replica refused");
                    }
                    Err(e) => {
                        failed = true;
                        tracing::debug!(node, error = %e, "chunk replica failed");
                    }
                }
            }
            if failed {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::Peer {
                        node: self.opts.me,
                        reason: format!(
                            "chunk {ino}/{idx}: only {} of {want} replicas reachable",
                            replicas.len()
                        ),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_grow_and_name_their_writer() {
        let v1 = next_version(None, 3);
        let v2 = next_version(Some(v1), 5);
        assert!(v2 > v1);
        assert_eq!(v2 & 0xffff, 5);
        assert_ne!(next_version(Some(v1), 4), next_version(Some(v1), 5));
    }
}
