//! The control socket: answers the local `ssi` CLI.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ssi_core::control::{ControlConn, ControlRequest, ControlResponse};
use ssi_core::view::ClusterInfo;
use tokio::net::UnixListener;

use super::Node;

/// Binds the control socket at `path`, mode 0600. A socket file left by a dead daemon is
/// replaced; one that a live daemon answers on is not.
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
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
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
                let conn = ControlConn::from_stream(stream, &path);
                tokio::spawn(async move {
                    if let Err(e) = session(&node, conn).await {
                        tracing::debug!(error = %e, "control connection ended with an error");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
        }
    }
}

async fn session(node: &Node, mut conn: ControlConn) -> Result<()> {
    while let Some(req) = conn.recv::<ControlRequest>().await? {
        let resp = match answer(node, req).await {
            Ok(r) => r,
            Err(e) => ControlResponse::Error(format!("{e:#}")),
        };
        conn.send(&resp).await?;
    }
    Ok(())
}

async fn answer(node: &Node, req: ControlRequest) -> Result<ControlResponse> {
    Ok(match req {
        ControlRequest::Nodes => ControlResponse::Nodes(node.gossip.view().await?),
        ControlRequest::Info => ControlResponse::Info(ClusterInfo::sum(&node.gossip.view().await?)),
    })
}
