//! The DFS listener: other nodes' raft messages, forwarded metadata requests, chunk traffic.

use std::net::SocketAddr;
use std::sync::Arc;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use tokio::net::{TcpListener, TcpStream};

use super::Dfs;
use crate::error::Result;
use crate::net::conn::Conn;
use crate::net::proto::{Request, Response};

/// Accepts connections from other nodes until the process ends.
pub async fn serve(dfs: Arc<Dfs>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, from)) => {
                let dfs = dfs.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(&dfs, tcp, from).await {
                        tracing::debug!(%from, error = %e, "dfs connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "dfs accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(dfs: &Arc<Dfs>, tcp: TcpStream, from: SocketAddr) -> Result<()> {
    let mut conn = Conn::accept(tcp, from, dfs.peers_key()).await?;
    while let Some(req) = conn.recv::<Request>().await? {
        let resp = answer(dfs, req).await;
        conn.send(&resp).await?;
    }
    Ok(())
}

fn failed(e: impl std::fmt::Display) -> Response {
    Response::Error(e.to_string())
}

async fn answer(dfs: &Arc<Dfs>, req: Request) -> Response {
    match req {
        Request::Append(r) => Response::Append(dfs.raft.append_entries(r).await),
        Request::Vote(r) => Response::Vote(dfs.raft.vote(r).await),
        Request::Snapshot(r) => Response::Snapshot(dfs.raft.install_snapshot(r).await),
        Request::Write(op) => match dfs.raft.client_write(op).await {
            Ok(r) => Response::Meta(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Response::NotLeader(f.leader_id)
            }
            Err(e) => failed(e),
        },
        Request::Read(q) => match dfs.raft.ensure_linearizable().await {
            Ok(_) => Response::Meta(dfs.local_read(&q)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Response::NotLeader(f.leader_id)
            }
            Err(e) => failed(e),
        },
        Request::Publish { ino } => {
            let (dfs, rt) = (dfs.clone(), tokio::runtime::Handle::current());
            match tokio::task::spawn_blocking(move || crate::fuse::publish_here(dfs, rt, ino)).await
            {
                Ok(Ok(())) => Response::Ok,
                Ok(Err(errno)) => failed(std::io::Error::from_raw_os_error(errno)),
                Err(e) => failed(e),
            }
        }
        Request::PutChunk {
            ino,
            idx,
            version,
            keep,
            data,
        } => {
            let stored = tokio::task::block_in_place(|| {
                dfs.chunks.put(ino, idx, version, &data)?;
                dfs.chunks
                    .prune(ino, idx, &[&[version], keep.as_slice()].concat())
            });
            match stored {
                Ok(()) => Response::Ok,
                Err(e @ crate::error::Error::Io { .. }) => {
                    Response::Refused(e.errno(), e.to_string())
                }
                Err(e) => failed(e),
            }
        }
        Request::GetChunk {
            ino,
            idx,
            version,
            crc,
        } => tokio::task::block_in_place(|| dfs.chunks.get_checked(ino, idx, version, crc))
            .map_or_else(failed, Response::Chunk),
        Request::Check {
            ino,
            idx,
            version,
            crc,
        } => tokio::task::block_in_place(|| dfs.chunks.check(ino, idx, version, crc))
            .map_or_else(failed, Response::Checked),
        Request::Fetch {
            ino,
            idx,
            version,
            crc,
            from,
        } => match dfs.fetch(ino, idx, version, crc, &from).await {
            Ok(bytes) => Response::Fetched(bytes),
            Err(e) => failed(e),
        },
        Request::Status => Response::Status(dfs.node_status()),
    }
}
