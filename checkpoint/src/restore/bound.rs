//! The most a restored tree may hold when the image is not trusted whole: the ids of one user,
//! no capabilities, `/` as root directory and hard limits no higher than the restorer's.
//!
//! An image written for a user can come from that user's files (which they may edit) or from
//! another node (which says whose process it is): what it asks for is a wish, bounded here
//! before anything of the tree is created.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::ProcessImage;

/// The ids a restored tree may have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    /// The only uid (real, effective, saved, filesystem).
    pub uid: u32,
    /// The gids allowed (the user's group and supplementary groups); `None`: not bounded
    /// (a user unknown where the tree is restored).
    pub gids: Option<Vec<u32>>,
}

/// Capability sets checked: inheritable, permitted, effective and ambient (the bounding set
/// only takes capabilities away).
const CAP_SETS: [usize; 4] = [0, 1, 2, 4];

impl Bound {
    /// Refuses process `p` if it asks for more than this bound, naming the process and what
    /// it asks for.
    pub fn check(&self, p: &ProcessImage) -> Result<()> {
        let (pid, c) = (p.pid, &p.creds);
        let refuse = |what: String| Err(Error::Exceeds { pid, what });
        if c.uids.iter().any(|&u| u != self.uid) {
            return refuse(format!("user ids {:?}, not uid {}'s own", c.uids, self.uid));
        }
        if let Some(allowed) = &self.gids {
            let allowed: BTreeSet<u32> = allowed.iter().copied().collect();
            if let Some(g) = c
                .gids
                .iter()
                .chain(&c.groups)
                .find(|g| !allowed.contains(g))
            {
                return refuse(format!("group {g}, which uid {} is not in", self.uid));
            }
        }
        if let Some(set) = CAP_SETS.into_iter().find(|&i| c.caps[i] != 0) {
            return refuse(format!(
                "capabilities {:#x} that uid {} does not hold",
                c.caps[set], self.uid
            ));
        }
        if p.fs.root != "/" {
            return refuse(format!(
                "root directory {:?} (only / for uid {})",
                p.fs.root, self.uid
            ));
        }
        for &(res, _, hard) in &p.limits.rlimits.0 {
            if let Ok((_, most)) = crate::sys::fd::get_rlimit(0, res) {
                if hard > most {
                    return refuse(format!(
                        "a hard limit {hard} of resource {res}, above this node's {most}"
                    ));
                }
            }
        }
        Ok(())
    }
}
