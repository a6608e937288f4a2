//! The node daemon `ssid`: membership, RPC between daemons, the control socket for the local
//! CLI, the processes this node hosts, their migration, and the scheduler.
//!
//! ```text
//!            seeds (TCP, authenticated)          other daemons (UDP gossip)
//!                  |  join                              ^  |
//!                  v                                    |  v
//!   ssi CLI --> control socket --> Node { gossip handle, config } --> RPC server (TCP)
//!                                   ^
//!                   probe loop -----+ (publishes CPU/memory/load every info interval)
//!                                   |
//!                                   +--> HTTP endpoint (axum, optional): /metrics
//! ```
//!
//! The files import each other downwards only (checked by `node/tests/layers.rs`); a file
//! uses those below it, never one above:
//!
//! ```text
//!   lib.rs (run: starts every task)
//!     control.rs (the CLI)         rpc.rs (other daemons)       join.rs  probes.rs  http.rs
//!         |    \                   /    |
//!         |     session.rs (ssi run / attach sessions, placement)
//!         |        |
//!     sched/ops.rs |               (ssi sched, here and on every node)
//!         |        |
//!     sched/balance.rs             (re-balancing: a move is a migration)
//!         |        |
//!       route.rs   |               (ps, locate, kill, migrate, checkpoint where the process is)
//!         |        |
//!         |       ft/              (fault tolerance: periodic checkpoints, restart elsewhere)
//!         |        |
//!       migration/                 (the runtime of the migration protocol; checkpoint, restart)
//!         |
//!       peer.rs                    (connect to another daemon, ask it one thing)
//!         |
//!       node.rs                    (what every task shares)
//!         |
//!   procman/  sched/state.rs  migration/registry.rs  metrics.rs  helpers.rs  nsinit/  cgroup.rs  sys.rs
//! ```

pub mod args;
mod cgroup;
mod control;
mod dfs;
mod enroll;
mod ft;
mod grid;
pub mod helpers;
mod http;
mod image_trust;
mod join;
mod metrics;
mod migration;
pub mod node;
pub mod nsinit;
mod peer;
mod probes;
pub mod procman;
mod route;
mod rpc;
pub mod sched;
mod session;
mod sys;

use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use ssi_core::auth::{unix_ms, ClusterKey};
use ssi_core::config::NodeConfig;
use ssi_core::gossip;
use ssi_core::membership::Membership;
use ssi_core::pki::check_trusted;
use ssi_core::tls::TlsContext;
use ssi_core::NodeIdentity;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use join::Fatal;
use node::Node;
use nsinit::client::{InitClient, Started};
use procman::ProcMan;

/// How the node hosts processes: its namespace init, or why it cannot.
pub type Hosting = Result<Started, String>;

/// What a daemon proves itself with: the cluster key and its TLS identity.
#[derive(Debug)]
pub struct Secrets {
    key: ClusterKey,
    tls: TlsContext,
}

impl Secrets {
    /// Reads the cluster key, the CA certificate, this node's certificate and key; refuses
    /// secret files that group or others may read and a CA file they may change.
    pub fn load(config: &NodeConfig) -> Result<Self> {
        let key = ClusterKey::load(&config.cluster_key_file)?;
        check_trusted(&config.tls.ca)?;
        let tls = TlsContext::load(&config.tls)?;
        Ok(Secrets { key, tls })
    }
}

/// Runs the daemon until SIGTERM or SIGINT (graceful leave) or a fatal refusal.
pub async fn run(config: NodeConfig, secrets: Secrets, hosting: Hosting) -> Result<()> {
    let Secrets { key, tls } = secrets;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state dir {}", config.state_dir.display()))?;

    let tcp = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on tcp {}", config.listen))?;
    let udp = UdpSocket::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on udp {}", config.listen))?;
    let control = control::bind(&config.control_socket())?;
    let http = match config.http_listen {
        Some(addr) => Some(http::bind(addr).await?),
        None => None,
    };

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
    let mut user_cgroups = None;
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
            let name = format!("ssi-node{}-{}", config.id, std::process::id());
            match cgroup::UserCgroups::create(node_cgroup.as_ref(), &name) {
                Ok(c) => {
                    std::fs::write(
                        config.state_dir.join("cgroup-users"),
                        c.base().display().to_string(),
                    )
                    .context("cannot record the place of the users' cgroups")?;
                    user_cgroups = Some(Arc::new(c));
                }
                Err(e) => tracing::warn!(
                    error = %format!("{e:#}"),
                    "programs will not run in per-user cgroups"
                ),
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
                config.limits.detached_per_user,
                user_cgroups.clone(),
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
        tls,
        gossip,
        procs,
        directory: Mutex::default(),
        migrations: Default::default(),
        sched,
        metrics: metrics::Metrics::new(),
        dfs: Default::default(),
        grid: std::sync::OnceLock::new(),
    });
    let dfs_running = dfs::start(node.clone()).await?;
    grid::start(&node).await?;
    tracing::info!(
        node = %me.id, name = %node.config.name, addr = %me.addr, gen = me.gen,
        socket = %node.config.control_socket().display(), "ssid started"
    );

    let (fatal_tx, mut fatal_rx) = mpsc::channel::<Fatal>(1);
    tokio::spawn(rpc::serve(node.clone(), tcp));
    tokio::spawn(control::serve(node.clone(), control));
    tokio::spawn(probes::run(node.clone()));
    tokio::spawn(sched::balance::run(node.clone()));
    tokio::spawn(join::run(node.clone(), fatal_tx));
    tokio::spawn(ft::watch(node.clone()));
    if let Some(listener) = http {
        tracing::info!(addr = %listener.local_addr()?, "metrics served at /metrics");
        tokio::spawn(http::serve(node.clone(), listener));
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        _ = term.recv() => None,
        _ = tokio::signal::ctrl_c() => None,
        // The join task drops its sender when it has nothing more to do: not a reason to stop.
        Some(fatal) = fatal_rx.recv() => Some(fatal),
    };
    dfs::stop(dfs_running).await;
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
    if let Some(c) = user_cgroups {
        c.remove(node_cgroup.as_ref());
    }
    if let Some(cg) = node_cgroup {
        cg.remove();
    }
    match result {
        Ok(()) => Ok(()),
        Err(reason) => bail!("{reason}"),
    }
}
