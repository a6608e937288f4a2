//! The replicated state the grid services keep: VOs, account leases, tasks and the policy set.
//!
//! The services see it through [`GridStore`], a small table/key/value interface with a
//! compare-and-swap, because that is what a replicated log can apply deterministically on every
//! node: the daemon implements it over the cluster's replicated state, so that every node maps a
//! user to the same account and every node sees the same tasks. [`MemStore`] keeps the same
//! tables in memory, for one process (a single node, or tests of the services).
//!
//! Values are JSON so that an operator can read a dump of the state; [`Table`] typed helpers
//! ([`get_json`], [`cas_json`] ...) do the encoding in one place.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The tables of the grid state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    /// VO name -> [`crate::vo::Vo`].
    Vos,
    /// `vo/subject` -> [`crate::accounts::Lease`], and `vo#uid` -> the same key (uid index).
    Leases,
    /// task id -> [`crate::tes::TaskRecord`].
    Tasks,
    /// Settings such as the policy set (`policy`).
    Settings,
}

/// Entries of a scan: (key, value) in key order.
pub type Entries = Vec<(String, Vec<u8>)>;

type Tables = BTreeMap<(Table, String), Vec<u8>>;

/// A table/key/value store with compare-and-swap, replicated by the daemon.
///
/// Every call is atomic; `cas` is the only way to change a value safely when two nodes may
/// change it at once.
pub trait GridStore: Send + Sync + std::fmt::Debug {
    /// The value at `key`, if any.
    fn get(&self, table: Table, key: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>>>;
    /// Sets `key` to `new` (or deletes it when `new` is `None`) if its value is `expected`
    /// (`None`: absent). Returns whether it was applied.
    fn cas(
        &self,
        table: Table,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<bool>>;
    /// Up to `limit` entries whose key starts with `prefix` and sorts after `after`, in key order.
    fn scan(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Entries>>;
}

/// An in-memory [`GridStore`] (one process; nothing survives it).
#[derive(Debug, Default)]
pub struct MemStore {
    tables: Mutex<Tables>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Tables>> {
        self.tables
            .lock()
            .map_err(|_| Error::Store("memory store lock poisoned".into()))
    }
}

impl GridStore for MemStore {
    fn get(&self, table: Table, key: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>>> {
        let r = self
            .lock()
            .map(|t| t.get(&(table, key.to_string())).cloned());
        Box::pin(async move { r })
    }

    fn cas(
        &self,
        table: Table,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<bool>> {
        let r = self.lock().map(|mut t| {
            let k = (table, key.to_string());
            if t.get(&k) != expected.as_ref() {
                return false;
            }
            match new {
                Some(v) => t.insert(k, v),
                None => t.remove(&k),
            };
            true
        });
        Box::pin(async move { r })
    }

    fn scan(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Entries>> {
        let r = self.lock().map(|t| {
            let start = (table, after.unwrap_or(prefix).to_string());
            t.range(start..)
                .take_while(|((tb, k), _)| *tb == table && k.starts_with(prefix))
                .filter(|((_, k), _)| after.is_none_or(|a| k.as_str() > a))
                .take(limit)
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect()
        });
        Box::pin(async move { r })
    }
}

fn decode<T: DeserializeOwned>(table: Table, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Store(format!("{table:?}/{key}: undecodable value: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Store(format!("encoding a value: {e}")))
}

/// The value at `key` decoded, with its raw bytes (for a later [`cas_json`]).
pub async fn get_json<T: DeserializeOwned>(
    store: &dyn GridStore,
    table: Table,
    key: &str,
) -> Result<Option<(T, Vec<u8>)>> {
    match store.get(table, key).await? {
        Some(raw) => Ok(Some((decode(table, key, &raw)?, raw))),
        None => Ok(None),
    }
}

/// Replaces the value whose raw bytes were `expected` by `new`; see [`GridStore::cas`].
pub async fn cas_json<T: Serialize>(
    store: &dyn GridStore,
    table: Table,
    key: &str,
    expected: Option<Vec<u8>>,
    new: Option<&T>,
) -> Result<bool> {
    let new = new.map(encode).transpose()?;
    store.cas(table, key, expected, new).await
}

/// Reads `key`, applies `change` and writes the result back, retrying when another writer got
/// there first. `change` returns the new value (`None` deletes) or an error that aborts.
pub async fn update_json<T, F>(
    store: &dyn GridStore,
    table: Table,
    key: &str,
    mut change: F,
) -> Result<Option<T>>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> Result<Option<T>>,
{
    // Each round either applies or sees a newer value; a bound keeps a livelock visible.
    for _ in 0..64 {
        let current = get_json::<T>(store, table, key).await?;
        let (old, raw) = match current {
            Some((v, raw)) => (Some(v), Some(raw)),
            None => (None, None),
        };
        let new = change(old)?;
        if cas_json(store, table, key, raw, new.as_ref()).await? {
            return Ok(new);
        }
    }
    Err(Error::Store(format!(
        "{table:?}/{key}: too many concurrent updates"
    )))
}

/// Every value of `table` under `prefix`, decoded, in key order.
pub async fn scan_json<T: DeserializeOwned>(
    store: &dyn GridStore,
    table: Table,
    prefix: &str,
) -> Result<Vec<(String, T)>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let batch = store.scan(table, prefix, after.as_deref(), 512).await?;
        let done = batch.len() < 512;
        for (k, raw) in batch {
            let v = decode(table, &k, &raw)?;
            after = Some(k.clone());
            out.push((k, v));
        }
        if done {
            return Ok(out);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cas_applies_only_on_expected_value() {
        let s = MemStore::new();
        assert!(s
            .cas(Table::Vos, "a", None, Some(b"1".to_vec()))
            .await
            .unwrap());
        assert!(!s
            .cas(Table::Vos, "a", None, Some(b"2".to_vec()))
            .await
            .unwrap());
        assert!(s
            .cas(Table::Vos, "a", Some(b"1".to_vec()), Some(b"2".to_vec()))
            .await
            .unwrap());
        assert_eq!(s.get(Table::Vos, "a").await.unwrap(), Some(b"2".to_vec()));
        assert!(s
            .cas(Table::Vos, "a", Some(b"2".to_vec()), None)
            .await
            .unwrap());
        assert_eq!(s.get(Table::Vos, "a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn scan_keeps_to_table_prefix_and_page() {
        let s = MemStore::new();
        for k in ["a/1", "a/2", "a/3", "b/1"] {
            s.cas(Table::Leases, k, None, Some(k.as_bytes().to_vec()))
                .await
                .unwrap();
        }
        s.cas(Table::Tasks, "a/9", None, Some(vec![]))
            .await
            .unwrap();
        let keys = |v: Vec<(String, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(s.scan(Table::Leases, "a/", None, 10).await.unwrap()),
            ["a/1", "a/2", "a/3"]
        );
        assert_eq!(
            keys(s.scan(Table::Leases, "a/", Some("a/1"), 1).await.unwrap()),
            ["a/2"]
        );
        assert_eq!(
            keys(s.scan(Table::Leases, "", Some("a/3"), 10).await.unwrap()),
            ["b/1"]
        );
    }
}
