//! The source side as the daemon runs it: a task drives a [`Source`] machine, carries out its
//! commands (the offer, orders to the helper, the input hand-over, messages to the target
//! daemon) and feeds it what happens; the user hears the outcome as soon as it is known, while
//! the task goes on answering the target for a while.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use migrate::control::{Job, Order, Report};
use migrate::protocol::{
    Handover, MigrationId, Outcome, Policy, Source, SourceCmd, SourceEvent, Timeouts,
};
use ssi_core::process::{Caller, MigrationReport, ProcessView};
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::NodeId;
use tokio::sync::{mpsc, oneshot};

use super::driver::{self, Driver, Side};
use super::helper;
use super::registry::{Inbox, Input};
use super::stream;
use crate::node::Node;
use crate::peer;
use crate::procman::{End, ProcMan, Taken};

/// Moves `gpid`, hosted here, to node `to`; the report once it runs there. If it cannot move,
/// the error says so in words: it runs on at the source, it ended, or it is lost with the
/// target.
pub async fn migrate_out(
    node: &Arc<Node>,
    gpid: i32,
    to: NodeId,
    rounds: Option<u32>,
    caller: &Caller,
) -> Result<MigrationReport> {
    let me = node.config.id;
    let pm = node.local_procs()?;
    pm.check_access(gpid, caller, true)?;
    if to == me {
        bail!("process {gpid} already runs on node {to}");
    }
    let row = pm
        .row(gpid)
        .with_context(|| format!("process {gpid} has just ended"))?;
    let run = node.gossip.identity().await?.gen;
    let epoch = pm.begin_leaving(gpid, to)?;
    let id = MigrationId {
        gpid,
        epoch,
        source_run: run,
    };
    let mut policy = Policy::default();
    if let Some(r) = rounds {
        policy.max_rounds = r;
    }
    let (inbox, rx) = mpsc::channel(64);
    node.migrations.add_source(id, inbox.clone());
    let (told, outcome) = oneshot::channel();
    let run = Run {
        d: Driver::new(node.clone(), id, to, inbox.clone()),
        row,
        report: MigrationReport::new(gpid, me, to),
        t0: Instant::now(),
        frozen_at: None,
        killed: false,
        ended: false,
        told: Some(told),
    };
    run.d
        .watch_peer(|| SourceEvent::TargetDown, || SourceEvent::TargetUp);
    watch_end(&pm, gpid, inbox);
    let machine = Source::new(id, to, policy, Timeouts::default());
    tokio::spawn(driver::drive(run, machine, rx));
    outcome
        .await
        .map_err(|_| anyhow!("the migration of {gpid} ended without an outcome"))?
}

/// Feeds `TreeEnded` once the tree's end here is told to its followers (the user killed it,
/// or it exited, during the move; after a move the machine makes nothing of it), while the
/// machine runs.
fn watch_end(pm: &ProcMan, gpid: i32, inbox: Inbox<SourceEvent>) {
    let Some(mut end) = pm.watch_end(gpid) else {
        return;
    };
    tokio::spawn(async move {
        let ended = tokio::select! {
            ended = async { end.wait_for(Option::is_some).await.is_ok() } => ended,
            () = inbox.closed() => false,
        };
        if ended {
            let _ = inbox.send(Input::Event(SourceEvent::TreeEnded)).await;
        }
    });
}

/// How long a source waits, after the move, for its dead copy to be reaped before it says
/// the process moved (so that it can come back at once).
const COPY_GONE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// One migration away from here.
struct Run {
    d: Driver<SourceEvent>,
    row: ProcessView,
    report: MigrationReport,
    t0: Instant,
    frozen_at: Option<Instant>,
    /// The frozen copy is known dead.
    killed: bool,
    /// The move is over here (the process's state left `leaving`).
    ended: bool,
    told: Option<oneshot::Sender<Result<MigrationReport>>>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(told) = self.told.take() {
            let _ = told.send(Err(anyhow!("the migration stopped without an outcome")));
        }
    }
}

impl Side for Run {
    type M = Source;
    type E = SourceEvent;

    fn driver(&mut self) -> &mut Driver<SourceEvent> {
        &mut self.d
    }

    async fn command(&mut self, cmd: SourceCmd) -> Option<SourceEvent> {
        self.carry_out(cmd).await
    }

    /// What a report of the helper means for the machine (the figures go to the report).
    fn report(&mut self, r: Report) -> Option<SourceEvent> {
        self.reported(r)
    }

    /// The helper is gone. If the copy was to die and the helper did not say it did, the
    /// kernel let the frozen copy go when its tracer went: it is killed here. Otherwise the
    /// copy runs on (a frozen one was let go the same way).
    async fn helper_gone(&mut self, m: &Source) -> Option<SourceEvent> {
        if m.committed() && !self.killed {
            return Some(self.kill_copy().await);
        }
        Some(SourceEvent::CopyFailed("the migration helper ended".into()))
    }
}

impl Run {
    fn pm(&self) -> Result<&ProcMan> {
        self.d.node.local_procs()
    }

    fn gpid(&self) -> i32 {
        self.d.id.gpid
    }

    async fn carry_out(&mut self, cmd: SourceCmd) -> Option<SourceEvent> {
        match cmd {
            SourceCmd::Offer => return Some(self.offer().await),
            SourceCmd::Round => self.order(Order::Round).await,
            SourceCmd::Freeze => self.order(Order::Freeze).await,
            SourceCmd::Verdict(v) => {
                let commit = v == migrate::Verdict::Commit;
                if self.d.order(&Order::Verdict(v)).await.is_err() && commit {
                    return Some(self.kill_copy().await);
                }
            }
            SourceCmd::TakeInput => return Some(self.take_input()),
            SourceCmd::Send(msg) => self.d.send(msg, SourceEvent::Answer),
            SourceCmd::Reply(msg) => self.d.reply(msg),
            SourceCmd::Schedule { timer, after } => {
                self.d.schedule(after, SourceEvent::Timer(timer))
            }
            SourceCmd::ForwardSignals => self.forward_signals(),
            SourceCmd::Finish(outcome) => self.finish(outcome).await,
        }
        None
    }

    async fn order(&mut self, o: Order) {
        // a helper that is gone says so (`HelperGone`)
        let _ = self.d.order(&o).await;
    }

    /// Opens the data stream to the target and starts the helper on it.
    async fn offer(&mut self) -> SourceEvent {
        match self.try_offer().await {
            Ok(()) => SourceEvent::Accepted,
            Err(e) => SourceEvent::Refused(format!("{e:#}")),
        }
    }

    async fn try_offer(&mut self) -> Result<()> {
        let (node, to) = (self.d.node.clone(), self.d.peer);
        let mut rpc = peer::connect(&node, to).await?;
        rpc.send(&RpcRequest::MigrateIn {
            id: self.d.id,
            row: self.row.clone(),
        })
        .await?;
        match tokio::time::timeout(peer::ANSWER_TIMEOUT, rpc.recv::<RpcResponse>()).await {
            Ok(Ok(Some(RpcResponse::Ready))) => {}
            Ok(Ok(Some(RpcResponse::Error { message }))) => bail!("node {to}: {message}"),
            Ok(Ok(other)) => bail!("node {to}: unexpected answer {other:?}"),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => bail!("node {to} did not answer the offer"),
        }
        let (data, key) = stream::data_stream(rpc)?;
        let job = Job::MigrateOut {
            pid: self.gpid(),
            key,
        };
        let (orders, reports) = helper::start(self.pm()?, &job, Some(data), None)
            .await
            .context("cannot start the migration helper")?;
        self.d.helper_started(orders, reports);
        Ok(())
    }

    fn reported(&mut self, r: Report) -> Option<SourceEvent> {
        Some(match r {
            Report::Round {
                page_bytes, sent, ..
            } => {
                self.report.rounds.push(page_bytes);
                self.report.bytes_sent = sent;
                SourceEvent::RoundSent(page_bytes)
            }
            Report::Frozen {
                page_bytes,
                micros,
                sent,
                pids,
            } => {
                self.report.final_page_bytes = page_bytes;
                self.report.bytes_sent = sent;
                self.report.pids = pids;
                self.frozen_at =
                    Instant::now().checked_sub(std::time::Duration::from_micros(micros));
                SourceEvent::Frozen
            }
            Report::TargetHolds { micros } => {
                self.report.restore_micros = micros;
                SourceEvent::Prepared
            }
            Report::NoAnswer(why) => SourceEvent::NoAnswer(why),
            Report::Killed => {
                self.killed = true;
                SourceEvent::Killed
            }
            Report::Failed(why) => SourceEvent::CopyFailed(why),
            other => SourceEvent::CopyFailed(format!("unexpected report {other:?}")),
        })
    }

    async fn kill_copy(&mut self) -> SourceEvent {
        if let Ok(pm) = self.d.node.local_procs() {
            pm.kill_tree(self.d.id.gpid).await;
        }
        self.killed = true;
        SourceEvent::Killed
    }

    /// The frozen copy's unread input, taken out; from here the process counts as moved here
    /// (its followers go to the target, and the node remembers it there). `TreeEnded` if it
    /// ended before (its followers were told so): then it must not run on the target.
    fn take_input(&mut self) -> SourceEvent {
        let gpid = self.gpid();
        let Ok(pm) = self.d.node.local_procs() else {
            return SourceEvent::InputTaken(Handover::default());
        };
        let input = match pm.commit_leaving(gpid) {
            Ok(Taken::Input(h)) => h,
            Ok(Taken::InputLeft(e, lost)) => {
                tracing::warn!(gpid, bytes = lost, error = %format!("{e:#}"), "input the process had not read stays behind");
                self.report.lost_input_bytes = lost;
                Handover::default()
            }
            Err(e) => {
                tracing::info!(gpid, error = %format!("{e:#}"), "the process ended before the commit");
                return SourceEvent::TreeEnded;
            }
        };
        let mut row = self.row.clone();
        row.node = self.d.peer;
        row.node_name = String::new();
        self.d.node.directory().insert(gpid, row);
        SourceEvent::InputTaken(input)
    }

    /// Sends to the target the signals sent here to processes of the tree while it moved (the
    /// copy that got them here is gone). Best effort: a failure is logged.
    fn forward_signals(&mut self) {
        let signals = self.end_here(Some(End::Moved(self.d.peer)));
        let (node, to, pids) = (self.d.node.clone(), self.d.peer, self.report.pids.clone());
        tokio::spawn(async move {
            for (gpid, sig, caller) in signals.into_iter().filter(|(g, _, _)| pids.contains(g)) {
                let req = RpcRequest::Kill { gpid, sig, caller };
                match peer::ask_done(&node, to, &req).await {
                    Ok(()) => {
                        tracing::info!(gpid, sig, %to, "signal sent during the migration passed on")
                    }
                    Err(e) => {
                        tracing::warn!(gpid, sig, %to, error = %format!("{e:#}"), "cannot pass on a signal sent during the migration")
                    }
                }
            }
        });
    }

    /// The process's state here leaves `leaving` (once): its copy here is gone (`gone`: what
    /// its followers learn), or it runs on.
    fn end_here(&mut self, gone: Option<End>) -> Vec<crate::procman::SentSignal> {
        if std::mem::replace(&mut self.ended, true) {
            return Vec::new();
        }
        match self.d.node.local_procs() {
            Ok(pm) => pm.end_leaving(self.gpid(), gone),
            Err(_) => Vec::new(),
        }
    }

    /// Tells the user, in words when it did not move.
    async fn finish(&mut self, outcome: Outcome) {
        let (gpid, me, to) = (self.gpid(), self.report.from, self.d.peer);
        let result = match outcome {
            Outcome::Moved => {
                let now = Instant::now();
                self.report.total_micros = self.t0.elapsed().as_micros() as u64;
                self.report.downtime_micros = self
                    .frozen_at
                    .map_or(0, |f| now.duration_since(f).as_micros() as u64);
                tracing::info!(gpid, %to, downtime_us = self.report.downtime_micros, bytes = self.report.bytes_sent, "migrated");
                if let Ok(pm) = self.pm() {
                    pm.wait_gone(gpid, COPY_GONE_WITHIN).await;
                }
                Ok(self.report.clone())
            }
            Outcome::Stayed(why) => {
                self.end_here(None);
                let holds = self.pm().is_ok_and(|pm| pm.holds(gpid));
                let now = if holds {
                    format!("it runs on at the source (node {me})")
                } else {
                    "it ended meanwhile".into()
                };
                tracing::warn!(gpid, %to, error = %why, "migration failed; {now}");
                Err(anyhow!(
                    "migration of {gpid} to node {to} failed: {why}; {now}"
                ))
            }
            Outcome::Ended => {
                self.end_here(None);
                Err(anyhow!(
                    "process {gpid} ended during its migration to node {to}"
                ))
            }
            Outcome::Lost(node) => {
                let why = format!("process {gpid} is lost with node {node}");
                self.end_here(Some(End::Discarded(why)));
                tracing::warn!(gpid, %node, "lost with its target");
                Err(anyhow!(
                    "process {gpid} is lost with node {node}: the node went down holding the only copy after the switch"
                ))
            }
        };
        if let Some(told) = self.told.take() {
            let _ = told.send(result);
        }
    }
}
