//! The control socket: answers the local `ssi` CLI.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ssi_core::control::{ControlConn, ControlRequest, ControlResponse};
use ssi_core::process::{Caller, EXIT_SSI_ERROR};
use ssi_core::view::ClusterInfo;
use tokio::net::{UnixListener, UnixStream};

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

/// Accepts CLI connections forever.
pub async fn serve(node: Arc<Node>, listener: UnixListener) {
    let path = node.config.control_socket();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let node = node.clone();
                let path = path.clone();
                tokio::spawn(async move {
                    if let Err(e) = session_of(&node, stream, &path).await {
                        tracing::debug!(error = %format!("{e:#}"), "control connection ended with an error");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
        }
    }
}

/// The identity of the process at the other end of the socket.
fn caller_of(stream: &UnixStream) -> Result<Caller> {
    let cred = stream
        .peer_cred()
        .context("cannot read the caller's credentials")?;
    let groups = cred
        .pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Groups:")).map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|g| g.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default();
    Ok(Caller {
        uid: cred.uid(),
        gid: cred.gid(),
        groups,
    })
}

async fn session_of(node: &Arc<Node>, stream: UnixStream, path: &Path) -> Result<()> {
    let caller = caller_of(&stream)?;
    let mut conn = ControlConn::from_stream(stream, path);
    while let Some(req) = conn.recv::<ControlRequest>().await? {
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
    Ok(())
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
            let (pids, page_bytes) =
                route::checkpoint(node, gpid, dir, leave_running, caller).await?;
            ControlResponse::Checkpointed { pids, page_bytes }
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
        ControlRequest::Input(_) => bail!("no process follows this connection"),
        ControlRequest::Run(_) | ControlRequest::Attach { .. } | ControlRequest::Restart { .. } => {
            bail!("a session request cannot be answered here")
        }
    })
}
