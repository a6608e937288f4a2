//! The RPC server: other daemons connect over TCP, open TLS with node certificates of the
//! cluster CA (see `ssi_core::wire`), then send requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use ssi_core::gossip::RateLimited;
use ssi_core::limits::{AcceptBackoff, ConnLimits};
use ssi_core::membership::MemberRecord;
use ssi_core::process::{Caller, Output, RunSpec};
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::wire::{Accepted, SecureReceiver, SecureSender, SecureStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

use crate::ft;
use crate::migration;
use crate::node::Node;
use crate::procman::ProcMan;
use crate::route;
use crate::sched::ops::{self as sched_ops, SchedOp};
use crate::session::{follow_local, InputSource, Leg};

/// Accepts daemon connections forever, at most `limits.rpc_connections` at once.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    // Anything a remote peer can trigger is rate-limited in the log.
    let refusals = Arc::new(Mutex::new(RateLimited::new(Duration::from_secs(10))));
    let caps = ConnLimits::new(node.config.limits.rpc_connections, 1);
    let mut backoff = AcceptBackoff::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(e) => {
                let pause = backoff.pause(&e);
                if let Some(held) = refusals.lock().await.admit() {
                    tracing::warn!(error = %e, held_back = held, ?pause, "rpc accept failed");
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        // Peers are not local users: counted in all only.
        let permit = match caps.admit(None) {
            Ok(p) => p,
            Err(refusal) => {
                if let Some(held) = refusals.lock().await.admit() {
                    tracing::warn!(%peer, held_back = held, "rpc connection refused: {refusal}");
                }
                continue;
            }
        };
        stream.set_nodelay(true).ok();
        let node = node.clone();
        let refusals = refusals.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(&node, stream, peer).await {
                let mut limit = refusals.lock().await;
                if let Some(held) = limit.admit() {
                    tracing::warn!(%peer, error = %format!("{e:#}"), held_back = held, "rpc connection refused or failed");
                }
            }
            drop(permit);
        });
    }
}

async fn connection(node: &Arc<Node>, stream: TcpStream, peer: SocketAddr) -> Result<()> {
    let mut conn = match SecureStream::accept(stream, &node.tls, peer.to_string()).await? {
        Accepted::Node(conn) => conn,
        Accepted::Enroll(conn) => return crate::enroll::serve(&node.config, conn, peer).await,
    };
    let idle = node.config.limits.idle_timeout;
    loop {
        // A peer that holds a connection open without asking anything gives it back.
        let Ok(next) = tokio::time::timeout(idle, conn.recv::<RpcRequest>()).await else {
            return Ok(());
        };
        let Some(req) = next? else {
            return Ok(());
        };
        let resp = match req {
            RpcRequest::Spawn { spec, caller } => return spawn(node, spec, caller, conn).await,
            RpcRequest::Attach {
                gpid,
                caller,
                input,
            } => return attach(node, gpid, caller, input, conn).await,
            RpcRequest::MigrateIn { id, row } => {
                return migration::target::migrate_in(node, id, row, conn).await
            }
            RpcRequest::Migration { id, msg } => {
                let run = node.gossip.identity().await?.gen;
                RpcResponse::Migration(node.migrations.deliver(id, msg, run).await)
            }
            RpcRequest::Join { identity, name } => admit(node, identity, &name, peer).await,
            other => answer(node, other).await,
        };
        conn.send(&resp).await?;
    }
}

/// Answers a request that is one question and one answer.
async fn answer(node: &Arc<Node>, req: RpcRequest) -> RpcResponse {
    match req {
        RpcRequest::Migrate {
            gpid,
            to,
            rounds,
            caller,
        } => match route::migrate_here(node, gpid, to, rounds, &caller).await {
            Ok(report) => RpcResponse::Migrated(report),
            Err(e) => error(e),
        },
        RpcRequest::Checkpoint {
            gpid,
            dir,
            leave_running,
            caller,
        } => match route::checkpoint_here(node, gpid, &dir, leave_running, &caller).await {
            Ok((pids, page_bytes)) => RpcResponse::Checkpointed { pids, page_bytes },
            Err(e) => error(e),
        },
        RpcRequest::Restart { dir, caller } => {
            match migration::checkpoint::restart(node, &dir, &caller).await {
                Ok(gpid) => RpcResponse::Restored {
                    gpid,
                    pids: vec![gpid],
                    micros: 0,
                },
                Err(e) => error(e),
            }
        }
        RpcRequest::FtRestart { gpid, epoch } => match ft::restart_here(node, gpid, epoch).await {
            Ok(gpid) => RpcResponse::Restored {
                gpid,
                pids: vec![gpid],
                micros: 0,
            },
            Err(e) => error(e),
        },
        RpcRequest::SchedShow => sched(node, SchedOp::Show).await,
        RpcRequest::SchedSet { policy, params } => sched(node, SchedOp::Set(policy, params)).await,
        RpcRequest::SchedBalance => sched(node, SchedOp::Balance).await,
        RpcRequest::Ps => RpcResponse::Processes {
            hosted: node.procs.as_ref().map(|pm| pm.ps()).unwrap_or_default(),
            remembered: node.directory().values().cloned().collect(),
        },
        RpcRequest::ForgetLost { gpids } => {
            node.directory().retain(|g, _| !gpids.contains(g));
            RpcResponse::Done
        }
        RpcRequest::Kill { gpid, sig, caller } => {
            match route::kill_here(node, gpid, sig, &caller).await {
                Ok(()) => RpcResponse::Done,
                Err(e) => error(e),
            }
        }
        RpcRequest::Input(_) => error(anyhow::anyhow!("input outside of a session")),
        RpcRequest::Grid(bytes) => super::grid::serve_rpc(node, &bytes).await,
        RpcRequest::Join { .. }
        | RpcRequest::Spawn { .. }
        | RpcRequest::Attach { .. }
        | RpcRequest::MigrateIn { .. }
        | RpcRequest::Migration { .. } => error(anyhow::anyhow!("not a one-answer request")),
    }
}

async fn sched(node: &Arc<Node>, op: SchedOp) -> RpcResponse {
    match sched_ops::local(node, &op).await {
        Ok(status) => RpcResponse::Sched(status),
        Err(e) => error(e),
    }
}

fn error(e: anyhow::Error) -> RpcResponse {
    RpcResponse::Error {
        message: format!("{e:#}"),
    }
}

/// Starts a process for a remote home and serves its session.
async fn spawn(
    node: &Arc<Node>,
    spec: RunSpec,
    caller: Caller,
    mut conn: SecureStream<TcpStream>,
) -> Result<()> {
    let pm = match node.local_procs() {
        Ok(pm) => pm,
        Err(e) => return Ok(conn.send(&error(e)).await?),
    };
    let (tx, rx) = mpsc::channel(8);
    let follower = (!spec.detach).then_some(tx);
    match pm.spawn(&spec, &caller, follower).await? {
        Ok(gpid) => {
            node.metrics.launched();
            node.metrics.launched();
            if let Some(f) = spec.ft {
                ft::protect(node, gpid, caller.uid, f);
            }
            conn.send(&RpcResponse::Started { gpid }).await?;
            if spec.detach {
                return Ok(());
            }
            let (tx, rx_in) = conn.split();
            follow_remote(pm, gpid, rx, rx_in, tx, true).await
        }
        Err(f) => Ok(conn
            .send(&RpcResponse::SpawnFailed {
                reason: f.reason,
                errno: f.errno,
            })
            .await?),
    }
}

/// Streams the output of a hosted process to a remote home.
async fn attach(
    node: &Node,
    gpid: i32,
    caller: Caller,
    input: bool,
    mut conn: SecureStream<TcpStream>,
) -> Result<()> {
    let pm = match node.local_procs() {
        Ok(pm) => pm,
        Err(e) => return Ok(conn.send(&error(e)).await?),
    };
    match pm.attach(gpid, &caller).await {
        Ok(rx) => {
            let (tx, rx_in) = conn.split();
            follow_remote(pm, gpid, rx, rx_in, tx, input).await
        }
        Err(e) => Ok(conn.send(&error(e)).await?),
    }
}

/// How long the source of a move waits for a home to close its side of a session.
const FENCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Follows a process hosted here for a session whose home is another node. When the process
/// moves away, the home closes its side once it knows; the input it sent that the process
/// could no longer take goes back to it (`Undelivered`), in order, to be sent where the
/// process went before anything newer.
async fn follow_remote(
    pm: &ProcMan,
    gpid: i32,
    outputs: mpsc::Receiver<Output>,
    mut source: SecureReceiver<TcpStream>,
    mut sink: SecureSender<TcpStream>,
    input: bool,
) -> Result<()> {
    let mut undelivered = Vec::new();
    let leg = follow_local(
        pm,
        gpid,
        outputs,
        &mut source,
        &mut sink,
        input,
        &mut undelivered,
    )
    .await?;
    if !matches!(leg, Leg::Moved(_)) {
        return Ok(());
    }
    let rest = tokio::time::timeout(FENCE_TIMEOUT, async {
        while let Ok(Some(i)) = source.next_input().await {
            undelivered.push(i);
        }
    })
    .await;
    if rest.is_err() {
        tracing::warn!(
            gpid,
            "the home of a moved process did not close its side in time"
        );
    }
    if input {
        sink.send(&RpcResponse::Undelivered {
            inputs: undelivered,
        })
        .await?;
    }
    Ok(())
}

/// Lets a node in unless its id is held by another live node.
async fn admit(
    node: &Node,
    joiner: ssi_core::NodeIdentity,
    name: &str,
    peer: SocketAddr,
) -> RpcResponse {
    let holder = match node.gossip.active_identity(joiner.id).await {
        Ok(h) => h,
        Err(e) => return error(e.into()),
    };
    if let Some(holder) = holder {
        // The same address means the same node restarted (its old run cannot hold the port).
        if holder.addr != joiner.addr {
            let reason = format!(
                "node id {} is already alive at {} (gen {}); {} at {} must use another id",
                joiner.id, holder.addr, holder.gen, name, joiner.addr
            );
            tracing::warn!(%peer, "refused join: {reason}");
            return RpcResponse::JoinRefused { reason };
        }
    }
    let answer = async {
        let seed = node.gossip.identity().await?;
        let members = node.gossip.snapshot().await?;
        node.gossip
            .admit(MemberRecord {
                identity: joiner.clone(),
                incarnation: 0,
                active: true,
                suspect: false,
            })
            .await?;
        Ok::<_, ssi_core::Error>(RpcResponse::JoinAccepted { seed, members })
    };
    match answer.await {
        Ok(r) => {
            tracing::info!(node = %joiner.id, %name, addr = %joiner.addr, "admitted joining node");
            r
        }
        Err(e) => error(e.into()),
    }
}
