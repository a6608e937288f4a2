//! The control socket: answers the local `ssi` CLI.
//!
//! Anyone on the machine may connect (mode 0666): every request runs with the identity the
//! kernel gives for the connecting process (`SO_PEERCRED`), never one the client claims. A
//! user holds at most `limits.control_connections_per_user` connections and all users
//! `limits.control_connections`; a connection outside a session that sends no request for
//! `limits.idle_timeout` is closed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ssi_core::control::{ControlConn, ControlRequest, ControlResponse};
use ssi_core::gossip::RateLimited;
use ssi_core::limits::{AcceptBackoff, ConnLimits};
use ssi_core::process::{Caller, EXIT_SSI_ERROR};
use ssi_core::view::ClusterInfo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::node::Node;
use crate::sched::ops::{self as sched, SchedOp};
use crate::{route, session};

/// Binds the control socket at `path`. A socket file left by a dead daemon is replaced; one
/// that a live daemon answers on is not. Anyone may connect: each request runs with the
/// caller's own identity (from the socket's peer credentials), as for a local command.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another ssid is already running with control socket {}",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot bind control socket {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    Ok(listener)
}

/// Refused connections that still get their one-line answer at once; beyond, they are
/// closed without one (a flood of them must not hold descriptors).
const REFUSALS_ANSWERED: usize = 16;
/// How long a refused connection may take to send its request before it is closed.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Accepts CLI connections forever, within the connection caps.
pub async fn serve(node: Arc<Node>, listener: UnixListener) {
    let path = node.config.control_socket();
    let limits = &node.config.limits;
    let caps = ConnLimits::new(
        limits.control_connections,
        limits.control_connections_per_user,
    );
    let answering = Arc::new(Semaphore::new(REFUSALS_ANSWERED));
    let mut backoff = AcceptBackoff::default();
    let mut log = RateLimited::new(Duration::from_secs(10));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff.reset();
                stream
            }
            Err(e) => {
                let pause = backoff.pause(&e);
                if let Some(held) = log.admit() {
                    tracing::warn!(error = %e, held_back = held, ?pause, "control socket accept failed");
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let caller = match caller_of(&stream) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "control connection without credentials");
                continue;
            }
        };
        let permit = match caps.admit(Some(caller.uid)) {
            Ok(p) => p,
            Err(refusal) => {
                if let Some(held) = log.admit() {
                    tracing::warn!(
                        uid = caller.uid,
                        held_back = held,
                        "control connection refused: {refusal}"
                    );
                }
                if let Ok(slot) = answering.clone().try_acquire_owned() {
                    let path = path.clone();
                    tokio::spawn(async move {
                        refuse(stream, &path, &refusal.to_string()).await;
                        drop(slot);
                    });
                }
                continue;
            }
        };
        let node = node.clone();
        let path = path.clone();
        tokio::spawn(async move {
            if let Err(e) = session_of(&node, stream, caller, &path).await {
                tracing::debug!(error = %format!("{e:#}"), "control connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// Reads the request of a connection over the caps, then answers it with `why`.
async fn refuse(stream: UnixStream, path: &Path, why: &str) {
    let mut conn = ControlConn::from_stream(stream, path);
    if tokio::time::timeout(REFUSAL_WAIT, conn.recv::<ControlRequest>())
        .await
        .is_ok()
    {
        let _ = conn
            .send(&ControlResponse::Error {
                message: format!("ssid: {why}: try again later"),
                code: EXIT_SSI_ERROR,
            })
            .await;
    }
}

/// The identity of the process at the other end of the socket.
fn caller_of(stream: &UnixStream) -> Result<Caller> {
    let cred = stream
        .peer_cred()
        .context("cannot read the caller's credentials")?;
    use std::os::fd::AsFd;
    let groups =
        crate::sys::peer_groups(stream.as_fd()).context("cannot read the caller's groups")?;
    Ok(Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        groups,
    })
}

async fn session_of(
    node: &Arc<Node>,
    stream: UnixStream,
    caller: Caller,
    path: &Path,
) -> Result<()> {
    let mut conn = ControlConn::from_stream(stream, path);
    let idle = node.config.limits.idle_timeout;
    loop {
        let Ok(next) = tokio::time::timeout(idle, conn.recv::<ControlRequest>()).await else {
            tracing::debug!(uid = caller.uid, "control connection idle: closed");
            return Ok(());
        };
        let Some(req) = next? else {
            return Ok(());
        };
        let resp = match req {
            ControlRequest::Run(spec) => return session::run(node, spec, caller, conn).await,
            ControlRequest::Attach { gpid } => {
                return session::attach(node, gpid, caller, conn).await
            }
            ControlRequest::Restart {
                dir,
                node: on,
                detach,
            } => return session::restart(node, dir, on, detach, caller, conn).await,
            other => match answer(node, other, &caller).await {
                Ok(r) => r,
                Err(e) => ControlResponse::Error {
                    message: format!("{e:#}"),
                    code: EXIT_SSI_ERROR,
                },
            },
        };
        conn.send(&resp).await?;
    }
}

async fn answer(node: &Arc<Node>, req: ControlRequest, caller: &Caller) -> Result<ControlResponse> {
    Ok(match req {
        ControlRequest::Nodes => ControlResponse::Nodes(node.gossip.view().await?),
        ControlRequest::Info => ControlResponse::Info(ClusterInfo::sum(&node.gossip.view().await?)),
        ControlRequest::Ps => ControlResponse::Processes(route::ps(node, Some(caller)).await?),
        ControlRequest::Kill { gpid, sig } => {
            route::kill(node, gpid, sig, caller).await?;
            ControlResponse::Done
        }
        ControlRequest::Migrate { gpid, to, rounds } => {
            ControlResponse::Migrated(route::migrate(node, gpid, to, rounds, caller).await?)
        }
        ControlRequest::Checkpoint {
            gpid,
            dir,
            leave_running,
        } => {
            let dir = match dir {
                Some(d) => d,
                None => crate::dfs::checkpoint_dir(node, gpid)?,
            };
            let (pids, page_bytes) =
                route::checkpoint(node, gpid, dir.clone(), leave_running, caller).await?;
            ControlResponse::Checkpointed {
                dir,
                pids,
                page_bytes,
            }
        }
        ControlRequest::SchedShow => ControlResponse::Sched(sched::all(node, SchedOp::Show).await?),
        ControlRequest::SchedSet { policy, params } => {
            if caller.uid != 0 {
                bail!("changing the scheduling policy needs root");
            }
            ControlResponse::Sched(sched::all(node, SchedOp::Set(policy, params)).await?)
        }
        ControlRequest::SchedBalance => {
            ControlResponse::Sched(sched::all(node, SchedOp::Balance).await?)
        }
        ControlRequest::DfsStatus => super::dfs::status(node).await?,
        ControlRequest::DfsScrub => super::dfs::scrub(node).await?,
        ControlRequest::Grid(req) => super::grid::admin(node, req, caller).await?,
        ControlRequest::Input(_) => bail!("no process follows this connection"),
        ControlRequest::Run(_) | ControlRequest::Attach { .. } | ControlRequest::Restart { .. } => {
            bail!("a session request cannot be answered here")
        }
    })
}
