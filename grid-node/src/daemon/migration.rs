//! Moving, checkpointing and restarting process trees, driven from the daemons; the work on
//! the processes themselves is done by helpers (`ssid migrate-out`, ...) started inside the
//! node's pid namespace, where the tree's pids are its own (see the `migrate` crate).

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use migrate::{Report, Verdict};
use nix::fcntl::OFlag;
use ssi_core::process::{Caller, MigrationReport};
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::wire::SecureStream;
use ssi_core::NodeId;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::net::{TcpStream, UnixStream};

use super::procman::ProcMan;
use super::{cluster, Node};

/// Bytes read from the helper's data pipe per network frame.
const DATA_CHUNK: usize = 1 << 20;

fn pipe_pair() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")
}

/// A pipe for image data, as large as the kernel lets an unprivileged process make it
/// (1 MiB by default): fewer, larger reads and writes between helper and daemon.
fn data_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = pipe_pair()?;
    let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(1 << 20);
    // A smaller pipe only costs speed.
    let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(max.min(1 << 20)));
    Ok((r, w))
}

fn dev_null() -> Result<OwnedFd> {
    Ok(std::fs::File::open("/dev/null")
        .context("cannot open /dev/null")?
        .into())
}

fn log_fd() -> Result<OwnedFd> {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot duplicate stderr")
}

/// The control socket of a helper: our end (async) and the end it inherits as fd 3.
fn control_pair() -> Result<(UnixStream, OwnedFd)> {
    let (ours, theirs) = StdUnixStream::pair().context("cannot create a socket pair")?;
    ours.set_nonblocking(true).context("nonblocking")?;
    Ok((UnixStream::from_std(ours)?, theirs.into()))
}

fn helper_argv(mode: &str, args: &[String]) -> Vec<Vec<u8>> {
    let mut v = vec![b"/proc/self/exe".to_vec(), mode.as_bytes().to_vec()];
    v.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    v
}

/// Reads one report line from a helper; `None` when it closed the socket.
async fn next_report(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
) -> Result<Option<Report>> {
    match lines.next_line().await.context("helper control socket")? {
        None => Ok(None),
        Some(l) => {
            Ok(Some(serde_json::from_str(&l).with_context(|| {
                format!("bad report from a helper: {l}")
            })?))
        }
    }
}

/// Moves `gpid`, hosted here, to node `to`. If anything fails before the target runs the tree,
/// the tree runs on here, unharmed, and the error says why.
pub async fn migrate_out(
    node: &Node,
    gpid: i32,
    to: NodeId,
    rounds: Option<u32>,
    caller: &Caller,
) -> Result<MigrationReport> {
    let pm = node.local_procs()?;
    let owner = pm.owner(gpid)?;
    if !caller.may_signal(owner) {
        bail!("process {gpid} belongs to another user");
    }
    if to == node.config.id {
        bail!("process {gpid} already runs on node {to}");
    }
    let t0 = Instant::now();
    let mut rpc = cluster::connect(node, to).await?;
    rpc.send(&RpcRequest::MigrateIn { gpid, uid: owner })
        .await?;
    match rpc.recv::<RpcResponse>().await? {
        Some(RpcResponse::Ready) => {}
        Some(RpcResponse::Error { message }) => bail!("node {to}: {message}"),
        other => bail!("node {to}: unexpected answer {other:?}"),
    }
    let (data_r, data_w) = data_pipe()?;
    let (ctl, ctl_theirs) = control_pair()?;
    let (null, log) = (dev_null()?, log_fd()?);
    let mut args = vec!["--pid".to_string(), gpid.to_string()];
    if let Some(r) = rounds {
        args.extend(["--rounds".to_string(), r.to_string()]);
    }
    pm.helper(
        helper_argv("migrate-out", &args),
        &[&null, &data_w, &log, &ctl_theirs],
    )
    .await
    .context("cannot start the migration helper")?;
    drop((data_w, ctl_theirs));
    let data = pipe::Receiver::from_owned_fd(data_r).context("data pipe")?;
    run_out(pm, gpid, to, rpc, data, ctl, t0)
        .await
        .map(|mut r| {
            r.from = node.config.id;
            r
        })
}

#[allow(clippy::too_many_arguments)]
async fn run_out(
    pm: &ProcMan,
    gpid: i32,
    to: NodeId,
    rpc: SecureStream<TcpStream>,
    mut data: pipe::Receiver,
    ctl: UnixStream,
    t0: Instant,
) -> Result<MigrationReport> {
    let (ctl_r, mut ctl_w) = ctl.into_split();
    let mut reports = BufReader::new(ctl_r).lines();
    let (mut tx, mut rx) = rpc.split();
    let mut report = MigrationReport {
        gpid,
        pids: Vec::new(),
        from: NodeId(0),
        to,
        rounds: Vec::new(),
        final_page_bytes: 0,
        bytes_sent: 0,
        total_micros: 0,
        downtime_micros: 0,
        restore_micros: 0,
    };
    let mut frozen_at: Option<Instant> = None;
    let mut buf = vec![0u8; DATA_CHUNK];
    let mut data_open = true;
    let verdict = |v: Verdict| {
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        line
    };
    let failure: anyhow::Error = loop {
        tokio::select! {
            n = data.read(&mut buf), if data_open => match n {
                Ok(0) | Err(_) => data_open = false,
                Ok(n) => {
                    report.bytes_sent += n as u64;
                    if let Err(e) = tx.send(&RpcRequest::Data(buf[..n].to_vec())).await {
                        break anyhow!("node {to}: {e}");
                    }
                }
            },
            r = next_report(&mut reports) => match r {
                Ok(Some(Report::Round { page_bytes, .. })) => report.rounds.push(page_bytes),
                Ok(Some(Report::Frozen { page_bytes, micros })) => {
                    report.final_page_bytes = page_bytes;
                    frozen_at = Instant::now().checked_sub(std::time::Duration::from_micros(micros));
                }
                Ok(Some(Report::Failed { error })) => break anyhow!("{error}"),
                Ok(Some(other)) => break anyhow!("unexpected report from the migration helper: {other:?}"),
                Ok(None) => break anyhow!("the migration helper stopped before the target ran the tree"),
                Err(e) => break e,
            },
            answer = rx.recv::<RpcResponse>() => match answer {
                Ok(Some(RpcResponse::Restored { pids, micros, .. })) => {
                    let restored_at = Instant::now();
                    // Followers are sent to the target once the last output here is delivered.
                    pm.moved(gpid, to);
                    ctl_w.write_all(&verdict(Verdict::Commit)).await.context("commit")?;
                    // The helper exits once the source tree is killed; the init then reaps it.
                    while let Ok(Some(_)) = next_report(&mut reports).await {}
                    for _ in 0..250 {
                        if !pm.holds(gpid) {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    report.pids = pids;
                    report.restore_micros = micros;
                    report.total_micros = t0.elapsed().as_micros() as u64;
                    report.downtime_micros = frozen_at
                        .map_or(0, |f| restored_at.duration_since(f).as_micros() as u64);
                    tracing::info!(gpid, %to, downtime_us = report.downtime_micros, bytes = report.bytes_sent, "migrated");
                    return Ok(report);
                }
                Ok(Some(RpcResponse::Error { message })) => break anyhow!("node {to}: {message}"),
                Ok(Some(other)) => break anyhow!("node {to}: unexpected answer {other:?}"),
                Ok(None) => break anyhow!("node {to} closed the connection during the migration"),
                Err(e) => break anyhow!("node {to}: {e}"),
            },
        }
    };
    // The source runs on: the helper resumes the tree on abort, or already did on failure.
    let _ = ctl_w.write_all(&verdict(Verdict::Abort)).await;
    while let Ok(Some(_)) = next_report(&mut reports).await {}
    tracing::warn!(gpid, %to, error = %format!("{failure:#}"), "migration failed; the process runs on here");
    Err(failure.context(format!(
        "migration of {gpid} to node {to} failed; it runs on where it was"
    )))
}

/// The pipes a restored tree gets as its standard streams, and the other ends we keep.
struct Streams {
    stdin_r: OwnedFd,
    stdin_w: OwnedFd,
    out_r: OwnedFd,
    out_w: OwnedFd,
    err_r: OwnedFd,
    err_w: OwnedFd,
}

impl Streams {
    fn new() -> Result<Streams> {
        let (stdin_r, stdin_w) = pipe_pair()?;
        let (out_r, out_w) = pipe_pair()?;
        let (err_r, err_w) = pipe_pair()?;
        Ok(Streams {
            stdin_r,
            stdin_w,
            out_r,
            out_w,
            err_r,
            err_w,
        })
    }

    /// Hands our ends to the process manager as the record of `gpid`.
    fn adopt(self, pm: &ProcMan, gpid: i32, uid: u32) -> Result<()> {
        drop((self.stdin_r, self.out_w, self.err_w));
        pm.adopt(gpid, uid, self.stdin_w, self.out_r, self.err_r)
    }
}

/// Receives a migrating tree on `conn` (after `MigrateIn`): restores it here and takes it in.
pub async fn migrate_in(
    node: &Node,
    gpid: i32,
    uid: u32,
    mut conn: SecureStream<TcpStream>,
) -> Result<()> {
    let pm = match node.local_procs() {
        Ok(pm) => pm,
        Err(e) => {
            conn.send(&RpcResponse::Error {
                message: format!("{e:#}"),
            })
            .await?;
            return Ok(());
        }
    };
    // An exit of the restored tree before its record is made must reach the record.
    pm.expect(gpid);
    let mut streams = Some(Streams::new()?);
    let (data_r, data_w) = data_pipe()?;
    let (ctl, ctl_theirs) = control_pair()?;
    let (null, log) = (dev_null()?, log_fd()?);
    let st = streams.as_ref().context("streams")?;
    let started = pm
        .helper(
            helper_argv("migrate-in", &[]),
            &[
                &data_r,
                &null,
                &log,
                &ctl_theirs,
                &st.stdin_r,
                &st.out_w,
                &st.err_w,
            ],
        )
        .await;
    if let Err(e) = started {
        conn.send(&RpcResponse::Error {
            message: format!("cannot start the restore helper: {e:#}"),
        })
        .await?;
        return Ok(());
    }
    drop((data_r, ctl_theirs));
    conn.send(&RpcResponse::Ready).await?;
    let mut data = Some(pipe::Sender::from_owned_fd(data_w).context("data pipe")?);
    let (ctl_r, _ctl_w) = ctl.into_split();
    let mut reports = BufReader::new(ctl_r).lines();
    loop {
        tokio::select! {
            msg = conn.recv::<RpcRequest>() => match msg {
                Ok(Some(RpcRequest::Data(bytes))) => {
                    if let Some(w) = data.as_mut() {
                        if w.write_all(&bytes).await.is_err() {
                            // The helper failed; its report says why.
                            data = None;
                        }
                    }
                }
                Ok(Some(RpcRequest::DataEnd)) => data = None,
                Ok(Some(other)) => bail!("unexpected request during a migration: {other:?}"),
                // The source went away: the helper sees the stream end and gives up.
                Ok(None) | Err(_) => data = None,
            },
            r = next_report(&mut reports) => {
                let answer = match r {
                    Ok(Some(Report::Restored { root, pids, micros })) if root == gpid => {
                        streams.take().context("streams")?.adopt(pm, gpid, uid)?;
                        RpcResponse::Restored { gpid, pids, micros }
                    }
                    Ok(Some(Report::Failed { error })) => RpcResponse::Error { message: error },
                    Ok(other) => RpcResponse::Error { message: format!("restore helper: unexpected {other:?}") },
                    Err(e) => RpcResponse::Error { message: format!("{e:#}") },
                };
                if matches!(answer, RpcResponse::Error { .. }) {
                    pm.forget(gpid);
                }
                conn.send(&answer).await?;
                return Ok(());
            }
        }
    }
}

/// Checkpoints the tree of `gpid`, hosted here, into `dir`.
pub async fn checkpoint(
    node: &Node,
    gpid: i32,
    dir: &str,
    leave_running: bool,
    caller: &Caller,
) -> Result<(Vec<i32>, u64)> {
    let pm = node.local_procs()?;
    if !caller.may_signal(pm.owner(gpid)?) {
        bail!("process {gpid} belongs to another user");
    }
    let (ctl, ctl_theirs) = control_pair()?;
    let (null, log) = (dev_null()?, log_fd()?);
    let mut args = vec![
        "--pid".to_string(),
        gpid.to_string(),
        "--dir".into(),
        dir.to_string(),
    ];
    if leave_running {
        args.push("--leave-running".into());
    }
    pm.helper(
        helper_argv("checkpoint-out", &args),
        &[&null, &null, &log, &ctl_theirs],
    )
    .await
    .context("cannot start the checkpoint helper")?;
    drop(ctl_theirs);
    let (r, _w) = ctl.into_split();
    let mut reports = BufReader::new(r).lines();
    match next_report(&mut reports).await? {
        Some(Report::Written { pids, page_bytes }) => Ok((pids, page_bytes)),
        Some(Report::Failed { error }) => bail!("{error}"),
        other => bail!("checkpoint helper: unexpected {other:?}"),
    }
}

/// Restarts the checkpoint in `dir` on this node; returns the root's global pid.
pub async fn restart(node: &Node, dir: &str, caller: &Caller) -> Result<i32> {
    if caller.uid != 0 {
        bail!("restarting a checkpoint needs root: an image carries the credentials it runs with");
    }
    let pm = node.local_procs()?;
    let streams = Streams::new()?;
    let (ctl, ctl_theirs) = control_pair()?;
    let (null, log) = (dev_null()?, log_fd()?);
    pm.helper(
        helper_argv("restore-in", &["--dir".into(), dir.to_string()]),
        &[
            &null,
            &null,
            &log,
            &ctl_theirs,
            &streams.stdin_r,
            &streams.out_w,
            &streams.err_w,
        ],
    )
    .await
    .context("cannot start the restore helper")?;
    drop(ctl_theirs);
    let (r, _w) = ctl.into_split();
    let mut reports = BufReader::new(r).lines();
    match next_report(&mut reports).await? {
        Some(Report::Restored { root, .. }) => {
            pm.expect(root);
            let uid = pm.owner(root).unwrap_or(0);
            streams.adopt(pm, root, uid)?;
            Ok(root)
        }
        Some(Report::Failed { error }) => bail!("{error}"),
        other => bail!("restore helper: unexpected {other:?}"),
    }
}
