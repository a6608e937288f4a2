//! Sealed images: proof that a holder of a key (a node of the cluster) wrote an image
//! directory, and of the bytes each part held then.
//!
//! ```text
//!  seal   ["SSISEAL1"][body length u32 LE][body][HMAC-SHA256(key, everything before)]
//!  body   postcard((VERSION u16, owner uid u32, [(part file, SHA-256)], parent seal tag?))
//! ```
//! The writer hashes each part as it writes it ([`Hashing`]); the loader hashes each part as
//! it reads it and compares with the seal, so what is checked is what is restored. An image of
//! a chain names the tag of its parent's seal: a parent swapped for another sealed image is
//! refused too. The owner is the user the image was written for (0: root).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// File name of the seal inside an image directory.
pub const SEAL_FILE: &str = "seal";
const MAGIC: &[u8; 8] = b"SSISEAL1";
const VERSION: u16 = 1;
/// Largest seal read (a part name and digest per part: far below this).
const MAX_SEAL: u64 = 1 << 20;
/// Length of a digest and of a tag.
pub const DIGEST_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The key images are sealed with.
#[derive(Clone)]
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// The key made of `bytes`.
    pub fn new(bytes: [u8; 32]) -> Self {
        SealKey(bytes)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }
}

/// A verified seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// The user the image was written for (0: root).
    pub owner: u32,
    /// SHA-256 of each part, by file name.
    pub parts: BTreeMap<String, [u8; DIGEST_LEN]>,
    /// The tag of the parent image's seal, for an image of a chain.
    pub parent: Option<[u8; DIGEST_LEN]>,
    /// This seal's tag.
    pub tag: [u8; DIGEST_LEN],
}

#[derive(Serialize, Deserialize)]
struct Body {
    version: u16,
    owner: u32,
    parts: Vec<(String, [u8; DIGEST_LEN])>,
    parent: Option<[u8; DIGEST_LEN]>,
}

impl Seal {
    /// The bytes of the seal of `parts` under `key`, and its tag.
    pub(crate) fn encode(
        key: &SealKey,
        owner: u32,
        parts: &BTreeMap<String, [u8; DIGEST_LEN]>,
        parent: Option<[u8; DIGEST_LEN]>,
    ) -> Result<(Vec<u8>, [u8; DIGEST_LEN])> {
        let body = Body {
            version: VERSION,
            owner,
            parts: parts.iter().map(|(n, d)| (n.clone(), *d)).collect(),
            parent,
        };
        let body = postcard::to_stdvec(&body)
            .map_err(|e| Error::bad_image(SEAL_FILE, format!("cannot encode: {e}")))?;
        let len =
            u32::try_from(body.len()).map_err(|_| Error::bad_image(SEAL_FILE, "too many parts"))?;
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + body.len() + DIGEST_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&body);
        let mut mac = key.mac();
        mac.update(&out);
        let tag: [u8; DIGEST_LEN] = mac.finalize().into_bytes().into();
        out.extend_from_slice(&tag);
        Ok((out, tag))
    }

    /// Reads and verifies the seal of the image in `dir` (named `name` in messages): refused
    /// when missing (the image is not sealed), altered, or sealed with another key.
    pub fn read(dir: &Path, name: &str, key: &SealKey) -> Result<Seal> {
        let path = dir.join(SEAL_FILE);
        let shown = format!("{name}/{SEAL_FILE}");
        let f = match super::open_part(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::bad_image(
                    name,
                    "not sealed by a node of this cluster (no seal): refused",
                ))
            }
            Err(e) => return Err(Error::io(&shown, e)),
        };
        let meta = f.metadata().map_err(|e| Error::io(&shown, e))?;
        if !meta.is_file() || meta.len() > MAX_SEAL {
            return Err(Error::bad_image(
                shown,
                "not a regular file of a seal's size",
            ));
        }
        let mut raw = Vec::new();
        f.take(MAX_SEAL)
            .read_to_end(&mut raw)
            .map_err(|e| Error::io(&shown, e))?;
        Self::decode(&raw, key).map_err(|what| Error::bad_image(shown, what))
    }

    fn decode(raw: &[u8], key: &SealKey) -> std::result::Result<Seal, String> {
        let bad_tag = "the seal does not match: altered, or not sealed by a node of this cluster";
        let Some(signed_len) = raw.len().checked_sub(DIGEST_LEN) else {
            return Err(bad_tag.into());
        };
        let (signed, tag) = raw.split_at(signed_len);
        let mut mac = key.mac();
        mac.update(signed);
        mac.verify_slice(tag).map_err(|_| bad_tag.to_string())?;
        // Authentic: a node wrote these bytes. What follows checks their form all the same.
        let body = signed
            .strip_prefix(MAGIC.as_slice())
            .and_then(|rest| rest.get(4..))
            .ok_or("not a seal")?;
        let body: Body = postcard::from_bytes(body).map_err(|e| format!("bad seal: {e}"))?;
        if body.version != VERSION {
            return Err(format!(
                "seal version {}, this ssi reads {VERSION}",
                body.version
            ));
        }
        Ok(Seal {
            owner: body.owner,
            parts: body.parts.into_iter().collect(),
            parent: body.parent,
            tag: tag.try_into().map_err(|_| bad_tag.to_string())?,
        })
    }

    /// Checks that part `file`, whose bytes are `bytes`, is the one sealed; `name` names it
    /// in messages.
    pub(crate) fn check_part(&self, file: &str, bytes: &[u8], name: &str) -> Result<()> {
        let want = self
            .parts
            .get(file)
            .ok_or_else(|| Error::bad_image(name, "not covered by the image's seal: refused"))?;
        if digest(bytes) != *want {
            return Err(Error::bad_image(
                name,
                "altered since it was sealed (its digest differs from the seal's): refused",
            ));
        }
        Ok(())
    }
}

/// SHA-256 of `bytes`.
pub(crate) fn digest(bytes: &[u8]) -> [u8; DIGEST_LEN] {
    Sha256::digest(bytes).into()
}

/// A writer that hashes what it passes on (when told to).
#[derive(Debug)]
pub(crate) struct Hashing<W> {
    inner: W,
    hash: Option<Sha256>,
}

impl<W: Write> Hashing<W> {
    pub(crate) fn new(inner: W, hash: bool) -> Self {
        Hashing {
            inner,
            hash: hash.then(Sha256::new),
        }
    }

    /// The digest of everything written (`None` when not hashing).
    pub(crate) fn digest(&mut self) -> Option<[u8; DIGEST_LEN]> {
        self.hash.take().map(|h| h.finalize().into())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hash {
            h.update(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_round_trips_and_any_change_is_refused() {
        let key = SealKey::new([7; 32]);
        let parts: BTreeMap<String, [u8; 32]> =
            [("inventory.rec".to_string(), digest(b"inv"))].into();
        let (raw, tag) = Seal::encode(&key, 1000, &parts, Some([1; 32])).expect("encode");
        let s = Seal::decode(&raw, &key).expect("decode");
        assert_eq!(
            (s.owner, &s.parts, s.parent, s.tag),
            (1000, &parts, Some([1; 32]), tag)
        );
        s.check_part("inventory.rec", b"inv", "i")
            .expect("same bytes");
        let err = s
            .check_part("inventory.rec", b"inw", "i")
            .expect_err("changed");
        assert!(err.to_string().contains("altered"), "{err}");
        let err = s.check_part("shmem.rec", b"", "s").expect_err("not sealed");
        assert!(err.to_string().contains("not covered"), "{err}");
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 1;
            assert!(Seal::decode(&bad, &key).is_err(), "byte {i} flipped");
        }
        assert!(
            Seal::decode(&raw, &SealKey::new([8; 32])).is_err(),
            "other key"
        );
        assert!(Seal::decode(&raw[..10], &key).is_err(), "short");
    }
}
