//! Messages daemons exchange over their authenticated TCP connections.

use serde::{Deserialize, Serialize};

use crate::membership::MemberRecord;
use crate::node::NodeIdentity;
use crate::process::{Caller, Input, Output, ProcessView, RunSpec};

/// A request from one daemon to another.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    /// A starting node asks to join the cluster through this seed.
    Join {
        /// Who asks.
        identity: NodeIdentity,
        /// Its name, for messages.
        name: String,
    },
    /// Start a process here for `caller`; answered by `Started` or `SpawnFailed`, then (unless
    /// detached) the connection carries `Input` one way and `Output` the other.
    Spawn {
        /// What to run.
        spec: RunSpec,
        /// As whom.
        caller: Caller,
    },
    /// Follow the output of a process hosted here.
    Attach {
        /// Its global pid.
        gpid: i32,
        /// Who asks (checked against the process owner).
        caller: Caller,
    },
    /// Input for the process this connection follows.
    Input(Input),
    /// The processes hosted here.
    Ps,
    /// Signal a process hosted here.
    Kill {
        /// Its global pid.
        gpid: i32,
        /// Signal number.
        sig: i32,
        /// Who asks (checked against the process owner).
        caller: Caller,
    },
}

/// An answer to an [`RpcRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    /// Welcome: here is the seed's identity and all it knows of the cluster.
    JoinAccepted {
        /// The seed.
        seed: NodeIdentity,
        /// The seed's membership state.
        members: Vec<MemberRecord>,
    },
    /// The join was refused; the joining node must not start.
    JoinRefused {
        /// Why, in one line.
        reason: String,
    },
    /// The process runs under `gpid`.
    Started {
        /// Global pid.
        gpid: i32,
    },
    /// The process could not be started.
    SpawnFailed {
        /// One line.
        reason: String,
        /// The errno (ENOENT: not found, ...).
        errno: i32,
    },
    /// Output of the process this connection follows.
    Output(Output),
    /// Processes hosted by the answering node.
    Processes(Vec<ProcessView>),
    /// Done.
    Done,
    /// The request failed on the answering node.
    Error {
        /// What went wrong, in one line.
        message: String,
    },
}
