//! The command line of `ssi-testbed`, apart from `main.rs` so that its manual page and shell
//! completions are generated from this definition (see the `packaging` crate).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Boot N ssi nodes on this machine (loopback or network namespaces), break them, tear down.
#[derive(Debug, Parser)]
#[command(
    name = "ssi-testbed",
    version,
    after_help = "Examples:
  ssi-testbed up --nodes 3 --dir /tmp/tb      # 3 nodes on loopback addresses
  ssi-testbed kill --dir /tmp/tb --node 2     # crash node 2
  ssi-testbed down --dir /tmp/tb              # stop everything"
)]
pub struct Args {
    /// The command.
    #[command(subcommand)]
    pub command: Cmd,
}

/// A command of `ssi-testbed`.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start N nodes and wait until all see each other alive; writes DIR/env.
    #[command(after_help = "Examples:
  ssi-testbed up --nodes 3 --dir /tmp/tb                        # then: . /tmp/tb/env && ssi nodes
  ssi-testbed up --nodes 4 --dir /tmp/tb --netns --cpu-quota 0.5   # namespaces, half a CPU each
  ssi-testbed up --nodes 2 --dir /tmp/tb --http                 # prints each node's /metrics URL
  ssi-testbed up --dir /tmp/tb --netns --private-mounts --dfs   # nodes share only the DFS")]
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Testbed directory.
        #[arg(long)]
        dir: PathBuf,
        /// Put each node in its own network namespace on a bridge (root only).
        #[arg(long)]
        netns: bool,
        /// Limit each node's processes to this many CPUs (a cgroup per node).
        #[arg(long)]
        cpu_quota: Option<f64>,
        /// Give each node an HTTP endpoint with Prometheus metrics, at the node's address,
        /// port 9770 (http://ADDRESS:9770/metrics).
        #[arg(long)]
        http: bool,
        /// Serve the shared file system; node N mounts it at DIR/nN/mnt (at /mnt/ssi with
        /// --private-mounts).
        #[arg(long)]
        dfs: bool,
        /// With --netns: each node also gets its own mount namespace with private /tmp,
        /// /var/tmp, /home and DFS data directory (enter one with `nsenter -t PID -m -n`).
        #[arg(long, requires = "netns")]
        private_mounts: bool,
    },
    /// Kill a node's daemon with SIGKILL (a crash).
    #[command(after_help = "Examples:
  ssi-testbed kill --dir /tmp/tb --node 2")]
    Kill {
        /// Testbed directory.
        #[arg(long)]
        dir: PathBuf,
        /// Node number.
        #[arg(long)]
        node: usize,
    },
    /// Stop a node's daemon with SIGTERM (a graceful leave).
    #[command(after_help = "Examples:
  ssi-testbed stop --dir /tmp/tb --node 2")]
    Stop {
        /// Testbed directory.
        #[arg(long)]
        dir: PathBuf,
        /// Node number.
        #[arg(long)]
        node: usize,
    },
    /// Start a stopped or killed node again and wait until it is alive everywhere.
    #[command(after_help = "Examples:
  ssi-testbed start --dir /tmp/tb --node 2")]
    Start {
        /// Testbed directory.
        #[arg(long)]
        dir: PathBuf,
        /// Node number.
        #[arg(long)]
        node: usize,
    },
    /// Stop every node and remove the namespaces (logs stay in DIR).
    #[command(after_help = "Examples:
  ssi-testbed down --dir /tmp/tb")]
    Down {
        /// Testbed directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// The guided tour: boot 3 nodes, crash one and bring it back; as root also run programs,
    /// migrate, checkpoint and restart, re-balance, and run an MPI job; tear down.
    #[command(after_help = "Examples:
  ssi-testbed demo                # on loopback addresses
  ssi-testbed demo --netns        # each node in its own network namespace")]
    Demo {
        /// Use network namespaces (root only).
        #[arg(long)]
        netns: bool,
    },
}
