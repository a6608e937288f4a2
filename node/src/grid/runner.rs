//! Executors of grid tasks as cluster processes: the job service's [`Runner`] over the
//! daemon's own run path.
//!
//! An executor is run exactly as `ssi run` runs a program: the session code of the daemon
//! places it with the cluster scheduler (cores, memory, the queue's node labels), starts it on
//! the chosen node as the task's pool account (uid, pool group), follows it across migrations
//! and reports its end, or its loss when its node dies. The runner is that session's client,
//! over a socket pair instead of the control socket: its stdin comes from the task's stdin
//! file, its stdout and stderr go to the task's files (opened here, as the account) or to the
//! log's tail.

use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Weak};

use anyhow::{anyhow, Result};
use futures::future::BoxFuture;
use grid_node::accounts::{Lease, PoolConfig, SystemAccounts};
use grid_node::tes::runner::TAIL_BYTES;
use grid_node::tes::staging;
use grid_node::tes::{ExecEnd, ExecRequest, Runner};
use ssi_core::control::{ControlConn, ControlRequest, ControlResponse};
use ssi_core::process::{Caller, ExitStatus, Input, Output, RunSpec};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::proto::{Answer, Request};
use crate::Node;

/// Bytes of stdin sent per message.
const STDIN_CHUNK: usize = 64 * 1024;

/// Runs executors through the daemon's placement and process hosting.
#[derive(Debug)]
pub struct ClusterRunner {
    node: Weak<Node>,
    /// The MPI launcher and its options before `-np N`.
    mpirun: Vec<String>,
    /// Pools, to create their accounts on the nodes (`None`: the accounts exist already).
    accounts: Option<Vec<PoolConfig>>,
}

impl ClusterRunner {
    /// A runner on `node`; `accounts` are the pools whose accounts ssid creates, if it does.
    pub fn new(node: &Arc<Node>, mpirun: Vec<String>, accounts: Option<Vec<PoolConfig>>) -> Self {
        ClusterRunner {
            node: Arc::downgrade(node),
            mpirun,
            accounts,
        }
    }

    fn spec(&self, req: &ExecRequest) -> RunSpec {
        let mut argv: Vec<String> = Vec::new();
        if let Some(n) = req.mpi_ranks {
            argv.extend(self.mpirun.iter().cloned());
            argv.extend(["-np".to_string(), n.to_string()]);
        }
        argv.extend(req.command.iter().cloned());
        let a = &req.account;
        let mut env = vec![
            "PATH=/usr/local/bin:/usr/bin:/bin".to_string(),
            format!("HOME={}", a.home.display()),
            format!("USER={}", a.account),
            format!("LOGNAME={}", a.account),
        ];
        env.extend(req.env.iter().map(|(k, v)| format!("{k}={v}")));
        RunSpec {
            argv: argv.into_iter().map(String::into_bytes).collect(),
            env: env.into_iter().map(String::into_bytes).collect(),
            cwd: req.workdir.as_ref().map_or_else(
                || b"/".to_vec(),
                |w| w.as_os_str().as_encoded_bytes().to_vec(),
            ),
            node: None,
            cpus: Some(req.cpu_cores.max(1)),
            mem_bytes: (req.ram_gb > 0.0).then(|| (req.ram_gb * (1u64 << 30) as f64) as u64),
            detach: false,
            constraints: req.labels.clone().into_iter().collect(),
            // The node's own limits: a grid task has no client whose limits it inherits.
            rlimits: Vec::new(),
            ft: None,
        }
    }

    async fn run_cluster(&self, req: ExecRequest, mut kill: watch::Receiver<bool>) -> ExecEnd {
        let Some(node) = self.node.upgrade() else {
            return ExecEnd::NotStarted("the daemon is stopping".into());
        };
        let i = req.index;
        let (si, so, se) = (req.stdin.clone(), req.stdout.clone(), req.stderr.clone());
        let [stdin, stdout, stderr] = match staging::as_account(&req.account, move || {
            staging::open_stdio(i, si.as_deref(), so.as_deref(), se.as_deref())
        })
        .await
        {
            Ok(s) => s,
            Err(reason) => return ExecEnd::NotStarted(reason),
        };
        let caller = Caller {
            uid: req.account.uid,
            gid: req.account.gid,
            groups: vec![req.account.gid],
        };
        let spec = self.spec(&req);
        let Ok((ours, theirs)) = tokio::net::UnixStream::pair() else {
            return ExecEnd::NotStarted("cannot make a socket pair".into());
        };
        let path = node.config.control_socket();
        let session_node = node.clone();
        let session_path = path.clone();
        tokio::spawn(async move {
            let conn = ControlConn::from_stream(theirs, &session_path);
            if let Err(e) = crate::session::run(&session_node, spec, caller, conn).await {
                tracing::debug!(error = %format!("{e:#}"), "grid executor session ended with an error");
            }
        });
        let mut conn = ControlConn::from_stream(ours, &path);
        let place = match conn.recv::<ControlResponse>().await {
            Ok(Some(ControlResponse::Started {
                gpid,
                node,
                node_name,
            })) => format!("node {node} ({node_name}), pid {gpid}"),
            Ok(Some(ControlResponse::Error { message, .. })) => {
                return ExecEnd::NotStarted(format!("executors[{i}]: {message}"))
            }
            other => return ExecEnd::NotStarted(format!("executors[{i}]: no start: {other:?}")),
        };
        tracing::info!(task = %req.task_id, executor = i, %place, uid = req.account.uid, "grid executor started");
        let sinks = Sinks::new(stdout, stderr);
        follow(conn, stdin, sinks, &mut kill, place).await
    }
}

/// Where an executor's output goes: its files, or tails kept for the log.
struct Sinks {
    files: [Option<tokio::fs::File>; 2],
    tails: [Vec<u8>; 2],
}

impl Sinks {
    fn new(stdout: Option<std::fs::File>, stderr: Option<std::fs::File>) -> Self {
        Sinks {
            files: [
                stdout.map(tokio::fs::File::from_std),
                stderr.map(tokio::fs::File::from_std),
            ],
            tails: [Vec::new(), Vec::new()],
        }
    }

    async fn put(&mut self, which: usize, bytes: &[u8]) -> Result<()> {
        if let Some(f) = &mut self.files[which] {
            return Ok(f.write_all(bytes).await?);
        }
        let t = &mut self.tails[which];
        t.extend_from_slice(bytes);
        if t.len() > TAIL_BYTES {
            t.drain(..t.len() - TAIL_BYTES);
        }
        Ok(())
    }

    async fn finish(mut self) -> (String, String) {
        for f in self.files.iter_mut().flatten() {
            let _ = f.flush().await;
        }
        let [o, e] = self.tails;
        (
            String::from_utf8_lossy(&o).into_owned(),
            String::from_utf8_lossy(&e).into_owned(),
        )
    }
}

/// Feeds the executor's stdin, passes a kill on, and follows its output to its end.
async fn follow(
    conn: ControlConn,
    stdin: Option<std::fs::File>,
    mut sinks: Sinks,
    kill: &mut watch::Receiver<bool>,
    place: String,
) -> ExecEnd {
    let (mut tx, mut rx) = conn.split();
    let killed = std::sync::atomic::AtomicBool::new(false);
    // The input side stays open until the end: the session takes its end for a hang-up.
    let input = async {
        use tokio::io::AsyncReadExt;
        let mut file = stdin.map(tokio::fs::File::from_std);
        let mut buf = vec![0u8; STDIN_CHUNK];
        let mut eof_sent = false;
        loop {
            tokio::select! {
                biased;
                fired = async { kill.wait_for(|k| *k).await.is_ok() } => {
                    if !fired {
                        return futures::future::pending::<()>().await;
                    }
                    killed.store(true, std::sync::atomic::Ordering::SeqCst);
                    let _ = tx.send(&ControlRequest::Input(Input::Signal(libc::SIGKILL))).await;
                    return futures::future::pending::<()>().await;
                }
                n = async { match &mut file { Some(f) => f.read(&mut buf).await, None => Ok(0) } }, if !eof_sent => {
                    match n {
                        Ok(n) if n > 0 => {
                            let chunk = ControlRequest::Input(Input::Stdin(buf[..n].to_vec()));
                            if tx.send(&chunk).await.is_err() {
                                return futures::future::pending::<()>().await;
                            }
                        }
                        _ => {
                            eof_sent = true;
                            file = None;
                            let _ = tx.send(&ControlRequest::Input(Input::StdinEof)).await;
                        }
                    }
                }
            }
        }
    };
    let outputs = async {
        loop {
            match rx.recv::<ControlResponse>().await? {
                Some(ControlResponse::Output(o)) => match o {
                    Output::Stdout(b) => sinks.put(0, &b).await?,
                    Output::Stderr(b) => sinks.put(1, &b).await?,
                    Output::Exited(st) => return Ok(Ok::<ExitStatus, String>(st)),
                    Output::Lost(why) => return Ok(Err(why)),
                    Output::Dropped(_) | Output::Moved { .. } => {}
                },
                Some(ControlResponse::Error { message, .. }) => return Ok(Err(message)),
                Some(other) => return Err(anyhow!("unexpected {other:?}")),
                None => return Ok(Err("the session ended before the executor did".into())),
            }
        }
    };
    let end: Result<Result<ExitStatus, String>> = tokio::select! {
        r = outputs => r,
        () = input => Err(anyhow!("the executor's input side ended")),
    };
    let (stdout, stderr) = sinks.finish().await;
    if killed.load(std::sync::atomic::Ordering::SeqCst) {
        return ExecEnd::Killed;
    }
    match end {
        Ok(Ok(st)) => ExecEnd::Exited {
            code: st.shell_code(),
            stdout,
            stderr,
            place,
        },
        Ok(Err(why)) => ExecEnd::Lost(why),
        Err(e) => ExecEnd::Lost(format!("{e:#}")),
    }
}

impl ClusterRunner {
    /// Creates `account` on every member (this node first).
    async fn prepare_all(&self, account: &Lease) -> Result<(), String> {
        let Some(pools) = &self.accounts else {
            return Ok(());
        };
        let node = self.node.upgrade().ok_or("the daemon is stopping")?;
        ensure_here(&node, pools, account).await?;
        let view = node.gossip.view().await.map_err(|e| e.to_string())?;
        for n in view
            .iter()
            .filter(|n| n.state.is_active() && n.id != node.config.id)
        {
            match super::store::ask(&node, n.id, &Request::EnsureAccount(account.clone())).await {
                Ok(Answer::Done) => {}
                Ok(Answer::Error(e)) => return Err(format!("node {}: {e}", n.id)),
                Ok(other) => return Err(format!("node {}: answered {other:?}", n.id)),
                Err(e) => {
                    tracing::warn!(node = %n.id, error = %format!("{e:#}"), "account not made there")
                }
            }
        }
        Ok(())
    }
}

/// Makes `account` on this node with `useradd` (if its pool is one of `pools`).
pub async fn ensure_here(node: &Node, pools: &[PoolConfig], account: &Lease) -> Result<(), String> {
    let pool = pools
        .iter()
        .find(|p| p.vo == account.vo)
        .ok_or_else(|| format!("no account pool for VO {}", account.vo))?
        .clone();
    let sys = SystemAccounts::new("/", &node.config.state_dir.join("grid"));
    let lease = account.clone();
    tokio::task::spawn_blocking(move || sys.ensure(&pool, &lease).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())??;
    // The home must be the account's, not a leftover of another uid.
    match std::fs::metadata(&account.home) {
        Ok(m) if m.uid() != account.uid => Err(format!(
            "{} belongs to uid {}, not {}",
            account.home.display(),
            m.uid(),
            account.uid
        )),
        _ => Ok(()),
    }
}

impl Runner for ClusterRunner {
    fn prepare<'a>(&'a self, account: &'a Lease) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.prepare_all(account))
    }

    fn run(&self, req: ExecRequest, kill: watch::Receiver<bool>) -> BoxFuture<'_, ExecEnd> {
        Box::pin(self.run_cluster(req, kill))
    }
}
