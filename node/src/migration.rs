//! Moving, checkpointing and restarting process trees, driven from the daemons; the work on
//! the processes themselves is done by helpers (`ssid migrate-out`, ...) started inside the
//! node's pid namespace, where the tree's pids are its own (see the `migrate` crate).
//!
//! A migration starts as an RPC (`MigrateIn`, answered `Ready`) on an authenticated connection
//! between the two daemons; then each daemon hands that connection to its helper with a key
//! both derive from the session, and the helpers send the images to each other directly
//! (frames authenticated with that key): the daemons copy no image byte.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use migrate::{Report, Start, Verdict};
use nix::fcntl::OFlag;
use ssi_core::process::{Caller, MigrationReport};
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::view::MemberState;
use ssi_core::wire::SecureStream;
use ssi_core::NodeId;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use super::procman::ProcMan;
use super::{cluster, Node};

/// Label of the key the two daemons derive for a migration's data stream.
const DATA_KEY_LABEL: &[u8] = b"ssi migration data stream";

fn pipe_pair() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).context("cannot create a pipe")
}

/// Ends the RPC exchange on `conn` and turns it into the raw data stream a helper takes over
/// (a blocking socket), with the key the helpers authenticate their frames with.
fn data_stream(conn: SecureStream<TcpStream>) -> Result<(OwnedFd, [u8; 32])> {
    let (tcp, key) = conn.into_raw(DATA_KEY_LABEL)?;
    let std = tcp.into_std().context("data stream")?;
    std.set_nonblocking(false).context("data stream")?;
    Ok((std.into(), key))
}

/// Tells a helper just started how to authenticate its data stream.
async fn start_helper(ctl: &mut tokio::net::unix::OwnedWriteHalf, key: [u8; 32]) -> Result<()> {
    let mut line = serde_json::to_vec(&Start { key })?;
    line.push(b'\n');
    ctl.write_all(&line)
        .await
        .context("cannot talk to the migration helper")
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

/// Arguments that make a helper reach files as `caller` (see `helpers`).
fn as_caller(caller: &Caller) -> [String; 6] {
    let groups: Vec<String> = caller.groups.iter().map(u32::to_string).collect();
    [
        "--uid".into(),
        caller.uid.to_string(),
        "--gid".into(),
        caller.gid.to_string(),
        "--groups".into(),
        groups.join(","),
    ]
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
    pm.check_access(gpid, caller, true)?;
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
    let (data, key) = data_stream(rpc)?;
    let (ctl, ctl_theirs) = control_pair()?;
    let (null, log) = (dev_null()?, log_fd()?);
    pm.begin_migration(gpid);
    let out = async {
        let mut args = vec!["--pid".to_string(), gpid.to_string()];
        if let Some(r) = rounds {
            args.extend(["--rounds".to_string(), r.to_string()]);
        }
        pm.helper(
            helper_argv("migrate-out", &args),
            &[&null, &data, &log, &ctl_theirs],
        )
        .await
        .context("cannot start the migration helper")?;
        // the helper holds the connection now: it closes when the helper ends
        drop((data, ctl_theirs));
        run_out(node, pm, gpid, to, ctl, key, t0)
            .await
            .map(|mut r| {
                r.from = node.config.id;
                r
            })
    }
    .await;
    // signals sent here meanwhile reached a copy that is gone if the tree moved
    let signals = pm.end_migration(gpid);
    if let Ok(report) = &out {
        forward_signals(node, to, &report.pids, signals).await;
    }
    out
}

async fn run_out(
    node: &Node,
    pm: &ProcMan,
    gpid: i32,
    to: NodeId,
    ctl: UnixStream,
    key: [u8; 32],
    t0: Instant,
) -> Result<MigrationReport> {
    let (ctl_r, mut ctl_w) = ctl.into_split();
    let mut reports = BufReader::new(ctl_r).lines();
    start_helper(&mut ctl_w, key).await?;
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
        lost_input_bytes: 0,
    };
    let mut frozen_at: Option<Instant> = None;
    let verdict = |v: Verdict| {
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        line
    };
    // The tree's pids and the target's restore time once it runs there, or why not.
    let outcome: Result<(Vec<i32>, u64)> = loop {
        match next_report(&mut reports).await {
            Ok(Some(Report::Round {
                page_bytes, sent, ..
            })) => {
                report.rounds.push(page_bytes);
                report.bytes_sent = sent;
            }
            Ok(Some(Report::Frozen {
                page_bytes,
                micros,
                sent,
            })) => {
                report.final_page_bytes = page_bytes;
                report.bytes_sent = sent;
                frozen_at = Instant::now().checked_sub(std::time::Duration::from_micros(micros));
            }
            Ok(Some(Report::Restored { pids, micros, .. })) => break Ok((pids, micros)),
            // The target daemon decides: the tree runs there if it took it in, else here.
            Ok(Some(Report::Unanswered { error })) => match settle(node, gpid, to).await {
                Ok(Some(pids)) => {
                    tracing::warn!(gpid, %to, %error, "no answer from the target, but it runs the tree");
                    break Ok((pids, 0));
                }
                Ok(None) => break Err(anyhow!("{error}; node {to} did not take the tree in")),
                Err(e) => {
                    break Err(anyhow!(
                        "{error}; node {to} cannot say whether it took the tree in ({e:#})"
                    ))
                }
            },
            Ok(Some(Report::Failed { error })) => break Err(anyhow!("{error}")),
            Ok(Some(other)) => {
                break Err(anyhow!(
                    "unexpected report from the migration helper: {other:?}"
                ))
            }
            Ok(None) => {
                break Err(anyhow!(
                    "the migration helper stopped before the target ran the tree"
                ))
            }
            Err(e) => break Err(e),
        }
    };
    let failure = match outcome {
        Ok((pids, micros)) => {
            let restored_at = Instant::now();
            // The frozen copy reads no more: what it had not read of its input goes with it,
            // before its followers are sent to the target.
            report.lost_input_bytes = hand_over_input(node, pm, gpid, to).await;
            // Followers are sent to the target once the last output here is delivered.
            pm.moved(gpid, to);
            ctl_w
                .write_all(&verdict(Verdict::Commit))
                .await
                .context("commit")?;
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
            report.downtime_micros =
                frozen_at.map_or(0, |f| restored_at.duration_since(f).as_micros() as u64);
            tracing::info!(gpid, %to, downtime_us = report.downtime_micros, bytes = report.bytes_sent, "migrated");
            return Ok(report);
        }
        Err(failure) => failure,
    };
    // The source runs on: the helper resumes the tree on abort, or already did on failure.
    let _ = ctl_w.write_all(&verdict(Verdict::Abort)).await;
    while let Ok(Some(_)) = next_report(&mut reports).await {}
    tracing::warn!(gpid, %to, error = %format!("{failure:#}"), "migration failed; the process runs on here");
    let where_now = if pm.holds(gpid) {
        "it runs on where it was"
    } else {
        "it ended meanwhile"
    };
    Err(failure.context(format!(
        "migration of {gpid} to node {to} failed; {where_now}"
    )))
}

/// Takes out the input the frozen copy of `gpid` had not read and puts it in front of its
/// input on node `to`; the bytes that could not go (0 when all went), with the reason logged.
async fn hand_over_input(node: &Node, pm: &ProcMan, gpid: i32, to: NodeId) -> u64 {
    let left = match pm.hand_over_input(gpid) {
        Ok(left) => left,
        Err(e) => {
            let lost = pm.unread_input(gpid);
            tracing::warn!(gpid, bytes = lost, error = %format!("{e:#}"), "input the process had not read stays behind");
            return lost;
        }
    };
    if left.bytes.is_empty() && !left.eof {
        return 0;
    }
    let n = left.bytes.len() as u64;
    let req = RpcRequest::HandOverInput {
        gpid,
        bytes: left.bytes,
        eof: left.eof,
    };
    match cluster::ask_done(node, to, &req).await {
        Ok(()) => {
            tracing::info!(gpid, bytes = n, eof = left.eof, %to, "unread input handed over");
            0
        }
        Err(e) => {
            tracing::warn!(gpid, bytes = n, %to, error = %format!("{e:#}"), "cannot hand over the input the process had not read");
            n
        }
    }
}

/// Sends to node `to` the signals sent here to processes of a tree while it moved there (the
/// copy that got them here is gone). Best effort: a failure is logged.
async fn forward_signals(
    node: &Node,
    to: NodeId,
    pids: &[i32],
    signals: Vec<super::procman::SentSignal>,
) {
    for (gpid, sig, caller) in signals.into_iter().filter(|(g, _, _)| pids.contains(g)) {
        match cluster::ask_done(node, to, &RpcRequest::Kill { gpid, sig, caller }).await {
            Ok(()) => tracing::info!(gpid, sig, %to, "signal sent during the migration passed on"),
            Err(e) => {
                tracing::warn!(gpid, sig, %to, error = %format!("{e:#}"), "cannot pass on a signal sent during the migration")
            }
        }
    }
}

/// How long a source with a frozen tree keeps asking a target that membership still shows
/// alive but that does not answer whether it took the tree in.
const SETTLE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Asks node `to` whether it took in the tree of `gpid` whose answer never came: its pids if
/// it did; `None` if it did not (then it never will). A target that does not answer is asked
/// again while membership shows it alive (a resumed source copy beside a running target copy
/// would run the tree twice), for [`SETTLE_PATIENCE`] at most; one that is dead or left took
/// its copy with it (an error: the source resumes).
async fn settle(node: &Node, gpid: i32, to: NodeId) -> Result<Option<Vec<i32>>> {
    let deadline = Instant::now() + SETTLE_PATIENCE;
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        let err = match ask_settled(node, gpid, to).await {
            Ok(answer) => return Ok(answer),
            Err(e) => e,
        };
        let gone = node.gossip.view().await.is_ok_and(|v| {
            v.iter()
                .any(|n| n.id == to && matches!(n.state, MemberState::Dead | MemberState::Left))
        });
        if gone {
            bail!("it died before it answered ({err:#})");
        }
        if Instant::now() + pause > deadline {
            return Err(err);
        }
        tracing::warn!(gpid, %to, error = %format!("{err:#}"), "the target does not say whether it took the tree in; asking again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(5));
    }
}

/// One question of [`settle`].
async fn ask_settled(node: &Node, gpid: i32, to: NodeId) -> Result<Option<Vec<i32>>> {
    match cluster::ask(node, to, &RpcRequest::SettleMigration { gpid }).await? {
        RpcResponse::Settled { pids } => Ok(pids),
        RpcResponse::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// What node `node` answers a source that asks about its migration of `gpid` here.
pub fn settled(node: &Node, gpid: i32) -> RpcResponse {
    RpcResponse::Settled {
        pids: node.incoming.settle(gpid),
    }
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

/// Stops expecting the exit of a tree being received when the receiving ends, whatever way.
struct Expecting<'a> {
    pm: &'a ProcMan,
    gpid: i32,
}

impl Drop for Expecting<'_> {
    fn drop(&mut self) {
        self.pm.forget(self.gpid);
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
    node.incoming.begin(gpid);
    // An exit of the restored tree before its record is made must reach the record; once the
    // record is made (or the restore failed) nothing is expected any more.
    pm.expect(gpid);
    let _expecting = Expecting { pm, gpid };
    let streams = Streams::new()?;
    let (ctl, ctl_theirs) = control_pair()?;
    let (null, log) = (dev_null()?, log_fd()?);
    conn.send(&RpcResponse::Ready).await?;
    let (data, key) = data_stream(conn)?;
    let started = pm
        .helper(
            helper_argv("migrate-in", &[]),
            &[
                &data,
                &null,
                &log,
                &ctl_theirs,
                &streams.stdin_r,
                &streams.out_w,
                &streams.err_w,
            ],
        )
        .await;
    if let Err(e) = started {
        // the source waits on the data stream: tell it there
        let why = format!("cannot start the restore helper: {e:#}");
        tokio::task::spawn_blocking(move || {
            let mut w = migrate::framing::FrameWriter::new(
                std::fs::File::from(data),
                &key,
                migrate::framing::Direction::ToSource,
            );
            w.send(migrate::framing::Kind::Failed, why.as_bytes())
        })
        .await??;
        return Ok(());
    }
    // the helper holds the connection now: it closes when the helper ends
    drop((data, ctl_theirs));
    let (ctl_r, mut ctl_w) = ctl.into_split();
    start_helper(&mut ctl_w, key).await?;
    let mut reports = BufReader::new(ctl_r).lines();
    // The helper tells the source itself, once we said "commit" (after taking the tree in).
    match next_report(&mut reports).await {
        Ok(Some(Report::Restored { root, pids, .. })) if root == gpid => {
            // not if the source, without an answer, settled it as not taken meanwhile
            let taken = if node.incoming.take(gpid, &pids) {
                let taken = streams.adopt(pm, gpid, uid);
                if taken.is_err() {
                    node.incoming.untake(gpid);
                }
                taken
            } else {
                Err(anyhow!(
                    "the source resumed the tree (it got no answer in time)"
                ))
            };
            let v = if taken.is_ok() {
                Verdict::Commit
            } else {
                Verdict::Abort
            };
            let mut line = serde_json::to_vec(&v)?;
            line.push(b'\n');
            ctl_w.write_all(&line).await.context("commit")?;
            taken?;
            tracing::info!(gpid, "migrated in");
        }
        Ok(Some(Report::Failed { error })) => {
            tracing::warn!(gpid, %error, "incoming migration failed");
        }
        Ok(other) => {
            let _ = ctl_w.write_all(b"\"abort\"\n").await;
            bail!("restore helper: unexpected {other:?}");
        }
        Err(e) => return Err(e),
    }
    // the helper reports nothing more; it ends once the source is told
    while let Ok(Some(_)) = next_report(&mut reports).await {}
    Ok(())
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
    pm.check_access(gpid, caller, true)?;
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
    if caller.uid != 0 {
        args.extend(as_caller(caller));
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
/// A user restarts only an image they own, with their own ids; root restarts a user's image
/// as that user (see `image_trust`).
pub async fn restart(node: &Node, dir: &str, caller: &Caller) -> Result<i32> {
    let pm = node.local_procs()?;
    let streams = Streams::new()?;
    let (ctl, ctl_theirs) = control_pair()?;
    let (null, log) = (dev_null()?, log_fd()?);
    let mut args = vec!["--dir".to_string(), dir.to_string()];
    if caller.uid != 0 {
        args.extend(as_caller(caller));
    }
    pm.helper(
        helper_argv("restore-in", &args),
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
