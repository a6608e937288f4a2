//! Open files of this node and their data path.
//!
//! A file open here has one [`OpenFile`] shared by its handles. Reads come from the local
//! copy of each committed chunk version (fetched from a replica once and checked against its
//! crc32c); writes go to a new version of each chunk touched, written in place on this
//! node's disk (a copy of the committed bytes first). `flush`, `fsync` and `release` publish:
//! each new version is synced, sent to the other replicas, synced there, and only then
//! committed in the metadata — so what `fsync`/`close` acknowledged is on R disks and named
//! by the replicated log.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::meta::{ChunkRef, Ino, MetaOp, MetaReply, Timespec, CHUNK_SIZE};
use crate::service::next_version;

use super::Fs;

/// Chunks published at once: their bytes are held in memory while they travel.
const PUBLISH_BATCH: usize = 8;

/// Why a publish failed, with its errno.
#[derive(Debug, Clone, Copy)]
enum Failed {
    /// Before anything was committed: the new versions are nowhere named.
    Replicating(i32),
    /// At the commit, which may have been applied all the same.
    Committing(i32),
}

impl Failed {
    fn errno(self) -> i32 {
        match self {
            Failed::Replicating(e) | Failed::Committing(e) => e,
        }
    }
}

/// A new version of one chunk, being written here.
#[derive(Debug)]
struct Dirty {
    version: u64,
    file: File,
}

/// The state of one file open on this node.
#[derive(Debug)]
pub struct OpenFile {
    /// Inode.
    pub ino: Ino,
    /// Size as this node sees it (its unpublished writes included).
    pub size: u64,
    /// Size as last committed (what a failed publish goes back to).
    committed_size: u64,
    /// Committed chunks as of the last open or publish here.
    base: BTreeMap<u64, ChunkRef>,
    dirty: BTreeMap<u64, Dirty>,
    /// Time of the last unpublished write.
    pub written: Option<Timespec>,
    /// Commits of this node's writes so far, and the modification time of the last one: an
    /// answer of the metadata asked before a commit ended is older than this node's view.
    pub commits: u64,
    /// The modification time the last commit here set.
    pub committed: Option<Timespec>,
    /// Handles open on it here.
    pub handles: u32,
}

/// The pieces of `off..off+len` in each chunk: (chunk index, offset in chunk, length).
fn pieces(off: u64, len: u64) -> impl Iterator<Item = (u64, u64, u64)> {
    let end = off + len;
    let mut pos = off;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let idx = pos / CHUNK_SIZE;
        let within = pos % CHUNK_SIZE;
        let n = (CHUNK_SIZE - within).min(end - pos);
        pos += n;
        Some((idx, within, n))
    })
}

/// Reads what a file holds at `at`, zeros past its end (a short read of a sparse file).
fn read_full(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], at + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    buf[done..].fill(0);
    Ok(())
}

impl OpenFile {
    /// A file just opened, from the metadata's answer.
    pub fn new(ino: Ino, size: u64, chunks: Vec<(u64, ChunkRef)>) -> OpenFile {
        OpenFile {
            ino,
            size,
            committed_size: size,
            base: chunks.into_iter().collect(),
            dirty: BTreeMap::new(),
            written: None,
            commits: 0,
            committed: None,
            handles: 0,
        }
    }

    /// Whether writes here are not yet published.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || self.written.is_some()
    }

    /// Takes a fresher view of the committed file (a new open), unless writes are pending.
    pub fn refresh(&mut self, size: u64, chunks: Vec<(u64, ChunkRef)>) {
        if !self.is_dirty() {
            self.size = size;
            self.committed_size = size;
            self.base = chunks.into_iter().collect();
        }
    }

    /// Reads up to `len` bytes at `off`.
    pub fn read(&self, fs: &Fs, off: u64, len: u64) -> Result<Vec<u8>, i32> {
        let len = len.min(self.size.saturating_sub(off));
        let mut out = vec![0u8; usize::try_from(len).map_err(|_| libc::EINVAL)?];
        let mut at = 0usize;
        for (idx, within, n) in pieces(off, len) {
            let buf = &mut out[at..at + n as usize];
            at += n as usize;
            if let Some(d) = self.dirty.get(&idx) {
                read_full(&d.file, buf, within).map_err(|e| errno_of(&e))?;
            } else if let Some(c) = self.base.get(&idx) {
                fs.local_chunk(self.ino, idx, c)?;
                let file = fs
                    .dfs
                    .chunks
                    .open_version(self.ino, idx, c.version)
                    .map_err(|e| e.errno())?;
                read_full(&file, buf, within).map_err(|e| errno_of(&e))?;
                // bytes a truncation cut off read as zeros
                let valid = u64::from(c.valid);
                if within + n > valid {
                    let keep = usize::try_from(valid.saturating_sub(within)).unwrap_or(0);
                    let from = keep.min(buf.len());
                    buf[from..].fill(0);
                }
            }
        }
        Ok(out)
    }

    /// Writes `data` at `off` into new versions of the chunks it touches.
    pub fn write(&mut self, fs: &Fs, off: u64, data: &[u8]) -> Result<(), i32> {
        let mut at = 0usize;
        for (idx, within, n) in pieces(off, data.len() as u64) {
            if !self.dirty.contains_key(&idx) {
                let d = self.start_chunk(fs, idx)?;
                self.dirty.insert(idx, d);
            }
            let d = self.dirty.get(&idx).ok_or(libc::EIO)?;
            d.file
                .write_all_at(&data[at..at + n as usize], within)
                .map_err(|e| errno_of(&e))?;
            at += n as usize;
        }
        self.size = self.size.max(off + data.len() as u64);
        self.written = Some(Timespec::now());
        Ok(())
    }

    /// A new version of chunk `idx`, holding the committed bytes of the old one.
    fn start_chunk(&self, fs: &Fs, idx: u64) -> Result<Dirty, i32> {
        let old = self.base.get(&idx);
        if let Some(c) = old {
            fs.local_chunk(self.ino, idx, c)?;
        }
        let version = next_version(old.map(|c| c.version), fs.dfs.opts.me);
        // Only the bytes still inside the file are copied: a chunk cut by a truncation and
        // grown again reads zeros past the cut.
        let in_file = self.size.saturating_sub(idx * CHUNK_SIZE);
        let from = old.map(|c| (c.version, u64::from(c.valid).min(in_file)));
        let file = fs
            .dfs
            .chunks
            .start(self.ino, idx, version, from)
            .map_err(|e| e.errno())?;
        Ok(Dirty { version, file })
    }

    /// Sets the size (truncate or extend) as this node sees it; the caller commits it.
    pub fn resize(&mut self, size: u64) {
        self.size = size;
        self.committed_size = size;
        let first_gone = size.div_ceil(CHUNK_SIZE);
        self.base.retain(|idx, _| *idx < first_gone);
        self.dirty.retain(|idx, _| *idx < first_gone);
        if size % CHUNK_SIZE != 0 {
            let keep = size % CHUNK_SIZE;
            if let Some(c) = self.base.get_mut(&(size / CHUNK_SIZE)) {
                c.valid = c.valid.min(u32::try_from(keep).unwrap_or(u32::MAX));
            }
            if let Some(d) = self.dirty.get(&(size / CHUNK_SIZE)) {
                // Best effort: an error here shows again when the chunk is published.
                let _ = d.file.set_len(keep);
            }
        }
    }

    /// Publishes unpublished writes, or drops them if that fails for want of room or right
    /// (`ENOSPC`, `EDQUOT`, `EROFS`, `EFBIG`): the file stays as last committed, for this
    /// node's readers too, and the error goes to the caller (the `fsync`/`close` that asked). Nothing of a failed publish can be published later by
    /// a close or another node's recall: what was not acknowledged never appears.
    pub fn publish_or_drop(&mut self, fs: &Fs) -> Result<(), i32> {
        match self.publish(fs) {
            // A passing failure (a replica or the leader not answering in time) keeps them for
            // the next try, as a page cache keeps dirty pages: dropping them would cut a hole
            // in a file whose writer goes on (an appender that ignores a close's error).
            Err(f) if !is_final(f.errno()) => Err(f.errno()),
            Err(Failed::Replicating(e)) => {
                for (idx, d) in std::mem::take(&mut self.dirty) {
                    fs.dfs.chunks.remove(self.ino, idx, d.version);
                }
                self.forget_writes();
                Err(e)
            }
            Err(Failed::Committing(e)) => {
                // The commit may have been applied even so: the new versions' files stay
                // for the collection pass, which drops them unless the metadata names them.
                self.dirty.clear();
                self.forget_writes();
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    /// Publishes unpublished writes and keeps them if that fails (another node's recall:
    /// the writer's own `fsync`/`close` gets the error later).
    pub fn publish_or_keep(&mut self, fs: &Fs) -> Result<(), i32> {
        self.publish(fs).map_err(Failed::errno)
    }

    fn forget_writes(&mut self) {
        self.written = None;
        self.size = self.committed_size;
    }

    /// Publishes unpublished writes: every new chunk version synced on its replicas, then
    /// committed with the size and modification time.
    fn publish(&mut self, fs: &Fs) -> Result<(), Failed> {
        let Some(written) = self.written else {
            return Ok(());
        };
        let dirty: Vec<(u64, u64)> = self.dirty.iter().map(|(i, d)| (*i, d.version)).collect();
        let mut refs = Vec::new();
        for batch in dirty.chunks(PUBLISH_BATCH) {
            refs.extend(
                self.replicate_batch(fs, batch)
                    .map_err(Failed::Replicating)?,
            );
        }
        let op = MetaOp::Commit {
            ino: self.ino,
            size: self.size,
            chunks: refs.clone(),
            now: written,
        };
        match fs.write(op).map_err(Failed::Committing)? {
            MetaReply::Attr(_) => {}
            other => {
                tracing::warn!(?other, "unexpected answer to a commit");
                return Err(Failed::Committing(libc::EIO));
            }
        }
        for (idx, c) in refs {
            fs.dfs.chunks.prune(self.ino, idx, &[c.version]).ok();
            self.base.insert(idx, c);
        }
        self.dirty.clear();
        self.written = None;
        self.committed_size = self.size;
        self.commits += 1;
        self.committed = Some(written);
        Ok(())
    }

    /// Syncs new chunk versions here and sends them to their other replicas, all at once.
    fn replicate_batch(&self, fs: &Fs, batch: &[(u64, u64)]) -> Result<Vec<(u64, ChunkRef)>, i32> {
        let mut sealed = Vec::new();
        for (idx, version) in batch {
            let d = self.dirty.get(idx).ok_or(libc::EIO)?;
            d.file.sync_all().map_err(|e| errno_of(&e))?;
            let path = fs.dfs.chunks.path(self.ino, *idx, *version);
            let data = std::fs::read(&path).map_err(|e| errno_of(&e))?;
            let keep = self.base.get(idx).map(|c| c.version);
            sealed.push((*idx, *version, keep, data));
        }
        let ino = self.ino;
        let results = fs.run(move |dfs| async move {
            let sends = sealed.into_iter().map(|(idx, version, keep, data)| {
                let dfs = dfs.clone();
                async move {
                    let replicas = dfs.replicate(ino, idx, version, keep, &data).await;
                    (idx, version, crc32c::crc32c(&data), data.len(), replicas)
                }
            });
            futures::future::join_all(sends).await
        })?;
        let mut refs = Vec::new();
        for (idx, version, crc, len, replicas) in results {
            let replicas = replicas.map_err(|e| {
                tracing::warn!(ino, idx, error = %e, "chunk not replicated");
                e.errno()
            })?;
            let stored = u32::try_from(len).map_err(|_| libc::EFBIG)?;
            refs.push((
                idx,
                ChunkRef {
                    version,
                    crc,
                    stored,
                    valid: stored,
                    replicas,
                },
            ));
        }
        Ok(refs)
    }
}

/// Whether a publish that failed with `errno` would fail again as it is (no room, no right):
/// its writes are then dropped rather than kept for a later try.
fn is_final(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::EFBIG
    )
}

/// The errno of an I/O error (`EIO` if it has none).
pub fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_at_chunk_bounds() {
        let p: Vec<_> = pieces(CHUNK_SIZE - 10, 30).collect();
        assert_eq!(p, vec![(0, CHUNK_SIZE - 10, 10), (1, 0, 20)]);
        assert_eq!(pieces(5, 0).count(), 0);
    }
}
