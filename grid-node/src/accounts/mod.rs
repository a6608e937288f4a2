//! Account mapping: a grid user (subject, VO) runs as a local account leased from the VO's pool.
//!
//! ```text
//!   map(vo, subject) --lease exists?--yes--> same account (last use bumped)
//!                        |no
//!                        v
//!   claim the lowest free uid of the pool (CAS on u/<vo>/<uid>), then record the lease
//!   (CAS on s/<vo>/<subject>); a lost race releases the claim and retries
//!
//!   sweep(now): leases unused for `lease_secs` are removed; their accounts return to the pool
//!   and each node retires the home directory (see SystemAccounts)
//! ```
//!
//! Leases live in the replicated store, so every node maps a user to the same uid and a
//! returning user gets the same account until the lease expires. Creating the account on a
//! node (passwd/group entries, home directory) is [`SystemAccounts`]'s job.

mod system;

pub use system::{OnExpiry, SystemAccounts};

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{self, GridStore, Table};

/// The account pool of one VO (a `[[grid.pool]]` table of the daemon's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The VO whose members this pool serves.
    pub vo: String,
    /// Account names are this prefix and the index in the pool, `atlas000`, `atlas001` ...
    /// (lowercase letters, digits, `_`, `-`; at most 24 bytes, so names fit in 32).
    pub name_prefix: String,
    /// The group every account of the pool belongs to (named like the prefix).
    pub gid: u32,
    /// First uid of the pool (inclusive); pick a range no other account source uses.
    pub uid_first: u32,
    /// Last uid of the pool (inclusive): the pool serves `uid_last - uid_first + 1` users at once.
    pub uid_last: u32,
    /// A lease unused for this long (seconds) expires and its account returns to the pool.
    /// Longer keeps a returning user's files in place; shorter serves more users with a pool.
    pub lease_secs: i64,
    /// Where home directories are made (`<home_root>/<account>`).
    pub home_root: PathBuf,
    /// What happens to an expired account's home directory.
    #[serde(default)]
    pub on_expiry: OnExpiry,
}

impl PoolConfig {
    /// Checks the names and the range; the error names the pool.
    pub fn check(&self) -> Result<()> {
        let err = |reason: String| Error::Account {
            vo: self.vo.clone(),
            reason,
        };
        let p = &self.name_prefix;
        if p.is_empty()
            || p.len() > 24
            || !p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err(err(format!(
                "name_prefix {p:?}: want [a-z_][a-z0-9_-]*, at most 24 bytes"
            )));
        }
        if self.uid_first == 0 || self.uid_first > self.uid_last {
            return Err(err(format!(
                "uid range {}..={} is empty or includes root",
                self.uid_first, self.uid_last
            )));
        }
        if self.gid == 0 {
            return Err(err("gid 0 (root's group) cannot be a pool group".into()));
        }
        if self.lease_secs <= 0 {
            return Err(err(format!(
                "lease_secs {} must be positive",
                self.lease_secs
            )));
        }
        if !self.home_root.is_absolute() {
            return Err(err(format!(
                "home_root {} is not absolute",
                self.home_root.display()
            )));
        }
        Ok(())
    }

    /// The account name of `uid`.
    pub fn account_name(&self, uid: u32) -> String {
        format!("{}{:03}", self.name_prefix, uid - self.uid_first)
    }
}

/// A subject's hold on one account of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// The VO.
    pub vo: String,
    /// The user's certificate subject.
    pub subject: String,
    /// The account name.
    pub account: String,
    /// Its uid.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Its home directory.
    pub home: PathBuf,
    /// When the lease was made (unix seconds).
    pub leased_at: i64,
    /// When it was last used (unix seconds).
    pub last_used: i64,
}

/// Uses closer together than this do not rewrite the lease: a job service mapping on every
/// request would otherwise write to the replicated log on every request.
const BUMP_EVERY_SECS: i64 = 60;

fn lease_key(vo: &str, subject: &str) -> String {
    format!("s/{vo}/{subject}")
}

fn uid_key(vo: &str, uid: u32) -> String {
    format!("u/{vo}/{uid:010}")
}

/// Maps (subject, VO) to accounts, over the replicated store.
#[derive(Debug)]
pub struct AccountMapper<'a> {
    store: &'a dyn GridStore,
    pools: &'a [PoolConfig],
}

impl<'a> AccountMapper<'a> {
    /// A mapper with these pools (each already [checked](PoolConfig::check)).
    pub fn new(store: &'a dyn GridStore, pools: &'a [PoolConfig]) -> Self {
        AccountMapper { store, pools }
    }

    fn pool(&self, vo: &str) -> Result<&'a PoolConfig> {
        self.pools
            .iter()
            .find(|p| p.vo == vo)
            .ok_or_else(|| Error::Account {
                vo: vo.to_string(),
                reason: "no account pool is configured for this vo".into(),
            })
    }

    /// The lease of `subject` in `vo`, if any (expired or not).
    pub async fn lookup(&self, vo: &str, subject: &str) -> Result<Option<Lease>> {
        Ok(
            store::get_json::<Lease>(self.store, Table::Leases, &lease_key(vo, subject))
                .await?
                .map(|(l, _)| l),
        )
    }

    /// The account of `subject` in `vo` at time `now`: the one it holds, or a new lease.
    pub async fn map(&self, vo: &str, subject: &str, now: i64) -> Result<Lease> {
        let pool = self.pool(vo)?;
        let key = lease_key(vo, subject);
        for _ in 0..64 {
            if let Some((lease, raw)) =
                store::get_json::<Lease>(self.store, Table::Leases, &key).await?
            {
                if now - lease.last_used < BUMP_EVERY_SECS {
                    return Ok(lease);
                }
                let bumped = Lease {
                    last_used: now,
                    ..lease
                };
                if store::cas_json(self.store, Table::Leases, &key, Some(raw), Some(&bumped))
                    .await?
                {
                    return Ok(bumped);
                }
                continue;
            }
            let Some(uid) = self.free_uid(pool).await? else {
                return Err(Error::Account {
                    vo: vo.to_string(),
                    reason: format!(
                        "all {} accounts are leased; a lease expires {} s after its last use",
                        pool.uid_last - pool.uid_first + 1,
                        pool.lease_secs
                    ),
                });
            };
            let ukey = uid_key(vo, uid);
            let owner = subject.to_string();
            if !store::cas_json(self.store, Table::Leases, &ukey, None, Some(&owner)).await? {
                continue; // another node took this uid first
            }
            let account = pool.account_name(uid);
            let lease = Lease {
                vo: vo.to_string(),
                subject: owner.clone(),
                home: pool.home_root.join(&account),
                account,
                uid,
                gid: pool.gid,
                leased_at: now,
                last_used: now,
            };
            if store::cas_json(self.store, Table::Leases, &key, None, Some(&lease)).await? {
                tracing::info!(vo, subject, account = %lease.account, uid, "account leased");
                return Ok(lease);
            }
            // The same subject got a lease on another node meanwhile: give the uid back.
            let claimed = serde_json::to_vec(&owner).map_err(|e| Error::Store(e.to_string()))?;
            self.store
                .cas(Table::Leases, &ukey, Some(claimed), None)
                .await?;
        }
        Err(Error::Store(format!("{key}: too many concurrent updates")))
    }

    /// The lowest uid of the pool that no lease holds.
    async fn free_uid(&self, pool: &PoolConfig) -> Result<Option<u32>> {
        let taken: BTreeSet<u32> =
            store::scan_json::<String>(self.store, Table::Leases, &format!("u/{}/", pool.vo))
                .await?
                .into_iter()
                .filter_map(|(k, _)| k.rsplit('/').next().and_then(|u| u.parse().ok()))
                .collect();
        Ok((pool.uid_first..=pool.uid_last).find(|u| !taken.contains(u)))
    }

    /// Ends every lease unused for its pool's `lease_secs` at `now`; returns them, so that each
    /// node can retire their home directories ([`SystemAccounts::retire`]).
    pub async fn sweep(&self, now: i64) -> Result<Vec<Lease>> {
        let mut ended = Vec::new();
        for pool in self.pools {
            let prefix = format!("s/{}/", pool.vo);
            for (key, raw) in self
                .store
                .scan(Table::Leases, &prefix, None, usize::MAX)
                .await?
            {
                let lease: Lease = serde_json::from_slice(&raw)
                    .map_err(|e| Error::Store(format!("{key}: undecodable lease: {e}")))?;
                if now - lease.last_used < pool.lease_secs {
                    continue;
                }
                // A use that bumped the lease meanwhile makes this CAS fail: the lease stays.
                if !self.store.cas(Table::Leases, &key, Some(raw), None).await? {
                    continue;
                }
                let owner =
                    serde_json::to_vec(&lease.subject).map_err(|e| Error::Store(e.to_string()))?;
                self.store
                    .cas(
                        Table::Leases,
                        &uid_key(&lease.vo, lease.uid),
                        Some(owner),
                        None,
                    )
                    .await?;
                tracing::info!(vo = %lease.vo, subject = %lease.subject, account = %lease.account, "lease expired");
                ended.push(lease);
            }
        }
        Ok(ended)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
