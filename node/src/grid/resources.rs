//! The figures of the resource document from the membership view (each node's gossiped
//! probes), refreshed in the background.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use grid_node::resources::{local_platform, NodeResources, ResourceSource};

use crate::Node;

const REFRESH: Duration = Duration::from_secs(2);

/// The nodes as the membership last showed them.
#[derive(Debug, Default)]
pub struct ClusterResources {
    nodes: Arc<Mutex<Vec<NodeResources>>>,
}

impl ClusterResources {
    /// Figures of `node`'s cluster, kept fresh while the daemon runs.
    pub fn start(node: &Arc<Node>) -> Self {
        let nodes = Arc::new(Mutex::new(Vec::new()));
        let (weak, keep) = (Arc::downgrade(node), nodes.clone());
        tokio::spawn(async move {
            // Every node runs the same build; the platform is this one's.
            let (arch, os) = local_platform();
            while let Some(node) = weak.upgrade() {
                if let Ok(view) = node.gossip.view().await {
                    let now: Vec<NodeResources> = view
                        .into_iter()
                        .map(|n| NodeResources {
                            id: n.id.0,
                            alive: n.state.is_active(),
                            cpus: n.probe.cpus,
                            mem_total_bytes: n.probe.mem_total_bytes,
                            mem_free_bytes: n.probe.mem_free_bytes,
                            load1: n.probe.load1,
                            arch: arch.clone(),
                            os: os.clone(),
                            labels: n.probe.labels,
                        })
                        .collect();
                    *keep.lock().unwrap_or_else(|p| p.into_inner()) = now;
                }
                drop(node);
                tokio::time::sleep(REFRESH).await;
            }
        });
        ClusterResources { nodes }
    }
}

impl ResourceSource for ClusterResources {
    fn nodes(&self) -> Vec<NodeResources> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
