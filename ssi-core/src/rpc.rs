//! Messages daemons exchange over their authenticated TCP connections.

use serde::{Deserialize, Serialize};

use crate::membership::MemberRecord;
use crate::node::{NodeId, NodeIdentity};
use crate::process::{Caller, Input, MigrationReport, Output, ProcessView, RunSpec};
use crate::sched::SchedStatus;

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
    /// `migrate` crate). Refused when this node has seen this tree under `id.epoch` or a later
    /// one (a stale or repeated offer), or holds a process under its pid.
    MigrateIn {
        /// The migration.
        id: MigrationId,
        /// The tree's root as the source lists it (its node, owner, command), for this node's
        /// records.
        row: ProcessView,
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
    /// The processes hosted here, and those this node knows of on other nodes (answered by
    /// `Processes`).
    Ps,
    /// Forget these processes that were listed as lost to their owner.
    ForgetLost {
        /// Their global pids.
        gpids: Vec<i32>,
    },
    /// Signal a process hosted here.
    Kill {
        /// Its global pid.
        gpid: i32,
        /// Signal number.
        sig: i32,
        /// Who asks (checked against the process owner).
        caller: Caller,
    },
    /// What one daemon of a migration tells the other once the images are sent (see the
    /// `migrate` crate's protocol); answered by `Migration`.
    Migration {
        /// The migration.
        id: MigrationId,
        /// The message.
        msg: MigrationMsg,
    },
    /// A message of the grid services between daemons (their own versioned encoding, see
    /// ssid's grid module); answered by `Grid` or `Error`.
    Grid(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Restart the fault-tolerant tree `gpid` here from its last complete checkpoint, under
    /// the fencing `epoch` the asking node claimed for it; answered by `Restored` or `Error`.
    FtRestart {
        /// Its global pid.
        gpid: i32,
        /// The epoch claimed.
        epoch: u64,
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
    /// Processes hosted by the answering node (`hosted`), and those it knows of on other
    /// nodes (`remembered`: started from it, or moved through it), as it last saw them.
    Processes {
        /// Its own.
        hosted: Vec<ProcessView>,
        /// Elsewhere.
        remembered: Vec<ProcessView>,
    },
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
    /// This node's scheduler, after the request.
    Sched(SchedStatus),
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
    /// Answer to `Migration`: the other daemon's answer, if it has one.
    Migration(Option<MigrationMsg>),
    /// Answer to `Grid`.
    Grid(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// One attempt to move a tree: its root and the epoch the target must hold before it lets the
/// tree run. Epochs grow along a tree's history (each attempt takes one above the tree's
/// current epoch), so a message of an earlier attempt is never taken for one of this attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MigrationId {
    /// The tree's root (global pid).
    pub gpid: i32,
    /// The epoch of this attempt.
    pub epoch: u64,
    /// The source node's run (its membership generation): a target that asks a source run
    /// which did not start the migration learns that the source restarted, and with it its
    /// copy of the tree died.
    pub source_run: u64,
}

/// Input a process had not read when it moved, which goes in front of its input on the
/// target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The unread bytes, in order.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// Its input had ended after those bytes.
    pub eof: bool,
}

/// The source's decision about a migration, as it answers a target that asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Not decided yet: ask again.
    Undecided,
    /// The source's copy is dead: let the tree go here, with this input in front of its input.
    Commit(Handover),
    /// The source's copy runs on: discard what you hold.
    Abort,
    /// The source node restarted since it started the migration: its copy died with its
    /// previous run, and its input with it.
    Restarted,
    /// The source knows nothing of this migration (it forgot it long ago).
    Unknown,
}

/// What the two daemons of a migration tell each other once the last image is sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationMsg {
    /// Source to target: let the tree go (the source's copy is dead), with this input first.
    Commit(Handover),
    /// Target to source: the tree runs here.
    Committed,
    /// Source to target: discard what you hold; the source's copy runs on.
    Abort,
    /// Target to source: discarded (or nothing was held).
    Aborted,
    /// Target to source, holding the restored tree without a decision: what did you decide?
    Ask,
    /// Source to target: the answer to `Ask`.
    Decided(Decision),
    /// Either way: no such migration here.
    Unknown,
}
