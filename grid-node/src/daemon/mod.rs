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

mod control;
mod join;
mod probes;
mod rpc;

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use ssi_core::auth::{unix_ms, ClusterKey};
use ssi_core::config::NodeConfig;
use ssi_core::gossip::{self, GossipHandle};
use ssi_core::membership::Membership;
use ssi_core::NodeIdentity;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

/// What every subsystem of a running daemon shares.
#[derive(Debug)]
pub struct Node {
    /// The resolved configuration.
    pub config: NodeConfig,
    /// The cluster key.
    pub key: ClusterKey,
    /// The membership task.
    pub gossip: GossipHandle,
}

/// A reason for the daemon to stop on its own.
#[derive(Debug)]
enum Fatal {
    /// The cluster refused us (duplicate id, wrong key): exit with an error.
    Refused(String),
}

/// Runs the daemon until SIGTERM or SIGINT (graceful leave) or a fatal refusal.
pub async fn run(config: NodeConfig) -> Result<()> {
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
    let gossip = gossip::spawn(core, udp, key.clone());
    let node = Arc::new(Node {
        config,
        key,
        gossip,
    });
    tracing::info!(
        node = %me.id, name = %node.config.name, addr = %me.addr, gen = me.gen,
        socket = %node.config.control_socket().display(), "ssid started"
    );

    let (fatal_tx, mut fatal_rx) = mpsc::channel::<Fatal>(1);
    tokio::spawn(rpc::serve(node.clone(), tcp));
    tokio::spawn(control::serve(node.clone(), control));
    tokio::spawn(probes::run(node.clone()));
    tokio::spawn(join::run(node.clone(), fatal_tx));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        _ = term.recv() => None,
        _ = tokio::signal::ctrl_c() => None,
        fatal = fatal_rx.recv() => fatal,
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
    match result {
        Ok(()) => Ok(()),
        Err(reason) => bail!("{reason}"),
    }
}
