//! Node configuration: a TOML file whose every key is also a command-line flag of `ssid`.
//!
//! The same [`ConfigLayer`] type is read from the file and from the flags; the flags are laid
//! over the file, then [`ConfigLayer::resolve`] fills defaults and checks the result.
//!
//! ```toml
//! id = 1                           # required, 1..=65535, unique in the cluster
//! name = "n1"                      # default "node-<id>"
//! listen = "0.0.0.0:7700"          # UDP (gossip) and TCP (RPC) on the same port
//! advertise = "10.0.0.1:7700"      # where others reach us (default: listen)
//! seeds = ["10.0.0.2:7700"]        # nodes to join through; tried in order
//! state_dir = "/var/lib/ssi"       # holds ssid.sock
//! cluster_key_file = "/etc/ssi/cluster.key"   # gossip HMAC key, mode 0600
//! ca_file = "/etc/ssi/ca.pem"      # the cluster CA certificate
//! node_cert_file = "/etc/ssi/node.pem"
//! node_key_file = "/etc/ssi/node.key"          # mode 0600
//! ca_key_file = "/etc/ssi/ca.key"  # the CA key, on the node that admits new ones (0600)
//! probe_scope = "host"             # or "hosted", see ProbeScope
//! hostname = "n1"                  # unset by default, see ConfigLayer::hostname
//! http_listen = "127.0.0.1:9770"   # /metrics; unset by default (no HTTP endpoint)
//! ft_dir = "/ssi/.ssi-ft"          # checkpoints of `ssi run --ft`, see ConfigLayer::ft_dir
//!
//! [gossip]
//! probe_period_ms = 500
//!
//! [dfs]
//! mode = "replicated"              # or "off" (the default)
//! mount = "/ssi"
//!
//! [limits]
//! control_connections = 256       # see LimitsConfig
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::node::NodeId;
use crate::pki::TlsFiles;

/// Default TCP/UDP port of `ssid`.
pub const DEFAULT_PORT: u16 = 7700;

/// Which figures a node's probes report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProbeScope {
    /// The machine's figures (/proc/loadavg): right when each node is its own machine.
    #[default]
    Host,
    /// Load and process count of the processes this node hosts only: right when several nodes
    /// share one kernel (the testbed). CPU count and memory stay host-wide.
    Hosted,
}

/// One layer of configuration (the file, or the flags): every field optional.
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// Node id, 1..=65535, unique in the cluster (set by the admin).
    #[arg(long)]
    pub id: Option<u16>,
    /// Human-readable node name (default "node-<id>").
    #[arg(long)]
    pub name: Option<String>,
    /// Address to listen on: UDP for gossip and TCP for RPC, same port (default 0.0.0.0:7700).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address other nodes reach this one at (default: `listen`, which must then be a
    /// specific address, not 0.0.0.0).
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// Address of a node to join through; repeat the flag for several.
    #[arg(long = "seed")]
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    /// Directory for the daemon's state and its control socket ssid.sock (default /var/lib/ssi).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// File holding the cluster key shared by all nodes (default /etc/ssi/cluster.key).
    #[arg(long)]
    pub cluster_key_file: Option<PathBuf>,
    /// Certificate of the cluster CA (PEM) that every node's certificate must chain to
    /// (default /etc/ssi/ca.pem; made by `ssid --init-ca`).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// This node's certificate (PEM), issued by the cluster CA (default /etc/ssi/node.pem;
    /// made by `ssid --issue-cert`).
    #[arg(long)]
    pub node_cert_file: Option<PathBuf>,
    /// This node's private key (PEM, mode 0600; default /etc/ssi/node.key).
    #[arg(long)]
    pub node_key_file: Option<PathBuf>,
    /// The cluster CA's private key (PEM, mode 0600; default /etc/ssi/ca.key): made by
    /// `ssi cluster init`; while it exists, this node admits new nodes that show a join token.
    #[arg(long)]
    pub ca_key_file: Option<PathBuf>,
    /// What the probes measure: the whole host, or what this node hosts.
    #[arg(long, value_enum)]
    pub probe_scope: Option<ProbeScope>,
    /// CPUs this node offers to the cluster (default: its online CPUs, or the CPU quota
    /// rounded up).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Limit everything this node hosts to this many CPUs' worth of time (a cgroup), e.g. 0.6;
    /// for nodes sharing one machine (the testbed). Default: no limit.
    #[arg(long)]
    pub cpu_quota: Option<f64>,
    /// Host name the node's processes see (`uname -n`, gethostname), in a UTS namespace of
    /// their own. Unset (the default), they see the machine's. Set it when several nodes
    /// share one kernel (the testbed): programs that name shared resources after the host,
    /// such as Open MPI's shared-memory segments, would otherwise collide between nodes.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Address of the daemon's HTTP endpoint, which serves Prometheus metrics at /metrics
    /// (e.g. 127.0.0.1:9770). Unset (the default), there is none.
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Where the checkpoints of fault-tolerant processes (`ssi run --ft`) go, one directory
    /// per global pid. Default: `.ssi-ft` at the root of the shared file system when this
    /// node mounts it (`[dfs] mode = "replicated"`), else `<state_dir>/ft`. It must be the
    /// same shared directory on every node for a process to be restarted on another node:
    /// a node-local directory only keeps the checkpoints (docs/FT.md).
    #[arg(long)]
    pub ft_dir: Option<PathBuf>,
    /// Membership (SWIM) timing knobs.
    #[command(flatten)]
    #[serde(default)]
    pub gossip: GossipLayer,
    /// Scheduler knobs.
    #[command(flatten)]
    #[serde(default)]
    pub sched: SchedLayer,
    /// Shared file system knobs.
    #[command(flatten)]
    #[serde(default)]
    pub dfs: DfsLayer,
    /// Bounds on what clients and peers may hold of this daemon.
    #[command(flatten)]
    #[serde(default)]
    pub limits: LimitsLayer,
    /// The grid services (the `[grid]` table), checked by ssid's grid module when it starts
    /// them (docs/GRID.md); file only.
    #[arg(skip)]
    #[serde(default)]
    pub grid: Option<toml::Table>,
}

/// Whether and how the node serves the shared file system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DfsMode {
    /// No shared file system on this node.
    #[default]
    Off,
    /// The replicated file system of the cluster, mounted with FUSE.
    Replicated,
}

/// Shared file system knobs (the `[dfs]` table), all optional; see [`DfsConfig`].
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct DfsLayer {
    /// Shared file system: off or replicated.
    #[arg(long = "dfs-mode", value_enum)]
    pub mode: Option<DfsMode>,
    /// Where the shared file system is mounted (the same path on every node).
    #[arg(long = "dfs-mount")]
    pub mount: Option<PathBuf>,
    /// Directory for this node's metadata store and chunks (default `<state_dir>/dfs`).
    #[arg(long = "dfs-data-dir")]
    pub data_dir: Option<PathBuf>,
    /// Copies of each chunk of file data (fewer while the cluster has fewer alive nodes).
    #[arg(long = "dfs-replicas")]
    pub replicas: Option<u32>,
    /// Nodes voting on the metadata (3 survives one death, 5 two).
    #[arg(long = "dfs-voters")]
    pub voters: Option<u32>,
    /// Threads serving file system requests from the kernel.
    #[arg(long = "dfs-threads")]
    pub threads: Option<u32>,
}

/// Shared file system settings, resolved. docs/DFS.md describes the file system.
///
/// Tuning: `replicas` is how many node deaths lose no data (R - 1) and costs R times the
/// disk space and R - 1 times the network for every byte written; `voters` of 3 keep the
/// metadata available through one death, 5 through two, at the cost of one more fsync'd
/// copy of each metadata change per voter. More `threads` serve more requests at once (each
/// waits for the network while it publishes or fetches).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DfsConfig {
    /// Off or replicated (default off).
    pub mode: DfsMode,
    /// Mount point (default /ssi).
    pub mount: PathBuf,
    /// Data directory (default `<state_dir>/dfs`).
    pub data_dir: PathBuf,
    /// Chunk replicas (default 3, 1..=7).
    pub replicas: u32,
    /// Metadata voters (default 3, 1..=7).
    pub voters: u32,
    /// FUSE threads (default 4, 1..=64).
    pub threads: u32,
}

impl DfsLayer {
    fn over(self, base: DfsLayer) -> DfsLayer {
        DfsLayer {
            mode: self.mode.or(base.mode),
            mount: self.mount.or(base.mount),
            data_dir: self.data_dir.or(base.data_dir),
            replicas: self.replicas.or(base.replicas),
            voters: self.voters.or(base.voters),
            threads: self.threads.or(base.threads),
        }
    }

    fn resolve(self, state_dir: &Path) -> Result<DfsConfig> {
        let cfg = DfsConfig {
            mode: self.mode.unwrap_or_default(),
            mount: self.mount.unwrap_or_else(|| PathBuf::from("/ssi")),
            data_dir: self.data_dir.unwrap_or_else(|| state_dir.join("dfs")),
            replicas: self.replicas.unwrap_or(3),
            voters: self.voters.unwrap_or(3),
            threads: self.threads.unwrap_or(4),
        };
        for (name, value, hi) in [
            ("replicas", cfg.replicas, 7),
            ("voters", cfg.voters, 7),
            ("threads", cfg.threads, 64),
        ] {
            if !(1..=hi).contains(&value) {
                return Err(Error::Config(format!(
                    "dfs.{name} = {value} is out of range 1..={hi}"
                )));
            }
        }
        if !cfg.mount.is_absolute() || !cfg.data_dir.is_absolute() {
            return Err(Error::Config(format!(
                "dfs.mount ({}) and dfs.data_dir ({}) must be absolute paths",
                cfg.mount.display(),
                cfg.data_dir.display()
            )));
        }
        if cfg.data_dir.starts_with(&cfg.mount) {
            return Err(Error::Config(format!(
                "dfs.data_dir {} is inside the mount point {}",
                cfg.data_dir.display(),
                cfg.mount.display()
            )));
        }
        Ok(cfg)
    }
}

/// Resource bounds (the `[limits]` table), all optional; see [`LimitsConfig`].
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct LimitsLayer {
    /// Most connections open at once on the control socket.
    #[arg(long)]
    pub control_connections: Option<u32>,
    /// Most control connections open at once by one local user (root is not limited).
    #[arg(long)]
    pub control_connections_per_user: Option<u32>,
    /// Most connections open at once on the RPC port.
    #[arg(long)]
    pub rpc_connections: Option<u32>,
    /// Milliseconds a connection may wait before its next request (or its TLS handshake).
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// Most processes of one user (but root) this node keeps when a detached one is started.
    #[arg(long)]
    pub detached_per_user: Option<u32>,
    /// Milliseconds a checkpoint, restart or migration helper may take to report what the
    /// daemon waits for, before it is killed and the request fails.
    #[arg(long)]
    pub helper_timeout_ms: Option<u64>,
}

/// Resource bounds, resolved.
///
/// Tuning: a connection counts from accept to close, whatever it does; a session (`ssi run`
/// or `attach` following a process) holds one control connection for as long as it follows,
/// and a remote one also an RPC connection on the hosting node. So `control_connections_per_user`
/// bounds how many sessions one user can follow at once from this node, and
/// `rpc_connections` should be at least the sessions every other node may follow here plus
/// room for requests. A connection that holds no session and sends nothing for
/// `idle_timeout` is closed. Above the caps, new connections are closed at once (the
/// control socket first answers with an error naming the cap).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsConfig {
    /// Default 256.
    pub control_connections: u32,
    /// Default 64.
    pub control_connections_per_user: u32,
    /// Default 1024.
    pub rpc_connections: u32,
    /// Default 60 s.
    pub idle_timeout: Duration,
    /// Default 64. A detached process keeps its last 1 MiB of output until it is attached to,
    /// and for an hour after it ends: this bounds what one user holds of a node's memory that
    /// way (64 MiB by default). Counted are the user's processes hosted on the node, running
    /// or ended with their exit not collected.
    pub detached_per_user: u32,
    /// Default 10 min. A helper writing or restoring an image, or working on a migration, is
    /// killed when the daemon waits longer than this for its next report (the image written,
    /// the tree restored, a pre-copy round sent, ...), and the request fails. Raise it for
    /// trees of many GiB on slow disks.
    pub helper_timeout: Duration,
}

impl LimitsLayer {
    fn over(self, base: LimitsLayer) -> LimitsLayer {
        LimitsLayer {
            control_connections: self.control_connections.or(base.control_connections),
            control_connections_per_user: self
                .control_connections_per_user
                .or(base.control_connections_per_user),
            rpc_connections: self.rpc_connections.or(base.rpc_connections),
            idle_timeout_ms: self.idle_timeout_ms.or(base.idle_timeout_ms),
            detached_per_user: self.detached_per_user.or(base.detached_per_user),
            helper_timeout_ms: self.helper_timeout_ms.or(base.helper_timeout_ms),
        }
    }

    fn resolve(self) -> Result<LimitsConfig> {
        let l = LimitsConfig {
            control_connections: self.control_connections.unwrap_or(256),
            control_connections_per_user: self.control_connections_per_user.unwrap_or(64),
            rpc_connections: self.rpc_connections.unwrap_or(1024),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.unwrap_or(60_000)),
            detached_per_user: self.detached_per_user.unwrap_or(64),
            helper_timeout: Duration::from_millis(self.helper_timeout_ms.unwrap_or(600_000)),
        };
        let counts = [
            ("control_connections", l.control_connections),
            (
                "control_connections_per_user",
                l.control_connections_per_user,
            ),
            ("rpc_connections", l.rpc_connections),
            ("detached_per_user", l.detached_per_user),
        ];
        for (name, v) in counts {
            if v == 0 {
                return Err(Error::Config(format!("limits.{name} must be at least 1")));
            }
        }
        if l.helper_timeout.is_zero() {
            return Err(Error::Config(
                "limits.helper_timeout_ms must be at least 1".into(),
            ));
        }
        if l.idle_timeout < Duration::from_secs(1) {
            return Err(Error::Config(
                "limits.idle_timeout_ms must be at least 1000".into(),
            ));
        }
        Ok(l)
    }
}

/// Scheduler knobs (the `[sched]` table), all optional; see [`SchedConfig`].
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct SchedLayer {
    /// Placement policy: least-loaded, round-robin, memory-aware, pack, spread or external.
    #[arg(long = "sched-policy")]
    pub policy: Option<String>,
    /// A parameter of the policy, KEY=VALUE (e.g. program=/usr/local/bin/policy); repeat.
    #[arg(long = "sched-param")]
    #[serde(default)]
    pub params: Vec<String>,
    /// A filter every node's load goes through before the policy sees it (ewma:H,
    /// threshold:T, clamp:M); repeat, applied in order.
    #[arg(long = "sched-filter")]
    #[serde(default)]
    pub filters: Vec<String>,
    /// A label of this node, KEY=VALUE, for placement constraints; repeat.
    #[arg(long = "label")]
    #[serde(default)]
    pub labels: Vec<String>,
    /// Whether this node moves processes away on its own when it is overloaded.
    #[arg(long = "balance", action = clap::ArgAction::Set)]
    pub balance: Option<bool>,
    /// Milliseconds between two looks at the load for re-balancing.
    #[arg(long)]
    pub balance_interval_ms: Option<u64>,
    /// Load per CPU the busier node of a pair must gain for a move.
    #[arg(long)]
    pub balance_threshold: Option<f64>,
    /// Milliseconds a process stays on a node before it may move again.
    #[arg(long)]
    pub min_residence_ms: Option<u64>,
    /// Milliseconds between two moves from this node.
    #[arg(long)]
    pub balance_cooldown_ms: Option<u64>,
}

/// Scheduler settings, resolved.
///
/// Tuning re-balancing: a shorter interval reacts faster but samples noisier loads (use an
/// `ewma` filter); a higher threshold moves less often, only for clear gains; `min_residence`
/// bounds how often one process can move (migration costs its memory size in bytes sent and a
/// short freeze); the cooldown must exceed the time probes take to show a move (a few info
/// intervals) or nodes keep reacting to stale figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchedConfig {
    /// Placement policy name (default least-loaded).
    pub policy: String,
    /// Its parameters.
    pub params: BTreeMap<String, String>,
    /// Load filters, in order (default none).
    pub filters: Vec<String>,
    /// This node's labels.
    pub labels: BTreeMap<String, String>,
    /// Re-balancing on (default true).
    pub balance: bool,
    /// Between two looks (default 2 s).
    pub balance_interval: Duration,
    /// Gain needed for a move (default 0.5).
    pub balance_threshold: f64,
    /// Residence before a move (default 5 s).
    pub min_residence: Duration,
    /// Between two moves from one node (default 4 s).
    pub balance_cooldown: Duration,
}

impl Default for SchedConfig {
    /// The defaults of every `[sched]` key, in one place.
    fn default() -> Self {
        SchedConfig {
            policy: "least-loaded".into(),
            params: BTreeMap::new(),
            filters: Vec::new(),
            labels: BTreeMap::new(),
            balance: true,
            balance_interval: Duration::from_secs(2),
            balance_threshold: 0.5,
            min_residence: Duration::from_secs(5),
            balance_cooldown: Duration::from_secs(4),
        }
    }
}

/// Parses `KEY=VALUE` entries.
pub fn key_values(list: Vec<String>, what: &str) -> Result<BTreeMap<String, String>> {
    list.into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Error::Config(format!("{what} {kv:?}: expected KEY=VALUE"))),
        })
        .collect()
}

impl SchedLayer {
    fn over(self, base: SchedLayer) -> SchedLayer {
        let pick = |a: Vec<String>, b: Vec<String>| if a.is_empty() { b } else { a };
        SchedLayer {
            policy: self.policy.or(base.policy),
            params: pick(self.params, base.params),
            filters: pick(self.filters, base.filters),
            labels: pick(self.labels, base.labels),
            balance: self.balance.or(base.balance),
            balance_interval_ms: self.balance_interval_ms.or(base.balance_interval_ms),
            balance_threshold: self.balance_threshold.or(base.balance_threshold),
            min_residence_ms: self.min_residence_ms.or(base.min_residence_ms),
            balance_cooldown_ms: self.balance_cooldown_ms.or(base.balance_cooldown_ms),
        }
    }

    fn resolve(self) -> Result<SchedConfig> {
        let ms = Duration::from_millis;
        let d = SchedConfig::default();
        let threshold = self.balance_threshold.unwrap_or(d.balance_threshold);
        if !(threshold.is_finite() && threshold >= 0.0) {
            return Err(Error::Config(format!(
                "sched.balance_threshold {threshold} must be a number >= 0"
            )));
        }
        Ok(SchedConfig {
            policy: self.policy.unwrap_or(d.policy),
            params: key_values(self.params, "sched param")?,
            filters: self.filters,
            labels: {
                let labels = key_values(self.labels, "label")?;
                let len: usize = labels.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
                if len > 120
                    || labels
                        .iter()
                        .any(|(k, v)| format!("{k}{v}").contains([',', '=']))
                {
                    return Err(Error::Config(
                        "labels: at most 120 bytes in all, no ',' or '=' inside a key or value"
                            .into(),
                    ));
                }
                labels
            },
            balance: self.balance.unwrap_or(d.balance),
            balance_interval: self
                .balance_interval_ms
                .map_or(d.balance_interval, |v| ms(v.max(100))),
            balance_threshold: threshold,
            min_residence: self.min_residence_ms.map_or(d.min_residence, ms),
            balance_cooldown: self.balance_cooldown_ms.map_or(d.balance_cooldown, ms),
        })
    }
}

/// Membership timing knobs, all optional; see [`GossipConfig`] for their meaning.
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct GossipLayer {
    /// Milliseconds between two probes of a random member.
    #[arg(long)]
    pub probe_period_ms: Option<u64>,
    /// Milliseconds to wait for a direct ack before asking others to probe indirectly.
    #[arg(long)]
    pub probe_rtt_ms: Option<u64>,
    /// Milliseconds a suspect member has to refute before it is declared dead.
    #[arg(long)]
    pub suspect_to_down_ms: Option<u64>,
    /// Milliseconds between two rounds of piggy-back gossip.
    #[arg(long)]
    pub gossip_interval_ms: Option<u64>,
    /// Milliseconds between two probe-data (CPU, memory, load) broadcasts of this node.
    #[arg(long)]
    pub info_interval_ms: Option<u64>,
    /// Milliseconds between two join attempts while this node knows no other member.
    #[arg(long)]
    pub join_retry_ms: Option<u64>,
    /// Expected number of nodes; pre-sizes the member table.
    #[arg(long)]
    pub expected_size: Option<u32>,
    /// Members each gossip round sends to.
    #[arg(long)]
    pub gossip_fanout: Option<u32>,
    /// Members asked to probe a silent member on our behalf.
    #[arg(long)]
    pub indirect_probes: Option<u32>,
    /// Each membership update is sent retransmit_mult * ceil(log10(n + 1)) times.
    #[arg(long)]
    pub retransmit_mult: Option<u32>,
    /// An unconfirmed suspicion lasts this many times the shortest one.
    #[arg(long)]
    pub suspect_max_factor: Option<u32>,
    /// Bytes per second each member may spend spreading probe data.
    #[arg(long)]
    pub info_budget: Option<u32>,
}

/// Membership timing, resolved. docs/MEMBERSHIP.md explains the protocol these drive.
///
/// Tuning: a crashed member is suspected after about `probe_period + probe_rtt` (the time to
/// reach it in the probe order adds up to one round of `n` probe periods at worst, and is
/// usually far shorter because every member probes it), then declared dead after the
/// suspicion timeout: `suspect_to_down` once two other members confirmed the suspicion, up to
/// `suspect_max_factor` times that while nobody confirms (Lifeguard). Both grow by
/// `log10(n)/2` above 100 members, as gossip needs more hops to reach everyone. Shorter periods
/// detect faster but cost more datagrams (each member sends `1000/probe_period_ms` probes a
/// second, plus `gossip_fanout` datagrams every `gossip_interval` while there is news) and
/// raise false suspicions on a loaded or lossy network; a longer `suspect_to_down` gives a
/// slow member time to refute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipConfig {
    /// Time between two probes (default 500 ms); each member probes every other member once
    /// per round of `n` probes, in a shuffled order.
    pub probe_period: Duration,
    /// Time to wait for a direct ack before indirect probes (default 250 ms); must be shorter
    /// than `probe_period`, and above the network's round-trip time.
    pub probe_rtt: Duration,
    /// Shortest time a suspect has to refute before it is declared dead (default 1500 ms).
    pub suspect_to_down: Duration,
    /// Time between two gossip rounds (default 200 ms); news spreads in about
    /// `log(n)/log(gossip_fanout)` rounds.
    pub gossip_interval: Duration,
    /// Shortest time between two probe-data publications (default 1000 ms); above about 500
    /// members the period stretches to keep within `info_budget`.
    pub info_interval: Duration,
    /// Time between join attempts while alone (default 1000 ms); used by the daemon.
    pub join_retry: Duration,
    /// Expected cluster size (default 16): pre-sizes the member table. The protocol measures
    /// the real size itself.
    pub expected_size: u32,
    /// Members each gossip round sends news to (default 3). More spreads news faster and costs
    /// proportionally more datagrams.
    pub gossip_fanout: u32,
    /// Members asked to probe a member that did not answer directly (default 3). More means
    /// fewer false suspicions on a lossy network, for 4 extra datagrams each per failed probe.
    pub indirect_probes: u32,
    /// Retransmission multiplier λ (default 3): each membership update is sent
    /// `λ * ceil(log10(n + 1))` times by every member that learns it. Raise it on a lossy
    /// network if some members miss updates.
    pub retransmit_mult: u32,
    /// How many times `suspect_to_down` an unconfirmed suspicion lasts (default 3); 1 turns
    /// Lifeguard's dynamic suspicion timeout off.
    pub suspect_max_factor: u32,
    /// Bytes per second each member may spend sending probe data (default 4096), enforced
    /// as a token bucket. Each member's publication period stretches to
    /// `n * 3 * item_size / info_budget` (items are about 50 bytes) when that is above
    /// `info_interval`: with the default about 1 s up to 25 members, 4 s at 100, 40 s at
    /// 1,000 and 6 min at 10,000. Doubling it halves those periods for twice the traffic.
    pub info_budget: u32,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipLayer::default().resolve()
    }
}

impl GossipLayer {
    fn over(self, base: GossipLayer) -> GossipLayer {
        GossipLayer {
            probe_period_ms: self.probe_period_ms.or(base.probe_period_ms),
            probe_rtt_ms: self.probe_rtt_ms.or(base.probe_rtt_ms),
            suspect_to_down_ms: self.suspect_to_down_ms.or(base.suspect_to_down_ms),
            gossip_interval_ms: self.gossip_interval_ms.or(base.gossip_interval_ms),
            info_interval_ms: self.info_interval_ms.or(base.info_interval_ms),
            join_retry_ms: self.join_retry_ms.or(base.join_retry_ms),
            expected_size: self.expected_size.or(base.expected_size),
            gossip_fanout: self.gossip_fanout.or(base.gossip_fanout),
            indirect_probes: self.indirect_probes.or(base.indirect_probes),
            retransmit_mult: self.retransmit_mult.or(base.retransmit_mult),
            suspect_max_factor: self.suspect_max_factor.or(base.suspect_max_factor),
            info_budget: self.info_budget.or(base.info_budget),
        }
    }

    fn resolve(self) -> GossipConfig {
        let ms = Duration::from_millis;
        GossipConfig {
            probe_period: ms(self.probe_period_ms.unwrap_or(500)),
            probe_rtt: ms(self.probe_rtt_ms.unwrap_or(250)),
            suspect_to_down: ms(self.suspect_to_down_ms.unwrap_or(1500)),
            gossip_interval: ms(self.gossip_interval_ms.unwrap_or(200)),
            info_interval: ms(self.info_interval_ms.unwrap_or(1000)),
            join_retry: ms(self.join_retry_ms.unwrap_or(1000)),
            expected_size: self.expected_size.unwrap_or(16),
            gossip_fanout: self.gossip_fanout.unwrap_or(3),
            indirect_probes: self.indirect_probes.unwrap_or(3),
            retransmit_mult: self.retransmit_mult.unwrap_or(3),
            suspect_max_factor: self.suspect_max_factor.unwrap_or(3),
            info_budget: self.info_budget.unwrap_or(4096),
        }
    }
}

impl GossipConfig {
    /// Checks the knobs against each other and their ranges.
    pub fn check(&self) -> Result<()> {
        if self.probe_rtt >= self.probe_period {
            return Err(Error::Config(format!(
                "gossip.probe_rtt_ms ({}) must be shorter than gossip.probe_period_ms ({})",
                self.probe_rtt.as_millis(),
                self.probe_period.as_millis()
            )));
        }
        if self.probe_period.is_zero() || self.gossip_interval.is_zero() {
            return Err(Error::Config("gossip periods must be above 0 ms".into()));
        }
        let ranges = [
            ("expected_size", self.expected_size, 1, 65535),
            ("gossip_fanout", self.gossip_fanout, 1, 16),
            ("indirect_probes", self.indirect_probes, 0, 16),
            ("retransmit_mult", self.retransmit_mult, 1, 16),
            ("suspect_max_factor", self.suspect_max_factor, 1, 16),
            ("info_budget", self.info_budget, 256, u32::MAX),
        ];
        for (name, value, lo, hi) in ranges {
            if !(lo..=hi).contains(&value) {
                return Err(Error::Config(format!(
                    "gossip.{name} = {value} is out of range {lo}..={hi}"
                )));
            }
        }
        Ok(())
    }
}

/// A node's configuration, resolved and checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Node id.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// Gossip (UDP) and RPC (TCP) address to bind.
    pub listen: SocketAddr,
    /// Address other nodes reach this one at.
    pub advertise: SocketAddr,
    /// Addresses to join through.
    pub seeds: Vec<SocketAddr>,
    /// State directory.
    pub state_dir: PathBuf,
    /// Cluster key file.
    pub cluster_key_file: PathBuf,
    /// The cluster CA certificate, this node's certificate and key.
    pub tls: TlsFiles,
    /// The cluster CA's private key, on the node that admits new nodes.
    pub ca_key_file: PathBuf,
    /// What probes measure.
    pub probe_scope: ProbeScope,
    /// CPUs offered, when set by the admin (or derived from the quota).
    pub cpus: Option<u32>,
    /// CPU limit of the node's processes, in CPUs.
    pub cpu_quota: Option<f64>,
    /// Host name of the node's processes, when they get a UTS namespace of their own.
    pub hostname: Option<String>,
    /// Address of the HTTP endpoint (/metrics), if any.
    pub http_listen: Option<SocketAddr>,
    /// Checkpoints of fault-tolerant processes, when set (else see `ConfigLayer::ft_dir`).
    pub ft_dir: Option<PathBuf>,
    /// Membership timing.
    pub gossip: GossipConfig,
    /// Scheduler settings.
    pub sched: SchedConfig,
    /// Shared file system settings.
    pub dfs: DfsConfig,
    /// Resource bounds.
    pub limits: LimitsConfig,
    /// The `[grid]` table as written, when there is one (ssid's grid module reads it).
    pub grid: Option<toml::Table>,
}

impl NodeConfig {
    /// Path of the control socket the `ssi` CLI talks to.
    pub fn control_socket(&self) -> PathBuf {
        self.state_dir.join("ssid.sock")
    }
}

impl ConfigLayer {
    /// Parses a TOML configuration file's text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            Error::Config(format!(
                "{}: {}",
                origin.display(),
                e.to_string().trim_end()
            ))
        })
    }

    /// Reads and parses a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, path)
    }

    /// Lays `self` (e.g. the flags) over `base` (e.g. the file): set fields of `self` win;
    /// seeds given on the command line replace those of the file.
    pub fn over(self, base: ConfigLayer) -> ConfigLayer {
        ConfigLayer {
            id: self.id.or(base.id),
            name: self.name.or(base.name),
            listen: self.listen.or(base.listen),
            advertise: self.advertise.or(base.advertise),
            seeds: if self.seeds.is_empty() {
                base.seeds
            } else {
                self.seeds
            },
            state_dir: self.state_dir.or(base.state_dir),
            cluster_key_file: self.cluster_key_file.or(base.cluster_key_file),
            ca_file: self.ca_file.or(base.ca_file),
            node_cert_file: self.node_cert_file.or(base.node_cert_file),
            node_key_file: self.node_key_file.or(base.node_key_file),
            ca_key_file: self.ca_key_file.or(base.ca_key_file),
            probe_scope: self.probe_scope.or(base.probe_scope),
            cpus: self.cpus.or(base.cpus),
            cpu_quota: self.cpu_quota.or(base.cpu_quota),
            hostname: self.hostname.or(base.hostname),
            http_listen: self.http_listen.or(base.http_listen),
            ft_dir: self.ft_dir.or(base.ft_dir),
            gossip: self.gossip.over(base.gossip),
            sched: self.sched.over(base.sched),
            dfs: self.dfs.over(base.dfs),
            limits: self.limits.over(base.limits),
            grid: self.grid.or(base.grid),
        }
    }

    /// Fills defaults and checks the configuration.
    pub fn resolve(self) -> Result<NodeConfig> {
        let id = self
            .id
            .ok_or_else(|| Error::Config("node id missing: set `id` or --id (1..=65535)".into()))?;
        if id == 0 {
            return Err(Error::Config("node id 0 is invalid: use 1..=65535".into()));
        }
        let listen = self
            .listen
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)));
        let advertise = self.advertise.unwrap_or(listen);
        if advertise.ip().is_unspecified() || advertise.port() == 0 {
            return Err(Error::Config(format!(
                "advertised address {advertise} is not reachable by other nodes: set `advertise` \
                 (or listen on a specific address and port)"
            )));
        }
        let gossip = self.gossip.resolve();
        gossip.check()?;
        if let Some(q) = self.cpu_quota {
            if !(q.is_finite() && q > 0.0) {
                return Err(Error::Config(format!("cpu_quota {q} must be above 0")));
            }
        }
        if self.cpus == Some(0) {
            return Err(Error::Config("cpus must be at least 1".into()));
        }
        let name = self.name.unwrap_or_else(|| format!("node-{id}"));
        if name.is_empty() || name.len() > 64 {
            return Err(Error::Config(format!(
                "node name {name:?}: must be 1 to 64 bytes"
            )));
        }
        if let Some(h) = &self.hostname {
            check_hostname(h)?;
        }
        let state_dir = self
            .state_dir
            .unwrap_or_else(|| PathBuf::from("/var/lib/ssi"));
        Ok(NodeConfig {
            id: NodeId(id),
            name,
            listen,
            advertise,
            seeds: self.seeds.into_iter().filter(|s| *s != advertise).collect(),
            dfs: self.dfs.resolve(&state_dir)?,
            state_dir,
            cluster_key_file: self
                .cluster_key_file
                .unwrap_or_else(|| PathBuf::from("/etc/ssi/cluster.key")),
            tls: TlsFiles {
                ca: self
                    .ca_file
                    .unwrap_or_else(|| PathBuf::from("/etc/ssi/ca.pem")),
                cert: self
                    .node_cert_file
                    .unwrap_or_else(|| PathBuf::from("/etc/ssi/node.pem")),
                key: self
                    .node_key_file
                    .unwrap_or_else(|| PathBuf::from("/etc/ssi/node.key")),
            },
            ca_key_file: self
                .ca_key_file
                .unwrap_or_else(|| PathBuf::from("/etc/ssi/ca.key")),
            probe_scope: self.probe_scope.unwrap_or_default(),
            cpus: self
                .cpus
                .or(self.cpu_quota.map(|q| q.ceil().max(1.0) as u32)),
            cpu_quota: self.cpu_quota,
            hostname: self.hostname,
            http_listen: self.http_listen,
            ft_dir: self.ft_dir,
            gossip,
            sched: self.sched.resolve()?,
            limits: self.limits.resolve()?,
            grid: self.grid,
        })
    }
}

/// A host name as sethostname(2) takes it and resolvers expect it: 1 to 64 bytes of letters,
/// digits, `-` and `.`, not starting or ending with `-` or `.`.
fn check_hostname(h: &str) -> Result<()> {
    let ok_chars = h
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let ok_ends = !h.starts_with(['-', '.']) && !h.ends_with(['-', '.']);
    if h.is_empty() || h.len() > 64 || !ok_chars || !ok_ends {
        return Err(Error::Config(format!(
            "hostname {h:?}: must be 1 to 64 letters, digits, '-' or '.', not starting or \
             ending with '-' or '.'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigLayer> {
        ConfigLayer::from_toml(text, Path::new("test.toml"))
    }

    #[test]
    fn full_file_parses_and_resolves() {
        let cfg = parse(
            r#"
            id = 3
            name = "n3"
            listen = "127.0.0.1:7003"
            seeds = ["127.0.0.1:7001", "127.0.0.1:7003"]
            state_dir = "/tmp/n3"
            cluster_key_file = "/tmp/key"
            probe_scope = "hosted"
            hostname = "n3.testbed"
            [gossip]
            probe_period_ms = 300
            probe_rtt_ms = 100
            "#,
        )
        .and_then(ConfigLayer::resolve)
        .expect("valid config");
        assert_eq!(cfg.id, NodeId(3));
        assert_eq!(cfg.name, "n3");
        // A node never seeds itself.
        assert_eq!(cfg.seeds, vec!["127.0.0.1:7001".parse().expect("addr")]);
        assert_eq!(cfg.probe_scope, ProbeScope::Hosted);
        assert_eq!(cfg.hostname.as_deref(), Some("n3.testbed"));
        assert_eq!(cfg.gossip.probe_period, Duration::from_millis(300));
        assert_eq!(cfg.gossip.suspect_to_down, Duration::from_millis(1500));
        assert_eq!(cfg.control_socket(), PathBuf::from("/tmp/n3/ssid.sock"));
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let err = parse("id = 1\nlisten_addr = \"1.2.3.4:1\"\n").expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("test.toml"), "{msg}");
        assert!(msg.contains("listen_addr"), "{msg}");
    }

    #[test]
    fn missing_or_zero_id_is_refused() {
        assert!(parse("name = \"x\"")
            .and_then(ConfigLayer::resolve)
            .is_err());
        let err = parse("id = 0")
            .and_then(ConfigLayer::resolve)
            .expect_err("id 0");
        assert!(err.to_string().contains("node id 0"));
        assert!(parse("id = 70000").is_err(), "out of u16 range");
    }

    #[test]
    fn flags_override_file() {
        let file = parse(
            "id = 1\nname = \"file\"\nseeds = [\"127.0.0.1:1\"]\n[gossip]\nprobe_period_ms = 900\n",
        )
        .expect("file");
        let flags = ConfigLayer {
            name: Some("flag".into()),
            gossip: GossipLayer {
                probe_rtt_ms: Some(100),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = flags
            .clone()
            .over(file.clone())
            .resolve()
            .expect_err("0.0.0.0 listen");
        assert!(err.to_string().contains("advertise"), "{err}");
        let flags = ConfigLayer {
            advertise: Some("10.0.0.1:7700".parse().expect("addr")),
            ..flags
        };
        let cfg = flags.over(file).resolve().expect("resolves");
        assert_eq!(cfg.name, "flag");
        assert_eq!(cfg.seeds.len(), 1);
        assert_eq!(cfg.gossip.probe_period, Duration::from_millis(900));
        assert_eq!(cfg.gossip.probe_rtt, Duration::from_millis(100));
        assert_eq!(cfg.name, "flag");
        assert_eq!(cfg.listen.port(), DEFAULT_PORT);
    }

    #[test]
    fn hostname_is_unset_by_default_and_checked_when_set() {
        let cfg = parse("id = 1\nlisten = \"127.0.0.1:1\"\n")
            .and_then(ConfigLayer::resolve)
            .expect("valid");
        assert_eq!(cfg.hostname, None);
        for bad in ["", "a b", "-x", "x.", &"a".repeat(65)] {
            let err = parse(&format!(
                "id = 1\nlisten = \"127.0.0.1:1\"\nhostname = {bad:?}\n"
            ))
            .and_then(ConfigLayer::resolve)
            .expect_err(bad);
            assert!(err.to_string().contains("hostname"), "{err}");
        }
    }

    #[test]
    fn sched_table_parses_with_defaults() {
        let cfg = parse(
            "id = 1\nlisten = \"127.0.0.1:1\"\n[sched]\npolicy = \"external\"\nparams = [\"program=/bin/p\"]\nlabels = [\"rack=a\"]\nfilters = [\"ewma:4\"]\nbalance = false\n",
        )
        .and_then(ConfigLayer::resolve)
        .expect("valid");
        assert_eq!(cfg.sched.policy, "external");
        assert_eq!(cfg.sched.params["program"], "/bin/p");
        assert_eq!(cfg.sched.labels["rack"], "a");
        assert!(!cfg.sched.balance);
        assert_eq!(cfg.sched.balance_interval, Duration::from_secs(2));
        let bad = parse("id = 1\nlisten = \"127.0.0.1:1\"\n[sched]\nlabels = [\"rack\"]\n")
            .and_then(ConfigLayer::resolve)
            .expect_err("bad label");
        assert!(bad.to_string().contains("rack"), "{bad}");
    }

    #[test]
    fn dfs_table_parses_with_defaults_and_checks() {
        let cfg = parse("id = 1\nlisten = \"127.0.0.1:1\"\nstate_dir = \"/s\"\n[dfs]\nmode = \"replicated\"\nreplicas = 2\n")
            .and_then(ConfigLayer::resolve)
            .expect("valid");
        assert_eq!(cfg.dfs.mode, DfsMode::Replicated);
        assert_eq!(cfg.dfs.mount, PathBuf::from("/ssi"));
        assert_eq!(cfg.dfs.data_dir, PathBuf::from("/s/dfs"));
        assert_eq!((cfg.dfs.replicas, cfg.dfs.voters), (2, 3));
        let off = parse("id = 1\nlisten = \"127.0.0.1:1\"\n")
            .and_then(ConfigLayer::resolve)
            .expect("valid");
        assert_eq!(off.dfs.mode, DfsMode::Off);
        for (bad, what) in [
            ("replicas = 0", "dfs.replicas"),
            ("mount = \"rel\"", "absolute"),
            ("data_dir = \"/ssi/d\"", "inside the mount point"),
            ("mode = \"external\"", "external"),
            ("mountpoint = \"/x\"", "mountpoint"),
        ] {
            let err = parse(&format!("id = 1\nlisten = \"127.0.0.1:1\"\n[dfs]\n{bad}\n"))
                .and_then(ConfigLayer::resolve)
                .expect_err(bad);
            assert!(err.to_string().contains(what), "{bad}: {err}");
        }
    }

    #[test]
    fn rtt_longer_than_period_is_refused() {
        let err = parse("id = 1\nlisten = \"127.0.0.1:1\"\n[gossip]\nprobe_period_ms = 100\nprobe_rtt_ms = 200\n")
            .and_then(ConfigLayer::resolve)
            .expect_err("bad timing");
        assert!(err.to_string().contains("probe_rtt_ms"));
    }
}
