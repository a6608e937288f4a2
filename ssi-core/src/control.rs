//! The control socket between the `ssi` CLI and its local `ssid`: a Unix stream socket
//! (`<state dir>/ssid.sock`, mode 0666: each request runs as the connecting user, from
//! `SO_PEERCRED`) carrying versioned, length-delimited postcard frames.
//!
//! The CLI only ever talks to its local daemon; the daemon forwards to other nodes.

use std::path::{Path, PathBuf};

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::error::{Error, Result};
use crate::node::NodeId;
use crate::process::{Input, MigrationReport, Output, ProcessView, RunSpec};
use crate::sched::SchedAnswer;
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
    /// Run a program somewhere; answered by `Started` (then, unless detached, the connection
    /// carries `Input` one way and `Output` the other) or `Error`.
    Run(RunSpec),
    /// Follow the output of a running process until it ends.
    Attach {
        /// Its global pid.
        gpid: i32,
    },
    /// Input for the process this connection runs or attaches to.
    Input(Input),
    /// Every process of the cluster.
    Ps,
    /// Send a signal to a process.
    Kill {
        /// Its global pid.
        gpid: i32,
        /// Signal number.
        sig: i32,
    },
    /// Move a running process (and its tree) to another node.
    Migrate {
        /// Its global pid.
        gpid: i32,
        /// Target node.
        to: NodeId,
        /// Most pre-copy rounds while it runs (0: stop and copy); default from the daemon.
        rounds: Option<u32>,
    },
    /// Checkpoint a process tree to a directory (on the node hosting it).
    Checkpoint {
        /// Root of the tree.
        gpid: i32,
        /// Image directory (absolute); `None`: a new directory under `checkpoints/` of the
        /// shared file system, which every node mounts at the same path.
        dir: Option<String>,
        /// Let the tree run on; by default it is killed once the image is written.
        leave_running: bool,
    },
    /// The scheduler's state on every node: policy, filters, balancing, recent decisions.
    SchedShow,
    /// Change the placement policy on every alive node.
    SchedSet {
        /// Policy name.
        policy: String,
        /// Its parameters.
        params: Vec<(String, String)>,
    },
    /// Every node looks at its load now and moves a process if that helps.
    SchedBalance,
    /// The shared file system's health: leader, voters, per-node capacity and use, chunks,
    /// under-replicated chunks, re-replication progress; answered by `Dfs`.
    DfsStatus,
    /// Verify every chunk replica's checksum and repair from intact copies; answered by `Dfs`.
    DfsScrub,
    /// Restart a checkpointed tree; answered like `Run`.
    Restart {
        /// Image directory (absolute).
        dir: String,
        /// Node to restart on; otherwise the scheduler places it.
        node: Option<NodeId>,
        /// Return once it runs (output kept for `ssi attach`).
        detach: bool,
    },
    /// Administer the grid services' VOs (root only); answered by `Grid` or `Error`.
    Grid(crate::grid::GridAdmin),
}

/// The daemon's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlResponse {
    /// Answer to [`ControlRequest::Nodes`].
    Nodes(Vec<NodeView>),
    /// Answer to [`ControlRequest::Info`].
    Info(ClusterInfo),
    /// The process runs under `gpid` on `node`.
    Started {
        /// Global pid.
        gpid: i32,
        /// Hosting node.
        node: NodeId,
        /// Its name.
        node_name: String,
    },
    /// Output of the process this connection follows.
    Output(Output),
    /// Answer to [`ControlRequest::Ps`].
    Processes(Vec<ProcessView>),
    /// Answer to [`ControlRequest::Migrate`].
    Migrated(MigrationReport),
    /// Answer to [`ControlRequest::SchedShow`] (and `SchedSet`, `SchedBalance`): each alive
    /// node's scheduler, this node's first.
    Sched(Vec<SchedAnswer>),
    /// Answer to [`ControlRequest::DfsStatus`] and [`ControlRequest::DfsScrub`], as JSON (the
    /// shapes are those of `ssi dfs status --json` and `ssi dfs scrub --json`).
    Dfs(String),
    /// Answer to [`ControlRequest::Checkpoint`].
    Checkpointed {
        /// Image directory written.
        dir: String,
        /// Pids of the tree.
        pids: Vec<i32>,
        /// Page bytes written.
        page_bytes: u64,
    },
    /// The request was carried out.
    Done,
    /// Answer to a grid request: JSON text.
    Grid(String),
    /// The request failed; `code` is the exit code the CLI should use.
    Error {
        /// One line.
        message: String,
        /// Exit code for the CLI.
        code: i32,
    },
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
        send_frame(&mut self.framed, msg, &self.path).await
    }

    /// Receives one message; `None` when the other end closed.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        recv_frame(&mut self.framed, &self.path).await
    }

    /// Splits the connection into a sending and a receiving half.
    pub fn split(self) -> (ControlSender, ControlReceiver) {
        let (sink, stream) = self.framed.split();
        (
            ControlSender {
                sink,
                path: self.path.clone(),
            },
            ControlReceiver {
                stream,
                path: self.path,
            },
        )
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

/// The sending half of a [`ControlConn`].
#[derive(Debug)]
pub struct ControlSender {
    sink: SplitSink<Framed<UnixStream, LengthDelimitedCodec>, bytes::Bytes>,
    path: PathBuf,
}

impl ControlSender {
    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        send_frame(&mut self.sink, msg, &self.path).await
    }
}

/// The receiving half of a [`ControlConn`].
#[derive(Debug)]
pub struct ControlReceiver {
    stream: SplitStream<Framed<UnixStream, LengthDelimitedCodec>>,
    path: PathBuf,
}

impl ControlReceiver {
    /// Receives one message; `None` when the other end closed.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        recv_frame(&mut self.stream, &self.path).await
    }
}

async fn send_frame<K, T>(sink: &mut K, msg: &T, path: &Path) -> Result<()>
where
    K: futures::Sink<bytes::Bytes, Error = std::io::Error> + Unpin,
    T: Serialize,
{
    let bytes = wire::encode(msg)?;
    sink.send(bytes::Bytes::from(bytes))
        .await
        .map_err(|e| Error::io(path, e))
}

async fn recv_frame<K, T>(stream: &mut K, path: &Path) -> Result<Option<T>>
where
    K: futures::Stream<Item = std::io::Result<bytes::BytesMut>> + Unpin,
    T: DeserializeOwned,
{
    match stream.next().await {
        None => Ok(None),
        Some(Err(e)) => Err(Error::io(path, e)),
        Some(Ok(frame)) => wire::decode(&frame, &path.display().to_string()).map(Some),
    }
}
