//! `ssi`: the command-line interface of an ssi cluster. It talks only to the local `ssid`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use grid_node::cli;

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
    let socket = cli::socket_path(args.socket);
    let out = match args.command {
        Command::Nodes { json } => cli::nodes::nodes(&socket, json).await?,
        Command::Info { json } => cli::nodes::info(&socket, json).await?,
    };
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
