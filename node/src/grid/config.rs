//! The `[grid]` table of the daemon's config.
//!
//! ```toml
//! [grid]
//! listen = "0.0.0.0:8080"          # the job service (HTTP)
//! ca_cert = "/etc/ssi/grid-ca.pem" # the CA whose VO credentials are accepted
//! trusted_cas = []                 # grid CAs whose identity certificates are accepted too
//! create_accounts = true           # ssid makes pool accounts with useradd on every node
//!
//! [grid.tes]
//! cluster_admins = ["/O=site/CN=admin"]
//! [grid.tes.queues]
//! default = {}
//! big = { mem = "large" }          # node labels a queue's executors must run on
//!
//! [[grid.pool]]
//! vo = "atlas"
//! name_prefix = "atlas"
//! gid = 64000
//! uid_first = 64000
//! uid_last = 64099
//! lease_secs = 2592000
//! home_root = "/home/grid"
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use grid_node::accounts::PoolConfig;
use grid_node::credential::TrustAnchors;
use grid_node::tes::TesConfig;
use serde::Deserialize;

/// The grid settings of a node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    /// Address of the job service.
    pub listen: SocketAddr,
    /// PEM file of the CA that issues VO credentials.
    pub ca_cert: PathBuf,
    /// PEM files of grid CAs whose identity certificates are trusted.
    #[serde(default)]
    pub trusted_cas: Vec<PathBuf>,
    /// Largest task accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Whether ssid creates the pool accounts (useradd) on the nodes; false when they come
    /// from the site's directory (LDAP ...), or when executors may run as bare uids.
    #[serde(default = "default_true")]
    pub create_accounts: bool,
    /// The MPI launcher and its options before `-np N`.
    #[serde(default = "default_mpirun")]
    pub mpirun: Vec<String>,
    /// The job service's settings.
    #[serde(default)]
    pub tes: TesConfig,
    /// Account pools, one per VO.
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolConfig>,
}

fn default_max_body() -> usize {
    4 << 20
}

fn default_true() -> bool {
    true
}

fn default_mpirun() -> Vec<String> {
    vec!["mpirun".into(), "--oversubscribe".into()]
}

impl GridConfig {
    /// The settings in `table`, checked; errors name the key.
    pub fn from_table(table: toml::Table) -> Result<Self> {
        let c: GridConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    anyhow::anyhow!("[grid]: {}", e.to_string().trim_end())
                })?;
        if c.mpirun.is_empty() {
            bail!("[grid] mpirun: empty");
        }
        for p in &c.pools {
            p.check().context("[[grid.pool]]")?;
        }
        for (i, a) in c.pools.iter().enumerate() {
            if let Some(b) = c.pools[..i].iter().find(|b| b.vo == a.vo) {
                bail!("[[grid.pool]]: two pools for VO {}", b.vo);
            }
        }
        Ok(c)
    }

    /// The CAs whose credentials the job service accepts.
    pub fn trust_anchors(&self) -> Result<TrustAnchors> {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p)
                .with_context(|| format!("[grid]: cannot read {}", p.display()))
        };
        let grid = self
            .trusted_cas
            .iter()
            .map(read)
            .collect::<Result<Vec<_>>>()?;
        TrustAnchors::new(&read(&self.ca_cert)?, &grid)
            .with_context(|| format!("[grid] ca_cert {}", self.ca_cert.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GridConfig> {
        GridConfig::from_table(toml::from_str(text).unwrap())
    }

    #[test]
    fn a_full_table_parses_and_bad_ones_name_the_key() {
        let c = parse(
            r#"listen = "127.0.0.1:8080"
ca_cert = "/etc/ssi/grid-ca.pem"
[tes.queues]
default = {}
[[pool]]
vo = "atlas"
name_prefix = "atlas"
gid = 64000
uid_first = 64000
uid_last = 64009
lease_secs = 60
home_root = "/home/grid"
"#,
        )
        .unwrap();
        assert!(c.create_accounts);
        assert_eq!(c.pools.len(), 1);
        let err = parse("listen = \"127.0.0.1:1\"\nca_cert = \"/x\"\nlisten_port = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("[grid]: ") && err.contains("listen_port"),
            "{err}"
        );
        let err = parse(
            "listen = \"127.0.0.1:1\"\nca_cert = \"/x\"\n[[pool]]\nvo = \"a\"\nname_prefix = \"a\"\ngid = 0\nuid_first = 1\nuid_last = 2\nlease_secs = 1\nhome_root = \"/h\"\n",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("gid 0"), "{err:#}");
    }
}
