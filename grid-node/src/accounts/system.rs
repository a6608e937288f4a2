//! Creating pool accounts on a node: group and passwd entries (with `groupadd`/`useradd`, so
//! that shadow files, nscd and the distribution's hooks stay consistent), home directories, and
//! retiring a home when its lease ends.
//!
//! Every step is idempotent: an account that exists with the right uid and group is left alone;
//! one that exists with another uid is a conflict reported by name, never overwritten. Homes are
//! node-local; each node records which subject its copy of a home was made for
//! (`homes.json` in its state directory), so that a home left by a user whose lease ended
//! is retired before the account is given to someone else, even if this node missed the sweep.
//!
//! When a lease expires the home is handled as the pool says ([`OnExpiry`]): by default it is
//! archived (moved to `<home_root>/.retired/<account>.<last use>` under a root-only directory,
//! so the next holder of the uid cannot read the old files while the admin still can); or it is
//! deleted. Files the user left outside the home are not searched for.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::{Lease, PoolConfig};
use crate::error::{Error, Result};

/// What happens to the home directory of an expired lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExpiry {
    /// Moved to a root-only archive directory: kept for the admin, out of the next user's reach.
    #[default]
    Archive,
    /// Removed with everything in it.
    Delete,
}

/// The accounts of one node's system (or of a directory tree standing for one, in tests).
#[derive(Debug, Clone)]
pub struct SystemAccounts {
    /// `/` for the node itself, else a directory with `etc/passwd` ... (`useradd --prefix`).
    root: PathBuf,
    /// Which subject each local home was made for.
    homes_file: PathBuf,
}

/// One passwd entry's fields that matter here.
#[derive(Debug, PartialEq, Eq)]
struct PasswdEntry {
    uid: u32,
    gid: u32,
}

impl SystemAccounts {
    /// Accounts of the system under `root` (`/` in the daemon); the home records are kept in
    /// `state_dir`.
    pub fn new(root: impl Into<PathBuf>, state_dir: &Path) -> Self {
        SystemAccounts {
            root: root.into(),
            homes_file: state_dir.join("homes.json"),
        }
    }

    /// A path of the system (`/etc/passwd` -> `<root>/etc/passwd`).
    fn sys_path(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// Makes sure the pool's group and the lease's account exist and its home is ready for
    /// the lease's subject (a home left by another subject is retired first).
    pub fn ensure(&self, pool: &PoolConfig, lease: &Lease) -> Result<()> {
        self.ensure_group(pool)?;
        self.ensure_user(pool, lease)?;
        let mut homes = self.load_homes()?;
        if let Some(prev) = homes.get(&lease.account) {
            if prev != &lease.subject {
                self.retire_home(pool, lease)?;
                homes.remove(&lease.account);
            }
        }
        let home = self.sys_path(&lease.home);
        match fs::DirBuilder::new().mode(0o700).create(&home) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(&home, e)),
        }
        nix::unistd::chown(&home, Some(lease.uid.into()), Some(lease.gid.into()))
            .map_err(|e| Error::io(&home, e.into()))?;
        homes.insert(lease.account.clone(), lease.subject.clone());
        self.store_homes(&homes)
    }

    /// Handles the home of an ended lease as its pool says and forgets it.
    pub fn retire(&self, pool: &PoolConfig, lease: &Lease) -> Result<()> {
        let mut homes = self.load_homes()?;
        if homes.get(&lease.account) == Some(&lease.subject) {
            self.retire_home(pool, lease)?;
            homes.remove(&lease.account);
            self.store_homes(&homes)?;
        }
        Ok(())
    }

    fn retire_home(&self, pool: &PoolConfig, lease: &Lease) -> Result<()> {
        let home = self.sys_path(&lease.home);
        if !home.exists() {
            return Ok(());
        }
        match pool.on_expiry {
            OnExpiry::Delete => fs::remove_dir_all(&home).map_err(|e| Error::io(&home, e)),
            OnExpiry::Archive => {
                let archive = self.sys_path(&pool.home_root).join(".retired");
                match fs::DirBuilder::new().mode(0o700).create(&archive) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io(&archive, e)),
                }
                // Root-only even if it existed with looser bits: it guards every old home.
                nix::unistd::chown(&archive, Some(0.into()), Some(0.into()))
                    .map_err(|e| Error::io(&archive, e.into()))?;
                fs::set_permissions(&archive, fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::io(&archive, e))?;
                let to = archive.join(format!("{}.{}", lease.account, lease.last_used));
                fs::rename(&home, &to).map_err(|e| Error::io(&home, e))?;
                tracing::info!(home = %home.display(), to = %to.display(), "home archived");
                Ok(())
            }
        }
    }

    fn ensure_group(&self, pool: &PoolConfig) -> Result<()> {
        let want = PasswdEntry {
            uid: pool.gid,
            gid: pool.gid,
        };
        let gid = pool.gid.to_string();
        let args = ["-g", &gid, &pool.name_prefix];
        self.ensure_entry(pool, "group", &pool.name_prefix, want, "groupadd", &args)
    }

    fn ensure_user(&self, pool: &PoolConfig, lease: &Lease) -> Result<()> {
        let want = PasswdEntry {
            uid: lease.uid,
            gid: lease.gid,
        };
        let home = lease.home.to_string_lossy();
        let comment = format!("ssi grid pool {}", pool.vo);
        let (uid, gid) = (lease.uid.to_string(), lease.gid.to_string());
        let args = [
            "-u",
            &uid,
            "-g",
            &gid,
            "-M",
            "-d",
            &home,
            "-s",
            "/bin/sh",
            "-c",
            &comment,
            &lease.account,
        ];
        self.ensure_entry(pool, "user", &lease.account, want, "useradd", &args)
    }

    /// Adds the `what` (user or group) `name` with ids `want` by running `tool args`, unless
    /// it exists already with those ids; a name or id held otherwise is a conflict.
    fn ensure_entry(
        &self,
        pool: &PoolConfig,
        what: &str,
        name: &str,
        want: PasswdEntry,
        tool: &str,
        args: &[&str],
    ) -> Result<()> {
        let db = if what == "group" {
            "etc/group"
        } else {
            "etc/passwd"
        };
        let entries = self.read_db(db)?;
        match entries.get(name) {
            Some(e) if *e == want => return Ok(()),
            Some(e) => {
                let reason = format!("{what} {name} exists with id {} group {}", e.uid, e.gid);
                return Err(conflict(pool, reason));
            }
            None => {}
        }
        if let Some((other, _)) = entries.iter().find(|(_, e)| e.uid == want.uid) {
            let reason = format!("id {} belongs to {what} {other}", want.uid);
            return Err(conflict(pool, reason));
        }
        self.run(pool, tool, args)
    }

    /// name -> (id, group) of `etc/passwd` or `etc/group` (the group's gid is in `uid`).
    fn read_db(&self, rel: &str) -> Result<BTreeMap<String, PasswdEntry>> {
        let path = self.root.join(rel);
        let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let group = rel.ends_with("group");
        Ok(text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                let id = f.get(2)?.parse().ok()?;
                let gid = if group { id } else { f.get(3)?.parse().ok()? };
                Some((f[0].to_string(), PasswdEntry { uid: id, gid }))
            })
            .collect())
    }

    fn run(&self, pool: &PoolConfig, tool: &str, args: &[&str]) -> Result<()> {
        let mut cmd = Command::new(tool);
        if self.root != Path::new("/") {
            cmd.arg("--prefix").arg(&self.root);
        }
        let out = cmd.args(args).output().map_err(|e| Error::io(tool, e))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(conflict(
                pool,
                format!("{tool} {}: {}", args.join(" "), err.trim()),
            ));
        }
        Ok(())
    }

    fn load_homes(&self) -> Result<BTreeMap<String, String>> {
        match fs::read(&self.homes_file) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::io(
                    &self.homes_file,
                    std::io::Error::new(ErrorKind::InvalidData, e),
                )
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Error::io(&self.homes_file, e)),
        }
    }

    fn store_homes(&self, homes: &BTreeMap<String, String>) -> Result<()> {
        let tmp = self.homes_file.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(homes).map_err(|e| Error::Store(e.to_string()))?;
        fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &self.homes_file).map_err(|e| Error::io(&self.homes_file, e))
    }
}

fn conflict(pool: &PoolConfig, reason: String) -> Error {
    Error::Account {
        vo: pool.vo.clone(),
        reason,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// A system tree with root's entries only, as `useradd --prefix` expects.
    fn system() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::create_dir_all(d.path().join("home/grid")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nother:x:61005:100::/:/bin/sh\n",
        )
        .unwrap();
        fs::write(d.path().join("etc/group"), "root:x:0:\n").unwrap();
        fs::write(
            d.path().join("etc/shadow"),
            "root:*:19000:0:99999:7:::\nother:*:19000:0:99999:7:::\n",
        )
        .unwrap();
        fs::write(d.path().join("etc/gshadow"), "root:*::\n").unwrap();
        d
    }

    fn pool(on_expiry: OnExpiry) -> PoolConfig {
        PoolConfig {
            vo: "atlas".into(),
            name_prefix: "atlas".into(),
            gid: 61000,
            uid_first: 61000,
            uid_last: 61009,
            lease_secs: 60,
            home_root: "/home/grid".into(),
            on_expiry,
        }
    }

    fn lease(pool: &PoolConfig, uid: u32, subject: &str) -> Lease {
        let account = pool.account_name(uid);
        Lease {
            vo: "atlas".into(),
            subject: subject.into(),
            home: pool.home_root.join(&account),
            account,
            uid,
            gid: pool.gid,
            leased_at: 0,
            last_used: 7,
        }
    }

    /// A system tree, a state directory, the accounts over them and a pool; `None` (the test
    /// is skipped) when not root.
    struct Fixture {
        sys: tempfile::TempDir,
        _state: tempfile::TempDir,
        accounts: SystemAccounts,
        pool: PoolConfig,
    }

    fn fixture(on_expiry: OnExpiry) -> Option<Fixture> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: creating accounts needs root");
            return None;
        }
        let sys = system();
        let state = tempfile::tempdir().unwrap();
        let accounts = SystemAccounts::new(sys.path(), state.path());
        Some(Fixture {
            sys,
            _state: state,
            accounts,
            pool: pool(on_expiry),
        })
    }

    #[test]
    fn accounts_are_created_once_and_conflicts_named() {
        let Some(f) = fixture(OnExpiry::Archive) else {
            return;
        };
        let (sys, accounts, p) = (&f.sys, &f.accounts, &f.pool);
        let l = lease(p, 61000, "/CN=alice");
        accounts.ensure(p, &l).unwrap();
        accounts.ensure(p, &l).unwrap();
        let passwd = fs::read_to_string(sys.path().join("etc/passwd")).unwrap();
        assert_eq!(
            passwd
                .matches("atlas000:x:61000:61000:ssi grid pool atlas:/home/grid/atlas000:/bin/sh")
                .count(),
            1,
            "{passwd}"
        );
        let meta = fs::metadata(sys.path().join("home/grid/atlas000")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (61000, 61000, 0o700)
        );
        // uid 61005 is held by an account that is not the pool's: named, not overwritten.
        let e = accounts
            .ensure(p, &lease(p, 61005, "/CN=bob"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "account pool of vo atlas: id 61005 belongs to user other"
        );
    }

    #[test]
    fn a_home_left_by_another_subject_is_archived_out_of_reach() {
        let Some(f) = fixture(OnExpiry::Archive) else {
            return;
        };
        let (sys, accounts, p) = (&f.sys, &f.accounts, &f.pool);
        accounts.ensure(p, &lease(p, 61001, "/CN=alice")).unwrap();
        fs::write(sys.path().join("home/grid/atlas001/secret"), "alice's").unwrap();
        // The lease ended and went to bob without this node retiring alice's home.
        accounts.ensure(p, &lease(p, 61001, "/CN=bob")).unwrap();
        assert!(!sys.path().join("home/grid/atlas001/secret").exists());
        let archived = sys.path().join("home/grid/.retired/atlas001.7/secret");
        assert_eq!(fs::read_to_string(archived).unwrap(), "alice's");
        let meta = fs::metadata(sys.path().join("home/grid/.retired")).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o700));
    }

    #[test]
    fn delete_on_expiry_removes_the_home() {
        let Some(f) = fixture(OnExpiry::Delete) else {
            return;
        };
        let (sys, accounts, p) = (&f.sys, &f.accounts, &f.pool);
        let l = lease(p, 61002, "/CN=carol");
        accounts.ensure(p, &l).unwrap();
        fs::write(sys.path().join("home/grid/atlas002/f"), "x").unwrap();
        accounts.retire(p, &l).unwrap();
        assert!(!sys.path().join("home/grid/atlas002").exists());
        // Retiring again (another node's sweep) is harmless.
        accounts.retire(p, &l).unwrap();
    }
}
