//! The probe loop: samples this node's resources and publishes them to the cluster.

use std::sync::Arc;
use std::time::Instant;

use ssi_core::probe::Prober;

use crate::node::Node;

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
