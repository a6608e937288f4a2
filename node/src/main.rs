//! `ssid`: the ssi node daemon. One runs on every node of the cluster.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use ssi_core::auth::ClusterKey;
use ssi_core::config::ConfigLayer;
use ssi_node::args::Args;

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
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("ns-init") {
        return ns_init(&raw[2..]);
    }
    if raw.get(1).map(String::as_str) == Some(ssi_node::helpers::MODE) {
        return ssi_node::helpers::main();
    }
    let args = Args::parse();
    if let Some(path) = args.gen_key {
        return write_key(&path);
    }
    if let Some(dir) = args.init_ca {
        let name = dir.display().to_string();
        ssi_core::pki::init_ca(&dir, &name)?;
        println!(
            "cluster CA made in {}: give every node {}; keep {} off the nodes",
            dir.display(),
            dir.join(ssi_core::pki::CA_CERT).display(),
            dir.join(ssi_core::pki::CA_KEY).display()
        );
        return Ok(());
    }
    if let (Some(out), Some(ca)) = (&args.issue_cert, &args.ca) {
        let name = args.layer.name.clone().unwrap_or_else(|| "ssi-node".into());
        ssi_core::pki::issue_node_cert(ca, out, &name)?;
        println!("node certificate for {name} in {}", out.display());
        return Ok(());
    }
    let file = match &args.config {
        Some(p) => ConfigLayer::from_file(p)?,
        None => ConfigLayer::default(),
    };
    let config = args.layer.over(file).resolve()?;
    // Before anything is started: a daemon with unusable or exposed secrets does not run.
    let secrets = ssi_node::Secrets::load(&config)?;
    // The pid namespace and its init must exist before the runtime starts its threads.
    let hosting = hosting(&config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(ssi_node::run(config, secrets, hosting))
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

/// Creates the node's pid namespace and its init, or says why this node cannot host processes.
fn hosting(config: &ssi_core::config::NodeConfig) -> ssi_node::Hosting {
    let Some(range) = ssi_core::pids::PidRange::of(config.id) else {
        return Err(format!(
            "node id {} is above {}: no global pid range",
            config.id,
            ssi_core::pids::MAX_NODE
        ));
    };
    if !nix::unistd::geteuid().is_root() {
        return Err("ssid is not running as root (pid namespaces need it)".into());
    }
    ssi_node::nsinit::client::start_init(range, config.hostname.as_deref())
        .map_err(|e| format!("{e:#}"))
}

/// `ssid ns-init --fd N --first P --last Q [--hostname NAME]`: pid 1 of the node's namespace
/// (internal).
fn ns_init(args: &[String]) -> Result<()> {
    use std::os::fd::FromRawFd;
    let value = |flag: &str| -> Result<i32> {
        let i = args
            .iter()
            .position(|a| a == flag)
            .with_context(|| format!("ns-init: {flag} missing"))?;
        args.get(i + 1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("ns-init: bad {flag}"))
    };
    let fd = value("--fd")?;
    let (first, last) = (value("--first")?, value("--last")?);
    let hostname = match args.iter().position(|a| a == "--hostname") {
        Some(i) => Some(
            args.get(i + 1)
                .context("ns-init: --hostname needs a value")?
                .as_str(),
        ),
        None => None,
    };
    if std::process::id() != 1 {
        anyhow::bail!("ns-init must be pid 1 of a fresh pid namespace (started by ssid)");
    }
    // SAFETY: the fd number was passed by ssid, which left this fd open for us alone.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    ssi_node::nsinit::init::run(sock, first, last, hostname)
}
