//! `ssi-testbed`: boots N ssi nodes on one machine, on loopback addresses or each in its own
//! network namespace, kills and restarts them, and tears everything down. Used by people (the
//! `ssi-testbed` binary and its demo), by the end-to-end tests and by the benchmarks.
//!
//! A testbed lives in a directory: `DIR/testbed.json` (its layout), `DIR/cluster.key`, the
//! cluster CA `DIR/ca/` (`ca.pem`, `ca.key`), `DIR/env` (`export SSI_SOCKET=...` of node 1),
//! and per node `DIR/nN/` with `ssid.toml`, `node.pem` and `node.key` (its certificate from
//! the CA), `ssid.sock`, `ssid.log` and `ssid.pid`.

pub mod args;
pub mod mountns;
pub mod netns;
pub mod stats;
mod wait;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use ssi_core::control::{ControlConn, ControlRequest, ControlResponse};
use ssi_core::view::{MemberState, NodeView};

pub use wait::wait_until;

/// Port every node listens on (addresses differ).
pub const PORT: u16 = 7700;

/// The port of a node's HTTP endpoint, when [`NodeOptions::http`] is set.
pub const HTTP_PORT: u16 = 9770;
/// How long `up` and `start` wait for the cluster to agree.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings every node of a testbed gets.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeOptions {
    /// Limit each node's processes to this many CPUs (a cgroup per node), so that nodes
    /// sharing this machine behave like machines of their own.
    pub cpu_quota: Option<f64>,
    /// Lines of the `[sched]` table of every node's config (e.g. `balance = false`).
    pub sched: Vec<String>,
    /// Give every node an HTTP endpoint (/metrics) at its address, port [`HTTP_PORT`].
    #[serde(default)]
    pub http: bool,
    /// Serve the shared file system on every node, with these lines added to its `[dfs]`
    /// table (e.g. `replicas = 1`); each node mounts it at [`Testbed::dfs_mount`].
    #[serde(default)]
    pub dfs: Option<Vec<String>>,
    /// With network namespaces: each node also gets a mount namespace with private `/tmp`,
    /// `/var/tmp`, `/home` and DFS data (see [`mountns`]), so that nodes share no files but
    /// the DFS.
    #[serde(default)]
    pub private_mounts: bool,
    /// Leave the cluster's secrets to `ssi cluster init` (node 1) and `ssi cluster join`
    /// (the others), as on real machines: no CA, key or certificate is made, each node's
    /// config names files of its own (`ca.pem`, `ca.key`, `cluster.key` in its directory), and
    /// [`Testbed::prepare`] starts no node.
    #[serde(default)]
    pub bootstrap: bool,
}

/// The layout of a testbed, saved in `DIR/testbed.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Layout {
    /// Node addresses; node N is `addrs[N-1]`.
    pub addrs: Vec<SocketAddr>,
    /// Network-namespace slot, when nodes live in namespaces.
    pub netns_slot: Option<u8>,
    /// Directory holding `ssid` and `ssi`.
    pub bin_dir: PathBuf,
    /// Settings of every node.
    #[serde(default)]
    pub options: NodeOptions,
    /// TOML tables appended to every node's config (`{ip}` becomes the node's address), e.g.
    /// a `[grid]` table.
    #[serde(default)]
    pub tables: String,
}

/// A running (or stopped) testbed.
#[derive(Debug)]
pub struct Testbed {
    dir: PathBuf,
    layout: Layout,
    /// Daemons started by this process, reaped when they stop.
    children: HashMap<usize, Child>,
    /// Whether dropping this value tears the testbed down.
    owned: bool,
}

/// Where `ssid` and `ssi` are: `$SSI_BIN_DIR`, else next to this executable or one level up
/// (cargo puts test executables in `target/<profile>/deps/`).
pub fn find_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SSI_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    for dir in exe.ancestors().skip(1).take(2) {
        if dir.join("ssid").is_file() {
            return Ok(dir.to_path_buf());
        }
    }
    bail!(
        "cannot find the ssid binary near {} (build it with `cargo build --workspace --bins`, \
         or set SSI_BIN_DIR)",
        exe.display()
    )
}

impl Testbed {
    /// Creates a testbed of `nodes` nodes in `dir`, starts them all and waits until every
    /// node sees every other alive. On failure, whatever was started is torn down.
    pub fn up(dir: &Path, nodes: usize, use_netns: bool) -> Result<Testbed> {
        Self::up_with(dir, nodes, use_netns, NodeOptions::default())
    }

    /// Like [`Testbed::up`], with settings for every node.
    pub fn up_with(
        dir: &Path,
        nodes: usize,
        use_netns: bool,
        options: NodeOptions,
    ) -> Result<Testbed> {
        Self::up_with_tables(dir, nodes, use_netns, options, "")
    }

    /// Like [`Testbed::up_with`], with TOML `tables` appended to every node's config (`{ip}`
    /// in them becomes the node's address).
    pub fn up_with_tables(
        dir: &Path,
        nodes: usize,
        use_netns: bool,
        options: NodeOptions,
        tables: &str,
    ) -> Result<Testbed> {
        let mut tb = Self::prepare(dir, nodes, use_netns, options, tables)?;
        let booted = tb.boot();
        if let Err(e) = booted {
            tb.down();
            return Err(e);
        }
        Ok(tb)
    }

    /// Lays out a testbed (addresses, namespaces, directories) and starts no node. With
    /// [`NodeOptions::bootstrap`] it also writes every node's config (and no secret): the
    /// caller runs `ssi cluster init`/`join` and starts nodes one by one with
    /// [`Testbed::start`]. Dropping it tears down what it made.
    pub fn prepare(
        dir: &Path,
        nodes: usize,
        use_netns: bool,
        options: NodeOptions,
        tables: &str,
    ) -> Result<Testbed> {
        if nodes == 0 {
            bail!("a testbed needs at least one node");
        }
        if dir.join("testbed.json").exists() {
            bail!(
                "{} already holds a testbed: `ssi-testbed down --dir {}` first",
                dir.display(),
                dir.display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let bin_dir = find_bin_dir()?;
        let (addrs, netns_slot) = if use_netns {
            let slot = netns::create(nodes)?;
            let addrs = (1..=nodes)
                .map(|n| netns::node_addr(slot, n).map(|a| SocketAddr::new(IpAddr::V4(a), PORT)))
                .collect::<Result<Vec<_>>>();
            match addrs {
                Ok(a) => (a, Some(slot)),
                Err(e) => {
                    netns::remove_slot(slot);
                    return Err(e);
                }
            }
        } else {
            (loopback_addrs(nodes), None)
        };
        let mut tb = Testbed {
            dir,
            layout: Layout {
                addrs,
                netns_slot,
                bin_dir,
                options,
                tables: tables.to_string(),
            },
            children: HashMap::new(),
            owned: true,
        };
        if tb.layout.options.bootstrap {
            if let Err(e) = tb.write_configs() {
                tb.down();
                return Err(e);
            }
        }
        Ok(tb)
    }

    fn boot(&mut self) -> Result<()> {
        self.make_secrets()?;
        self.write_configs()?;
        self.start_all()
    }

    /// Saves the layout and writes every node's config and the `env` file.
    fn write_configs(&self) -> Result<()> {
        self.save()?;
        for n in 1..=self.nodes() {
            self.write_config(n)?;
        }
        let env = format!(
            "export SSI_SOCKET={}\nexport PATH={}:$PATH\n",
            self.socket(1).display(),
            self.layout.bin_dir.display()
        );
        std::fs::write(self.dir.join("env"), env).context("cannot write env file")
    }

    fn start_all(&mut self) -> Result<()> {
        for n in 1..=self.nodes() {
            self.spawn(n)?;
        }
        let all: Vec<usize> = (1..=self.nodes()).collect();
        self.wait_all_see(&all, &all, MemberState::Alive, SETTLE_TIMEOUT)
    }

    /// The cluster key (mode 0600, as ssid demands), the cluster CA, and each node's
    /// certificate: what an admin sets up before a cluster's first start (see docs/SECURITY.md).
    fn make_secrets(&self) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // Those of an earlier testbed in this directory (it was taken down) are replaced.
        let key = self.dir.join("cluster.key");
        let ca = self.ca_dir();
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_dir_all(&ca);
        for n in 1..=self.nodes() {
            for f in [ssi_core::pki::NODE_CERT, ssi_core::pki::NODE_KEY] {
                let _ = std::fs::remove_file(self.node_dir(n).join(f));
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .with_context(|| format!("cannot create {}", key.display()))?;
        writeln!(f, "{}", ssi_core::auth::ClusterKey::generate_hex())
            .with_context(|| format!("cannot write {}", key.display()))?;
        ssi_core::pki::init_ca(&ca, "testbed")?;
        for n in 1..=self.nodes() {
            ssi_core::pki::issue_node_cert(&ca, &self.node_dir(n), &format!("n{n}"))?;
        }
        Ok(())
    }

    /// The cluster CA's directory (`ca.pem`, `ca.key`).
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    /// Opens the testbed in `dir` made by an earlier `up` (maybe by another process); dropping
    /// the value does not tear it down.
    pub fn open(dir: &Path) -> Result<Testbed> {
        let path = dir.join("testbed.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: no testbed here", path.display()))?;
        let layout: Layout = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a testbed layout", path.display()))?;
        Ok(Testbed {
            dir: dir.to_path_buf(),
            layout,
            children: HashMap::new(),
            owned: false,
        })
    }

    fn save(&self) -> Result<()> {
        let path = self.dir.join("testbed.json");
        std::fs::write(&path, serde_json::to_string_pretty(&self.layout)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.layout.addrs.len()
    }

    /// The testbed directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Address of node `n`.
    pub fn addr(&self, n: usize) -> SocketAddr {
        self.layout.addrs[n - 1]
    }

    /// Directory of node `n`.
    pub fn node_dir(&self, n: usize) -> PathBuf {
        self.dir.join(format!("n{n}"))
    }

    /// Control socket of node `n`.
    pub fn socket(&self, n: usize) -> PathBuf {
        self.node_dir(n).join("ssid.sock")
    }

    /// Log file of node `n`.
    pub fn log(&self, n: usize) -> PathBuf {
        self.node_dir(n).join("ssid.log")
    }

    /// Path of a binary of the project (`ssid`, `ssi`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.layout.bin_dir.join(name)
    }

    /// The network namespace node `n` runs in, if any.
    pub fn netns(&self, n: usize) -> Option<String> {
        self.layout.netns_slot.map(|s| netns::ns_name(s, n))
    }

    /// The address of node `n`'s HTTP endpoint, if the nodes have one.
    pub fn http_addr(&self, n: usize) -> Option<SocketAddr> {
        self.layout
            .options
            .http
            .then(|| SocketAddr::new(self.addr(n).ip(), HTTP_PORT))
    }

    fn write_config(&self, n: usize) -> Result<()> {
        let nd = self.node_dir(n);
        std::fs::create_dir_all(&nd).with_context(|| format!("cannot create {}", nd.display()))?;
        let seeds: Vec<String> = (1..=self.nodes())
            .filter(|&m| m != n)
            .map(|m| format!("\"{}\"", self.addr(m)))
            .collect();
        // Bootstrapped nodes each have their own files, as separate machines would.
        let (cluster_key, ca) = if self.layout.options.bootstrap {
            (nd.join("cluster.key"), nd.join(ssi_core::pki::CA_CERT))
        } else {
            (
                self.dir.join("cluster.key"),
                self.ca_dir().join(ssi_core::pki::CA_CERT),
            )
        };
        // All nodes share one kernel: each gets its own host name (the node name), as
        // separate machines would have.
        let mut text = format!(
            "id = {n}\nname = \"n{n}\"\nhostname = \"n{n}\"\nlisten = \"{}\"\nseeds = [{}]\n\
             state_dir = \"{}\"\ncluster_key_file = \"{}\"\nprobe_scope = \"hosted\"\n\
             ca_file = \"{}\"\nnode_cert_file = \"{}\"\nnode_key_file = \"{}\"\n\
             ca_key_file = \"{}\"\n",
            self.addr(n),
            seeds.join(", "),
            nd.display(),
            cluster_key.display(),
            ca.display(),
            nd.join(ssi_core::pki::NODE_CERT).display(),
            nd.join(ssi_core::pki::NODE_KEY).display(),
            nd.join(ssi_core::pki::CA_KEY).display(),
        );
        if let Some(q) = self.layout.options.cpu_quota {
            text.push_str(&format!("cpu_quota = {q}\n"));
        }
        if let Some(a) = self.http_addr(n) {
            text.push_str(&format!("http_listen = \"{a}\"\n"));
        }
        // Tables come after every top-level key.
        if !self.layout.options.sched.is_empty() {
            text.push_str("[sched]\n");
            for line in &self.layout.options.sched {
                text.push_str(line);
                text.push('\n');
            }
        }
        if let Some(lines) = &self.layout.options.dfs {
            text.push_str(&format!(
                "[dfs]\nmode = \"replicated\"\nmount = \"{}\"\ndata_dir = \"{}\"\n",
                self.dfs_mount(n).display(),
                nd.join("dfs").display()
            ));
            for line in lines {
                text.push_str(line);
                text.push('\n');
            }
        }
        let ip = self.addr(n).ip().to_string();
        text.push_str(&self.layout.tables.replace("{ip}", &ip));
        std::fs::write(nd.join("ssid.toml"), text).context("cannot write node config")
    }

    /// Where node `n` mounts the shared file system: the same path on every node when they
    /// have private mount namespaces, else a mount point of its own (nodes then share this
    /// machine's mount table). See [`Testbed::command_in`] to look at it from the node.
    pub fn dfs_mount(&self, n: usize) -> PathBuf {
        if self.private_mounts() {
            PathBuf::from(mountns::DFS_MOUNT)
        } else {
            self.node_dir(n).join("mnt")
        }
    }

    fn private_mounts(&self) -> bool {
        self.layout.options.private_mounts && self.layout.netns_slot.is_some()
    }

    /// A command that runs `program` inside node `n`'s namespaces (network and, with private
    /// mounts, mount): it sees the files the node sees. The node must be running.
    pub fn command_in(&self, n: usize, program: &Path) -> Result<Command> {
        let Some(pid) = self.pid(n) else {
            bail!("node {n} is not running");
        };
        let mut c = Command::new("nsenter");
        c.arg("-t").arg(pid.to_string()).arg("-n");
        if self.private_mounts() {
            c.arg("-m");
        }
        c.arg("--").arg(program);
        Ok(c)
    }

    /// Detaches node `n`'s file system mount if its daemon died and left it.
    fn detach_dfs(&self, n: usize) {
        if self.layout.options.dfs.is_some() && self.pid(n).is_none() {
            let mnt = self.dfs_mount(n);
            let mounted = std::fs::read_to_string("/proc/self/mountinfo")
                .map(|m| {
                    m.lines()
                        .any(|l| l.split(' ').nth(4) == Some(&*mnt.to_string_lossy()))
                })
                .unwrap_or(false);
            if mounted {
                let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }

    /// A command that runs `program` where node `n` lives (inside its network namespace, if
    /// any). `nsenter --net` changes the network namespace only: `ip netns exec` would also
    /// mount a fresh /sys, without the cgroup hierarchies the node's CPU quota needs.
    pub fn command_on(&self, n: usize, program: &Path) -> Command {
        match self.netns(n) {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    fn spawn(&mut self, n: usize) -> Result<()> {
        let nd = self.node_dir(n);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(n))
            .with_context(|| format!("cannot open {}", self.log(n).display()))?;
        let log2 = log.try_clone().context("cannot duplicate log file")?;
        let mut cmd = if self.private_mounts() {
            let mut c = self.command_on(n, Path::new("unshare"));
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(mountns::script(
                    &self.dir,
                    &self.layout.bin_dir,
                    n,
                    self.nodes(),
                ))
                .arg("sh")
                .arg(self.bin("ssid"));
            c
        } else {
            self.command_on(n, &self.bin("ssid"))
        };
        cmd.arg("--config")
            .arg(nd.join("ssid.toml"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        // Its own process group: a Ctrl-C meant for the testbed does not reach the daemons.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start ssid for node {n}"))?;
        std::fs::write(nd.join("ssid.pid"), child.id().to_string())
            .context("cannot write pid file")?;
        self.children.insert(n, child);
        Ok(())
    }

    /// Pid of node `n`'s daemon, if it runs.
    pub fn pid(&self, n: usize) -> Option<Pid> {
        let text = std::fs::read_to_string(self.node_dir(n).join("ssid.pid")).ok()?;
        let pid = Pid::from_raw(text.trim().parse().ok()?);
        running(pid).then_some(pid)
    }

    fn signal(&mut self, n: usize, sig: Signal, timeout: Duration) -> Result<()> {
        let Some(pid) = self.pid(n) else {
            bail!("node {n} is not running");
        };
        kill(pid, sig).with_context(|| format!("cannot signal node {n} (pid {pid})"))?;
        // A zombie counts as gone; reap it if it is our child.
        let gone = wait_until(timeout, || !running(pid));
        if let Some(mut c) = self.children.remove(&n) {
            if gone {
                let _ = c.wait();
            }
        }
        if !gone {
            bail!("node {n} (pid {pid}) did not stop within {timeout:?}");
        }
        let _ = std::fs::remove_file(self.node_dir(n).join("ssid.pid"));
        Ok(())
    }

    /// Kills node `n`'s daemon with SIGKILL (a crash) and waits until it is gone.
    pub fn kill(&mut self, n: usize) -> Result<()> {
        self.signal(n, Signal::SIGKILL, Duration::from_secs(10))
    }

    /// Stops node `n`'s daemon with SIGTERM (a graceful leave) and waits until it is gone.
    pub fn stop(&mut self, n: usize) -> Result<()> {
        self.signal(n, Signal::SIGTERM, Duration::from_secs(10))
    }

    /// Starts node `n` again and waits until every running node sees it alive.
    pub fn start(&mut self, n: usize) -> Result<()> {
        if self.pid(n).is_some() {
            bail!("node {n} is already running");
        }
        self.spawn(n)?;
        let running: Vec<usize> = (1..=self.nodes())
            .filter(|&m| self.pid(m).is_some())
            .collect();
        self.wait_all_see(&running, &[n], MemberState::Alive, SETTLE_TIMEOUT)
    }

    /// Node `observer`'s view of the cluster.
    pub fn view(&self, observer: usize) -> Result<Vec<NodeView>> {
        let socket = self.socket(observer);
        block_on(async move {
            let mut conn = ControlConn::connect(&socket).await?;
            match conn.call(&ControlRequest::Nodes).await? {
                ControlResponse::Nodes(rows) => Ok(rows),
                other => bail!("unexpected answer {other:?}"),
            }
        })
    }

    /// State of node `target` as node `observer` sees it (`None` if unknown or unreachable).
    pub fn state_seen(&self, observer: usize, target: usize) -> Option<MemberState> {
        let id = u16::try_from(target).ok()?;
        self.view(observer)
            .ok()?
            .into_iter()
            .find(|r| r.id.0 == id)
            .map(|r| r.state)
    }

    /// Waits until every node of `observers` sees every node of `targets` in `state`.
    pub fn wait_all_see(
        &self,
        observers: &[usize],
        targets: &[usize],
        state: MemberState,
        timeout: Duration,
    ) -> Result<()> {
        let ok = wait_until(timeout, || {
            observers.iter().all(|&o| {
                targets
                    .iter()
                    .all(|&t| self.state_seen(o, t) == Some(state))
            })
        });
        if !ok {
            let mut seen = String::new();
            for &o in observers {
                let states: Vec<String> = targets
                    .iter()
                    .map(|&t| format!("{t}:{:?}", self.state_seen(o, t)))
                    .collect();
                seen.push_str(&format!(" node {o} sees [{}];", states.join(" ")));
            }
            bail!("nodes did not agree within {timeout:?} that {targets:?} are {state}:{seen}");
        }
        Ok(())
    }

    /// Stops every daemon and removes the namespaces; the directory stays (logs).
    pub fn down(&mut self) {
        for n in 1..=self.nodes() {
            if self.pid(n).is_some() {
                // A daemon that ignores SIGTERM gets SIGKILL.
                if self.stop(n).is_err() {
                    let _ = self.kill(n);
                }
            }
        }
        if let Some(slot) = self.layout.netns_slot {
            netns::remove_slot(slot);
        }
        for n in 1..=self.nodes() {
            self.detach_dfs(n);
            self.remove_cgroup(n);
        }
        let _ = std::fs::remove_file(self.dir.join("testbed.json"));
        self.owned = false;
    }

    /// Removes the cgroups node `n`'s daemon made (its users' cgroups, then the node's), once
    /// their processes are gone.
    fn remove_cgroup(&self, n: usize) {
        for name in ["cgroup-users", "cgroup"] {
            let file = self.node_dir(n).join(name);
            let Ok(path) = std::fs::read_to_string(&file) else {
                continue;
            };
            let path = PathBuf::from(path.trim());
            // The node's processes die with its namespace init, just after the daemon.
            let gone = wait_until(Duration::from_secs(5), || {
                if let Ok(entries) = std::fs::read_dir(&path) {
                    for e in entries.flatten() {
                        if e.file_name().to_string_lossy().starts_with("user-") {
                            let _ = std::fs::remove_dir(e.path());
                        }
                    }
                }
                std::fs::remove_dir(&path).is_ok() || !path.exists()
            });
            if gone {
                let _ = std::fs::remove_file(file);
            }
        }
    }

    /// Keeps the testbed running after this value is dropped.
    pub fn detach(mut self) {
        self.owned = false;
        self.children.clear();
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if self.owned {
            self.down();
        }
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn running(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Loopback addresses for `nodes` nodes: 127.A.B.N with random A, B, so that testbeds that
/// run at the same time do not collide.
fn loopback_addrs(nodes: usize) -> Vec<SocketAddr> {
    let a: u8 = rand::random_range(1..=254);
    let b: u8 = rand::random();
    (1..=nodes)
        .map(|n| {
            let hi = u8::try_from(n >> 8).unwrap_or(u8::MAX);
            let lo = u8::try_from(n & 0xff).unwrap_or(0);
            let ip = Ipv4Addr::new(127, a, b.wrapping_add(hi), lo);
            SocketAddr::new(IpAddr::V4(ip), PORT)
        })
        .collect()
}

/// Runs a future to completion on a small runtime of its own.
fn block_on<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?
        .block_on(fut)
}
