//! The seam between the job service and where executors run.
//!
//! The job service decides what runs, in which order, as whom; a [`Runner`] places one executor
//! and says how it ended. `ssid` implements it with ssi's placement and process manager (the
//! executor becomes a cluster process with a global pid, on a node of the task's queue);
//! [`LocalRunner`] runs executors as processes of this host, for a single machine and for
//! the tests of the service.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use super::staging;
use crate::accounts::Lease;

/// Bytes of an executor's output kept for its log (the tail).
pub const TAIL_BYTES: usize = 64 * 1024;

/// One executor to run.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// The task.
    pub task_id: String,
    /// Index of the executor in the task.
    pub index: usize,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Working directory.
    pub workdir: Option<PathBuf>,
    /// Environment (on top of HOME, USER, LOGNAME, PATH of the account).
    pub env: BTreeMap<String, String>,
    /// Standard input file.
    pub stdin: Option<PathBuf>,
    /// Standard output file (else captured for the log).
    pub stdout: Option<PathBuf>,
    /// Standard error file (else captured for the log).
    pub stderr: Option<PathBuf>,
    /// Cores asked for (placement).
    pub cpu_cores: u32,
    /// Memory asked for in GB (placement).
    pub ram_gb: f64,
    /// The queue and its node labels (placement constraint).
    pub queue: String,
    /// Labels a node must have to run it.
    pub labels: BTreeMap<String, String>,
    /// The account it runs as.
    pub account: Lease,
    /// Run as an MPI job of this many ranks.
    pub mpi_ranks: Option<u32>,
}

/// How an executor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEnd {
    /// It ran and exited (code, or 128 + signal).
    Exited {
        /// Exit code.
        code: i32,
        /// Tail of its standard output when not redirected to a file.
        stdout: String,
        /// Tail of its standard error when not redirected to a file.
        stderr: String,
        /// Where it ran (node, pid).
        place: String,
    },
    /// It could not be started; the reason names what failed.
    NotStarted(String),
    /// It was stopped because `kill` fired.
    Killed,
    /// Its node was lost while it ran (a retry may run it elsewhere).
    Lost(String),
}

/// Places and runs executors.
pub trait Runner: Send + Sync + std::fmt::Debug {
    /// Makes sure `account` exists where executors may run.
    fn prepare<'a>(&'a self, account: &'a Lease) -> BoxFuture<'a, Result<(), String>>;
    /// Runs `req` to its end; stops it when `kill` becomes true.
    fn run(&self, req: ExecRequest, kill: watch::Receiver<bool>) -> BoxFuture<'_, ExecEnd>;
}

/// Runs executors as processes of this host, as the task's account when this process is root.
#[derive(Debug, Clone)]
pub struct LocalRunner {
    /// The MPI launcher and its options before `-np N` (Open MPI's `mpirun` by default).
    pub mpirun: Vec<String>,
}

impl Default for LocalRunner {
    fn default() -> Self {
        LocalRunner {
            mpirun: vec!["mpirun".into(), "--oversubscribe".into()],
        }
    }
}

async fn tail(r: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut r) = r else { return String::new() };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > TAIL_BYTES {
            kept.drain(..kept.len() - TAIL_BYTES);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

impl LocalRunner {
    fn command(
        &self,
        req: &ExecRequest,
        stdio: [Option<std::fs::File>; 3],
    ) -> tokio::process::Command {
        let mut argv: Vec<String> = Vec::new();
        if let Some(n) = req.mpi_ranks {
            argv.extend(self.mpirun.iter().cloned());
            argv.extend(["-np".to_string(), n.to_string()]);
        }
        argv.extend(req.command.iter().cloned());
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).env_clear();
        let a = &req.account;
        cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &a.home)
            .env("USER", &a.account)
            .env("LOGNAME", &a.account)
            .envs(&req.env);
        cmd.current_dir(req.workdir.clone().unwrap_or_else(|| PathBuf::from("/")));
        if nix::unistd::geteuid().is_root() {
            // std drops root's supplementary groups before setuid.
            cmd.uid(a.uid).gid(a.gid);
        }
        let [i, o, e] = stdio;
        cmd.stdin(i.map_or_else(Stdio::null, Stdio::from));
        cmd.stdout(o.map_or_else(Stdio::piped, Stdio::from));
        cmd.stderr(e.map_or_else(Stdio::piped, Stdio::from));
        cmd.process_group(0).kill_on_drop(true);
        cmd
    }

    async fn run_local(&self, req: ExecRequest, mut kill: watch::Receiver<bool>) -> ExecEnd {
        let (i, o, e) = (req.stdin.clone(), req.stdout.clone(), req.stderr.clone());
        let index = req.index;
        let stdio = match staging::as_account(&req.account, move || {
            staging::open_stdio(index, i.as_deref(), o.as_deref(), e.as_deref())
        })
        .await
        {
            Ok(s) => s,
            Err(reason) => return ExecEnd::NotStarted(reason),
        };
        let mut child = match self.command(&req, stdio).spawn() {
            Ok(c) => c,
            Err(e) => {
                return ExecEnd::NotStarted(format!("executors[{index}]: {}: {e}", req.command[0]))
            }
        };
        let pid = child.id().unwrap_or(0);
        let out = tokio::spawn(tail(child.stdout.take()));
        let err = tokio::spawn(tail(child.stderr.take()));
        let status = tokio::select! {
            s = child.wait() => s,
            _ = async { let _ = kill.wait_for(|k| *k).await; } => {
                // The executor and whatever it started share its process group.
                if let Ok(pgid) = i32::try_from(pid) {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
                }
                let _ = child.wait().await;
                return ExecEnd::Killed;
            }
        };
        let (stdout, stderr) = (out.await.unwrap_or_default(), err.await.unwrap_or_default());
        match status {
            Ok(s) => ExecEnd::Exited {
                code: s
                    .code()
                    .or_else(|| s.signal().map(|n| 128 + n))
                    .unwrap_or(-1),
                stdout,
                stderr,
                place: format!("local pid {pid}"),
            },
            Err(e) => ExecEnd::Lost(format!("waiting for pid {pid}: {e}")),
        }
    }
}

impl Runner for LocalRunner {
    fn prepare<'a>(&'a self, _account: &'a Lease) -> BoxFuture<'a, Result<(), String>> {
        // Processes can run as a uid without a passwd entry; the daemon's runner creates the
        // account on its nodes (SystemAccounts) before placing executors.
        Box::pin(async { Ok(()) })
    }

    fn run(&self, req: ExecRequest, kill: watch::Receiver<bool>) -> BoxFuture<'_, ExecEnd> {
        Box::pin(self.run_local(req, kill))
    }
}
