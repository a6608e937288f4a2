//! What a restart may take from an image.
//!
//! An image written for a user lives in that user's files, which they may edit: the ids,
//! capabilities, root directory and limits it names are their wish, not a fact. So an image is
//! trusted as far as the user who owns its files: an image whose parts root owns is restored
//! as it says (root wrote it); any other is restored only with ids that user holds, no
//! capabilities, `/` as root directory and limits no higher than the node gives programs, and
//! the restore reaches every file as that user. A user may restart only images they own.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use checkpoint::Image;
use migrate::control::User;

use crate::sys;

/// User `uid` with group `gid` and the supplementary groups the group database gives them
/// (none when the user has no name on this node): whom root restores a user's image for.
pub fn user(uid: u32, gid: u32) -> User {
    let groups = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .and_then(|u| CString::new(u.name).ok())
        .and_then(|name| nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(gid)).ok())
        .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    User { uid, gid, groups }
}

/// Opens the image directory `dir` once: the descriptor, a path that reaches the directory
/// through it (`/proc/self/fd/N`, valid while the descriptor is open) and the directory's
/// metadata. Checks and loading through that path all see the same directory, even if
/// another is renamed into `dir`'s place meanwhile.
pub fn pin(dir: &Path) -> Result<(File, PathBuf, std::fs::Metadata)> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .with_context(|| format!("cannot open the image directory {}", dir.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
    Ok((f, path, meta))
}

/// Whether root may restore, as it says, an image whose parts root owns, in a directory with
/// `meta`: only if no one but root can change the directory (else another user could put
/// their own part in place of root's).
pub fn root_may_trust(meta: &std::fs::Metadata) -> Result<()> {
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        bail!(
            "an image of root's in a directory others may change (owner uid {}, mode {:o}): \
             refused",
            meta.uid(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// The owner (uid, gid) of the image in `dir` (named `name` in messages): its parts (`*.rec`)
/// must be regular files, not links, all of one owner.
pub fn owner(dir: &Path, name: &Path) -> Result<(u32, u32)> {
    let name = name.display();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read the image {name}"))?;
    let mut owners = BTreeSet::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read the image {name}"))?;
        let file = entry.file_name();
        if Path::new(&file).extension().is_none_or(|e| e != "rec") {
            continue;
        }
        let meta = entry
            .metadata()
            .with_context(|| format!("cannot read {name}/{}", file.to_string_lossy()))?;
        if !meta.is_file() {
            bail!("{name}/{}: not a regular file", file.to_string_lossy());
        }
        owners.insert((meta.uid(), meta.gid()));
    }
    match owners.len() {
        0 => bail!("{name}: no image here"),
        1 => Ok(owners.into_iter().next().unwrap_or_default()),
        _ => bail!(
            "{name}: the parts of the image belong to several users {:?}: refused",
            owners.iter().map(|o| o.0).collect::<Vec<_>>()
        ),
    }
}

/// Refuses an image that asks for more than `h` holds, naming the process and what it asks.
pub fn check(img: &Image, h: &User) -> Result<()> {
    let mut gids: BTreeSet<u32> = h.groups.iter().copied().collect();
    gids.insert(h.gid);
    for p in &img.processes {
        let (pid, c) = (p.pid, &p.creds);
        if c.uids.iter().any(|&u| u != h.uid) {
            bail!(
                "image process {pid} asks for user ids {:?}, not uid {}'s own: refused",
                c.uids,
                h.uid
            );
        }
        if let Some(g) = c.gids.iter().chain(&c.groups).find(|g| !gids.contains(g)) {
            bail!(
                "image process {pid} asks for group {g}, which uid {} is not in: refused",
                h.uid
            );
        }
        // inheritable, permitted, effective, (bounding), ambient
        if let Some(set) = [0, 1, 2, 4].into_iter().find(|&i| c.caps[i] != 0) {
            bail!(
                "image process {pid} asks for capabilities {:#x} that uid {} does not hold: \
                 refused",
                c.caps[set],
                h.uid
            );
        }
        if p.fs.root != "/" {
            bail!(
                "image process {pid} asks for root directory {:?}: refused (only / for uid {})",
                p.fs.root,
                h.uid
            );
        }
        for &(res, _, hard) in &p.limits.rlimits.0 {
            let most = sys::hard_limit(res);
            if most.is_some_and(|m| hard > m) {
                bail!(
                    "image process {pid} asks for a hard limit {hard} of resource {res}, above \
                     this node's {}: refused",
                    most.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
