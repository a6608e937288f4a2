//! Cluster checkpoint and restart: a helper writes the tree of a process hosted here to a
//! directory, or restores a directory's image here; periodic checkpoints of fault-tolerant
//! trees (see `crate::ft`).

use std::path::Path;

use anyhow::{bail, Result};
use migrate::control::{Job, Report, User};
use ssi_core::process::Caller;

use super::helper;
use crate::node::Node;
use crate::procman::Streams;

/// The user a helper works for when `caller` is not root: it reaches files with their ids.
fn as_user(caller: &Caller) -> Option<User> {
    (caller.uid != 0).then(|| User {
        uid: caller.uid,
        gid: caller.gid,
        groups: caller.groups.clone(),
    })
}

/// What the images of this cluster are sealed with: a key derived from the cluster key, so
/// every node of the cluster seals and checks alike.
fn seal_key(node: &Node) -> [u8; 32] {
    node.key.derive(IMAGE_SEAL)
}

/// The purpose the image seal key is derived for (see `ClusterKey::derive`).
const IMAGE_SEAL: &str = "ssi image seal v1";

/// The helper's last report, or why there is none (it ended without one, or did not report
/// within `limits.helper_timeout` and was killed).
async fn outcome(node: &Node, mut reports: helper::Reports, what: &str) -> Result<Report> {
    let timeout = node.config.limits.helper_timeout;
    match reports.next_within(node, timeout, what).await? {
        Some(Report::Failed(error)) => bail!("{error}"),
        Some(r) => Ok(r),
        None => bail!("the {what} helper ended without a word"),
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
    pm.check_access(gpid, caller, true)?;
    let job = Job::Checkpoint {
        pid: gpid,
        dir: dir.into(),
        leave_running,
        user: as_user(caller),
        seal: seal_key(node),
    };
    let (_orders, reports) = helper::start(pm, &job, None, None).await?;
    match outcome(node, reports, "checkpoint").await? {
        Report::Written { pids, page_bytes } => Ok((pids, page_bytes)),
        other => bail!("checkpoint helper: unexpected {other:?}"),
    }
}

/// Restarts the checkpoint in `dir` on this node; returns the root's global pid. A user
/// restarts only an image they own, with their own ids; root restarts a user's image as that
/// user (see `image_trust`).
pub async fn restart(node: &Node, dir: &str, caller: &Caller) -> Result<i32> {
    let pm = node.local_procs()?;
    let Streams { theirs, ours } = Streams::new()?;
    let job = Job::Restore {
        dir: dir.into(),
        user: as_user(caller),
        seal: seal_key(node),
    };
    let (_orders, reports) = helper::start(pm, &job, None, Some(theirs)).await?;
    match outcome(node, reports, "restore").await? {
        Report::Restored { root, .. } => {
            pm.expect(root);
            let uid = pm.owner(root).unwrap_or(0);
            pm.adopt(root, uid, ours)?;
            Ok(root)
        }
        other => bail!("restore helper: unexpected {other:?}"),
    }
}

/// What one periodic checkpoint wrote (see [`Periodic::checkpoint`]).
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Page bytes written in the image.
    pub page_bytes: u64,
    /// How long the tree was frozen, microseconds.
    pub freeze_us: u64,
}

/// A helper checkpointing one tree of this node periodically (`Job::Periodic`): it keeps
/// the tree's write trackers between images, so each image of a chain after the first holds
/// only the pages written since the one before. It ends when this value is dropped.
#[derive(Debug)]
pub struct Periodic {
    orders: helper::Orders,
    reports: helper::Reports,
}

impl Periodic {
    /// Starts the helper for the tree of `gpid`, hosted here.
    pub async fn start(node: &Node, gpid: i32) -> Result<Periodic> {
        let pm = node.local_procs()?;
        let (orders, reports) = helper::start(
            pm,
            &Job::Periodic {
                pid: gpid,
                seal: seal_key(node),
            },
            None,
            None,
        )
        .await?;
        Ok(Periodic { orders, reports })
    }

    /// Writes the next image into `dir` (made durable), chained to `parent` (relative to
    /// `dir`; `None`: a whole image starting a new chain). The tree runs on.
    pub async fn checkpoint(&mut self, dir: &Path, parent: Option<String>) -> Result<Written> {
        self.orders
            .order(&migrate::Order::Checkpoint {
                dir: dir.to_path_buf(),
                parent,
            })
            .await?;
        match self.reports.next().await? {
            Some(Report::Checkpointed {
                page_bytes,
                freeze_micros,
                ..
            }) => Ok(Written {
                page_bytes,
                freeze_us: freeze_micros,
            }),
            Some(Report::Failed(why)) => bail!("{why}"),
            Some(other) => bail!("periodic checkpoint helper: unexpected {other:?}"),
            None => bail!("the periodic checkpoint helper ended"),
        }
    }
}
