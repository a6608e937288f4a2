//! The target side's record of incoming migrations, so that a tree runs in one place only.
//!
//! When the source of a migration does not get the target's answer after the last image, it
//! asks the target daemon whether it took the tree in. The answer must be final: if the tree
//! was not taken in yet, it never will be (the target kills what it restored), and the source
//! resumes its frozen copy; if it was, the source kills its copy. Taking in and settling are
//! decided under one lock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an outcome is remembered (the source asks within its answer timeout of 120 s).
const KEEP: Duration = Duration::from_secs(600);

#[derive(Debug)]
enum Outcome {
    /// Taken in, with these pids.
    Taken(Vec<i32>),
    /// The source settled it as not taken: it must not be taken in any more.
    Refused,
}

/// Outcomes of incoming migrations, by root gpid.
#[derive(Debug, Default)]
pub struct Incoming {
    outcomes: Mutex<HashMap<i32, (Outcome, Instant)>>,
}

impl Incoming {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, (Outcome, Instant)>> {
        self.outcomes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new migration of `gpid` to this node begins: what earlier ones left is forgotten.
    pub fn begin(&self, gpid: i32) {
        let mut m = self.lock();
        m.retain(|_, (_, at)| at.elapsed() < KEEP);
        m.remove(&gpid);
    }

    /// The restored tree of `gpid` is about to be taken in: whether it may be (not if the
    /// source settled it as not taken meanwhile).
    pub fn take(&self, gpid: i32, pids: &[i32]) -> bool {
        let mut m = self.lock();
        if matches!(m.get(&gpid), Some((Outcome::Refused, _))) {
            return false;
        }
        m.insert(gpid, (Outcome::Taken(pids.to_vec()), Instant::now()));
        true
    }

    /// Taking the tree in failed after [`Incoming::take`]: it is not here.
    pub fn untake(&self, gpid: i32) {
        self.lock().insert(gpid, (Outcome::Refused, Instant::now()));
    }

    /// The source asks: the pids of the tree if it was taken in; else `None`, and from now on
    /// it will not be.
    pub fn settle(&self, gpid: i32) -> Option<Vec<i32>> {
        let mut m = self.lock();
        if let Some((Outcome::Taken(pids), _)) = m.get(&gpid) {
            return Some(pids.clone());
        }
        m.insert(gpid, (Outcome::Refused, Instant::now()));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_tree_settles_as_taken() {
        let inc = Incoming::default();
        inc.begin(4100);
        assert!(inc.take(4100, &[4100, 4101]));
        assert_eq!(inc.settle(4100), Some(vec![4100, 4101]));
    }

    #[test]
    fn a_tree_settled_first_is_never_taken() {
        let inc = Incoming::default();
        inc.begin(4100);
        assert_eq!(inc.settle(4100), None);
        assert!(!inc.take(4100, &[4100]));
        assert_eq!(inc.settle(4100), None);
        // a later migration of the same tree starts afresh
        inc.begin(4100);
        assert!(inc.take(4100, &[4100]));
    }

    #[test]
    fn a_tree_whose_taking_failed_settles_as_not_taken() {
        let inc = Incoming::default();
        inc.begin(7);
        assert!(inc.take(7, &[7]));
        inc.untake(7);
        assert_eq!(inc.settle(7), None);
    }
}
