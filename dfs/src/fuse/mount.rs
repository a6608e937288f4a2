//! Mounting the file system: a stale mount left by a crashed daemon is detached first, so
//! a restart never finds a hung mount point.

use std::path::Path;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use super::Fs;
use crate::error::{Error, Result};

/// Whether `path` is a mount point now (from /proc/self/mountinfo, which, unlike a `stat`,
/// does not hang or fail on a dead FUSE mount).
pub fn is_mounted(path: &Path) -> Result<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::Io {
        path: "/proc/self/mountinfo".into(),
        source: e,
    })?;
    let want = path.to_string_lossy();
    // Field 5 is the mount point, with spaces and such escaped as octal.
    Ok(info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| m.replace("\\040", " ") == want)
    }))
}

/// Detaches whatever is mounted at `path` (lazy unmount: works on a dead FUSE mount).
pub fn detach(path: &Path) -> Result<()> {
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).map_err(|e| Error::Mount {
        path: path.to_path_buf(),
        reason: format!("cannot detach a stale mount: {e}"),
    })
}

/// Mounts `fs` at `path` (created if missing; a stale mount there detached) with kernel
/// permission checks, access for every user, and several threads serving requests.
pub fn mount(fs: Fs, path: &Path, threads: usize) -> Result<BackgroundSession> {
    if is_mounted(path)? {
        tracing::warn!(path = %path.display(), "detaching a stale mount");
        detach(path)?;
    }
    std::fs::create_dir_all(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("ssi".into()),
        MountOption::Subtype("dfs".into()),
        MountOption::DefaultPermissions,
        MountOption::Suid,
        MountOption::Dev,
        MountOption::Exec,
        MountOption::RW,
    ];
    config.acl = SessionACL::All;
    config.n_threads = Some(threads);
    config.clone_fd = true;
    fuser::spawn_mount(fs, path, &config).map_err(|e| Error::Mount {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
