//! The shared file system in the daemon: starts the DFS service and mounts it when the
//! `[dfs]` table says so, feeds it the membership view, answers `ssi dfs`, and unmounts when
//! the daemon stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use dfs::fuse::{mount, Fs};
use dfs::net::PORT_OFFSET;
use dfs::service::{Dfs, Member, Options};
use ssi_core::config::DfsMode;
use ssi_core::control::ControlResponse;
use tokio::sync::watch;

use super::Node;

/// How often the DFS hears which nodes are alive.
const VIEW_PERIOD: Duration = Duration::from_millis(500);

/// A running DFS: its mount, to be stopped with the daemon.
#[derive(Debug)]
pub struct Running {
    dfs: Arc<Dfs>,
    session: fuser::BackgroundSession,
}

fn dfs_addr(addr: SocketAddr) -> Result<SocketAddr> {
    let port = addr
        .port()
        .checked_add(PORT_OFFSET)
        .with_context(|| format!("port {} leaves no room for the dfs service", addr.port()))?;
    Ok(SocketAddr::new(addr.ip(), port))
}

/// Starts the DFS service and mounts it, if the configuration asks for it.
pub async fn start(node: Arc<Node>) -> Result<Option<Running>> {
    let cfg = &node.config.dfs;
    if cfg.mode == DfsMode::Off {
        return Ok(None);
    }
    let (tx, rx) = watch::channel(Vec::new());
    tokio::spawn(feed_view(node.clone(), tx));
    let opts = Options {
        me: node.config.id.0,
        data_dir: cfg.data_dir.clone(),
        listen: dfs_addr(node.config.listen)?,
        advertise: dfs_addr(node.config.advertise)?,
        replicas: cfg.replicas as usize,
        voters: cfg.voters as usize,
    };
    let dfs = Dfs::start(opts, node.tls.clone(), rx)
        .await
        .context("cannot start the shared file system")?;
    let fs = Fs::new(dfs.clone(), tokio::runtime::Handle::current());
    let session = mount::mount(fs, &cfg.mount, cfg.threads as usize).with_context(|| {
        format!(
            "cannot mount the shared file system at {}",
            cfg.mount.display()
        )
    })?;
    if node.dfs.set(dfs.clone()).is_err() {
        bail!("the shared file system was started twice");
    }
    tracing::info!(mount = %cfg.mount.display(), data = %cfg.data_dir.display(), "dfs mounted");
    Ok(Some(Running { dfs, session }))
}

/// Unmounts and stops the raft member.
pub async fn stop(running: Option<Running>) {
    let Some(r) = running else { return };
    // Unmounting waits for the FUSE threads, which may be waiting for this runtime.
    let unmounted = tokio::task::spawn_blocking(move || r.session.umount_and_join()).await;
    match unmounted {
        Ok(Ok(())) => tracing::info!("dfs unmounted"),
        Ok(Err(e)) => tracing::warn!(error = %e, "dfs unmount failed"),
        Err(e) => tracing::warn!(error = %e, "dfs unmount task failed"),
    }
    r.dfs.shutdown().await;
}

/// Keeps the DFS's view of the alive nodes up to date from the membership.
async fn feed_view(node: Arc<Node>, tx: watch::Sender<Vec<Member>>) {
    loop {
        if let Ok(view) = node.gossip.view().await {
            let members = view
                .iter()
                .filter_map(|v| {
                    let addr = dfs_addr(v.addr.parse().ok()?).ok()?;
                    Some(Member {
                        id: v.id.0,
                        addr,
                        alive: v.state.is_active(),
                    })
                })
                .collect();
            if tx.send(members).is_err() {
                return;
            }
        }
        tokio::time::sleep(VIEW_PERIOD).await;
    }
}

/// Directory of the shared file system holding the checkpoints made without `--dir`.
const CHECKPOINTS: &str = "checkpoints";

/// A new image directory for a checkpoint of `gpid` made without `--dir`:
/// `MOUNT/checkpoints/GPID-SECONDS` on the shared file system, which every node mounts at the
/// same path (so `ssi restart` finds it on any node). `checkpoints/` is made here, like
/// `/tmp` (everyone may add, only the owner may remove); the checkpoint itself creates the
/// image directory as the caller.
pub fn checkpoint_dir(node: &Node, gpid: i32) -> Result<String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    running(node).context("give the image directory with --dir")?;
    let parent = node.config.dfs.mount.join(CHECKPOINTS);
    match std::fs::symlink_metadata(&parent) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => bail!("{} is not a directory", parent.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let made = std::fs::DirBuilder::new().mode(0o1777).create(&parent);
            match made {
                Ok(()) => {
                    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o1777))
                        .with_context(|| format!("cannot open up {}", parent.display()))?
                }
                // Another request made it meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", parent.display()))
                }
            }
        }
        Err(e) => return Err(e).with_context(|| format!("cannot look at {}", parent.display())),
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(parent.join(format!("{gpid}-{secs}")).display().to_string())
}

fn running(node: &Node) -> Result<&Arc<Dfs>> {
    node.dfs.get().with_context(|| {
        format!(
            "node {} does not serve the shared file system ([dfs] mode is off)",
            node.config.id
        )
    })
}

/// Answers `ssi dfs status`.
pub async fn status(node: &Node) -> Result<ControlResponse> {
    let mut status = running(node)?.status().await?;
    status.mount = node.config.dfs.mount.display().to_string();
    Ok(ControlResponse::Dfs(serde_json::to_string(&status)?))
}

/// Answers `ssi dfs scrub`.
pub async fn scrub(node: &Node) -> Result<ControlResponse> {
    let report = running(node)?.scrub().await?;
    Ok(ControlResponse::Dfs(serde_json::to_string(&report)?))
}
