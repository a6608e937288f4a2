//! Raft's messages between voters, carried by the DFS service.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::AnyError;

use super::{NodeAddr, TypeConfig};
use crate::net::client::Peers;
use crate::net::proto::{Request, Response};

/// Makes clients to other voters.
#[derive(Debug, Clone)]
pub struct Network {
    peers: Arc<Peers>,
}

impl Network {
    /// Raft traffic over `peers`.
    pub fn new(peers: Arc<Peers>) -> Network {
        Network { peers }
    }
}

/// A client to one voter.
#[derive(Debug)]
pub struct Client {
    peers: Arc<Peers>,
    target: u16,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: u64, node: &NodeAddr) -> Client {
        let target = u16::try_from(target).unwrap_or(0);
        if let Ok(addr) = node.addr.parse() {
            self.peers.set_addr(target, addr);
        }
        Client {
            peers: self.peers.clone(),
            target,
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<u64, NodeAddr, RaftError<u64, E>>;

impl Client {
    async fn call<E: std::error::Error>(
        &self,
        req: Request,
        option: &RPCOption,
    ) -> Result<Response, RpcErr<E>> {
        let timeout = option.hard_ttl().max(Duration::from_millis(200));
        self.peers
            .call(self.target, &req, timeout)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

fn unexpected<E: std::error::Error>(r: Response) -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&AnyError::error(format!(
        "unexpected answer {r:?}"
    ))))
}

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr> {
        match self.call(Request::Append(rpc), &option).await? {
            Response::Append(r) => r.map_err(|e| {
                RPCError::RemoteError(openraft::error::RemoteError::new(u64::from(self.target), e))
            }),
            other => Err(unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        match self.call(Request::Snapshot(rpc), &option).await? {
            Response::Snapshot(r) => r.map_err(|e| {
                RPCError::RemoteError(openraft::error::RemoteError::new(u64::from(self.target), e))
            }),
            other => Err(unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr> {
        match self.call(Request::Vote(rpc), &option).await? {
            Response::Vote(r) => r.map_err(|e| {
                RPCError::RemoteError(openraft::error::RemoteError::new(u64::from(self.target), e))
            }),
            other => Err(unexpected(other)),
        }
    }
}
