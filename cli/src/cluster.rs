//! `ssi cluster init | token | join`: a cluster's secrets made on its first node and handed to
//! each new node with a one-time token (see `ssi_core::enroll` for the token and the
//! exchange). These run on the machine itself, as root, without asking the local daemon:
//! `init` and `join` run before the node's ssid can start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ssi_core::config::{ConfigLayer, NodeConfig};
use ssi_core::enroll::{JoinToken, TokenStore};
use ssi_core::pki;

fn load(config: &Path) -> Result<NodeConfig> {
    let layer = ConfigLayer::from_file(config)?;
    Ok(layer.resolve()?)
}

/// Refuses before anything is made if one of `paths` exists: a node has one set of secrets.
fn none_exist(paths: &[&Path], what: &str) -> Result<()> {
    if let Some(p) = paths.iter().find(|p| p.exists()) {
        bail!(
            "{} exists already: {what} (remove the node's secrets first to start anew)",
            p.display()
        );
    }
    Ok(())
}

/// Removes the files made so far when a later step fails: nothing half-made is left.
struct Made(Vec<PathBuf>);

impl Made {
    fn add(&mut self, p: &Path) {
        self.0.push(p.to_path_buf());
    }
    fn keep(mut self) {
        self.0.clear();
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn parent_dir(p: &Path) -> Result<()> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    Ok(())
}

fn new_token(c: &NodeConfig, ttl: Duration) -> Result<JoinToken> {
    let ca_pem = std::fs::read_to_string(&c.tls.ca)
        .with_context(|| format!("cannot read the CA certificate {}", c.tls.ca.display()))?;
    std::fs::create_dir_all(&c.state_dir)
        .with_context(|| format!("cannot create {}", c.state_dir.display()))?;
    let (id, secret) = TokenStore::new(&c.state_dir).create(ttl)?;
    Ok(JoinToken {
        addr: c.advertise,
        id,
        secret,
        ca: pki::fingerprint(&ca_pem)?,
    })
}

fn ttl_text(ttl: Duration) -> String {
    let s = ttl.as_secs();
    match s {
        _ if s % 86400 == 0 => format!("{} d", s / 86400),
        _ if s % 3600 == 0 => format!("{} h", s / 3600),
        _ if s % 60 == 0 => format!("{} min", s / 60),
        _ => format!("{s} s"),
    }
}

/// `ssi cluster init`: the CA, the cluster key and this node's certificate, then a token.
pub fn init(config: &Path, ttl: Duration) -> Result<String> {
    let c = load(config)?;
    let (ca, ca_key, cert, key) = (&c.tls.ca, &c.ca_key_file, &c.tls.cert, &c.tls.key);
    none_exist(
        &[ca, ca_key, cert, key, &c.cluster_key_file],
        "this node has secrets of a cluster",
    )?;
    let mut made = Made(Vec::new());
    pki::init_ca_files(ca, ca_key, &format!("made on {}", c.name))?;
    made.add(ca_key);
    made.add(ca);
    parent_dir(&c.cluster_key_file)?;
    let mut cluster_key = ssi_core::auth::ClusterKey::generate_hex();
    cluster_key.push('\n');
    pki::write_new(&c.cluster_key_file, &cluster_key, 0o600)?;
    made.add(&c.cluster_key_file);
    parent_dir(cert)?;
    parent_dir(key)?;
    pki::issue_node_files(ca, ca_key, cert, key, &c.name)?;
    made.add(key);
    made.add(cert);
    let token = new_token(&c, ttl)?;
    made.keep();
    eprintln!(
        "cluster secrets made for node {} ({}): CA {} (its key {} stays on this node), \
         cluster key {}, node certificate {}",
        c.id,
        c.name,
        ca.display(),
        ca_key.display(),
        c.cluster_key_file.display(),
        cert.display()
    );
    eprintln!(
        "start ssid here, then on ONE new node, within {}: ssi cluster join TOKEN (the line below)",
        ttl_text(ttl)
    );
    Ok(token.to_string())
}

/// `ssi cluster token`: one more token, on a node that holds the CA key.
pub fn token(config: &Path, ttl: Duration) -> Result<String> {
    let c = load(config)?;
    if !c.ca_key_file.exists() {
        bail!(
            "{}: no CA key on this node: make tokens on the node that ran `ssi cluster init`",
            c.ca_key_file.display()
        );
    }
    let token = new_token(&c, ttl)?;
    eprintln!(
        "on ONE new node, within {}: ssi cluster join TOKEN (the line below)",
        ttl_text(ttl)
    );
    Ok(token.to_string())
}

/// `ssi cluster join TOKEN`: this node's certificate, the CA and the cluster key, fetched
/// over TLS from the node the token names and written where this node's config says.
pub async fn join(token: &str, config: &Path) -> Result<String> {
    let token: JoinToken = token.parse()?;
    let c = load(config)?;
    let (ca, cert, key) = (&c.tls.ca, &c.tls.cert, &c.tls.key);
    none_exist(
        &[ca, cert, key, &c.cluster_key_file],
        "this node has secrets of a cluster already",
    )?;
    let (key_pem, csr_pem) = pki::node_key_and_request(&c.name)?;
    let got = ssi_core::enroll::request(&token, &c.name, &csr_pem).await?;
    let mut made = Made(Vec::new());
    for (path, text, mode) in [
        (key, key_pem.as_str(), 0o600),
        (cert, got.cert_pem.as_str(), 0o644),
        (&c.cluster_key_file, got.cluster_key.as_str(), 0o600),
        (ca, got.ca_pem.as_str(), 0o644),
    ] {
        parent_dir(path)?;
        pki::write_new(path, text, mode)?;
        made.add(path);
    }
    made.keep();
    let done = format!(
        "node {} ({}) joined the cluster of {}: certificate {}, CA {}, cluster key {}",
        c.id,
        c.name,
        token.addr,
        cert.display(),
        ca.display(),
        c.cluster_key_file.display()
    );
    if c.seeds.is_empty() {
        eprintln!(
            "note: {} has no seeds: add seeds = [\"{}\"] before starting ssid, or it forms a \
             cluster of its own",
            config.display(),
            token.addr
        );
    }
    Ok(done)
}
