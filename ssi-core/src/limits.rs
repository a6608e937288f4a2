//! Bounds on what clients and peers may hold of a daemon: connection caps (in all, and per
//! local user) and the pause after an accept error that retrying at once cannot fix.
//!
//! ```text
//!   accept ──> ConnLimits::admit(uid) ──> Ok(permit: held until the connection ends)
//!                                    └──> Err(Refusal): close, or answer one error first
//!   accept error EMFILE/ENFILE/ENOBUFS/ENOMEM ──> AcceptBackoff::pause: 10 ms, 20 ms, .. 1 s
//! ```

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connection caps of one listener.
#[derive(Debug)]
pub struct ConnLimits {
    total: Arc<Semaphore>,
    max_total: u32,
    per_user: Mutex<HashMap<u32, u32>>,
    max_per_user: u32,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The listener holds its most connections.
    #[error("too many connections (limit {0})")]
    Total(u32),
    /// This user holds their most connections.
    #[error("too many connections from uid {uid} (limit {limit} per user)")]
    PerUser {
        /// The user.
        uid: u32,
        /// The cap.
        limit: u32,
    },
}

/// An admitted connection's place; given back when dropped.
#[derive(Debug)]
pub struct ConnPermit {
    _total: OwnedSemaphorePermit,
    user: Option<(Arc<ConnLimits>, u32)>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some((limits, uid)) = self.user.take() {
            let mut m = limits.per_user.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&uid) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&uid);
                }
            }
        }
    }
}

impl ConnLimits {
    /// At most `max_total` connections, and `max_per_user` for each user but root.
    pub fn new(max_total: u32, max_per_user: u32) -> Arc<Self> {
        Arc::new(ConnLimits {
            total: Arc::new(Semaphore::new(max_total as usize)),
            max_total,
            per_user: Mutex::default(),
            max_per_user,
        })
    }

    /// Admits a connection of user `uid` (`None`: a peer without a local user, counted in
    /// all only), or says which cap it would exceed.
    pub fn admit(self: &Arc<Self>, uid: Option<u32>) -> Result<ConnPermit, Refusal> {
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Total(self.max_total))?;
        let user = match uid {
            Some(uid) if uid != 0 => {
                let mut m = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
                let n = m.entry(uid).or_insert(0);
                if *n >= self.max_per_user {
                    return Err(Refusal::PerUser {
                        uid,
                        limit: self.max_per_user,
                    });
                }
                *n += 1;
                Some((self.clone(), uid))
            }
            _ => None,
        };
        Ok(ConnPermit {
            _total: total,
            user,
        })
    }
}

/// The pause between accepts after errors that an immediate retry would meet again (out of
/// file descriptors or memory): doubling from 10 ms to 1 s, back to none after a success.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    next: Option<Duration>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_secs(1);

    /// After a successful accept.
    pub fn reset(&mut self) {
        self.next = None;
    }

    /// How long to wait after accept failed with `e` (zero for errors of one connection
    /// only, such as ECONNABORTED).
    pub fn pause(&mut self, e: &io::Error) -> Duration {
        use nix::errno::Errno;
        let exhausted = matches!(
            e.raw_os_error().map(Errno::from_raw),
            Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
        );
        if !exhausted {
            return Duration::ZERO;
        }
        let d = self.next.unwrap_or(Self::FIRST);
        self.next = Some((d * 2).min(Self::MOST));
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_in_all_and_per_user_and_places_come_back() {
        let limits = ConnLimits::new(3, 2);
        let a = limits.admit(Some(1000)).expect("first");
        let _b = limits.admit(Some(1000)).expect("second");
        assert_eq!(
            limits.admit(Some(1000)).expect_err("third of one user"),
            Refusal::PerUser {
                uid: 1000,
                limit: 2
            }
        );
        let _root = limits.admit(Some(0)).expect("root is not capped per user");
        assert_eq!(
            limits.admit(Some(1001)).expect_err("full"),
            Refusal::Total(3)
        );
        drop(a);
        let _c = limits.admit(Some(1000)).expect("a place came back");
    }

    #[test]
    fn backoff_grows_on_exhaustion_only() {
        let mut b = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(nix::errno::Errno::EMFILE as i32);
        let aborted = io::Error::from_raw_os_error(nix::errno::Errno::ECONNABORTED as i32);
        assert_eq!(b.pause(&aborted), Duration::ZERO);
        assert_eq!(b.pause(&emfile), Duration::from_millis(10));
        assert_eq!(b.pause(&emfile), Duration::from_millis(20));
        for _ in 0..10 {
            b.pause(&emfile);
        }
        assert_eq!(b.pause(&emfile), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.pause(&emfile), Duration::from_millis(10));
    }
}
