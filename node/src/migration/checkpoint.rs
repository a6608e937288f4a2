//! Cluster checkpoint and restart: a helper writes the tree of a process hosted here to a
//! directory, or restores a directory's image here.

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

/// The helper's last report, or why there is none.
async fn outcome(mut reports: helper::Reports, what: &str) -> Result<Report> {
    match reports.next().await? {
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
    };
    let (_orders, reports) = helper::start(pm, &job, None, None).await?;
    match outcome(reports, "checkpoint").await? {
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
    };
    let (_orders, reports) = helper::start(pm, &job, None, Some(theirs)).await?;
    match outcome(reports, "restore").await? {
        Report::Restored { root, .. } => {
            pm.expect(root);
            let uid = pm.owner(root).unwrap_or(0);
            pm.adopt(root, uid, ours)?;
            Ok(root)
        }
        other => bail!("restore helper: unexpected {other:?}"),
    }
}
