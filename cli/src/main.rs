//! `ssi`: the command-line interface of an ssi cluster.
//!
//! Each command talks only to the local daemon's control socket, except `dump` and `restore`,
//! which work on this machine without a daemon, and `cluster`, which sets up a node's secrets
//! before its daemon runs.

mod checkpoint;
mod client;
mod cluster;
mod dfs;
mod migrate;
mod mpirun;
mod nodes;
mod progress;
mod ps;
mod run;
mod sched;
mod top;
mod vo;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use ssi_cli::args::{Args, ClusterCommand, Command, SchedCommand};

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
        Command::Top => {
            top::top(&socket).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Dfs { command } => dfs::run(&socket, command).await?,
        Command::Vo { command } => vo::vo(&socket, command).await?,
        Command::Cluster { command } => match command {
            ClusterCommand::Init { config, ttl } => cluster::init(&config, ttl)?,
            ClusterCommand::Token { config, ttl } => cluster::token(&config, ttl)?,
            ClusterCommand::Join { token, config } => cluster::join(&token, &config).await?,
        },
        Command::Sched { command } => match command {
            SchedCommand::Show { json } => sched::show(&socket, json).await?,
            SchedCommand::Set { policy, params } => sched::set(&socket, policy, params).await?,
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
            ft,
            checkpoint_every,
            command,
        } => {
            let args = run::RunArgs {
                command,
                node,
                cpus,
                mem,
                detach,
                constraints,
                ft: ft.then(|| ssi_core::process::FtSpec {
                    every_ms: checkpoint_every.map_or(run::DEFAULT_CHECKPOINT_MS, |d| {
                        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
                    }),
                }),
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
            tcp_close,
        } => exit_now(checkpoint::restore(
            &dir,
            detach,
            allow_changed_files,
            tcp_close,
        )?),
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
