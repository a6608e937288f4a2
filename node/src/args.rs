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
  ssid --init-ca /root/ssi-ca                # once, off the nodes: the cluster CA
  ssid --issue-cert /etc/ssi/tls --ca /root/ssi-ca --name n1    # a certificate for node n1
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
    /// Make a new cluster CA in this directory (ca.pem, and ca.key mode 0600) and exit.
    #[arg(long, value_name = "DIR", exclusive = true)]
    pub init_ca: Option<PathBuf>,
    /// Issue a node certificate into this directory (node.pem, and node.key mode 0600) from
    /// the CA in --ca, with --name as its common name, and exit.
    #[arg(long, value_name = "DIR", requires = "ca")]
    pub issue_cert: Option<PathBuf>,
    /// The CA directory (with ca.pem and ca.key) that --issue-cert signs with.
    #[arg(long, value_name = "DIR")]
    pub ca: Option<PathBuf>,
    /// Every key of the config file, as flags.
    #[command(flatten)]
    pub layer: ConfigLayer,
}
