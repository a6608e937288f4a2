//! What driving one migration machine takes, on either side: its inbox, messages to the other
//! daemon and their answers, timers, news of the other node from membership, the answer to
//! the message being served, and the helper's orders and reports.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use migrate::control::{Order, Report};
use migrate::protocol::{Machine, MigrationId, MigrationMsg};
use ssi_core::membership::MemberEvent;
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::NodeId;
use tokio::sync::{mpsc, oneshot};

use super::helper::{Orders, Reports};
use super::registry::{Inbox, Input};
use crate::node::Node;
use crate::peer;

/// How long a machine that is done goes on answering the other daemon (a late or repeated
/// message) before it is forgotten.
const KEEP: Duration = Duration::from_secs(600);

/// What one side's runtime makes of the machine's commands and the helper's reports.
pub trait Side: Send + 'static {
    /// Its machine.
    type M: Machine<Event = Self::E> + Send;
    /// The machine's events.
    type E: Send + 'static;
    /// The shared part of the runtime.
    fn driver(&mut self) -> &mut Driver<Self::E>;
    /// Carries out one command; what comes of it at once, if anything.
    fn command(
        &mut self,
        cmd: <Self::M as Machine>::Command,
    ) -> impl Future<Output = Option<Self::E>> + Send;
    /// What a report of the helper means for the machine.
    fn report(&mut self, r: Report) -> Option<Self::E>;
    /// What the helper going away means for the machine.
    fn helper_gone(&mut self, m: &Self::M) -> impl Future<Output = Option<Self::E>> + Send;
}

/// Drives `m` for `side` with the inputs of `rx` until it is done (and has answered the
/// other daemon for [`KEEP`] more).
pub async fn drive<S: Side>(mut side: S, mut m: S::M, mut rx: mpsc::Receiver<Input<S::E>>) {
    execute(&mut side, &mut m).await;
    while let Some(input) = Driver::next(&mut rx, m.done()).await {
        let ev = match input {
            Input::Event(ev) => Some(ev),
            Input::Message(msg, reply) => {
                side.driver().serving(reply);
                Some(S::M::received(msg))
            }
            Input::Report(r) => side.report(r),
            Input::HelperGone => side.helper_gone(&m).await,
        };
        if let Some(ev) = ev {
            m.handle(ev);
        }
        execute(&mut side, &mut m).await;
    }
    side.driver().finish();
}

/// Carries out what the machine asks, feeding back what comes of it at once.
async fn execute<S: Side>(side: &mut S, m: &mut S::M) {
    loop {
        let cmds = m.drain();
        if cmds.is_empty() {
            return;
        }
        for cmd in cmds {
            if let Some(ev) = side.command(cmd).await {
                m.handle(ev);
            }
        }
    }
}

/// One machine's runtime (see the module doc).
#[derive(Debug)]
pub struct Driver<E> {
    /// The node.
    pub node: Arc<Node>,
    /// The attempt.
    pub id: MigrationId,
    /// The other node.
    pub peer: NodeId,
    inbox: Inbox<E>,
    /// Where the answer to the message being served goes.
    reply: Option<oneshot::Sender<Option<MigrationMsg>>>,
    orders: Option<Orders>,
}

impl<E: Send + 'static> Driver<E> {
    /// A runtime for `id` with `peer`, whose inputs come to `inbox`.
    pub fn new(node: Arc<Node>, id: MigrationId, peer: NodeId, inbox: Inbox<E>) -> Driver<E> {
        Driver {
            node,
            id,
            peer,
            inbox,
            reply: None,
            orders: None,
        }
    }

    /// The next input, or `None` when it is over: waits as long as it takes while the machine
    /// is busy, [`KEEP`] at most once it is `done`.
    async fn next(rx: &mut mpsc::Receiver<Input<E>>, done: bool) -> Option<Input<E>> {
        if done {
            tokio::time::timeout(KEEP, rx.recv()).await.ok().flatten()
        } else {
            rx.recv().await
        }
    }

    /// Sends `msg` to the other daemon; its answer (or `None`) comes back as `answer(..)`.
    pub fn send(&self, msg: MigrationMsg, answer: fn(Option<MigrationMsg>) -> E) {
        let (node, peer, inbox) = (self.node.clone(), self.peer, self.inbox.clone());
        let req = RpcRequest::Migration { id: self.id, msg };
        tokio::spawn(async move {
            let got = match peer::ask(&node, peer, &req).await {
                Ok(RpcResponse::Migration(m)) => m,
                Ok(other) => {
                    tracing::warn!(%peer, "unexpected answer to a migration message: {other:?}");
                    None
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %format!("{e:#}"), "migration message not answered");
                    None
                }
            };
            let _ = inbox.send(Input::Event(answer(got))).await;
        });
    }

    /// Feeds `ev` back after `after`.
    pub fn schedule(&self, after: Duration, ev: E) {
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = inbox.send(Input::Event(ev)).await;
        });
    }

    /// Feeds `down` when membership shows the other node dead or gone, `up` when it is back,
    /// for as long as the machine runs.
    pub fn watch_peer(&self, down: fn() -> E, up: fn() -> E) {
        let (node, peer, inbox) = (self.node.clone(), self.peer, self.inbox.clone());
        let mut events = node.gossip.subscribe();
        tokio::spawn(async move {
            let active = node.gossip.active_identity(peer).await;
            if matches!(active, Ok(None)) && inbox.send(Input::Event(down())).await.is_err() {
                return;
            }
            loop {
                let ev = match events.recv().await {
                    Ok(MemberEvent::Dead(n) | MemberEvent::Left(n)) if n.id == peer => down(),
                    Ok(MemberEvent::Up(n) | MemberEvent::Replaced { new: n, .. })
                        if n.id == peer =>
                    {
                        up()
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                if inbox.send(Input::Event(ev)).await.is_err() {
                    return;
                }
            }
        });
    }

    /// The helper runs: its reports go to the inbox, then `HelperGone`.
    pub fn helper_started(&mut self, orders: Orders, mut reports: Reports) {
        self.orders = Some(orders);
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            loop {
                let next = match reports.next().await {
                    Ok(Some(r)) => Input::Report(r),
                    Ok(None) => Input::HelperGone,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "bad report from a migration helper");
                        Input::HelperGone
                    }
                };
                let gone = matches!(next, Input::HelperGone);
                if inbox.send(next).await.is_err() || gone {
                    return;
                }
            }
        });
    }

    /// Gives the helper an order. One the helper answers with a report (all but `Announce`)
    /// has a deadline: a helper silent for `limits.helper_timeout` after it is killed, and the
    /// machine hears it is gone.
    pub async fn order(&mut self, o: &Order) -> Result<()> {
        let orders = self
            .orders
            .as_mut()
            .ok_or_else(|| anyhow!("no helper runs"))?;
        let seen = orders.reports_seen();
        orders.order(o).await?;
        if !matches!(o, Order::Announce) {
            let timeout = self.node.config.limits.helper_timeout;
            orders
                .helper()
                .deadline(&self.node, seen, timeout, format!("{o:?}"));
        }
        Ok(())
    }

    /// A message from the other daemon is being served: its answer goes to `to` (an earlier
    /// one still waiting gets none).
    pub fn serving(&mut self, to: oneshot::Sender<Option<MigrationMsg>>) {
        self.reply = Some(to);
    }

    /// Answers the message being served.
    pub fn reply(&mut self, msg: MigrationMsg) {
        if let Some(to) = self.reply.take() {
            let _ = to.send(Some(msg));
        }
    }

    /// Forgets the machine here.
    fn finish(&self) {
        self.node.migrations.remove(self.id);
    }
}
