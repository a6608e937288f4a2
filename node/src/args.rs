//! The command line of `ssid`, apart from `main.rs` so that its manual page and shell
//! completions are generated from this definition (see the `packaging` crate).

use std::path::PathBuf;

use clap::Parser;
use ssi_core::config::ConfigLayer;

/// The ssi node daemon: joins the cluster and serves the local `ssi` CLI.
///
/// Every key of the TOML config file is also a flag; flags win over the file.
#[derive(Debug, Parser)]
#[command(
    name = "ssid",
    version,
    after_help = "Examples:
  ssid --gen-key /etc/ssi/cluster.key        # once; copy the file to every node (mode 0600)
  ssid --config /etc/ssi/ssid.toml           # run the node described by the file
  ssid --config /etc/ssi/ssid.toml --seed 192.168.1.11:7700    # a flag wins over the file

SIGTERM (or Ctrl-C) makes ssid leave the cluster gracefully: the others show it as left."
)]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Write a fresh random cluster key to this file (mode 0600) and exit.
    #[arg(long, value_name = "FILE", exclusive = true)]
    pub gen_key: Option<PathBuf>,
    /// Every key of the config file, as flags.
    #[command(flatten)]
    pub layer: ConfigLayer,
}
