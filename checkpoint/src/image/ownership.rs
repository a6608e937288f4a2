//! Who an image directory belongs to: whoever owns its parts may have written every byte of
//! them, so an image not sealed by a node (or restored without checking a seal) is trusted
//! only as far as that owner.

use std::collections::BTreeSet;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};

/// The owner (uid, gid) of the image in `dir` (named `name` in messages): its parts (`*.rec`)
/// and its seal, if any, must be regular files, not links, all of one owner.
pub fn owner(dir: &Path, name: &str) -> Result<(u32, u32)> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(name, e))?;
    let mut owners = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(name, e))?;
        let file = entry.file_name();
        let part =
            Path::new(&file).extension().is_some_and(|e| e == "rec") || file == super::SEAL_FILE;
        if !part {
            continue;
        }
        let shown = format!("{name}/{}", file.to_string_lossy());
        let meta = entry.metadata().map_err(|e| Error::io(&shown, e))?;
        if !meta.is_file() {
            return Err(Error::bad_image(shown, "not a regular file"));
        }
        owners.insert((meta.uid(), meta.gid()));
    }
    let mut it = owners.iter();
    match (it.next(), it.next()) {
        (None, _) => Err(Error::bad_image(name, "no image here")),
        (Some(&o), None) => Ok(o),
        (Some(_), Some(_)) => Err(Error::bad_image(
            name,
            format!(
                "the parts of the image belong to several users {:?}: refused",
                owners.iter().map(|o| o.0).collect::<Vec<_>>()
            ),
        )),
    }
}

/// Refuses an image directory (`meta`, named `name`) that anyone but root may change: root
/// trusts an image of root's only there (else another user could put their own part in place
/// of root's).
pub fn only_root_may_change(meta: &Metadata, name: &str) -> Result<()> {
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(Error::bad_image(
            name,
            format!(
                "an image of root's in a directory others may change (owner uid {}, mode {:o}): \
                 refused",
                meta.uid(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}
