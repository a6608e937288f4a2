//! `ssi mpirun`: Open MPI's own `mpirun`, with the cluster as its host list and ssi as the way
//! its daemons reach the nodes.
//!
//! ```text
//!  ssi mpirun -np 6 ./prog
//!   `- exec mpirun -np 6 ./prog        environment: OMPI_MCA_plm_rsh_agent="<ssi> mpirun-agent",
//!       |                              OMPI_MCA_orte_default_dash_host="ssi-node-2:2,ssi-node-1:2,..."
//!       |- ssi mpirun-agent ssi-node-2 orted ...     one per node, started by mpirun
//!       |    `- (as `ssi run --node 2`) sh -c "orted ..."   in node 2's namespace
//!       |                                  `- ranks (global pids, in `ssi ps`)
//!       `- ssi mpirun-agent ssi-node-1 orted ...
//! ```
//!
//! Everything ssi adds goes through the environment, so that any option given to `ssi mpirun`
//! is mpirun's and wins over ssi's defaults (Open MPI ranks its command line above its
//! environment): `--host` or `--hostfile` replace the generated host list, `--mca` settings
//! replace ssi's. The host names are synthetic (`ssi-node-ID`) on purpose: a name that resolves
//! to this machine would make mpirun start that node's daemon itself, outside ssi.

use std::convert::Infallible;
use std::ffi::OsString;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use scheduler::policy::LeastLoaded;
use scheduler::{NodeSample, Policy, Request};
use ssi_core::control::{ControlRequest, ControlResponse};
use ssi_core::pids::PidRange;
use ssi_core::process::RunSpec;
use ssi_core::sched::SchedAnswer;
use ssi_core::NodeId;

/// Prefix of the host names given to mpirun: node N is `ssi-node-N`.
pub const HOST_PREFIX: &str = "ssi-node-";

/// Name of the hidden `ssi` mode mpirun calls as its launch agent.
pub const AGENT_MODE: &str = "mpirun-agent";

/// The host name mpirun knows node `id` by.
pub fn host_name(id: NodeId) -> String {
    format!("{HOST_PREFIX}{}", id.0)
}

/// The node behind a host name made by [`host_name`].
pub fn node_of_host(host: &str) -> Result<NodeId> {
    host.strip_prefix(HOST_PREFIX)
        .and_then(|n| n.parse::<u16>().ok())
        .map(NodeId)
        .with_context(|| {
            format!("host {host:?}: not an ssi node (ssi mpirun names nodes {HOST_PREFIX}ID)")
        })
}

/// The nodes that may run ranks, most preferred first, with their slots (CPUs): of `nodes`
/// (alive nodes as the placement policy sees them), those that can host processes, in the
/// order `policy` picks them one after another.
pub fn host_list(nodes: Vec<NodeSample>, policy: &mut dyn Policy) -> Vec<(NodeId, u32)> {
    let mut left: Vec<NodeSample> = nodes
        .into_iter()
        .filter(|c| PidRange::of(c.id).is_some())
        .collect();
    let mut order = Vec::with_capacity(left.len());
    while let Some(id) = policy.place(&left, &Request::default()) {
        let Some(i) = left.iter().position(|c| c.id == id) else {
            break;
        };
        let c = left.remove(i);
        order.push((c.id, c.cpus.max(1)));
    }
    order
}

/// The local node's placement policy and the nodes as it sees them (after its filters), from
/// what `ssi sched show` reads. `None` if the daemon does not say, or if the policy is external
/// (it is the daemon's to run, not this command's).
async fn local_policy(socket: &Path) -> Option<(Box<dyn Policy>, Vec<NodeSample>)> {
    let answers = crate::sched::ask(socket, ControlRequest::SchedShow)
        .await
        .ok()?;
    let Some(SchedAnswer::Status(me)) = answers.into_iter().next() else {
        return None;
    };
    if me.policy == "external" {
        return None;
    }
    let policy = scheduler::registry::policy(&me.policy, &me.params).ok()?;
    Some((policy, me.view))
}

/// An IPv4 network, `addr/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// Network address (host bits zero).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl Subnet {
    /// The network of `addr` with a `prefix`-bit mask.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.min(32);
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & Self::mask(prefix)),
            prefix,
        }
    }

    fn mask(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether the whole network lies in a private range of RFC 1918.
    pub fn is_private(&self) -> bool {
        [
            Subnet::new(Ipv4Addr::new(10, 0, 0, 0), 8),
            Subnet::new(Ipv4Addr::new(172, 16, 0, 0), 12),
            Subnet::new(Ipv4Addr::new(192, 168, 0, 0), 16),
        ]
        .iter()
        .any(|block| self.prefix >= block.prefix && block.contains(self.addr))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The network Open MPI's TCP traffic is kept to: the narrowest network of an interface of
/// this machine that holds every node address, when that network is private (RFC 1918).
/// Such a network is then the cluster's own; mpirun (here) and every node have an address on
/// it. `None` (Open MPI's own choice) otherwise: no node address, an address outside IPv4,
/// or no local interface on a private network holding them all.
pub fn cluster_subnet(nodes: &[Ipv4Addr], local: &[Subnet]) -> Option<Subnet> {
    if nodes.is_empty() {
        return None;
    }
    local
        .iter()
        .filter(|net| net.is_private() && nodes.iter().all(|ip| net.contains(*ip)))
        .max_by_key(|net| net.prefix)
        .copied()
}

/// The IPv4 networks of this machine's interfaces.
fn local_subnets() -> Vec<Subnet> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let ip = a.address?.as_sockaddr_in()?.ip();
            let mask = a.netmask?.as_sockaddr_in()?.ip();
            let prefix = u8::try_from(u32::from(mask).leading_ones()).ok()?;
            Some(Subnet::new(ip, prefix))
        })
        .collect()
}

/// MCA parameters ssi keeps to the cluster's network, with the names that also set them.
const NETWORK_PARAMS: [(&str, &[&str]); 2] = [
    (
        "oob_tcp_if_include",
        &[
            "oob_tcp_if_include",
            "oob_tcp_if_exclude",
            "oob_tcp_include",
            "oob_tcp_exclude",
        ],
    ),
    (
        "btl_tcp_if_include",
        &["btl_tcp_if_include", "btl_tcp_if_exclude"],
    ),
];

/// Whether the user set MCA parameter `name`: in the environment, or with `--mca`/`-mca`
/// (`--gmca`/`-gmca`) among the mpirun arguments.
fn user_set(name: &str, args: &[OsString], env: &[(OsString, OsString)]) -> bool {
    let var = format!("OMPI_MCA_{name}");
    let in_env = env.iter().any(|(k, _)| k.as_bytes() == var.as_bytes());
    let on_line = args.windows(2).any(|w| {
        matches!(w[0].as_bytes(), b"--mca" | b"-mca" | b"--gmca" | b"-gmca")
            && w[1].as_bytes() == name.as_bytes()
    });
    in_env || on_line
}

/// What `ssi mpirun` adds to mpirun's environment.
#[derive(Clone, Debug)]
pub struct Launch {
    /// `plm_rsh_agent`: the `ssi` binary and its agent mode.
    pub agent: String,
    /// The control socket, for the agents.
    pub socket: String,
    /// Nodes and slots, most preferred first.
    pub hosts: Vec<(NodeId, u32)>,
    /// The cluster's network, if any.
    pub subnet: Option<Subnet>,
    /// Whether mpirun runs as root.
    pub root: bool,
}

impl Launch {
    /// The environment variables to set, given the mpirun arguments and the current
    /// environment (whose own MCA network settings win over ssi's).
    pub fn environment(
        &self,
        args: &[OsString],
        env: &[(OsString, OsString)],
    ) -> Vec<(String, String)> {
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .map(|(id, slots)| format!("{}:{slots}", host_name(*id)))
            .collect();
        let mut vars = vec![
            ("SSI_SOCKET".to_string(), self.socket.clone()),
            ("OMPI_MCA_plm".into(), "rsh".into()),
            ("OMPI_MCA_plm_rsh_agent".into(), self.agent.clone()),
            // Every daemon is started from here: in a tree spawn, daemons would call the agent
            // themselves, inside the nodes' namespaces, with this node's socket path.
            ("OMPI_MCA_plm_rsh_no_tree_spawn".into(), "1".into()),
            // Daemons stay in the foreground (no --daemonize): each lives exactly as long as its
            // agent, and its stdout and stderr reach this terminal.
            ("OMPI_MCA_orte_leave_session_attached".into(), "1".into()),
            ("OMPI_MCA_orte_default_dash_host".into(), hosts.join(",")),
        ];
        if let Some(net) = self.subnet {
            for (param, names) in NETWORK_PARAMS {
                if !names.iter().any(|n| user_set(n, args, env)) {
                    vars.push((format!("OMPI_MCA_{param}"), net.to_string()));
                }
            }
        }
        if self.root {
            vars.push(("OMPI_ALLOW_RUN_AS_ROOT".into(), "1".into()));
            vars.push(("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM".into(), "1".into()));
        }
        vars
    }
}

/// `ssi mpirun ARGS`: replaces this process with `mpirun ARGS`, set up to run its ranks on
/// the cluster. Returns only on error.
pub async fn mpirun(socket: &Path, args: Vec<OsString>) -> Result<Infallible> {
    let ControlResponse::Nodes(view) = crate::client::call(socket, ControlRequest::Nodes).await?
    else {
        bail!("ssid sent an unexpected answer to a nodes request");
    };
    let (mut policy, nodes) = match local_policy(socket).await {
        Some(p) => p,
        None => (
            Box::new(LeastLoaded) as Box<dyn Policy>,
            NodeSample::from_view(&view),
        ),
    };
    let hosts = host_list(nodes, policy.as_mut());
    if hosts.is_empty() {
        bail!("no alive node of the cluster can host processes");
    }
    let node_ips: Option<Vec<Ipv4Addr>> = view
        .iter()
        .filter(|n| hosts.iter().any(|(id, _)| *id == n.id))
        .map(|n| match n.addr.parse::<SocketAddr>() {
            Ok(SocketAddr::V4(a)) => Some(*a.ip()),
            _ => None,
        })
        .collect();
    let subnet = node_ips.and_then(|ips| cluster_subnet(&ips, &local_subnets()));
    let exe = std::env::current_exe().context("cannot find the ssi executable")?;
    let exe = exe
        .to_str()
        .filter(|p| !p.contains(|c: char| c.is_whitespace() || c == ':'))
        .with_context(|| {
            format!(
                "{}: mpirun cannot call a launch agent whose path has spaces or ':'",
                exe.display()
            )
        })?
        .to_string();
    let socket = std::path::absolute(socket)
        .with_context(|| format!("{}: cannot resolve the path", socket.display()))?;
    let launch = Launch {
        agent: format!("{exe} {AGENT_MODE}"),
        socket: socket.to_string_lossy().into_owned(),
        hosts,
        subnet,
        root: nix::unistd::geteuid().is_root(),
    };
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let vars = launch.environment(&args, &env);
    let err = std::process::Command::new("mpirun")
        .args(&args)
        .envs(vars)
        .exec();
    if err.kind() == std::io::ErrorKind::NotFound {
        bail!("mpirun not found in PATH: install Open MPI (Debian: apt-get install openmpi-bin)");
    }
    Err(err).context("cannot run mpirun")
}

/// The shell that runs the daemon command line: mpirun writes it in the syntax of the user's
/// login shell (Bourne, or csh for csh and tcsh users), as it would for ssh.
fn shell() -> String {
    let login = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.shell);
    match login {
        Some(sh)
            if matches!(
                sh.file_name().and_then(|n| n.to_str()),
                Some("csh" | "tcsh")
            ) =>
        {
            sh.to_string_lossy().into_owned()
        }
        _ => "sh".into(),
    }
}

/// `ssi mpirun-agent HOST COMMAND...` (called by mpirun): runs COMMAND, joined with spaces as
/// ssh would, with a shell on the node behind HOST, wired to this process as `ssi run --node`
/// does; returns its exit code.
pub async fn agent(socket: &Path, host: &str, command: &[OsString]) -> Result<i32> {
    let node = node_of_host(host)?;
    let line = command
        .iter()
        .map(|a| a.as_bytes())
        .collect::<Vec<_>>()
        .join(&b' ');
    let spec = RunSpec {
        argv: vec![shell().into_bytes(), b"-c".to_vec(), line],
        env: crate::run::current_env(),
        // The daemon's directory does not matter (ranks get mpirun's); `/` exists everywhere.
        cwd: b"/".to_vec(),
        node: Some(node),
        cpus: None,
        mem_bytes: None,
        constraints: Vec::new(),
        detach: false,
        rlimits: crate::run::current_rlimits(),
        ft: None,
    };
    crate::run::session(socket, ControlRequest::Run(spec), false).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssi_core::probe::ProbeData;
    use ssi_core::view::{MemberState, NodeView};

    fn node(id: u16, state: MemberState, cpus: u32, load1: f64, addr: &str) -> NodeView {
        NodeView {
            id: NodeId(id),
            name: format!("n{id}"),
            addr: addr.into(),
            state,
            incarnation: 0,
            gen: 1,
            probe: ProbeData {
                cpus,
                mem_total_bytes: 1 << 30,
                mem_free_bytes: 1 << 29,
                load1,
                runnable: load1,
                ..ProbeData::default()
            },
            local: id == 1,
        }
    }

    #[test]
    fn host_names_round_trip_and_foreign_names_are_refused() {
        assert_eq!(host_name(NodeId(12)), "ssi-node-12");
        assert_eq!(node_of_host("ssi-node-12").expect("ours"), NodeId(12));
        for bad in ["localhost", "ssi-node-", "ssi-node-x", "ssi-node-70000"] {
            let err = node_of_host(bad).expect_err(bad).to_string();
            assert!(err.contains(bad) && err.contains("ssi-node-ID"), "{err}");
        }
    }

    #[test]
    fn hosts_are_alive_nodes_in_policy_order_with_cpus_as_slots() {
        let view = [
            node(1, MemberState::Alive, 4, 3.0, "10.0.0.1:7700"),
            node(2, MemberState::Alive, 2, 0.5, "10.0.0.2:7700"),
            node(3, MemberState::Dead, 8, 0.0, "10.0.0.3:7700"),
            node(4, MemberState::Alive, 8, 0.5, "10.0.0.4:7700"),
            node(5, MemberState::Alive, 2, 0.5, "10.0.0.5:7700"),
            // Above the pid ranges: cannot host.
            node(2000, MemberState::Alive, 64, 0.0, "10.0.0.6:7700"),
        ];
        let order = host_list(NodeSample::from_view(&view), &mut LeastLoaded);
        assert_eq!(
            order,
            vec![
                (NodeId(4), 8), // 0.0625 per CPU
                (NodeId(2), 2), // 0.25, tie with 5: lower id first
                (NodeId(5), 2),
                (NodeId(1), 4), // 0.75
            ]
        );
        // Another policy, another order: pack fills the busiest node that has room first.
        let mut pack =
            scheduler::registry::policy("pack", &std::collections::BTreeMap::new()).expect("pack");
        let order = host_list(NodeSample::from_view(&view), pack.as_mut());
        let ids: Vec<u16> = order.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids.len(), 4, "{ids:?}");
        assert_eq!((ids[0], ids[3]), (1, 4), "{ids:?}");
    }

    #[test]
    fn subnet_is_the_narrowest_private_local_network_holding_every_node() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
        let testbed = [ip("10.77.1.1"), ip("10.77.1.2"), ip("10.77.1.3")];
        let local = [
            Subnet::new(ip("127.0.0.1"), 8),
            Subnet::new(ip("192.0.2.2"), 24),
            Subnet::new(ip("10.0.0.0"), 8),
            Subnet::new(ip("10.77.0.254"), 16),
        ];
        let net = cluster_subnet(&testbed, &local).expect("found");
        assert_eq!(net.to_string(), "10.77.0.0/16");
        // A node off every local network: no restriction.
        let spread = [ip("10.77.1.1"), ip("172.16.0.1")];
        assert_eq!(cluster_subnet(&spread, &local), None);
        // Loopback and public networks are never imposed.
        assert_eq!(cluster_subnet(&[ip("127.5.6.1")], &local), None);
        assert_eq!(cluster_subnet(&[ip("192.0.2.7")], &local), None);
        assert_eq!(cluster_subnet(&[], &local), None);
        // A /8 wider than 172.16/12 is not private as a whole.
        assert!(!Subnet::new(ip("172.0.0.0"), 8).is_private());
        assert!(Subnet::new(ip("172.20.0.0"), 16).is_private());
        assert!(Subnet::new(ip("192.168.1.9"), 24).is_private());
    }

    fn launch(subnet: Option<Subnet>, root: bool) -> Launch {
        Launch {
            agent: "/usr/bin/ssi mpirun-agent".into(),
            socket: "/run/ssid.sock".into(),
            hosts: vec![(NodeId(2), 4), (NodeId(1), 2)],
            subnet,
            root,
        }
    }

    fn get<'a>(vars: &'a [(String, String)], k: &str) -> Option<&'a str> {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn environment_carries_agent_hosts_network_and_root() {
        let net = Subnet::new(Ipv4Addr::new(10, 77, 0, 254), 16);
        let vars = launch(Some(net), true).environment(&[], &[]);
        assert_eq!(
            get(&vars, "OMPI_MCA_plm_rsh_agent"),
            Some("/usr/bin/ssi mpirun-agent")
        );
        assert_eq!(
            get(&vars, "OMPI_MCA_orte_default_dash_host"),
            Some("ssi-node-2:4,ssi-node-1:2")
        );
        assert_eq!(
            get(&vars, "OMPI_MCA_oob_tcp_if_include"),
            Some("10.77.0.0/16")
        );
        assert_eq!(
            get(&vars, "OMPI_MCA_btl_tcp_if_include"),
            Some("10.77.0.0/16")
        );
        assert_eq!(get(&vars, "OMPI_ALLOW_RUN_AS_ROOT"), Some("1"));
        assert_eq!(get(&vars, "SSI_SOCKET"), Some("/run/ssid.sock"));

        let vars = launch(None, false).environment(&[], &[]);
        assert_eq!(get(&vars, "OMPI_MCA_oob_tcp_if_include"), None);
        assert_eq!(get(&vars, "OMPI_ALLOW_RUN_AS_ROOT"), None);
    }

    #[test]
    fn user_network_settings_win() {
        let net = Subnet::new(Ipv4Addr::new(10, 77, 0, 254), 16);
        let args: Vec<OsString> = ["--mca", "btl_tcp_if_exclude", "lo", "-np", "2", "a.out"]
            .iter()
            .map(OsString::from)
            .collect();
        let env = vec![(
            OsString::from("OMPI_MCA_oob_tcp_if_include"),
            OsString::from("eth1"),
        )];
        let vars = launch(Some(net), false).environment(&args, &env);
        assert_eq!(get(&vars, "OMPI_MCA_oob_tcp_if_include"), None);
        assert_eq!(get(&vars, "OMPI_MCA_btl_tcp_if_include"), None);
        // A program argument that merely looks like a parameter changes nothing.
        let args: Vec<OsString> = ["-np", "2", "a.out", "btl_tcp_if_exclude"]
            .iter()
            .map(OsString::from)
            .collect();
        let vars = launch(Some(net), false).environment(&args, &[]);
        assert_eq!(
            get(&vars, "OMPI_MCA_btl_tcp_if_include"),
            Some("10.77.0.0/16")
        );
    }
}
