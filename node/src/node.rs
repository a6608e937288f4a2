//! What every subsystem of a running daemon shares: its configuration, the cluster key, the
//! membership handle, the process manager, the scheduler and what it remembers of processes
//! elsewhere. The bottom of the daemon's modules: it uses none of them but the process manager
//! and the scheduler state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ssi_core::auth::ClusterKey;
use ssi_core::config::NodeConfig;
use ssi_core::gossip::GossipHandle;
use ssi_core::process::ProcessView;
use ssi_core::NodeId;

use crate::procman::ProcMan;

/// What every subsystem of a running daemon shares.
#[derive(Debug)]
pub struct Node {
    /// The resolved configuration.
    pub config: NodeConfig,
    /// The cluster key (gossip datagrams).
    pub key: ClusterKey,
    /// TLS with this node's certificate (every TCP connection between daemons).
    pub tls: ssi_core::tls::TlsContext,
    /// The membership task.
    pub gossip: GossipHandle,
    /// The process manager, or why this node cannot host processes.
    pub procs: Result<Arc<ProcMan>, String>,
    /// Processes this node knows of on other nodes (started from here, or moved through
    /// here), as last seen: `ssi ps` lists one as lost when its node dies.
    pub(crate) directory: Mutex<HashMap<i32, ProcessView>>,
    /// The scheduler of this node.
    pub sched: crate::sched::state::Sched,
    /// The migrations this node takes part in.
    pub(crate) migrations: crate::migration::registry::Migrations,
    /// What /metrics shows.
    pub(crate) metrics: crate::metrics::Metrics,
    /// The shared file system, once this node serves it.
    pub(crate) dfs: std::sync::OnceLock<Arc<::dfs::service::Dfs>>,
    /// The grid services, when the config has a `[grid]` table.
    pub(crate) grid: std::sync::OnceLock<Arc<crate::grid::Grid>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Node {
    /// The local process manager, or an error saying why this node hosts no processes.
    pub fn local_procs(&self) -> anyhow::Result<&ProcMan> {
        self.procs
            .as_deref()
            .map_err(|why| anyhow::anyhow!("node {} cannot host processes: {why}", self.config.id))
    }

    pub(crate) fn directory(&self) -> MutexGuard<'_, HashMap<i32, ProcessView>> {
        lock(&self.directory)
    }

    /// The name of node `id` as gossiped, or its number.
    pub async fn name_of(&self, id: NodeId) -> String {
        self.gossip
            .view()
            .await
            .ok()
            .and_then(|v| v.into_iter().find(|n| n.id == id))
            .map_or_else(|| format!("node-{id}"), |n| n.name)
    }
}
