//! The node daemon `ssid`: membership, RPC between daemons, the control socket, probes.
//!
//! ```text
//!            seeds (TCP, authenticated)          other daemons (UDP gossip)
//!                  |  join                              ^  |
//!                  v                                    |  v
//!   ssi CLI --> control socket --> Node { gossip handle, config } --> RPC server (TCP)
//!                                   ^
//!                   probe loop -----+ (publishes CPU/memory/load every info interval)
//! ```

mod cgroup;
mod cluster;
mod control;
pub mod helpers;
mod incoming;
mod join;
mod migration;
pub mod nsinit;
mod probes;
pub mod procman;
mod rpc;
pub mod sched;
mod session;
mod sys;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use ssi_core::auth::{unix_ms, ClusterKey};
use ssi_core::config::NodeConfig;
use ssi_core::gossip::{self, GossipHandle};
use ssi_core::membership::Membership;
use ssi_core::process::ProcessView;
use ssi_core::{NodeId, NodeIdentity};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use nsinit::client::{InitClient, Started};
use procman::ProcMan;

/// What every subsystem of a running daemon shares.
#[derive(Debug)]
pub struct Node {
    /// The resolved configuration.
    pub config: NodeConfig,
    /// The cluster key.
    pub key: ClusterKey,
    /// The membership task.
    pub gossip: GossipHandle,
    /// The process manager, or why this node cannot host processes.
    pub procs: Result<Arc<ProcMan>, String>,
    /// Processes started from this node on other nodes, to report them lost when their node
    /// dies.
    directory: Mutex<HashMap<i32, ProcessView>>,
    /// The scheduler of this node.
    pub sched: sched::Sched,
    /// Outcomes of migrations to this node, for sources that got no answer.
    incoming: incoming::Incoming,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Node {
    /// The local process manager, or an error saying why this node hosts no processes.
    pub fn local_procs(&self) -> Result<&ProcMan> {
        self.procs
            .as_deref()
            .map_err(|why| anyhow::anyhow!("node {} cannot host processes: {why}", self.config.id))
    }

    fn directory(&self) -> MutexGuard<'_, HashMap<i32, ProcessView>> {
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

/// How the node hosts processes: its namespace init, or why it cannot.
pub type Hosting = Result<Started, String>;

/// A reason for the daemon to stop on its own.
#[derive(Debug)]
enum Fatal {
    /// The cluster refused us (duplicate id, wrong key): exit with an error.
    Refused(String),
}

/// Runs the daemon until SIGTERM or SIGINT (graceful leave) or a fatal refusal.
pub async fn run(config: NodeConfig, hosting: Hosting) -> Result<()> {
    let key = ClusterKey::load(&config.cluster_key_file)?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state dir {}", config.state_dir.display()))?;

    let tcp = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on tcp {}", config.listen))?;
    let udp = UdpSocket::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on udp {}", config.listen))?;
    let control = control::bind(&config.control_socket())?;

    let me = NodeIdentity {
        id: config.id,
        addr: config.advertise,
        gen: unix_ms(),
    };
    let core = Membership::new(
        me.clone(),
        config.name.clone(),
        &config.gossip,
        rand::rngs::StdRng::seed_from_u64(rand::random()),
    );
    let sched = sched::Sched::new(config.id, &config.sched).context("scheduler config")?;
    let gossip = gossip::spawn(core, udp, key.clone());
    let mut node_cgroup = None;
    let procs = match hosting {
        Ok(started) => {
            let init_pid = i32::try_from(started.child.id()).context("init pid")?;
            if let Some(q) = config.cpu_quota {
                let name = format!("ssi-node{}-{}", config.id, std::process::id());
                let cg = cgroup::NodeCgroup::create(&name, q)?;
                cg.add(started.child.id())?;
                std::fs::write(
                    config.state_dir.join("cgroup"),
                    cg.path().display().to_string(),
                )
                .context("cannot record the node's cgroup")?;
                tracing::info!(path = %cg.path().display(), cpus = q, "node processes limited by a cgroup");
                node_cgroup = Some(cg);
            }
            let (tx, rx) = mpsc::channel(256);
            let client = InitClient::start(started.sock, tx)?;
            // The init is reaped by a thread of its own; its end is logged by the client.
            let mut child = started.child;
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            Ok(ProcMan::start(
                config.id,
                config.name.clone(),
                client,
                init_pid,
                rx,
            )?)
        }
        Err(why) => {
            tracing::warn!("this node will not host processes: {why}");
            Err(why)
        }
    };
    let node = Arc::new(Node {
        config,
        key,
        gossip,
        procs,
        directory: Mutex::default(),
        incoming: incoming::Incoming::default(),
        sched,
    });
    tracing::info!(
        node = %me.id, name = %node.config.name, addr = %me.addr, gen = me.gen,
        socket = %node.config.control_socket().display(), "ssid started"
    );

    let (fatal_tx, mut fatal_rx) = mpsc::channel::<Fatal>(1);
    tokio::spawn(rpc::serve(node.clone(), tcp));
    tokio::spawn(control::serve(node.clone(), control));
    tokio::spawn(probes::run(node.clone()));
    tokio::spawn(probes::balance(node.clone()));
    tokio::spawn(sched::follow(node.clone()));
    tokio::spawn(join::run(node.clone(), fatal_tx));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        _ = term.recv() => None,
        _ = tokio::signal::ctrl_c() => None,
        // The join task drops its sender when it has nothing more to do: not a reason to stop.
        Some(fatal) = fatal_rx.recv() => Some(fatal),
    };
    let socket = node.config.control_socket();
    let result = match outcome {
        None => {
            tracing::info!("leaving the cluster");
            node.gossip.leave().await?;
            Ok(())
        }
        Some(Fatal::Refused(reason)) => Err(reason),
    };
    // Our socket file goes with us; a stale one would mislead the CLI.
    let _ = std::fs::remove_file(&socket);
    if let Some(cg) = node_cgroup {
        cg.remove();
    }
    match result {
        Ok(()) => Ok(()),
        Err(reason) => bail!("{reason}"),
    }
}
