//! Processes of the cluster as the programs exchange them: what to run, how it ended, what
//! it printed, and how `ssi ps` shows it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::node::NodeId;

/// What `ssi run` asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Command and arguments (bytes: not necessarily UTF-8).
    pub argv: Vec<Vec<u8>>,
    /// Environment, `KEY=VALUE` entries.
    pub env: Vec<Vec<u8>>,
    /// Working directory.
    pub cwd: Vec<u8>,
    /// Run on this node; otherwise the scheduler places it.
    pub node: Option<NodeId>,
    /// CPUs the process needs (placement) and may use (limit).
    pub cpus: Option<u32>,
    /// Memory the process needs (placement) and may use (limit), in bytes.
    pub mem_bytes: Option<u64>,
    /// Start and return; output is kept for `ssi attach`.
    pub detach: bool,
    /// Labels the node must carry (`--constraint KEY=VALUE`).
    pub constraints: Vec<(String, String)>,
    /// The caller's resource limits: (`RLIMIT_*` number, soft, hard). The program gets them,
    /// or the node's where those are lower: a client can lower its program's limits, never
    /// raise them above what the node gives.
    pub rlimits: Vec<(u32, u64, u64)>,
    /// Fault tolerance (`ssi run --ft`): checkpointed periodically, restarted elsewhere when
    /// its node dies.
    pub ft: Option<FtSpec>,
}

/// How a fault-tolerant process is checkpointed (`ssi run --ft`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FtSpec {
    /// Time between two checkpoints, in milliseconds.
    pub every_ms: u64,
}

/// What `ssi ps` shows of a fault-tolerant process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FtView {
    /// Time between two checkpoints, in milliseconds.
    pub every_ms: u64,
    /// When its last complete checkpoint was taken (the freeze), Unix milliseconds.
    pub last_checkpoint_ms: Option<u64>,
    /// How long that checkpoint froze it, microseconds.
    pub freeze_us: u64,
    /// Page bytes that checkpoint wrote (the pages written since the one before it).
    pub bytes: u64,
    /// Images in the chain that checkpoint ends.
    pub chain: u32,
    /// Its fencing epoch: how many times it was restarted after a node died.
    pub epoch: u64,
    /// When it was restarted after its node died: the time of the checkpoint it came back
    /// from, Unix milliseconds.
    pub restarted_from_ms: Option<u64>,
}

impl RunSpec {
    /// The command line, for display.
    pub fn command_line(&self) -> String {
        self.argv
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Who asked: the identity the process runs as (taken from the control socket's peer
/// credentials, never from what the client claims).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Caller {
    /// Whether this caller may signal a process of user `uid`.
    pub fn may_signal(&self, uid: u32) -> bool {
        self.uid == 0 || self.uid == uid
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// exit(code).
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// Exit code of `ssi run` when the node hosting the process died (like ssh on a lost
/// connection).
pub const EXIT_LOST: i32 = 255;
/// Exit code of `ssi run` when ssi could not place or start the process for a reason of its
/// own (no node fits, daemon unreachable).
pub const EXIT_SSI_ERROR: i32 = 125;

/// Input from the user of a running process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// Bytes for its stdin.
    Stdin(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Its stdin ends.
    StdinEof,
    /// Deliver a signal to its process group.
    Signal(i32),
}

/// Output of a running process, and its end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// Bytes it wrote to stdout.
    Stdout(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Bytes it wrote to stderr.
    Stderr(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Bytes of output discarded while nobody was attached (the oldest go first).
    Dropped(u64),
    /// It ended.
    Exited(ExitStatus),
    /// It is lost: the node hosting it died.
    Lost(String),
    /// It moved to another node (live migration): follow it there. Everything it wrote
    /// before it moved came before this.
    Moved {
        /// Its new node.
        node: NodeId,
    },
}

/// What a live migration did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrationReport {
    /// The process (root of the tree that moved).
    pub gpid: i32,
    /// All pids of the tree.
    pub pids: Vec<i32>,
    /// Source node.
    pub from: NodeId,
    /// Target node.
    pub to: NodeId,
    /// Page bytes of each pre-copy round while the tree ran (the first is the full copy).
    pub rounds: Vec<u64>,
    /// Page bytes of the last image, sent while the tree was frozen.
    pub final_page_bytes: u64,
    /// Bytes sent over the network, framing included.
    pub bytes_sent: u64,
    /// From the start to the tree running on the target, microseconds.
    pub total_micros: u64,
    /// From the freeze to the tree running on the target, microseconds.
    pub downtime_micros: u64,
    /// Of the downtime, the restore on the target, microseconds.
    pub restore_micros: u64,
    /// Input the process had not read at the switch that could not be handed over to the
    /// target (0 when all of it went): it stayed behind, lost.
    pub lost_input_bytes: u64,
    /// What the figures do not say: how the outcome was learnt when the source could not
    /// report it (it died after the switch).
    pub note: Option<String>,
}

impl MigrationReport {
    /// The report of a move of `gpid` from `from` to `to`, with no figures yet.
    pub fn new(gpid: i32, from: NodeId, to: NodeId) -> MigrationReport {
        MigrationReport {
            gpid,
            pids: Vec::new(),
            from,
            to,
            rounds: Vec::new(),
            final_page_bytes: 0,
            bytes_sent: 0,
            total_micros: 0,
            downtime_micros: 0,
            restore_micros: 0,
            lost_input_bytes: 0,
            note: None,
        }
    }
}

/// State of a process in `ssi ps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcState {
    /// Running or runnable.
    Running,
    /// Sleeping.
    Sleeping,
    /// In uninterruptible sleep.
    DiskSleep,
    /// Stopped or traced.
    Stopped,
    /// Exited, not yet reaped.
    Zombie,
    /// Its node died.
    Lost,
    /// It is being moved to another node (`ProcessView::to`).
    Migrating,
}

impl ProcState {
    /// From the state letter of /proc/PID/stat.
    pub fn from_letter(c: char) -> ProcState {
        match c {
            'R' => ProcState::Running,
            'D' => ProcState::DiskSleep,
            'T' | 't' => ProcState::Stopped,
            'Z' | 'X' => ProcState::Zombie,
            _ => ProcState::Sleeping,
        }
    }

    /// Name as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcState::Running => "running",
            ProcState::Sleeping => "sleeping",
            ProcState::DiskSleep => "disk-sleep",
            ProcState::Stopped => "stopped",
            ProcState::Zombie => "zombie",
            ProcState::Lost => "lost",
            ProcState::Migrating => "migrating",
        }
    }
}

impl fmt::Display for ProcState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One process as `ssi ps` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessView {
    /// Global pid (what `getpid()` returns inside it).
    pub gpid: i32,
    /// Global pid of its parent (0 when its parent is the node's init).
    pub ppid: i32,
    /// Node hosting it.
    pub node: NodeId,
    /// That node's name.
    pub node_name: String,
    /// State.
    pub state: ProcState,
    /// User name (or uid when unknown on the node).
    pub user: String,
    /// User id.
    pub uid: u32,
    /// CPU time over elapsed time since it started, in percent (as ps(1) computes it).
    pub cpu_percent: f64,
    /// Resident memory.
    pub rss_bytes: u64,
    /// Start time, seconds since the Unix epoch.
    pub start_time: u64,
    /// Threads.
    pub threads: u32,
    /// Command line.
    pub command: String,
    /// While it is `migrating`: the node it moves to (`node` is the one it leaves).
    pub to: Option<NodeId>,
    /// Its checkpoints, when it is fault-tolerant (`ssi run --ft`).
    pub ft: Option<FtView>,
}
