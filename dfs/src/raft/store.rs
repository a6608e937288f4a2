//! The durable raft store in redb: log entries, vote, committed index and the last snapshot,
//! each change a transaction that redb fsyncs before `commit` returns.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Answer, NodeAddr, TypeConfig};
use crate::meta::{ChunkRef, Ino, MetaState};

type Nid = u64;
type StoreResult<T> = Result<T, StorageError<Nid>>;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

fn fail(what: &str, e: impl std::fmt::Display) -> StorageError<Nid> {
    StorageIOError::write(AnyError::error(format!("{what}: {e}"))).into()
}

fn encode<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| fail("encode", e))
}

fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> StoreResult<T> {
    postcard::from_bytes(b).map_err(|e| fail("decode", e))
}

/// The indexes of `range` as an inclusive range redb takes; `None` when it is empty.
fn inclusive(range: &impl RangeBounds<u64>) -> Option<std::ops::RangeInclusive<u64>> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let start = match range.start_bound() {
        Included(s) => *s,
        Excluded(s) => s.checked_add(1)?,
        Unbounded => 0,
    };
    let end = match range.end_bound() {
        Included(e) => *e,
        Excluded(e) => e.checked_sub(1)?,
        Unbounded => u64::MAX,
    };
    (start <= end).then_some(start..=end)
}

/// Runs blocking store I/O without stalling the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Opens (creating) the store file.
pub fn open_db(path: &Path) -> crate::Result<Arc<Database>> {
    let db = Database::create(path).map_err(|e| crate::Error::Store {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let txn = db.begin_write().map_err(|e| crate::Error::Store {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let tables = txn
        .open_table(LOG)
        .map(drop)
        .and_then(|()| txn.open_table(META).map(drop));
    tables
        .map_err(|e| e.to_string())
        .and_then(|()| txn.commit().map_err(|e| e.to_string()))
        .map_err(|reason| crate::Error::Store {
            path: path.display().to_string(),
            reason,
        })?;
    Ok(Arc::new(db))
}

fn get_meta<T: for<'de> Deserialize<'de>>(db: &Database, key: &str) -> StoreResult<Option<T>> {
    let txn = db.begin_read().map_err(|e| fail("read", e))?;
    let table = txn.open_table(META).map_err(|e| fail("read", e))?;
    let v = table.get(key).map_err(|e| fail("read", e))?;
    v.map(|v| decode(v.value())).transpose()
}

fn put_meta<T: Serialize>(db: &Database, key: &str, v: &T) -> StoreResult<()> {
    let bytes = encode(v)?;
    let txn = db.begin_write().map_err(|e| fail("write", e))?;
    {
        let mut table = txn.open_table(META).map_err(|e| fail("write", e))?;
        table
            .insert(key, bytes.as_slice())
            .map_err(|e| fail("write", e))?;
    }
    txn.commit().map_err(|e| fail("commit", e))
}

/// The raft log and vote.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// The log in `db`.
    pub fn new(db: Arc<Database>) -> LogStore {
        LogStore { db }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let Some(range) = inclusive(&range) else {
            return Ok(Vec::new());
        };
        blocking(|| {
            let txn = self.db.begin_read().map_err(|e| fail("read log", e))?;
            let table = txn.open_table(LOG).map_err(|e| fail("read log", e))?;
            let mut out = Vec::new();
            for item in table.range(range).map_err(|e| fail("read log", e))? {
                let (_, v) = item.map_err(|e| fail("read log", e))?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        blocking(|| {
            let purged: Option<LogId<Nid>> = get_meta(&self.db, "purged")?;
            let txn = self.db.begin_read().map_err(|e| fail("read log", e))?;
            let table = txn.open_table(LOG).map_err(|e| fail("read log", e))?;
            let last = match table.last().map_err(|e| fail("read log", e))? {
                Some((_, v)) => Some(decode::<Entry<TypeConfig>>(v.value())?.log_id),
                None => purged,
            };
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<Nid>) -> StoreResult<()> {
        blocking(|| put_meta(&self.db, "vote", vote))
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<Nid>>> {
        blocking(|| get_meta(&self.db, "vote"))
    }

    async fn save_committed(&mut self, committed: Option<LogId<Nid>>) -> StoreResult<()> {
        blocking(|| put_meta(&self.db, "committed", &committed))
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<Nid>>> {
        blocking(|| Ok(get_meta::<Option<LogId<Nid>>>(&self.db, "committed")?.flatten()))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = blocking(|| {
            let txn = self.db.begin_write().map_err(|e| fail("append", e))?;
            {
                let mut table = txn.open_table(LOG).map_err(|e| fail("append", e))?;
                for entry in entries {
                    let bytes = encode(&entry)?;
                    table
                        .insert(entry.log_id.index, bytes.as_slice())
                        .map_err(|e| fail("append", e))?;
                }
            }
            // Durability::Immediate (redb's default): on disk when commit returns.
            txn.commit().map_err(|e| fail("append commit", e))
        });
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId<Nid>) -> StoreResult<()> {
        blocking(|| self.remove_range(log_id.index..))
    }

    async fn purge(&mut self, log_id: LogId<Nid>) -> StoreResult<()> {
        blocking(|| {
            put_meta(&self.db, "purged", &log_id)?;
            self.remove_range(..=log_id.index)
        })
    }
}

impl LogStore {
    fn remove_range(&self, range: impl RangeBounds<u64>) -> StoreResult<()> {
        let Some(range) = inclusive(&range) else {
            return Ok(());
        };
        let txn = self.db.begin_write().map_err(|e| fail("remove logs", e))?;
        {
            let mut table = txn.open_table(LOG).map_err(|e| fail("remove logs", e))?;
            table
                .retain_in(range, |_, _| false)
                .map_err(|e| fail("remove logs", e))?;
        }
        txn.commit().map_err(|e| fail("remove logs", e))
    }
}

/// The applied state: what a snapshot holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    /// Last log entry applied.
    pub last: Option<LogId<Nid>>,
    /// Membership as of `last`.
    pub membership: StoredMembership<Nid, NodeAddr>,
    /// The file system's metadata.
    pub meta: MetaState,
}

/// A snapshot as kept in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<Nid, NodeAddr>,
    data: Vec<u8>,
}

/// The state machine: the metadata in memory, shared with the readers of this node.
#[derive(Debug, Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    /// The applied state, read by this node's file system requests.
    pub state: Arc<RwLock<Applied>>,
    freed: mpsc::UnboundedSender<(Ino, Vec<(u64, ChunkRef)>)>,
}

impl StateMachine {
    /// The state machine, starting from the snapshot in `db` if any; inodes it deletes are sent
    /// to `freed` so that this node drops their chunks.
    pub fn new(
        db: Arc<Database>,
        freed: mpsc::UnboundedSender<(Ino, Vec<(u64, ChunkRef)>)>,
    ) -> crate::Result<StateMachine> {
        let stored: Option<StoredSnapshot> =
            get_meta(&db, "snapshot").map_err(|e| crate::Error::Raft(e.to_string()))?;
        let applied = match stored {
            Some(s) => postcard::from_bytes(&s.data)
                .map_err(|e| crate::Error::Raft(format!("snapshot: {e}")))?,
            None => Applied::default(),
        };
        Ok(StateMachine {
            db,
            state: Arc::new(RwLock::new(applied)),
            freed,
        })
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Applied> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Applied> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let (data, last, membership) = {
            let s = self.read();
            (encode(&*s)?, s.last, s.membership.clone())
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id: format!(
                "{}-{}",
                last.map_or(0, |l| l.index),
                crate::meta::Timespec::now().sec
            ),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        blocking(|| put_meta(&self.db, "snapshot", &stored))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<Nid>>, StoredMembership<Nid, NodeAddr>)> {
        let s = self.read();
        Ok((s.last, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<Answer>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut answers = Vec::new();
        let mut s = self.write();
        for entry in entries {
            s.last = Some(entry.log_id);
            let answer = match entry.payload {
                EntryPayload::Blank => Ok(crate::meta::MetaReply::Done),
                EntryPayload::Normal(op) => s.meta.apply(op),
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(entry.log_id), m);
                    Ok(crate::meta::MetaReply::Done)
                }
            };
            answers.push(answer);
        }
        for freed in s.meta.take_freed() {
            // The receiver lives as long as the node; if it is gone the node is stopping.
            let _ = self.freed.send(freed);
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<Nid, NodeAddr>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let data = snapshot.into_inner();
        let applied: Applied = decode(&data)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        blocking(|| put_meta(&self.db, "snapshot", &stored))?;
        *self.write() = applied;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let stored: Option<StoredSnapshot> = blocking(|| get_meta(&self.db, "snapshot"))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
