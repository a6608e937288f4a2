//! What a restart may take from an image.
//!
//! A restart takes only images a node of the cluster sealed (see `checkpoint::image::seal`),
//! unaltered. Even so, an image written for a user is trusted only as far as that user: the
//! user who owns its files, who must be the one it was sealed for. An image of root's is
//! restored as it says; any other only with ids that user holds, no capabilities, `/` as root
//! directory and limits no higher than the node gives programs (a [`Bound`]), and the restore
//! reaches every file as that user. A user may restart only images they own.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use checkpoint::image::ownership;
use checkpoint::{Bound, Image};
use migrate::control::User;

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
/// `meta` (named `name`): only if no one but root can change the directory.
pub fn root_may_trust(meta: &std::fs::Metadata, name: &Path) -> Result<()> {
    Ok(ownership::only_root_may_change(
        meta,
        &name.display().to_string(),
    )?)
}

/// The owner (uid, gid) of the image in `dir` (named `name` in messages): its parts must be
/// regular files, not links, all of one owner.
pub fn owner(dir: &Path, name: &Path) -> Result<(u32, u32)> {
    Ok(ownership::owner(dir, &name.display().to_string())?)
}

/// The most a tree restored for `h` may hold: their uid, their groups, no capabilities.
pub fn bound(h: &User) -> Bound {
    let mut gids = h.groups.clone();
    gids.push(h.gid);
    Bound {
        uid: h.uid,
        gids: Some(gids),
    }
}

/// The most a tree of user `uid` that migrates here may hold: their uid, and their group and
/// supplementary groups as this node's user database gives them (any group if it does not
/// know the user), no capabilities.
pub fn bound_of_uid(uid: u32) -> Bound {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => bound(&user(uid, u.gid.as_raw())),
        _ => Bound { uid, gids: None },
    }
}

/// Checks the seal of `img` against the owner of its files (`uid`): an image sealed for
/// another user (its files given away by root since) is refused.
pub fn check_sealed_owner(img: &Image, uid: u32, name: &Path) -> Result<()> {
    match img.seal() {
        Some(s) if s.owner == uid => Ok(()),
        Some(s) => bail!(
            "{}: the image was sealed for uid {}, but its files belong to uid {uid}: refused",
            name.display(),
            s.owner
        ),
        None => bail!("{}: not sealed: refused", name.display()),
    }
}
