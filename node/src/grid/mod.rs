//! The grid services inside the daemon (docs/GRID.md): started when the config has a
//! `[grid]` table.
//!
//! ```text
//!   grid client --HTTP--> job service (grid-node TES) --> ReplicatedStore --RPC--> primary
//!                               |                                     (every node a copy)
//!                               +--> ClusterRunner --> session::run --> scheduler --> a node
//! ```
//!
//! Every node with the table serves the job service; all share one task state through the
//! replicated store; a task's worker (staging, executors one after another) runs on the node
//! that accepted it, and the tasks of a node that dies are adopted by another.

mod admin;
mod config;
mod proto;
mod replica;
mod resources;
mod runner;
mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use grid_node::accounts::{AccountMapper, SystemAccounts};
use grid_node::credential::TrustAnchors;
use grid_node::policy::PolicyEngine;
use grid_node::tes::api::{router, ApiState};
use grid_node::tes::TaskService;
use ssi_core::rpc::RpcResponse;

pub use admin::answer as admin;
pub use config::GridConfig;
use proto::{Answer, Request};
use store::ReplicatedStore;

use super::Node;

/// How often leases are swept, policies reloaded and dead nodes' tasks adopted.
const HOUSEKEEPING: Duration = Duration::from_secs(5);

/// The grid services of a node.
#[derive(Debug)]
pub struct Grid {
    config: GridConfig,
    store: Arc<ReplicatedStore>,
}

/// The worker name of node `id` in task records.
fn worker_name(id: ssi_core::NodeId) -> String {
    format!("node-{id}")
}

/// Starts the grid services if `node`'s config has a `[grid]` table: the store at once (other
/// nodes may ask it), the job service once the cluster state is reachable.
pub async fn start(node: &Arc<Node>) -> Result<()> {
    let Some(table) = node.config.grid.clone() else {
        return Ok(());
    };
    let config = GridConfig::from_table(table)?;
    let dir = node.config.state_dir.join("grid");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let replica = replica::Replica::open(Some(dir.join("state")))?;
    let store = ReplicatedStore::new(node, replica);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("grid.listen: cannot listen on {}", config.listen))?;
    let trust = Arc::new(config.trust_anchors()?);
    let grid = Arc::new(Grid {
        config,
        store: store.clone(),
    });
    if node.grid.set(grid.clone()).is_err() {
        anyhow::bail!("the grid services were started twice");
    }
    let node = node.clone();
    tokio::spawn(async move {
        if let Err(e) = serve(node, grid, listener, trust).await {
            tracing::error!(error = %format!("{e:#}"), "the grid job service stopped");
        }
    });
    Ok(())
}

async fn serve(
    node: Arc<Node>,
    grid: Arc<Grid>,
    listener: tokio::net::TcpListener,
    trust: Arc<TrustAnchors>,
) -> Result<()> {
    let c = &grid.config;
    let policy = Arc::new(PolicyEngine::new()?);
    policy.reload(&*grid.store).await?;
    let accounts = c.create_accounts.then(|| c.pools.clone());
    let runner = Arc::new(runner::ClusterRunner::new(
        &node,
        c.mpirun.clone(),
        accounts,
    ));
    let mut tes = c.tes.clone();
    tes.worker = Some(worker_name(node.config.id));
    let service = TaskService::new(
        grid.store.clone(),
        runner,
        policy.clone(),
        c.pools.clone(),
        tes,
    );
    let resumed = service.resume().await?;
    let state = Arc::new(ApiState {
        service: service.clone(),
        trust,
        max_body: c.max_body_bytes,
        resources: Arc::new(resources::ClusterResources::start(&node)),
    });
    tracing::info!(listen = %c.listen, resumed, "grid job service (GA4GH TES) serving");
    tokio::spawn(housekeeping(node, grid.clone(), service, policy));
    axum::serve(listener, router(state))
        .await
        .context("grid job service")
}

/// Every [`HOUSEKEEPING`]: adopts the tasks of dead nodes, reloads the policies, ends leases
/// unused for their pool's time and retires their homes here.
async fn housekeeping(
    node: Arc<Node>,
    grid: Arc<Grid>,
    service: Arc<TaskService>,
    policy: Arc<PolicyEngine>,
) {
    let c = &grid.config;
    loop {
        tokio::time::sleep(HOUSEKEEPING).await;
        let alive: Vec<String> = match node.gossip.view().await {
            Ok(v) => v
                .into_iter()
                .filter(|n| n.state.is_active())
                .map(|n| worker_name(n.id))
                .collect(),
            Err(_) => continue,
        };
        if let Err(e) = service
            .adopt(false, |w| !alive.iter().any(|a| a == w))
            .await
        {
            tracing::warn!(error = %e, "grid: adopting tasks of dead nodes failed");
        }
        if let Err(e) = policy.reload(&*grid.store).await {
            tracing::warn!(error = %e, "grid: policies not reloaded");
        }
        let now = ssi_core::auth::unix_ms() as i64 / 1000;
        match AccountMapper::new(&*grid.store, &c.pools).sweep(now).await {
            Ok(ended) if c.create_accounts => {
                let sys = SystemAccounts::new("/", &node.config.state_dir.join("grid"));
                for lease in ended {
                    if let Some(pool) = c.pools.iter().find(|p| p.vo == lease.vo) {
                        if let Err(e) = sys.retire(pool, &lease) {
                            tracing::warn!(account = %lease.account, error = %e, "grid: home not retired");
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "grid: lease sweep failed"),
        }
    }
}

/// Answers another daemon's grid request (`RpcRequest::Grid`).
pub async fn serve_rpc(node: &Node, bytes: &[u8]) -> RpcResponse {
    let Some(grid) = node.grid.get() else {
        return RpcResponse::Error {
            message: format!("node {}: no [grid] in its config", node.config.id),
        };
    };
    let answer = match proto::decode::<Request>(bytes) {
        Ok(Request::EnsureAccount(lease)) => {
            match runner::ensure_here(node, &grid.config.pools, &lease).await {
                Ok(()) => Answer::Done,
                Err(e) => Answer::Error(e),
            }
        }
        Ok(req) => grid.store.serve(req).await,
        Err(e) => Answer::Error(format!("{e:#}")),
    };
    match proto::encode(&answer) {
        Ok(b) => RpcResponse::Grid(b),
        Err(e) => RpcResponse::Error {
            message: format!("{e:#}"),
        },
    }
}
