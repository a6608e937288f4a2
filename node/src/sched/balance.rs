//! Re-balancing as the daemon runs it: every interval, the scheduler may pick one local process
//! to move to a less loaded node, and the move is a migration like `ssi migrate`.

use std::sync::Arc;

use crate::node::Node;

/// Re-balancing: every interval, maybe move one local process to a less loaded node.
pub async fn run(node: Arc<Node>) {
    loop {
        tokio::time::sleep(node.sched.interval()).await;
        if let Err(e) = once(&node, false).await {
            tracing::debug!(error = %format!("{e:#}"), "re-balancing round failed");
        }
    }
}

/// One look at the load; with `force`, even within the cooldown (`ssi sched balance --now`).
pub async fn once(node: &Arc<Node>, force: bool) -> anyhow::Result<()> {
    let Ok(pm) = &node.procs else {
        return Ok(());
    };
    let view = node.gossip.view().await?;
    let local = pm.movable(&node.sched.cpu_by_pid());
    let Some(mv) = node.sched.balance(&view, &local, force) else {
        return Ok(());
    };
    let root = ssi_core::process::Caller {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    };
    let outcome = crate::route::migrate_here(node, mv.gpid, mv.to, None, &root)
        .await
        .map(drop)
        .map_err(|e| format!("{e:#}"));
    node.sched.moved(&mv, outcome);
    Ok(())
}
