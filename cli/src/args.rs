//! The command line of `ssi`: every command, its options and its examples.
//!
//! Kept apart from `main.rs` so that the manual pages and shell completions are generated from
//! these very definitions (see the `packaging` crate), and so that a test can check that every
//! example shown by `--help` is a command line `ssi` accepts.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Use the cluster as one machine.
#[derive(Debug, Parser)]
#[command(
    name = "ssi",
    version,
    after_help = "Examples:
  ssi nodes                       # the nodes and their state
  ssi run -- make -j8             # run a program on the least-loaded node
  ssi ps                          # every process of the cluster
  ssi migrate 4097 --to 2         # move process 4097 to node 2 while it runs
  ssi top                         # the cluster live, like top
  ssi --socket /tmp/tb/n2/ssid.sock nodes   # ask another local daemon"
)]
pub struct Args {
    /// Control socket of the local ssid (default: $SSI_SOCKET, else /var/lib/ssi/ssid.sock).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// A command of `ssi`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the nodes of the cluster and their state.
    #[command(after_help = "Examples:
  ssi nodes                       # one row per node
  ssi nodes --json                # the same as JSON")]
    Nodes {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the cluster as one machine.
    #[command(after_help = "Examples:
  ssi info                        # alive nodes, CPUs, memory and load summed
  ssi info --json                 # the same as JSON")]
    Info {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a program somewhere on the cluster, wired to this terminal.
    ///
    /// Exit code: the program's, or 128 + the signal that killed it; 127 when the command is
    /// not found, 126 when it cannot be executed, 125 when ssi cannot place or start it, 255
    /// when the node hosting it died.
    #[command(after_help = "Examples:
  ssi run -- hostname                          # on the least-loaded node
  ssi run --node 2 -- make -j2                 # on node 2
  ssi run --cpus 2 --mem 512M -- ./simulate    # on a node with 2 CPUs and 512 MiB free
  ssi run --detach -- sleep 600                # print its global pid and return
  ssi run --constraint rack=a -- uname -n      # only on a node labelled rack=a
  ssi run --ft --checkpoint-every 30s -- ./sim # restarted elsewhere if its node dies")]
    Run {
        /// Run on this node.
        #[arg(long)]
        node: Option<u16>,
        /// CPUs the program needs.
        #[arg(long)]
        cpus: Option<u32>,
        /// Memory the program needs, in bytes (suffixes K, M, G allowed).
        #[arg(long, value_parser = parse_bytes)]
        mem: Option<u64>,
        /// Print the global pid and return; output is kept for `ssi attach`.
        #[arg(long)]
        detach: bool,
        /// Only on a node with this label, KEY=VALUE (repeat for several).
        #[arg(long = "constraint", value_parser = parse_key_value)]
        constraints: Vec<(String, String)>,
        /// Fault-tolerant: checkpointed periodically (incrementally) to the shared file
        /// system and restarted on another node, with the same global pid, if its node dies
        /// (docs/FT.md).
        #[arg(long)]
        ft: bool,
        /// With --ft: time between two checkpoints (`500ms`, `10s`, `5m`; default 10s).
        #[arg(long, value_parser = parse_duration, requires = "ft")]
        checkpoint_every: Option<std::time::Duration>,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Run Open MPI's mpirun over the cluster: ranks go to the nodes, as if it were one machine.
    ///
    /// Every argument is mpirun's (`ssi mpirun -np 8 ./prog ARGS`). ssi gives mpirun its
    /// launch agent and a host list of the alive nodes, least loaded first, with one slot
    /// per CPU (nodes are named ssi-node-ID); `--host` or `--hostfile` replace that list.
    /// When a private network of this machine holds every node address, Open MPI's TCP
    /// traffic is kept to it (`--mca oob_tcp_if_include`/`btl_tcp_if_include` replace that).
    /// Exit code: mpirun's.
    #[command(
        disable_help_flag = true,
        after_help = "Examples:
  ssi mpirun -np 6 ./ring                               # 6 ranks, least-loaded nodes first
  ssi mpirun --host ssi-node-1:2,ssi-node-3:2 -np 4 ./ring   # 2 ranks on node 1, 2 on node 3"
    )]
    Mpirun {
        /// mpirun's options, the program and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Launch agent of `ssi mpirun` (called by mpirun): runs an Open MPI daemon on a node.
    #[command(name = "mpirun-agent", hide = true, disable_help_flag = true)]
    MpirunAgent {
        /// Host name given to mpirun (ssi-node-ID).
        host: String,
        /// The daemon's command line, for a shell.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Follow the output of a running process until it ends (Ctrl-C stops following).
    #[command(after_help = "Examples:
  ssi attach 4097                 # the output of process 4097, started with ssi run --detach")]
    Attach {
        /// Global pid.
        gpid: i32,
    },
    /// List every process of the cluster.
    #[command(after_help = "Examples:
  ssi ps                          # by global pid, with node, state, user, CPU, memory
  ssi ps --json                   # the same as JSON")]
    Ps {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The cluster as one machine, live: nodes with load bars, processes by CPU.
    ///
    /// Refreshes every second. Keys: up/down (PageUp/PageDown, Home/End) select a process;
    /// k sends it SIGTERM, K SIGKILL; m asks for a node id and migrates it there (Enter: go,
    /// Esc: cancel); P, M, N sort by CPU, memory, global pid; q (or Esc, Ctrl-C) quits.
    /// %CPU is CPU time over the time since the process started, as in ssi ps.
    #[command(after_help = "Examples:
  ssi top                                     # through this node's daemon
  ssi --socket /tmp/tb/n2/ssid.sock top       # through node 2 of a testbed")]
    Top,
    /// Move a running process (with its children) to another node while it runs.
    #[command(after_help = "Examples:
  ssi migrate 4097 --to 2                       # pre-copy while it runs, then switch
  ssi migrate 4097 --to 3 --precopy-rounds 0    # stop and copy
  ssi migrate 4097 --to 2 --json                # the report (rounds, downtime) as JSON")]
    Migrate {
        /// Global pid.
        gpid: i32,
        /// Target node.
        #[arg(long)]
        to: u16,
        /// Most pre-copy rounds while it runs (0: stop-and-copy; default 8).
        #[arg(long)]
        precopy_rounds: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Checkpoint a process tree of the cluster to a directory (on the node hosting it).
    #[command(after_help = "Examples:
  ssi checkpoint 4097                                       # into the shared file system
  ssi checkpoint 4097 --dir /srv/ckpt/job1                  # save it, then stop it
  ssi checkpoint 4097 --dir /srv/ckpt/job1 --leave-running  # save it, let it run on")]
    Checkpoint {
        /// Global pid of the root of the tree.
        gpid: i32,
        /// Image directory (default: a new one under `checkpoints/` of the shared file
        /// system, so that `ssi restart` works on any node; printed).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Let the tree run on (default: it is stopped once the image is written).
        #[arg(long)]
        leave_running: bool,
    },
    /// Restart a checkpointed tree on a node of the cluster, wired to this terminal.
    #[command(after_help = "Examples:
  ssi restart --dir /srv/ckpt/job1                # where the scheduler places it
  ssi restart --dir /srv/ckpt/job1 --node 2 --detach   # on node 2, print its global pid")]
    Restart {
        /// Image directory (must be readable on that node).
        #[arg(long)]
        dir: PathBuf,
        /// Node to restart on (default: the scheduler places it).
        #[arg(long)]
        node: Option<u16>,
        /// Print the global pid and return; output is kept for `ssi attach`.
        #[arg(long)]
        detach: bool,
    },
    /// The shared file system: health, scrub, space.
    #[command(after_help = "Examples:
  ssi dfs status                  # leader, voters, capacity, under-replicated chunks
  ssi dfs scrub                   # check every replica, repair from an intact copy
  ssi dfs df --json               # space per node and in all")]
    Dfs {
        /// What to ask the shared file system.
        #[command(subcommand)]
        command: DfsCommand,
    },
    /// The grid's virtual organisations (root; ssid needs a [grid] table).
    #[command(after_help = "Examples:
  ssi vo create physics           # a VO whose members may submit to its default queue
  ssi vo add-user physics /O=Grid/CN=Alice --role admin
  ssi vo list")]
    Vo {
        /// What to do with the VOs.
        #[command(subcommand)]
        command: VoCommand,
    },
    /// Set up the cluster's secrets: on the first node once, then one token per new node.
    ///
    /// Run as root before ssid is started on the node. `init` and `token` print a one-line
    /// join token; `join TOKEN` on a new node fetches its certificate, the CA certificate and
    /// the cluster key over TLS from the node the token names (ssid must run there), after
    /// checking that node's CA against the token. A token works once, for a limited time.
    #[command(after_help = "Examples:
  ssi cluster init                          # first node: CA, cluster key, its certificate, a token
  ssi cluster token --ttl 30m               # the first node again: a token for one more node
  ssi cluster join ssi1-5f3a09c2-0c1d2e3f405162738495a6b7c8d9eaf0-6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b@192.168.1.10:7700")]
    Cluster {
        /// What to do.
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// The global scheduler: show it, change its policy, balance now.
    #[command(after_help = "Examples:
  ssi sched show                  # policy, loads, recent decisions
  ssi sched set pack              # fill the busiest node that has room first
  ssi sched balance --now         # look at the loads now")]
    Sched {
        /// What to do with the scheduler.
        #[command(subcommand)]
        command: SchedCommand,
    },
    /// Send a signal to a process wherever it runs.
    #[command(after_help = "Examples:
  ssi kill 4097                   # SIGTERM
  ssi kill -s KILL 4097           # SIGKILL
  ssi kill -s 10 4097             # by number (SIGUSR1)")]
    Kill {
        /// Signal, by name or number.
        #[arg(short = 's', long = "signal", default_value = "TERM")]
        signal: String,
        /// Global pid.
        gpid: i32,
    },
    /// Checkpoint a process tree of this machine to a directory (no ssid needed).
    #[command(after_help = "Examples:
  ssi dump --pid 1234 --dir /tmp/img                     # save the tree, then kill it
  ssi dump --pid 1234 --dir /tmp/img --leave-running     # save it, let it run on
  ssi dump --pid 1234 --dir /tmp/pre --pre-dump          # memory only, track writes
  ssi dump --pid 1234 --dir /tmp/img --prev /tmp/pre     # only what changed since")]
    Dump {
        /// Root of the tree.
        #[arg(long)]
        pid: i32,
        /// Image directory.
        #[arg(long)]
        dir: PathBuf,
        /// Let the tree run on (default: it is killed once the image is written).
        #[arg(long)]
        leave_running: bool,
        /// Leave the tree stopped with SIGSTOP (resume it with SIGCONT).
        #[arg(long)]
        leave_stopped: bool,
        /// Save memory only and start tracking writes; the tree keeps running.
        #[arg(long)]
        pre_dump: bool,
        /// Save only what changed since this earlier (pre-)dump.
        #[arg(long)]
        prev: Option<PathBuf>,
    },
    /// Restore a process tree from a directory written by `ssi dump` (no ssid needed).
    ///
    /// Exit code: the restored root's, or 128 + the signal that killed it.
    #[command(after_help = "Examples:
  ssi restore --dir /tmp/img                      # wait for the tree's root to exit
  ssi restore --dir /tmp/img --detach             # print the root pid and return")]
    Restore {
        /// Image directory.
        #[arg(long)]
        dir: PathBuf,
        /// Print the root pid and return instead of waiting for the root to exit.
        #[arg(long)]
        detach: bool,
        /// Restore even if files the tree uses changed size since the dump.
        #[arg(long)]
        allow_changed_files: bool,
        /// Restore established TCP connections closed (shut down both ways), for a tree whose
        /// peers are gone (as CRIU's --tcp-close).
        #[arg(long)]
        tcp_close: bool,
    },
}

/// The shared file system.
#[derive(Debug, Subcommand)]
pub enum DfsCommand {
    /// Leader, voters, each node's capacity and use, chunks, under-replicated chunks and
    /// re-replication progress.
    #[command(after_help = "Examples:
  ssi dfs status
  ssi dfs status --json")]
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every replica of every chunk against its checksum and rewrite damaged or missing
    /// ones from an intact copy.
    #[command(after_help = "Examples:
  ssi dfs scrub
  ssi dfs scrub --json")]
    Scrub {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Space of the file system: its size, use and what is left, per node and in all.
    #[command(after_help = "Examples:
  ssi dfs df
  ssi dfs df --json")]
    Df {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// VO commands.
#[derive(Debug, Subcommand)]
pub enum VoCommand {
    /// Create a VO (its members may submit to the `default` queue).
    #[command(after_help = "Examples:
  ssi vo create physics")]
    Create {
        /// VO name.
        name: String,
    },
    /// Delete a VO.
    #[command(after_help = "Examples:
  ssi vo delete physics")]
    Delete {
        /// VO name.
        name: String,
    },
    /// List the VOs (JSON).
    #[command(after_help = "Examples:
  ssi vo list")]
    List,
    /// Show a VO with its members and their FQANs (JSON).
    #[command(after_help = "Examples:
  ssi vo show physics")]
    Show {
        /// VO name.
        name: String,
    },
    /// Add a user, by certificate subject, or give a member a group or role.
    #[command(after_help = "Examples:
  ssi vo add-user physics /O=Grid/CN=Alice
  ssi vo add-user physics /O=Grid/CN=Alice --group prod/sim --role admin")]
    AddUser {
        /// VO name.
        vo: String,
        /// Certificate subject, e.g. "/O=Grid/CN=Alice".
        subject: String,
        /// A group of the VO, e.g. prod/sim.
        #[arg(long)]
        group: Option<String>,
        /// A role; `admin` makes a VO administrator.
        #[arg(long)]
        role: Option<String>,
    },
    /// Remove a user, or only a group or role of theirs.
    #[command(after_help = "Examples:
  ssi vo remove-user physics /O=Grid/CN=Alice
  ssi vo remove-user physics /O=Grid/CN=Alice --role admin")]
    RemoveUser {
        /// VO name.
        vo: String,
        /// Certificate subject.
        subject: String,
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// Only this role.
        #[arg(long)]
        role: Option<String>,
    },
    /// Set the queues the VO's members may submit to.
    #[command(after_help = "Examples:
  ssi vo queues physics default long")]
    Queues {
        /// VO name.
        vo: String,
        /// Queue names.
        queues: Vec<String>,
    },
}

/// Setting up a cluster's secrets.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// On the first node, once: make the cluster CA (certificate and key), the cluster key
    /// and this node's certificate at the paths its config names, then print a join token.
    #[command(after_help = "Examples:
  ssi cluster init                                  # with /etc/ssi/ssid.toml
  ssi cluster init --config /etc/ssi/ssid.toml --ttl 2h")]
    Init {
        /// The node's ssid configuration (its id, address and file paths).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// How long the printed token may be used: 90s, 30m, 2h, 1d (at most 7d).
        #[arg(long, default_value = "1h", value_parser = ssi_core::enroll::parse_ttl)]
        ttl: std::time::Duration,
    },
    /// On a node that ran `init` (it holds the CA key): print a new join token, good for one
    /// new node.
    #[command(after_help = "Examples:
  ssi cluster token                         # good for an hour
  ssi cluster token --ttl 10m")]
    Token {
        /// The node's ssid configuration.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// How long the token may be used: 90s, 30m, 2h, 1d (at most 7d).
        #[arg(long, default_value = "1h", value_parser = ssi_core::enroll::parse_ttl)]
        ttl: std::time::Duration,
    },
    /// On a new node, before starting its ssid: get this node's certificate, the CA
    /// certificate and the cluster key from the node the token names, and write them where
    /// this node's config says (the node's key is made here and never sent).
    #[command(after_help = "Examples:
  ssi cluster join ssi1-5f3a09c2-0c1d2e3f405162738495a6b7c8d9eaf0-6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b@192.168.1.10:7700")]
    Join {
        /// The token `ssi cluster init` or `ssi cluster token` printed.
        token: String,
        /// This node's ssid configuration (its id, name and file paths).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

/// Where the package puts ssid's configuration.
pub const DEFAULT_CONFIG: &str = "/etc/ssi/ssid.toml";

/// The global scheduler.
#[derive(Debug, Subcommand)]
pub enum SchedCommand {
    /// The policy, filters, balancing knobs, the nodes as the policy sees them, and the
    /// recent decisions of every node.
    #[command(after_help = "Examples:
  ssi sched show                  # as a table
  ssi sched show --json           # one JSON document per node")]
    Show {
        /// Print JSON (one document per node).
        #[arg(long)]
        json: bool,
    },
    /// Change the placement policy on every node (root only): least-loaded, round-robin,
    /// memory-aware, pack, spread, or external --param program=PATH.
    #[command(after_help = "Examples:
  ssi sched set spread                                          # one process per node in turn
  ssi sched set external --param program=/usr/local/bin/place   # ask a program (JSON lines)")]
    Set {
        /// Policy name.
        policy: String,
        /// A policy parameter, KEY=VALUE; repeat.
        #[arg(long = "param")]
        params: Vec<String>,
    },
    /// Make every node look at its load now and move a process if that helps.
    #[command(after_help = "Examples:
  ssi sched balance --now")]
    Balance {
        /// Now (the only mode: without it, nodes balance on their own every interval).
        #[arg(long, required = true)]
        now: bool,
    },
}

/// Parses `KEY=VALUE`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// Parses `250ms`, `10s`, `5m`, `1h` (a plain number is seconds); at least 100 ms.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 500ms, 10s, 5m)");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().map_err(|_| bad())?;
    let ms = match &s[split..] {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    if ms < 100 {
        return Err(format!("{s:?}: checkpoints at most every 100ms"));
    }
    Ok(std::time::Duration::from_millis(ms))
}

/// Parses `123`, `64K`, `512M`, `2G`.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 512M)"))
}
