//! The target side as the daemon runs it: on `MigrateIn` a task drives a [`Target`] machine,
//! starts the restore helper on the data stream, and carries out the machine's commands (the
//! record of the held tree, orders to the helper, answers to the source daemon).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use anyhow::{Context, Result};
use migrate::control::{Job, Order, Report};
use migrate::framing::{Direction, FrameWriter, Kind};
use migrate::protocol::{
    Machine, MigrationId, Target, TargetCmd, TargetEvent, TargetOutcome, Timeouts,
};
use ssi_core::process::ProcessView;
use ssi_core::rpc::RpcResponse;
use ssi_core::wire::SecureStream;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::driver::{self, Driver, Side};
use super::helper;
use super::stream;
use crate::image_trust;
use crate::node::Node;
use crate::procman::Streams;

/// Receives a migrating tree on `conn` (after `MigrateIn`): answers `Ready` (or why not) and
/// hands the connection to a restore helper, driven by a task of its own.
pub async fn migrate_in(
    node: &Arc<Node>,
    id: MigrationId,
    row: ProcessView,
    mut conn: SecureStream<TcpStream>,
) -> Result<()> {
    let (inbox, rx) = mpsc::channel(64);
    let accepted = accept(node, id, &row, inbox.clone());
    let streams = match accepted {
        Ok(s) => s,
        Err(e) => {
            let message = format!("{e:#}");
            return Ok(conn.send(&RpcResponse::Error { message }).await?);
        }
    };
    conn.send(&RpcResponse::Ready).await?;
    let (data, key) = stream::data_stream(conn)?;
    let mut d = Driver::new(node.clone(), id, row.node, inbox);
    let pm = node.local_procs()?;
    let Streams { theirs, ours } = streams;
    // The source is a node (its certificate says so) and says whose process this is: the
    // tree it sends may hold no more than that user does, so the record this node keeps
    // (whom attach, kill and ps believe) and the processes agree.
    let bound = (row.uid != 0).then(|| image_trust::bound_of_uid(row.uid));
    let job = Job::MigrateIn { key, bound };
    let data_copy = data.try_clone().context("data stream")?;
    match helper::start(pm, &job, Some(data), Some(theirs)).await {
        Ok((orders, reports)) => d.helper_started(orders, reports),
        Err(e) => {
            // the source waits on the data stream: tell it there
            let why = format!("cannot start the restore helper: {e:#}");
            tell_source(data_copy, key, why.clone()).await;
            pm.discard_incoming(id.gpid, &why);
            node.migrations.remove(id);
            return Ok(());
        }
    }
    drop(data_copy);
    let run = Run {
        d,
        row,
        ours: Some(ours),
        release_ordered: false,
    };
    run.d
        .watch_peer(|| TargetEvent::SourceDown, || TargetEvent::SourceUp);
    let machine = Target::new(id, run.row.node, Timeouts::default());
    tokio::spawn(driver::drive(run, machine, rx));
    Ok(())
}

/// Checks that this node can take the tree in, and makes its streams.
fn accept(
    node: &Node,
    id: MigrationId,
    row: &ProcessView,
    inbox: super::registry::Inbox<TargetEvent>,
) -> Result<Streams> {
    let pm = node.local_procs()?;
    node.migrations.add_target(id, inbox)?;
    let streams = Streams::new().and_then(|s| {
        pm.begin_incoming(id.gpid, row.node, id.epoch)?;
        Ok(s)
    });
    if streams.is_err() {
        node.migrations.remove(id);
    }
    streams
}

/// Sends the source our reason on the data stream (the helper that would have did not start).
async fn tell_source(data: OwnedFd, key: [u8; 32], why: String) {
    let sent = tokio::task::spawn_blocking(move || {
        let mut w = FrameWriter::new(std::fs::File::from(data), &key, Direction::ToSource);
        w.send(Kind::Failed, why.as_bytes())
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!("could not tell the source why the migration failed");
    }
}

/// One migration to here.
struct Run {
    d: Driver<TargetEvent>,
    row: ProcessView,
    /// Our ends of the tree's streams, until its record takes them.
    ours: Option<[OwnedFd; 3]>,
    release_ordered: bool,
}

impl Side for Run {
    type M = Target;
    type E = TargetEvent;

    fn driver(&mut self) -> &mut Driver<TargetEvent> {
        &mut self.d
    }

    async fn command(&mut self, cmd: TargetCmd) -> Option<TargetEvent> {
        self.carry_out(cmd).await
    }

    fn report(&mut self, r: Report) -> Option<TargetEvent> {
        Some(match r {
            Report::Held { root, .. } if root == self.gpid() => TargetEvent::Prepared,
            Report::Released => TargetEvent::Released,
            Report::Failed(why) if self.release_ordered => TargetEvent::ReleaseFailed(why),
            Report::Failed(why) => TargetEvent::CopyFailed(why),
            other => TargetEvent::CopyFailed(format!("unexpected report {other:?}")),
        })
    }

    async fn helper_gone(&mut self, m: &Target) -> Option<TargetEvent> {
        (!m.done()).then(|| TargetEvent::CopyFailed("the restore helper ended".into()))
    }
}

impl Run {
    fn gpid(&self) -> i32 {
        self.d.id.gpid
    }

    async fn carry_out(&mut self, cmd: TargetCmd) -> Option<TargetEvent> {
        let gpid = self.gpid();
        let node = self.d.node.clone();
        let pm = match node.local_procs() {
            Ok(pm) => pm,
            Err(e) => return Some(TargetEvent::CopyFailed(format!("{e:#}"))),
        };
        match cmd {
            TargetCmd::TakeIn => {
                let taken = match self.ours.take() {
                    Some(ours) => pm.take_in(gpid, self.row.uid, ours),
                    None => Err(anyhow::anyhow!("the tree's streams are gone")),
                };
                return Some(match taken {
                    Ok(()) => TargetEvent::TakenIn,
                    Err(e) => TargetEvent::TakeInFailed(format!("{e:#}")),
                });
            }
            TargetCmd::Announce => {
                let _ = self.d.order(&Order::Announce).await;
            }
            TargetCmd::Feed(input) => {
                let n = input.bytes.len();
                match pm.feed_input(gpid, input) {
                    Ok(()) => tracing::info!(gpid, bytes = n, "unread input taken over"),
                    Err(e) => {
                        tracing::warn!(gpid, bytes = n, error = %format!("{e:#}"), "input from the source lost")
                    }
                }
            }
            TargetCmd::Release => {
                self.release_ordered = true;
                if let Err(e) = self.d.order(&Order::Release).await {
                    return Some(TargetEvent::ReleaseFailed(format!("{e:#}")));
                }
            }
            TargetCmd::Discard(why) => {
                if self.d.order(&Order::Discard(why)).await.is_err() {
                    // a helper that is gone let what it held go: it is killed here
                    pm.kill_tree(gpid).await;
                }
            }
            TargetCmd::Send(msg) => self.d.send(msg, TargetEvent::Answer),
            TargetCmd::Reply(msg) => self.d.reply(msg),
            TargetCmd::Schedule { timer, after } => {
                self.d.schedule(after, TargetEvent::Timer(timer))
            }
            TargetCmd::Finish(outcome) => self.finish(outcome),
        }
        None
    }

    /// Records how it ended here: the tree runs here, or nothing of it is left here (the
    /// process is the source's again, or lost with it: this node remembers it there).
    fn finish(&mut self, outcome: TargetOutcome) {
        let gpid = self.gpid();
        let from = self.d.peer;
        let Ok(pm) = self.d.node.local_procs() else {
            return;
        };
        let why = match outcome {
            TargetOutcome::Running => {
                if let Err(e) = pm.arrived(gpid) {
                    tracing::warn!(gpid, error = %format!("{e:#}"), "arrived, but not recorded");
                }
                return;
            }
            TargetOutcome::Discarded(why) => {
                tracing::warn!(gpid, %from, %why, "incoming migration discarded");
                why
            }
            TargetOutcome::Lost(node) => {
                tracing::warn!(gpid, %node, "held process discarded: its source stayed down");
                format!("process {gpid} is lost with node {node}")
            }
        };
        pm.discard_incoming(gpid, &why);
        self.d.node.directory().insert(gpid, self.row.clone());
    }
}
