//! The one place that knows how DFS traffic is secured: today the daemons' TLS stream
//! (`ssi_core::wire::SecureStream`, node certificates of the cluster CA). Switching to another
//! transport changes this file only.

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use ssi_core::tls::TlsContext;
use ssi_core::wire::SecureStream;
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// How long connecting (TCP and authentication) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An authenticated connection between two nodes' DFS services.
#[derive(Debug)]
pub struct Conn {
    inner: SecureStream<TcpStream>,
    node: u16,
}

impl Conn {
    /// Connects to node `node` at `addr`.
    pub async fn connect(node: u16, addr: SocketAddr, key: &TlsContext) -> Result<Conn> {
        let peer = |reason: String| Error::Peer { node, reason };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| peer(format!("connect to {addr} timed out")))?
            .map_err(|e| peer(format!("connect to {addr}: {e}")))?;
        tcp.set_nodelay(true).ok();
        let inner = SecureStream::client(tcp, key, format!("dfs node {node}"))
            .await
            .map_err(|e| peer(e.to_string()))?;
        Ok(Conn { inner, node })
    }

    /// Accepts a connection from another node.
    pub async fn accept(tcp: TcpStream, from: SocketAddr, key: &TlsContext) -> Result<Conn> {
        tcp.set_nodelay(true).ok();
        let inner = SecureStream::server(tcp, key, from.to_string())
            .await
            .map_err(|e| Error::Peer {
                node: 0,
                reason: format!("{from}: {e}"),
            })?;
        Ok(Conn { inner, node: 0 })
    }

    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        self.inner.send(msg).await.map_err(|e| Error::Peer {
            node: self.node,
            reason: e.to_string(),
        })
    }

    /// Receives one message; `None` when the peer closed the connection.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        self.inner.recv().await.map_err(|e| Error::Peer {
            node: self.node,
            reason: e.to_string(),
        })
    }
}
