//! One node's copy of the grid state: the tables, the sequence number of the last change
//! applied, and the file that keeps them across restarts. No I/O but that file; the
//! replication around it is in [`super::store`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use grid_node::store::{Entries, Table};
use serde::{Deserialize, Serialize};

/// One change: set (`Some`) or delete (`None`) a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Table.
    pub table: Table,
    /// Key.
    pub key: String,
    /// New value.
    pub value: Option<Vec<u8>>,
}

/// The whole state at a sequence number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Changes applied so far.
    pub seq: u64,
    /// Every entry.
    pub entries: Vec<(Table, String, Vec<u8>)>,
}

/// The file format's version, first in the file.
const FILE_VERSION: u32 = 1;

/// A node's copy of the tables.
#[derive(Debug)]
pub struct Replica {
    seq: u64,
    tables: BTreeMap<(Table, String), Vec<u8>>,
    file: Option<PathBuf>,
}

impl Replica {
    /// The copy kept in `file` (empty if the file does not exist yet), or in memory only.
    pub fn open(file: Option<PathBuf>) -> Result<Self> {
        let mut r = Replica {
            seq: 0,
            tables: BTreeMap::new(),
            file,
        };
        if let Some(path) = r.file.clone() {
            match std::fs::read(&path) {
                Ok(bytes) => r.restore(decode_file(&bytes, &path)?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            }
        }
        Ok(r)
    }

    /// The number of changes applied.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The value at `key`.
    pub fn get(&self, table: Table, key: &str) -> Option<Vec<u8>> {
        self.tables.get(&(table, key.to_string())).cloned()
    }

    /// Whether `key` holds `expected` (`None`: absent).
    pub fn holds(&self, table: Table, key: &str, expected: Option<&Vec<u8>>) -> bool {
        self.tables.get(&(table, key.to_string())) == expected
    }

    /// Up to `limit` entries under `prefix` after `after`, in key order.
    pub fn scan(&self, table: Table, prefix: &str, after: Option<&str>, limit: usize) -> Entries {
        let start = (table, after.unwrap_or(prefix).to_string());
        self.tables
            .range(start..)
            .take_while(|((tb, k), _)| *tb == table && k.starts_with(prefix))
            .filter(|((_, k), _)| after.is_none_or(|a| k.as_str() > a))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Applies change number `seq`, which must follow the last one applied, and saves.
    pub fn apply(&mut self, seq: u64, c: Change) -> Result<()> {
        if seq != self.seq + 1 {
            bail!("change {seq} does not follow {}", self.seq);
        }
        let k = (c.table, c.key);
        match c.value {
            Some(v) => self.tables.insert(k, v),
            None => self.tables.remove(&k),
        };
        self.seq = seq;
        self.save()
    }

    /// The whole state.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            seq: self.seq,
            entries: self
                .tables
                .iter()
                .map(|((t, k), v)| (*t, k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Replaces the state by `s` and saves.
    pub fn install(&mut self, s: Snapshot) -> Result<()> {
        self.restore(s);
        self.save()
    }

    fn restore(&mut self, s: Snapshot) {
        self.seq = s.seq;
        self.tables = s.entries.into_iter().map(|(t, k, v)| ((t, k), v)).collect();
    }

    /// Writes the state to its file (a new file, synced, renamed over the old one).
    fn save(&self) -> Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let bytes = postcard::to_allocvec(&(FILE_VERSION, self.snapshot()))
            .context("cannot encode the grid state")?;
        write_atomic(path, &bytes)
    }
}

fn decode_file(bytes: &[u8], path: &Path) -> Result<Snapshot> {
    let (version, rest): (u32, &[u8]) = postcard::take_from_bytes(bytes)
        .with_context(|| format!("{}: not a grid state file", path.display()))?;
    if version != FILE_VERSION {
        bail!(
            "{}: grid state file version {version}, this ssid reads {FILE_VERSION}",
            path.display()
        );
    }
    postcard::from_bytes(rest).with_context(|| format!("{}: corrupt grid state", path.display()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, v: &[u8]) -> Change {
        Change {
            table: Table::Tasks,
            key: key.into(),
            value: Some(v.to_vec()),
        }
    }

    #[test]
    fn changes_apply_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("grid.state");
        let mut r = Replica::open(Some(file.clone())).unwrap();
        r.apply(1, set("a", b"1")).unwrap();
        r.apply(2, set("b", b"2")).unwrap();
        let err = r.apply(4, set("c", b"3")).unwrap_err().to_string();
        assert_eq!(err, "change 4 does not follow 2");
        r.apply(
            3,
            Change {
                table: Table::Tasks,
                key: "a".into(),
                value: None,
            },
        )
        .unwrap();
        let again = Replica::open(Some(file)).unwrap();
        assert_eq!(again.seq(), 3);
        assert_eq!(again.get(Table::Tasks, "a"), None);
        assert_eq!(again.get(Table::Tasks, "b"), Some(b"2".to_vec()));
        assert_eq!(again.scan(Table::Tasks, "", None, 10).len(), 1);
    }

    #[test]
    fn a_snapshot_replaces_the_state() {
        let mut a = Replica::open(None).unwrap();
        a.apply(1, set("x", b"1")).unwrap();
        let mut b = Replica::open(None).unwrap();
        b.apply(1, set("y", b"2")).unwrap();
        b.install(a.snapshot()).unwrap();
        assert_eq!(b.snapshot(), a.snapshot());
        assert!(b.holds(Table::Tasks, "y", None));
    }

    #[test]
    fn a_foreign_or_corrupt_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("grid.state");
        std::fs::write(&file, postcard::to_allocvec(&(7u32, 0u8)).unwrap()).unwrap();
        let err = Replica::open(Some(file.clone())).unwrap_err().to_string();
        assert!(err.contains("version 7"), "{err}");
        std::fs::write(&file, [1u8, 0xff, 0xff]).unwrap();
        assert!(Replica::open(Some(file)).is_err());
    }
}
