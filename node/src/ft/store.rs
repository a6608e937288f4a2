//! Where the checkpoints of fault-tolerant trees live: one directory per global pid under the
//! FT directory (on the DFS, so that they outlive the node that wrote them).
//!
//! ```text
//!   FT_DIR/GPID/manifest          the last complete checkpoint (JSON), replaced by rename
//!   FT_DIR/GPID/img-E-S/          image S of epoch E (a chain: each names its parent)
//!   FT_DIR/GPID/epoch-N           the claim of epoch N (created exclusively: one winner)
//! ```
//!
//! A checkpoint is complete once every file of its image is synced and the manifest naming it
//! was renamed into place. Epoch 0 is the first host; a node that restarts the tree after its
//! owner died first creates `epoch-N` (N = current + 1) with `O_EXCL`: on a shared file system
//! whose names are kept by one replicated log (the DFS), exactly one creator wins, so a tree is
//! restarted once per death, and a writer whose epoch was overtaken is fenced off.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use ssi_core::NodeId;

/// Version of the manifest format.
pub const VERSION: u32 = 1;

/// The last complete checkpoint of a tree, and who owns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Root of the tree.
    pub gpid: i32,
    /// Its owner (a user).
    pub uid: u32,
    /// The node that wrote this manifest (hosts the tree).
    pub host: u16,
    /// The run (membership generation) of that node.
    pub host_gen: u64,
    /// The epoch it was written under.
    pub epoch: u64,
    /// Time between checkpoints, milliseconds.
    pub every_ms: u64,
    /// Directory name of the last image, if a checkpoint is complete.
    pub image: Option<String>,
    /// Images of its chain, oldest first (the last is `image`).
    pub chain: Vec<String>,
    /// When the last image was taken, Unix milliseconds.
    pub taken_ms: u64,
    /// How long it froze the tree, microseconds.
    pub freeze_us: u64,
    /// Page bytes it wrote.
    pub bytes: u64,
    /// When this epoch began with a restart: the time of the checkpoint it came back from.
    pub restarted_from_ms: Option<u64>,
}

/// Who owns a tree now: the node of its highest claim, else the manifest's host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Its epoch.
    pub epoch: u64,
    /// The node.
    pub node: NodeId,
    /// Its run (membership generation) the ownership was given to: a node that starts again
    /// has another, and knows the tree went down with its earlier run.
    pub gen: u64,
}

/// The FT directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> anyhow::Error {
    let msg = format!("{what} {}", path.display());
    move |e| anyhow::Error::new(e).context(msg)
}

/// Writes `bytes` to a new file `path` (mode 0600, refused if it exists), synced.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Syncs a directory's entries (a file system that cannot says so with EINVAL: it makes
/// them durable as it creates them).
fn sync_dir(dir: &Path) -> Result<()> {
    match File::open(dir).and_then(|f| f.sync_all()) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => Ok(()),
        r => r.map_err(io("cannot sync", dir)),
    }
}

impl Store {
    /// The FT directory at `root` (created, mode 0700, when first written).
    pub fn new(root: PathBuf) -> Store {
        Store { root }
    }

    /// The directory of tree `gpid`.
    pub fn tree_dir(&self, gpid: i32) -> PathBuf {
        self.root.join(gpid.to_string())
    }

    /// Makes the directory of tree `gpid` (and the FT directory), root's only.
    pub fn create_tree(&self, gpid: i32) -> Result<()> {
        let dir = self.tree_dir(gpid);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io("cannot create", &dir))
    }

    /// The global pids that have a directory here.
    pub fn trees(&self) -> Result<Vec<i32>> {
        let rd = match fs::read_dir(&self.root) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            r => r.map_err(io("cannot list", &self.root))?,
        };
        let mut out: Vec<i32> = rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Refuses a directory of the store that someone but the daemon's user (root) could
    /// change: root restarts what it finds here, so a user must not be able to put anything
    /// in place.
    fn check_owned(dir: &Path) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::symlink_metadata(dir).map_err(io("cannot read", dir))?;
        let me = nix::unistd::geteuid().as_raw();
        if !m.is_dir() || m.uid() != me || m.mode() & 0o022 != 0 {
            bail!(
                "{}: not a directory only root may change (owner uid {}, mode {:o}): refused",
                dir.display(),
                m.uid(),
                m.mode() & 0o7777
            );
        }
        Ok(())
    }

    /// The manifest of tree `gpid`, if one was written.
    pub fn manifest(&self, gpid: i32) -> Result<Option<Manifest>> {
        Self::check_owned(&self.root)?;
        Self::check_owned(&self.tree_dir(gpid))?;
        let path = self.tree_dir(gpid).join("manifest");
        let mut text = String::new();
        match File::open(&path) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            r => r
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(io("cannot read", &path))?,
        };
        let m: Manifest =
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        if m.version != VERSION || m.gpid != gpid {
            bail!(
                "{}: version {} of process {}, expected version {VERSION} of {gpid}",
                path.display(),
                m.version,
                m.gpid
            );
        }
        Ok(Some(m))
    }

    /// Puts `m` in place of the manifest of its tree: written whole and synced under a
    /// temporary name, then renamed over the old one, then the directory synced.
    pub fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let dir = self.tree_dir(m.gpid);
        let tmp = dir.join(format!("manifest.tmp.{}", m.host));
        let path = dir.join("manifest");
        let bytes = serde_json::to_vec_pretty(m).context("manifest")?;
        let _ = fs::remove_file(&tmp);
        write_new(&tmp, &bytes).map_err(io("cannot write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("cannot rename into", &path))?;
        sync_dir(&dir)
    }

    /// Claims epoch `epoch` of tree `gpid` for `owner` (its node and run): `true` if this
    /// call created the claim, `false` if another did first.
    pub fn claim(&self, gpid: i32, epoch: u64, owner: Owner) -> Result<bool> {
        let path = self.tree_dir(gpid).join(format!("epoch-{epoch}"));
        let text = format!("{} {}", owner.node.0, owner.gen);
        match write_new(&path, text.as_bytes()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io("cannot create", &path)(e)),
        }
        sync_dir(&self.tree_dir(gpid))?;
        Ok(true)
    }

    /// The highest epoch claimed for tree `gpid` and the node named in its claim.
    pub fn highest_claim(&self, gpid: i32) -> Result<Option<Owner>> {
        let dir = self.tree_dir(gpid);
        let rd = match fs::read_dir(&dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            r => r.map_err(io("cannot list", &dir))?,
        };
        let top = rd
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_prefix("epoch-")?
                    .parse::<u64>()
                    .ok()
            })
            .max();
        let Some(epoch) = top else { return Ok(None) };
        let path = dir.join(format!("epoch-{epoch}"));
        let text = fs::read_to_string(&path).map_err(io("cannot read", &path))?;
        let bad = || format!("{}: not a node and a run: {text:?}", path.display());
        let (node, gen) = text.trim().split_once(' ').with_context(bad)?;
        Ok(Some(Owner {
            epoch,
            node: NodeId(node.parse().with_context(bad)?),
            gen: gen.parse().with_context(bad)?,
        }))
    }

    /// Who owns tree `gpid` now (`None`: no manifest yet, the tree is not protected).
    pub fn owner(&self, gpid: i32) -> Result<Option<(Manifest, Owner)>> {
        let Some(m) = self.manifest(gpid)? else {
            return Ok(None);
        };
        let written = Owner {
            epoch: m.epoch,
            node: NodeId(m.host),
            gen: m.host_gen,
        };
        let owner = match self.highest_claim(gpid)? {
            Some(c) if c.epoch > m.epoch => c,
            _ => written,
        };
        Ok(Some((m, owner)))
    }

    /// Removes image `name` of tree `gpid`.
    pub fn remove_image(&self, gpid: i32, name: &str) {
        let path = self.tree_dir(gpid).join(name);
        if let Err(e) = fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove an old checkpoint");
        }
    }

    /// Removes everything of tree `gpid` (it ended).
    pub fn remove_tree(&self, gpid: i32) {
        let path = self.tree_dir(gpid);
        if let Err(e) = fs::remove_dir_all(&path) {
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove checkpoints");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(gpid: i32, host: u16, epoch: u64) -> Manifest {
        Manifest {
            version: VERSION,
            gpid,
            uid: 1000,
            host,
            host_gen: 11,
            epoch,
            every_ms: 1000,
            image: Some("img-0-1".into()),
            chain: vec!["img-0-1".into()],
            taken_ms: 5,
            freeze_us: 7,
            bytes: 4096,
            restarted_from_ms: None,
        }
    }

    #[test]
    fn a_manifest_is_replaced_whole() {
        let d = tempfile::tempdir().expect("tmp");
        let s = Store::new(d.path().join("ft"));
        assert_eq!(s.trees().expect("list"), Vec::<i32>::new());
        s.create_tree(4097).expect("create");
        assert_eq!(s.manifest(4097).expect("read"), None);
        s.write_manifest(&manifest(4097, 1, 0)).expect("write");
        let mut m = manifest(4097, 1, 0);
        m.image = Some("img-0-2".into());
        s.write_manifest(&m).expect("replace");
        assert_eq!(s.manifest(4097).expect("read"), Some(m));
        assert_eq!(s.trees().expect("list"), vec![4097]);
        let names: Vec<String> = fs::read_dir(s.tree_dir(4097))
            .expect("ls")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["manifest".to_string()], "no temporary left");
    }

    #[test]
    fn an_epoch_is_claimed_once_and_moves_ownership() {
        let d = tempfile::tempdir().expect("tmp");
        let s = Store::new(d.path().to_path_buf());
        s.create_tree(8193).expect("create");
        s.write_manifest(&manifest(8193, 2, 0)).expect("write");
        let who = |epoch, node, gen| Owner {
            epoch,
            node: NodeId(node),
            gen,
        };
        let (_, o) = s.owner(8193).expect("owner").expect("some");
        assert_eq!(o, who(0, 2, 11));
        assert!(s.claim(8193, 1, who(1, 1, 5)).expect("claim"));
        assert!(
            !s.claim(8193, 1, who(1, 3, 6)).expect("claim again"),
            "one winner"
        );
        let (_, o) = s.owner(8193).expect("owner").expect("some");
        assert_eq!(o, who(1, 1, 5));
        // the restarted host's manifest of epoch 1 keeps it the owner
        s.write_manifest(&manifest(8193, 1, 1)).expect("write");
        assert_eq!(s.owner(8193).expect("o").expect("s").1.node, NodeId(1));
        assert!(s.claim(8193, 2, who(2, 3, 6)).expect("claim 2"));
        assert_eq!(s.owner(8193).expect("o").expect("s").1, who(2, 3, 6));
    }

    #[test]
    fn a_directory_others_may_change_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tmp");
        let s = Store::new(d.path().join("ft"));
        s.create_tree(9).expect("create");
        s.write_manifest(&manifest(9, 1, 0)).expect("write");
        fs::set_permissions(s.tree_dir(9), fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = s.manifest(9).expect_err("refused").to_string();
        assert!(err.contains("refused"), "{err}");
    }

    #[test]
    fn a_manifest_of_another_version_is_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let s = Store::new(d.path().to_path_buf());
        s.create_tree(7).expect("create");
        let mut m = manifest(7, 1, 0);
        m.version = VERSION + 1;
        s.write_manifest(&m).expect("write");
        let err = s.manifest(7).expect_err("refused").to_string();
        assert!(err.contains("version"), "{err}");
    }
}
