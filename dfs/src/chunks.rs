//! The chunk store of one node: versioned chunk files under `DATA/chunks/INO/IDX.VERSION`.
//!
//! A chunk is written to a temporary file, synced, then renamed into place and the directory
//! synced: a crash or a full disk leaves either the old version or the new one, never a torn
//! chunk, and `ENOSPC` comes back to the writer as such. Checksums (crc32c) are kept in the
//! metadata; this store checks them against what the caller expects.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One node's chunk files.
#[derive(Debug, Clone)]
pub struct ChunkStore {
    root: PathBuf,
}

/// What a replica's copy of a chunk version is like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Health {
    /// Present with the expected checksum.
    Good,
    /// Not here.
    Missing,
    /// Here with another checksum.
    Damaged,
}

/// A chunk file found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Inode.
    pub ino: u64,
    /// Chunk index.
    pub idx: u64,
    /// Version.
    pub version: u64,
    /// Bytes.
    pub len: u64,
    /// Seconds since its last change.
    pub age_secs: u64,
}

fn io_err(path: &Path, e: io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

impl ChunkStore {
    /// Opens (creating) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<ChunkStore> {
        let root = data_dir.join("chunks");
        fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
        Ok(ChunkStore { root })
    }

    /// The directory of the chunk files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, ino: u64) -> PathBuf {
        self.root.join(ino.to_string())
    }

    /// Path of one version of a chunk.
    pub fn path(&self, ino: u64, idx: u64, version: u64) -> PathBuf {
        self.dir(ino).join(format!("{idx}.{version}"))
    }

    /// Whether this version is here.
    pub fn has(&self, ino: u64, idx: u64, version: u64) -> bool {
        self.path(ino, idx, version).is_file()
    }

    /// Stores `data` as `version` durably (synced file, rename, synced directory).
    pub fn put(&self, ino: u64, idx: u64, version: u64, data: &[u8]) -> Result<()> {
        let dir = self.dir(ino);
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let path = self.path(ino, idx, version);
        let tmp = dir.join(format!("{idx}.{version}.tmp"));
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            // A full disk leaves nothing behind: the old version stays the one read.
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&tmp, e));
        }
        fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        sync_dir(&dir)
    }

    /// Whether a version is here and intact.
    pub fn check(&self, ino: u64, idx: u64, version: u64, crc: u32) -> Result<Health> {
        Ok(match self.get(ino, idx, version)? {
            None => Health::Missing,
            Some(d) if crc32c::crc32c(&d) == crc => Health::Good,
            Some(_) => Health::Damaged,
        })
    }

    /// Creates a new version of a chunk to be written in place, holding the first `copy`
    /// bytes of version `from` (a copy-on-write of the committed data), not yet synced.
    pub fn start(
        &self,
        ino: u64,
        idx: u64,
        version: u64,
        from: Option<(u64, u64)>,
    ) -> Result<File> {
        let dir = self.dir(ino);
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let path = self.path(ino, idx, version);
        let mut out = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        if let Some((old, copy)) = from {
            let src = self.path(ino, idx, old);
            let f = File::open(&src).map_err(|e| io_err(&src, e))?;
            let copied = io::copy(&mut f.take(copy), &mut out);
            if let Err(e) = copied {
                let _ = fs::remove_file(&path);
                return Err(io_err(&path, e));
            }
        }
        Ok(out)
    }

    /// Opens one version for reading.
    pub fn open_version(&self, ino: u64, idx: u64, version: u64) -> Result<File> {
        let path = self.path(ino, idx, version);
        File::open(&path).map_err(|e| io_err(&path, e))
    }

    /// Reads a whole version; `None` if it is not here.
    pub fn get(&self, ino: u64, idx: u64, version: u64) -> Result<Option<Vec<u8>>> {
        let path = self.path(ino, idx, version);
        match fs::read(&path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// Reads a whole version and checks its crc32c: `None` if absent or damaged.
    pub fn get_checked(
        &self,
        ino: u64,
        idx: u64,
        version: u64,
        crc: u32,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get(ino, idx, version)?
            .filter(|d| crc32c::crc32c(d) == crc))
    }

    /// Syncs a file written in place and gives its crc32c and length.
    pub fn seal(&self, file: &File, ino: u64, idx: u64, version: u64) -> Result<(u32, u64)> {
        let path = self.path(ino, idx, version);
        file.sync_all().map_err(|e| io_err(&path, e))?;
        let len = file.metadata().map_err(|e| io_err(&path, e))?.len();
        let mut buf = vec![0u8; 1 << 20];
        let (mut crc, mut off) = (0u32, 0u64);
        while off < len {
            let n = file.read_at(&mut buf, off).map_err(|e| io_err(&path, e))?;
            if n == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            off += n as u64;
        }
        sync_dir(&self.dir(ino))?;
        Ok((crc, len))
    }

    /// Removes the versions of a chunk not in `keep`.
    pub fn prune(&self, ino: u64, idx: u64, keep: &[u64]) -> Result<()> {
        for f in self.list_inode(ino)? {
            if f.idx == idx && !keep.contains(&f.version) {
                self.remove(ino, idx, f.version);
            }
        }
        Ok(())
    }

    /// Removes one version (a missing one is not an error).
    pub fn remove(&self, ino: u64, idx: u64, version: u64) {
        let _ = fs::remove_file(self.path(ino, idx, version));
    }

    /// Removes every chunk of an inode.
    pub fn remove_inode(&self, ino: u64) {
        let _ = fs::remove_dir_all(self.dir(ino));
    }

    fn list_inode(&self, ino: u64) -> Result<Vec<Found>> {
        let dir = self.dir(ino);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, e)),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name();
            let Some((idx, version)) = name.to_str().and_then(|n| n.split_once('.')) else {
                continue;
            };
            let (Ok(idx), Ok(version)) = (idx.parse(), version.parse()) else {
                continue;
            };
            let Ok(meta) = e.metadata() else { continue };
            let age_secs = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .map_or(0, |d| d.as_secs());
            out.push(Found {
                ino,
                idx,
                version,
                len: meta.len(),
                age_secs,
            });
        }
        Ok(out)
    }

    /// Every chunk file of the store.
    pub fn list(&self) -> Result<Vec<Found>> {
        let entries = fs::read_dir(&self.root).map_err(|e| io_err(&self.root, e))?;
        let mut out = Vec::new();
        for e in entries.flatten() {
            if let Some(ino) = e.file_name().to_str().and_then(|n| n.parse().ok()) {
                out.extend(self.list_inode(ino)?);
            }
        }
        Ok(out)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_replace_each_other_and_checksums_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = ChunkStore::open(dir.path()).expect("open");
        s.put(5, 0, 1, b"one").expect("v1");
        s.put(5, 0, 2, b"two").expect("v2");
        assert!(s.has(5, 0, 1) && s.has(5, 0, 2));
        s.put(5, 0, 3, b"three").expect("v3");
        s.prune(5, 0, &[2, 3]).expect("prune");
        assert!(!s.has(5, 0, 1), "versions not kept are dropped");
        let crc = crc32c::crc32c(b"three");
        assert_eq!(
            s.get_checked(5, 0, 3, crc).expect("read"),
            Some(b"three".to_vec())
        );
        assert_eq!(s.get_checked(5, 0, 2, crc).expect("read"), None);
        assert_eq!(s.check(5, 0, 2, crc).expect("check"), Health::Damaged);
        assert_eq!(s.check(5, 0, 3, crc).expect("check"), Health::Good);
        assert_eq!(s.check(5, 1, 3, crc).expect("check"), Health::Missing);
        assert_eq!(s.get(5, 9, 1).expect("read"), None);
        let listed = s.list().expect("list");
        assert_eq!(listed.len(), 2);
    }

    #[test]
    fn a_new_version_starts_as_a_copy_and_seals_with_its_crc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = ChunkStore::open(dir.path()).expect("open");
        s.put(1, 0, 1, b"hello world").expect("v1");
        let f = s.start(1, 0, 2, Some((1, 5))).expect("start");
        f.write_all_at(b"!", 5).expect("write");
        let (crc, len) = s.seal(&f, 1, 0, 2).expect("seal");
        assert_eq!(len, 6);
        assert_eq!(crc, crc32c::crc32c(b"hello!"));
    }
}
