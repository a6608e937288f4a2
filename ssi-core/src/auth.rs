//! Authentication of gossip datagrams with the shared cluster key (HMAC-SHA256).
//!
//! Gossip is UDP, where TLS does not apply (DTLS would need a session per pair of members,
//! which defeats cheap gossip to random members); every TCP connection between daemons uses
//! TLS instead (see [`crate::wire`]). What is protected here is *authenticity* and
//! *freshness*: a node without the key can neither inject nor alter a datagram, nor make a
//! node act on one twice. Datagrams are not encrypted: they carry membership and load figures
//! only.
//!
//! ```text
//!  [version 2][sender epoch u64][sequence u64][unix ms u64][payload][HMAC(key, all before)]
//! ```
//!
//! The epoch is random per run of the sender and the sequence counts its datagrams. A receiver
//! drops a datagram stamped further than [`MAX_CLOCK_SKEW`] from its clock, and one whose
//! (epoch, sequence) it has already accepted or that is more than [`REPLAY_WINDOW`] behind
//! the newest it accepted from that epoch: a replay, even within the clock window, is dropped
//! (a replayed announcement would otherwise make every node send its whole state again).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
/// Bytes a sealed datagram adds to its payload.
pub const DATAGRAM_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Datagrams stamped further than this from our clock are dropped.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// How far behind a sender's newest datagram an older one may still arrive (reordered) and
/// be accepted once.
pub const REPLAY_WINDOW: u64 = 1024;
/// A sender epoch not heard from for this long is forgotten: any datagram of it still inside
/// the clock window would have come after its last one (see [`Datagrams::open_at`]).
const EPOCH_TTL_MS: u64 = 3 * 60_000;
const DATAGRAM_VERSION: u8 = 2;
const HEADER_LEN: usize = 1 + 8 + 8 + 8;
/// Shortest accepted key, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// The secret shared by all nodes of a cluster.
#[derive(Clone)]
pub struct ClusterKey(Vec<u8>);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// Shorter than the envelope.
    #[error("datagram too short")]
    TooShort,
    /// Unknown envelope version.
    #[error("unknown datagram version {0}")]
    Version(u8),
    /// The tag does not match: the sender does not hold our cluster key.
    #[error("bad authentication tag (wrong cluster key?)")]
    BadTag,
    /// Stamped too far from our clock: a replay or a badly skewed clock.
    #[error("timestamp outside the accepted window")]
    Stale,
    /// Accepted once already, or too far behind its sender's newest: a replay.
    #[error("replayed datagram")]
    Replayed,
}

impl ClusterKey {
    /// Uses `bytes` as the key; refuses keys shorter than [`MIN_KEY_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(format!(
                "{} bytes: a cluster key needs at least {MIN_KEY_LEN}",
                bytes.len()
            ));
        }
        Ok(ClusterKey(bytes.to_vec()))
    }

    /// Reads a key file: its bytes, trailing whitespace removed, are the key. A file that
    /// group or others may read is refused (see [`crate::pki::check_private`]).
    pub fn load(path: &Path) -> Result<Self> {
        crate::pki::check_private(path)?;
        let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let end = raw
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        Self::from_bytes(&raw[..end]).map_err(|reason| Error::Key {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// A fresh random key, as 64 hex characters (what `ssid --gen-key` writes).
    pub fn generate_hex() -> String {
        let bytes: [u8; 32] = rand::random();
        hex::encode(bytes)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    /// HMAC of the concatenation of `parts` under this key.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut mac = self.mac();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// A key for one purpose, derived from the cluster key with HKDF-SHA256 (RFC 5869: extract
    /// with a fixed salt, expand with `purpose` as info, one 32-byte block). Keys of different
    /// purposes are independent: the gossip tags never double as, say, image seals.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        // HMAC accepts keys of any length, so these cannot fail.
        let mut extract = <HmacSha256 as Mac>::new_from_slice(b"ssi cluster key derivation v1")
            .unwrap_or_else(|_| unreachable!());
        extract.update(&self.0);
        let prk = extract.finalize().into_bytes();
        let mut expand =
            <HmacSha256 as Mac>::new_from_slice(&prk).unwrap_or_else(|_| unreachable!());
        expand.update(purpose.as_bytes());
        expand.update(&[1]);
        expand.finalize().into_bytes().into()
    }

    /// Checks a tag in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.mac();
        for p in parts {
            mac.update(p);
        }
        mac.verify_slice(tag).is_ok()
    }
}

/// The datagrams of one gossip agent: seals what it sends under its own epoch and counter,
/// and opens what it receives, remembering what each sender epoch sent.
#[derive(Debug)]
pub struct Datagrams {
    key: ClusterKey,
    epoch: u64,
    next_seq: u64,
    windows: HashMap<u64, Window>,
    last_prune_ms: u64,
}

/// What one sender epoch has had accepted: the newest sequence number and those seen within
/// [`REPLAY_WINDOW`] of it.
#[derive(Debug)]
struct Window {
    top: u64,
    seen: BTreeSet<u64>,
    last_ms: u64,
}

impl Window {
    /// Accepts `seq` once; false for a replay or one too far behind.
    fn admit(&mut self, seq: u64, now_ms: u64) -> bool {
        if seq < self.top.saturating_sub(REPLAY_WINDOW) || !self.seen.insert(seq) {
            return false;
        }
        if seq > self.top {
            self.top = seq;
            self.seen = self.seen.split_off(&seq.saturating_sub(REPLAY_WINDOW));
        }
        self.last_ms = now_ms;
        true
    }
}

impl Datagrams {
    /// Datagrams under `key`, sent under a fresh random epoch.
    pub fn new(key: ClusterKey) -> Self {
        Datagrams {
            key,
            epoch: rand::random(),
            next_seq: 0,
            windows: HashMap::new(),
            last_prune_ms: 0,
        }
    }

    /// Wraps a gossip payload into an authenticated datagram.
    pub fn seal(&mut self, payload: &[u8]) -> Vec<u8> {
        self.seal_at(payload, unix_ms())
    }

    fn seal_at(&mut self, payload: &[u8], now_ms: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + DATAGRAM_OVERHEAD);
        out.push(DATAGRAM_VERSION);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.next_seq.to_be_bytes());
        out.extend_from_slice(&now_ms.to_be_bytes());
        out.extend_from_slice(payload);
        let tag = self.key.tag(&[&out]);
        out.extend_from_slice(&tag);
        self.next_seq += 1;
        out
    }

    /// Checks a datagram (tag, clock, replay) and returns its payload.
    pub fn open<'a>(&mut self, packet: &'a [u8]) -> std::result::Result<&'a [u8], DatagramError> {
        self.open_at(packet, unix_ms())
    }

    /// [`Datagrams::open`] at receiver time `now_ms`. Forgetting an epoch after
    /// [`EPOCH_TTL_MS`] of silence is safe: a datagram accepted at receiver time `r` was
    /// stamped `s` with `|s - r| <= skew`; replayed at `now`, it passes the clock check only if
    /// `now - s <= skew`, so `now - r <= 2 * skew`, less than the TTL.
    pub fn open_at<'a>(
        &mut self,
        packet: &'a [u8],
        now_ms: u64,
    ) -> std::result::Result<&'a [u8], DatagramError> {
        if packet.len() < DATAGRAM_OVERHEAD {
            return Err(DatagramError::TooShort);
        }
        if packet[0] != DATAGRAM_VERSION {
            return Err(DatagramError::Version(packet[0]));
        }
        let (body, tag) = packet.split_at(packet.len() - TAG_LEN);
        if !self.key.verify(&[body], tag) {
            return Err(DatagramError::BadTag);
        }
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[1 + 8 * i..9 + 8 * i]);
            u64::from_be_bytes(b)
        };
        let (epoch, seq, sent) = (field(0), field(1), field(2));
        let skew = u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
        if sent.abs_diff(now_ms) > skew {
            return Err(DatagramError::Stale);
        }
        self.prune(now_ms);
        let window = self.windows.entry(epoch).or_insert_with(|| Window {
            top: seq,
            seen: BTreeSet::new(),
            last_ms: now_ms,
        });
        if !window.admit(seq, now_ms) {
            return Err(DatagramError::Replayed);
        }
        Ok(&body[HEADER_LEN..])
    }

    /// Forgets sender epochs silent for longer than [`EPOCH_TTL_MS`] (every 10 s at most).
    fn prune(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.last_prune_ms) < 10_000 {
            return;
        }
        self.last_prune_ms = now_ms;
        self.windows
            .retain(|_, w| now_ms.saturating_sub(w.last_ms) <= EPOCH_TTL_MS);
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ClusterKey {
        ClusterKey::from_bytes(&[b; 32]).expect("key")
    }

    const NOW: u64 = 1_000_000_000;

    #[test]
    fn datagram_round_trip() {
        let (mut a, mut b) = (Datagrams::new(key(1)), Datagrams::new(key(1)));
        let sealed = a.seal(b"hello");
        assert_eq!(sealed.len(), 5 + DATAGRAM_OVERHEAD);
        assert_eq!(b.open(&sealed), Ok(&b"hello"[..]));
    }

    #[test]
    fn wrong_key_and_tampering_are_detected() {
        let sealed = Datagrams::new(key(1)).seal(b"hello");
        let mut other = Datagrams::new(key(2));
        assert_eq!(other.open(&sealed), Err(DatagramError::BadTag));
        let mut ours = Datagrams::new(key(1));
        let mut bent = sealed.clone();
        bent[30] ^= 1;
        assert_eq!(ours.open(&bent), Err(DatagramError::BadTag));
        assert_eq!(ours.open(&sealed[..40]), Err(DatagramError::TooShort));
    }

    #[test]
    fn old_datagrams_are_dropped() {
        let mut a = Datagrams::new(key(1));
        let sealed = a.seal_at(b"x", NOW);
        let mut b = Datagrams::new(key(1));
        assert_eq!(b.open_at(&sealed, NOW + 61_000), Err(DatagramError::Stale));
        assert!(b.open_at(&sealed, NOW + 59_000).is_ok());
    }

    #[test]
    fn a_replay_inside_the_clock_window_is_dropped() {
        let mut a = Datagrams::new(key(1));
        let mut b = Datagrams::new(key(1));
        let first = a.seal_at(b"announce", NOW);
        let second = a.seal_at(b"ping", NOW);
        assert!(b.open_at(&second, NOW).is_ok());
        // reordered: the older one still gets in, once
        assert!(b.open_at(&first, NOW + 1).is_ok());
        assert_eq!(b.open_at(&first, NOW + 2), Err(DatagramError::Replayed));
        assert_eq!(b.open_at(&second, NOW + 3), Err(DatagramError::Replayed));
        // a sender restarted (new epoch) starts afresh
        let mut a2 = Datagrams::new(key(1));
        assert!(b.open_at(&a2.seal_at(b"hello", NOW), NOW + 4).is_ok());
    }

    #[test]
    fn a_datagram_far_behind_its_sender_is_dropped_and_silent_epochs_are_forgotten() {
        let mut a = Datagrams::new(key(1));
        let mut b = Datagrams::new(key(1));
        let old = a.seal_at(b"old", NOW);
        for _ in 0..REPLAY_WINDOW {
            a.seal_at(b"lost", NOW);
        }
        let newest = a.seal_at(b"new", NOW);
        assert!(b.open_at(&newest, NOW).is_ok());
        assert_eq!(b.open_at(&old, NOW), Err(DatagramError::Replayed));
        assert_eq!(b.windows.len(), 1);
        b.prune(NOW + EPOCH_TTL_MS + 1);
        assert!(b.windows.is_empty(), "a silent epoch is forgotten");
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_cluster_key() {
        let (a, b) = (key(1), key(2));
        assert_eq!(a.derive("x"), a.derive("x"));
        assert_ne!(a.derive("x"), a.derive("y"));
        assert_ne!(a.derive("x"), b.derive("x"));
        assert_ne!(&a.derive("x")[..], &a.0[..]);
    }

    #[test]
    fn short_keys_are_refused_and_whitespace_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k");
        std::fs::write(&p, "short\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = ClusterKey::load(&p).expect_err("short");
        assert!(err.to_string().contains("at least 16"), "{err}");
        std::fs::write(&p, format!("{}\n", ClusterKey::generate_hex())).expect("write");
        let k = ClusterKey::load(&p).expect("long key");
        assert_eq!(k.0.len(), 64);
    }
}
