//! Authentication of everything daemons send each other, with the shared cluster key.
//!
//! Why HMAC-SHA256 and not TLS: every node already shares one secret (the cluster key file the
//! admin installs), there is no certificate authority to run, and gossip is UDP where TLS does
//! not apply. What is protected is *authenticity*: a node without the key can neither inject
//! nor alter a message, and learns nothing from ours because we answer nothing it sends.
//! Messages are not encrypted (the cluster network is trusted for confidentiality).
//!
//! * **Datagrams** (gossip) carry `[version 1][unix ms, 8 bytes][payload][HMAC 32 bytes]`; a
//!   datagram older or newer than [`MAX_CLOCK_SKEW`] is dropped, which bounds replays. A replay
//!   inside that window is harmless: SWIM state only moves forward by incarnation.
//! * **Streams** (RPC over TCP) start with a mutual challenge-response proving both ends hold the
//!   key, then every frame carries an HMAC under a per-connection session key over a frame
//!   counter, so frames can be neither forged, replayed, reordered nor spliced from another
//!   connection.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
/// Bytes a sealed datagram adds to its payload.
pub const DATAGRAM_OVERHEAD: usize = 1 + 8 + TAG_LEN;
/// Datagrams stamped further than this from our clock are dropped.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
const DATAGRAM_VERSION: u8 = 1;
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

    /// Checks a tag in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.mac();
        for p in parts {
            mac.update(p);
        }
        mac.verify_slice(tag).is_ok()
    }

    /// Wraps a gossip payload into an authenticated datagram.
    pub fn seal_datagram(&self, payload: &[u8]) -> Vec<u8> {
        self.seal_datagram_at(payload, unix_ms())
    }

    fn seal_datagram_at(&self, payload: &[u8], now_ms: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + DATAGRAM_OVERHEAD);
        out.push(DATAGRAM_VERSION);
        out.extend_from_slice(&now_ms.to_be_bytes());
        out.extend_from_slice(payload);
        let tag = self.tag(&[&out]);
        out.extend_from_slice(&tag);
        out
    }

    /// Checks a datagram and returns its payload.
    pub fn open_datagram<'a>(
        &self,
        packet: &'a [u8],
    ) -> std::result::Result<&'a [u8], DatagramError> {
        self.open_datagram_at(packet, unix_ms())
    }

    fn open_datagram_at<'a>(
        &self,
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
        if !self.verify(&[body], tag) {
            return Err(DatagramError::BadTag);
        }
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&body[1..9]);
        let sent = u64::from_be_bytes(stamp);
        let skew = u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
        if sent.abs_diff(now_ms) > skew {
            return Err(DatagramError::Stale);
        }
        Ok(&body[9..])
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

    #[test]
    fn datagram_round_trip() {
        let k = key(1);
        let sealed = k.seal_datagram(b"hello");
        assert_eq!(sealed.len(), 5 + DATAGRAM_OVERHEAD);
        assert_eq!(k.open_datagram(&sealed), Ok(&b"hello"[..]));
    }

    #[test]
    fn wrong_key_and_tampering_are_detected() {
        let sealed = key(1).seal_datagram(b"hello");
        assert_eq!(key(2).open_datagram(&sealed), Err(DatagramError::BadTag));
        let mut bent = sealed.clone();
        bent[10] ^= 1;
        assert_eq!(key(1).open_datagram(&bent), Err(DatagramError::BadTag));
        assert_eq!(
            key(1).open_datagram(&sealed[..20]),
            Err(DatagramError::TooShort)
        );
    }

    #[test]
    fn old_datagrams_are_dropped() {
        let k = key(1);
        let sealed = k.seal_datagram_at(b"x", 1_000_000);
        assert_eq!(
            k.open_datagram_at(&sealed, 1_000_000 + 61_000),
            Err(DatagramError::Stale)
        );
        assert!(k.open_datagram_at(&sealed, 1_000_000 + 59_000).is_ok());
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
