//! The init of a node's pid namespace, and how the daemon talks to it.
//!
//! Each daemon hosts its processes in a pid namespace of its own. Its pid 1 is `ssid ns-init`,
//! a small single-threaded process that
//!
//! * creates each process the daemon asks for with an exact pid from the node's range
//!   (`clone3` with `set_tid`), with the stdio pipes the daemon hands it, as the given user;
//! * reaps every process of the namespace (pid 1 inherits orphans) and reports exit statuses;
//! * delivers signals to pids and process groups of the namespace;
//! * dies with the daemon (`PR_SET_PDEATHSIG`), which kills every process of the namespace:
//!   a crashed node's processes do not outlive it.
//!
//! ```text
//!   ssid (root pid ns) ==SOCK_SEQPACKET + SCM_RIGHTS==> ns-init (pid 1 of node ns)
//!        Spawn{argv, env, cwd, uid, ...} + 3 fds  -->        clone3(set_tid = [gpid]) + execve
//!        <-- Spawned{gpid} | SpawnFailed{why}
//!        Signal{target, sig}                      -->        kill(target, sig)
//!        <-- Signalled{error}
//!        <-- Exited{pid, status}  (any time)
//! ```

pub mod client;
pub mod init;

use serde::{Deserialize, Serialize};
pub use ssi_core::process::ExitStatus;

/// Largest message between daemon and init (argv and environment included).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// A request from the daemon.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ToInit {
    /// Start a program with a pid from the node's range; stdin, stdout, stderr attached.
    Spawn(SpawnRequest),
    /// Start one of ssid's own helpers (as root, with a pid the kernel picks); the fds sent
    /// along become its fds 0, 1, 2, ...
    Helper {
        /// argv; argv\[0\] is a path.
        argv: Vec<Vec<u8>>,
    },
    /// Send `sig` to `target` (a pid, or minus a process group id), as kill(2) does.
    Signal {
        /// Pid, or -pgid.
        target: i32,
        /// Signal number.
        sig: i32,
    },
}

/// What to start.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// argv; argv\[0\] is looked up in the `PATH` of `env` when it has no slash.
    pub argv: Vec<Vec<u8>>,
    /// Environment, `KEY=VALUE` entries.
    pub env: Vec<Vec<u8>>,
    /// Working directory.
    pub cwd: Vec<u8>,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// The caller's resource limits (`RLIMIT_*`, soft, hard), lowered to the init's own.
    pub rlimits: Vec<(u32, u64, u64)>,
    /// The `cgroup.procs` file of the cgroup the program runs in (the user's), if any.
    pub cgroup: Option<std::path::PathBuf>,
}

/// A message from the init.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FromInit {
    /// Answer to a spawn: the process runs its program under `gpid`.
    Spawned {
        /// The global pid.
        gpid: i32,
    },
    /// Answer to a spawn: it failed.
    SpawnFailed {
        /// What failed, one line.
        reason: String,
        /// The errno.
        errno: i32,
    },
    /// Answer to a signal request (`error` when kill failed).
    Signalled {
        /// Why kill failed.
        error: Option<String>,
    },
    /// A process of the namespace ended (any process, not only those spawned).
    Exited {
        /// Its pid in the namespace.
        pid: i32,
        /// How.
        status: ExitStatus,
    },
}
