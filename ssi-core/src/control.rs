//! The control socket between the `ssi` CLI and its local `ssid`: a Unix stream socket
//! (`<state dir>/ssid.sock`, mode 0600) carrying versioned, length-delimited postcard frames.
//!
//! The CLI only ever talks to its local daemon; the daemon forwards to other nodes.

use std::path::{Path, PathBuf};

use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::error::{Error, Result};
use crate::view::{ClusterInfo, NodeView};
use crate::wire;

/// Environment variable naming the control socket.
pub const SOCKET_ENV: &str = "SSI_SOCKET";
/// Where the socket is when neither `--socket` nor `SSI_SOCKET` says.
pub const DEFAULT_SOCKET: &str = "/var/lib/ssi/ssid.sock";

/// A request from the CLI.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Every node known to the cluster.
    Nodes,
    /// The cluster summed as one machine.
    Info,
}

/// The daemon's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlResponse {
    /// Answer to [`ControlRequest::Nodes`].
    Nodes(Vec<NodeView>),
    /// Answer to [`ControlRequest::Info`].
    Info(ClusterInfo),
    /// The request failed.
    Error(String),
}

/// One frame stream over a Unix socket, used by both ends.
#[derive(Debug)]
pub struct ControlConn {
    framed: Framed<UnixStream, LengthDelimitedCodec>,
    path: PathBuf,
}

impl ControlConn {
    /// Connects to the daemon at `path`.
    pub async fn connect(path: &Path) -> Result<Self> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| Error::io(path, e))?;
        Ok(Self::from_stream(stream, path))
    }

    /// Wraps an accepted connection.
    pub fn from_stream(stream: UnixStream, path: &Path) -> Self {
        ControlConn {
            framed: Framed::new(stream, wire::codec()),
            path: path.to_path_buf(),
        }
    }

    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        let bytes = wire::encode(msg)?;
        self.framed
            .send(bytes::Bytes::from(bytes))
            .await
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Receives one message; `None` when the other end closed.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        match self.framed.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(Error::io(&self.path, e)),
            Some(Ok(frame)) => wire::decode(&frame, &self.path.display().to_string()).map(Some),
        }
    }

    /// Sends a request and waits for its answer.
    pub async fn call(&mut self, req: &ControlRequest) -> Result<ControlResponse> {
        self.send(req).await?;
        self.recv().await?.ok_or_else(|| Error::Peer {
            peer: self.path.display().to_string(),
            reason: "ssid closed the connection without answering".into(),
        })
    }
}
