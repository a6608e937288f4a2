//! The probe loop: samples this node's resources and publishes them to the cluster.

use std::sync::Arc;
use std::time::Instant;

use ssi_core::probe::Prober;

use super::Node;

/// Samples and publishes every `info_interval`, forever.
pub async fn run(node: Arc<Node>) {
    let mut prober = Prober::new(node.config.probe_scope);
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
        match prober.sample(&hosted, elapsed) {
            Ok(probe) => {
                if node.gossip.publish(probe).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "probe sample failed"),
        }
    }
}
