//! `ssi`: the command-line interface of an ssi cluster.
//!
//! Each command talks only to the local daemon's control socket, except `dump` and `restore`,
//! which work on this machine without a daemon.

mod checkpoint;
mod client;
mod migrate;
mod mpirun;
mod nodes;
mod ps;
mod run;
mod sched;
mod vo;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Use the cluster as one machine.
#[derive(Debug, Parser)]
#[command(name = "ssi", version)]
struct Args {
    /// Control socket of the local ssid (default: $SSI_SOCKET, else /var/lib/ssi/ssid.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the nodes of the cluster and their state.
    Nodes {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the cluster as one machine.
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
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Run Open MPI's mpirun over the cluster: ranks go to the nodes, as if it were one machine.
    ///
    /// Every argument is mpirun's (`ssi mpirun -np 8 ./prog ARGS`). ssi gives mpirun its
    /// launch agent and a host list of the alive nodes, least loaded first, with one slot
    /// per CPU (nodes are named ssi-node-ID); `--host` or `--hostfile` replace that list.
    /// When a private network of this machine holds every node address, Open MPI's TCP
    /// traffic is kept to it (`--mca oob_tcp_if_include`/`btl_tcp_if_include` replace that).
    /// Exit code: mpirun's.
    #[command(disable_help_flag = true)]
    Mpirun {
        /// mpirun's options, the program and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Launch agent of `ssi mpirun` (called by mpirun): runs an Open MPI daemon on a node.
    #[command(name = "mpirun-agent", hide = true, disable_help_flag = true)]
    MpirunAgent {
        /// Host name given to mpirun (ssi-node-ID).
        host: String,
        /// The daemon's command line, for a shell.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Follow the output of a running process until it ends (Ctrl-C stops following).
    Attach {
        /// Global pid.
        gpid: i32,
    },
    /// List every process of the cluster.
    Ps {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move a running process (with its children) to another node while it runs.
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
    Checkpoint {
        /// Global pid of the root of the tree.
        gpid: i32,
        /// Image directory.
        #[arg(long)]
        dir: PathBuf,
        /// Let the tree run on (default: it is stopped once the image is written).
        #[arg(long)]
        leave_running: bool,
    },
    /// Restart a checkpointed tree on a node of the cluster, wired to this terminal.
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
    /// The grid's virtual organisations (root; ssid needs a [grid] table).
    Vo {
        #[command(subcommand)]
        command: vo::VoCommand,
    },
    /// The global scheduler: show it, change its policy, balance now.
    Sched {
        #[command(subcommand)]
        command: SchedCommand,
    },
    /// Send a signal to a process wherever it runs.
    Kill {
        /// Signal, by name or number.
        #[arg(short = 's', long = "signal", default_value = "TERM")]
        signal: String,
        /// Global pid.
        gpid: i32,
    },
    /// Checkpoint a process tree of this machine to a directory (no ssid needed).
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
    },
}

/// The global scheduler.
#[derive(Debug, Subcommand)]
enum SchedCommand {
    /// The policy, filters, balancing knobs, the nodes as the policy sees them, and the
    /// recent decisions of every node.
    Show {
        /// Print JSON (one document per node).
        #[arg(long)]
        json: bool,
    },
    /// Change the placement policy on every node (root only): least-loaded, round-robin,
    /// memory-aware, pack, spread, or external --param program=PATH.
    Set {
        /// Policy name.
        policy: String,
        /// A policy parameter, KEY=VALUE; repeat.
        #[arg(long = "param")]
        params: Vec<String>,
    },
    /// Make every node look at its load now and move a process if that helps.
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

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ssi: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ssi: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode> {
    let socket = client::socket_path(args.socket);
    let out = match args.command {
        Command::Nodes { json } => nodes::nodes(&socket, json).await?,
        Command::Info { json } => nodes::info(&socket, json).await?,
        Command::Ps { json } => ps::ps(&socket, json).await?,
        Command::Vo { command } => vo::vo(&socket, command).await?,
        Command::Sched { command } => match command {
            SchedCommand::Show { json } => sched::show(&socket, json).await?,
            SchedCommand::Set { policy, params } => {
                sched::set(&socket, policy, params).await?
            }
            SchedCommand::Balance { .. } => sched::balance(&socket).await?,
        },
        Command::Kill { signal, gpid } => {
            let sig = ps::parse_signal(&signal)?;
            ps::kill(&socket, gpid, sig).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Run {
            node,
            cpus,
            mem,
            detach,
            constraints,
            command,
        } => {
            let args = run::RunArgs {
                command,
                node,
                cpus,
                mem,
                detach,
                constraints,
            };
            let code = run::run(&socket, args).await?;
            exit_now(code)
        }
        Command::Migrate {
            gpid,
            to,
            precopy_rounds,
            json,
        } => migrate::migrate(&socket, gpid, to, precopy_rounds, json).await?,
        Command::Checkpoint {
            gpid,
            dir,
            leave_running,
        } => migrate::checkpoint(&socket, gpid, dir, leave_running).await?,
        Command::Restart { dir, node, detach } => {
            let req = migrate::restart_request(&dir, node, detach)?;
            let code = run::session(&socket, req, detach).await?;
            exit_now(code)
        }
        Command::Dump {
            pid,
            dir,
            leave_running,
            leave_stopped,
            pre_dump,
            prev,
        } => {
            let a = checkpoint::DumpArgs {
                pid,
                dir,
                leave_running,
                leave_stopped,
                pre_dump,
                prev,
            };
            checkpoint::dump(&a)?
        }
        Command::Restore {
            dir,
            detach,
            allow_changed_files,
        } => exit_now(checkpoint::restore(&dir, detach, allow_changed_files)?),
        Command::Mpirun { args } => match mpirun::mpirun(&socket, args).await? {},
        Command::MpirunAgent { host, command } => {
            exit_now(mpirun::agent(&socket, &host, &command).await?)
        }
        Command::Attach { gpid } => {
            let code = run::attach(&socket, gpid).await?;
            exit_now(code)
        }
    };
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// Exits at once: a thread blocked reading our stdin must not hold the exit.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}
