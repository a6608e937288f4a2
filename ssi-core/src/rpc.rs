//! Messages daemons exchange over their authenticated TCP connections.

use serde::{Deserialize, Serialize};

use crate::membership::MemberRecord;
use crate::node::{NodeId, NodeIdentity};
use crate::process::{Caller, Input, MigrationReport, Output, ProcessView, RunSpec};

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
    /// Follow the output of a process hosted here (and, with `input`, feed its stdin and
    /// signals, as its `ssi run` session does after a migration).
    Attach {
        /// Its global pid.
        gpid: i32,
        /// Who asks (checked against the process owner).
        caller: Caller,
        /// Whether input follows on this connection.
        input: bool,
    },
    /// Move process `gpid`, hosted here, to node `to`.
    Migrate {
        /// Its global pid.
        gpid: i32,
        /// Target node.
        to: NodeId,
        /// Most pre-copy rounds while it runs (0: stop and copy).
        rounds: Option<u32>,
        /// Who asks.
        caller: Caller,
    },
    /// Receive a migrating tree: this node answers `Ready` (or `Error`), then both daemons
    /// hand the connection to their migration helpers, which carry the images on it (see the
    /// `migrate` crate).
    MigrateIn {
        /// The root's global pid.
        gpid: i32,
        /// Its owner.
        uid: u32,
    },
    /// Checkpoint the tree of `gpid`, hosted here, to `dir`.
    Checkpoint {
        /// Root of the tree.
        gpid: i32,
        /// Image directory.
        dir: String,
        /// Let the tree run on.
        leave_running: bool,
        /// Who asks.
        caller: Caller,
    },
    /// This node's scheduler state (answered by `Sched`).
    SchedShow,
    /// Change this node's placement policy (answered by `Sched` or `Error`).
    SchedSet {
        /// Policy name.
        policy: String,
        /// Its parameters.
        params: Vec<(String, String)>,
    },
    /// Look at the load now and move a process if that helps (answered by `Sched`).
    SchedBalance,
    /// Restart the checkpoint in `dir` here; answered by `Restored`.
    Restart {
        /// Image directory.
        dir: String,
        /// Who asks.
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
    /// From the source of a migration of `gpid` to this node whose answer never came: did this
    /// node take the tree in? If it did not yet, it never will (answered by `Settled`).
    SettleMigration {
        /// Root of the migrating tree.
        gpid: i32,
    },
    /// From the source of a migration of `gpid` to this node, once the tree runs here: the
    /// input its frozen copy had not read, to go in front of its input here (answered `Done`).
    HandOverInput {
        /// Root of the migrated tree.
        gpid: i32,
        /// The unread bytes, in order.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        /// Its input had ended after them.
        eof: bool,
    },
    /// A message of the grid services between daemons (their own versioned encoding, see
    /// ssid's grid module); answered by `Grid` or `Error`.
    Grid(#[serde(with = "serde_bytes")] Vec<u8>),
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
    /// Ready to receive (answer to `MigrateIn`).
    Ready,
    /// The tree runs here now.
    Restored {
        /// Its root's global pid.
        gpid: i32,
        /// All its pids.
        pids: Vec<i32>,
        /// Time the restore took, microseconds.
        micros: u64,
    },
    /// Answer to `Migrate`.
    Migrated(MigrationReport),
    /// This node's scheduler state, as JSON.
    Sched(String),
    /// Answer to `Checkpoint`.
    Checkpointed {
        /// Pids of the tree.
        pids: Vec<i32>,
        /// Page bytes written.
        page_bytes: u64,
    },
    /// Done.
    Done,
    /// Last answer on an `Attach` connection whose process moved away: after `Moved`, the
    /// home closes its side; the input it had sent that the process could not take any more,
    /// in order, for the home to send where the process went.
    Undelivered {
        /// The inputs.
        inputs: Vec<Input>,
    },
    /// The request failed on the answering node.
    Error {
        /// What went wrong, in one line.
        message: String,
    },
    /// Answer to `SettleMigration`: the pids of the tree if this node took it in (it runs
    /// here), `None` if it did not (and will not).
    Settled {
        /// The tree's pids, if it runs here.
        pids: Option<Vec<i32>>,
    },
    /// Answer to `Grid`.
    Grid(#[serde(with = "serde_bytes")] Vec<u8>),
}
