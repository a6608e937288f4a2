//! `ssid`: the ssi node daemon. One runs on every node of the cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use ssi_core::auth::ClusterKey;
use ssi_core::config::ConfigLayer;

/// The ssi node daemon: joins the cluster and serves the local `ssi` CLI.
///
/// Every key of the TOML config file is also a flag; flags win over the file.
#[derive(Debug, Parser)]
#[command(name = "ssid", version)]
struct Args {
    /// TOML configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Write a fresh random cluster key to this file (mode 0600) and exit.
    #[arg(long, value_name = "FILE", exclusive = true)]
    gen_key: Option<PathBuf>,
    #[command(flatten)]
    layer: ConfigLayer,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ssid: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let args = Args::parse();
    if let Some(path) = args.gen_key {
        return write_key(&path);
    }
    let file = match &args.config {
        Some(p) => ConfigLayer::from_file(p)?,
        None => ConfigLayer::default(),
    };
    let config = args.layer.over(file).resolve()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(grid_node::daemon::run(config))
}

fn write_key(path: &std::path::Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    writeln!(f, "{}", ClusterKey::generate_hex())
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    Ok(())
}
