//! The probe loop: samples this node's resources and publishes them to the cluster.

use std::sync::Arc;
use std::time::Instant;

use ssi_core::probe::Prober;

use super::Node;

/// Samples and publishes every `info_interval`, forever.
pub async fn run(node: Arc<Node>) {
    let mut prober = Prober::new(node.config.probe_scope, node.config.cpus);
    let mut tick = tokio::time::interval(node.config.gossip.info_interval);
    let mut last = Instant::now();
    loop {
        tick.tick().await;
        let elapsed = last.elapsed().as_secs_f64();
        last = Instant::now();
        let hosted = match &node.procs {
            Ok(pm) => pm.hosted_pids(),
            Err(_) => Vec::new(),
        };
        node.sched.measure(&hosted, elapsed);
        match prober.sample(&hosted, elapsed) {
            Ok(mut probe) => {
                probe.labels = node.sched.labels();
                if node.gossip.publish(probe).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "probe sample failed"),
        }
    }
}

/// Re-balancing: every interval, maybe move one local process to a less loaded node.
pub async fn balance(node: Arc<Node>) {
    loop {
        tokio::time::sleep(node.sched.interval()).await;
        if let Err(e) = balance_once(&node, false).await {
            tracing::debug!(error = %format!("{e:#}"), "re-balancing round failed");
        }
    }
}

/// One look at the load; with `force`, even within the cooldown (`ssi sched balance --now`).
pub async fn balance_once(node: &Node, force: bool) -> anyhow::Result<()> {
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
    let outcome = super::cluster::migrate_here(node, mv.gpid, mv.to, None, &root)
        .await
        .map(drop)
        .map_err(|e| format!("{e:#}"));
    node.sched.moved(&mv, outcome);
    Ok(())
}
