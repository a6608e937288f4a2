//! Joining a new machine to the cluster with a one-time token (`ssi cluster init`, `ssi cluster
//! token`, `ssi cluster join TOKEN`).
//!
//! ```text
//!  first node (holds the CA key)                    new node (no certificate yet)
//!   token = id + secret + sha256(CA cert) + address
//!   store: id -> sha256(secret), expiry, used        admin pastes the token
//!                                      <== TCP, TLS 1.3, ALPN "ssi-enroll/1" ==
//!   shows [node cert, CA cert]       ==>  CA cert's sha256 must be the token's, and must
//!                                         have signed the node cert, else hang up
//!                                      <== EnrollRequest { id, secret, name, CSR }
//!   secret's hash matches, unused, not expired:
//!   mark used, sign the CSR's public key as a node certificate for `name`
//!                                      ==> Admitted { cert, CA cert, cluster key }
//!                                         (inside TLS: never in clear)
//! ```
//!
//! The token carries no key: only a fingerprint (public) and a 128-bit secret that is good
//! once, for a limited time, and is kept on the first node only as its SHA-256. The joining
//! node's private key never leaves it (it sends a certificate request). Whoever holds an
//! unused token can make one node: treat a token like a password until it is used or expired.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::wire::SecureStream;

/// The ALPN protocol a joining node asks for; the RPC port answers it with enrollment only.
pub const ALPN: &[u8] = b"ssi-enroll/1";
/// How long a token lasts unless told otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The longest a token may last.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// File in the state directory holding the tokens' hashes.
pub const TOKENS_FILE: &str = "join-tokens.toml";
/// How long a joining node waits for the whole exchange.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// How long used and expired tokens are remembered (to say why they are refused).
const REMEMBER: Duration = Duration::from_secs(24 * 3600);
/// What every token starts with (the format's version).
const PREFIX: &str = "ssi1";

fn token_err(reason: impl Into<String>) -> Error {
    Error::Token(reason.into())
}

/// A join token: where the first node is, which CA it must show, and the one-time secret.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The RPC address of a node holding the CA key.
    pub addr: SocketAddr,
    /// The token's public id (8 hex digits): names it in the store and in logs.
    pub id: String,
    /// The secret that proves the token.
    pub secret: [u8; 16],
    /// SHA-256 of the cluster CA certificate (DER).
    pub ca: [u8; 32],
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret in a log.
        f.debug_struct("JoinToken")
            .field("addr", &self.addr)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}-{}-{}-{}@{}",
            self.id,
            hex::encode(self.secret),
            hex::encode(self.ca),
            self.addr
        )
    }
}

fn hex_field<const N: usize>(text: &str, what: &str) -> Result<[u8; N]> {
    let bytes = hex::decode(text)
        .map_err(|_| token_err(format!("its {what} is not hexadecimal (a damaged copy?)")))?;
    bytes
        .try_into()
        .map_err(|_| token_err(format!("its {what} has the wrong length (a damaged copy?)")))
}

impl FromStr for JoinToken {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let (body, addr) = text
            .rsplit_once('@')
            .ok_or_else(|| token_err("no @ADDRESS at its end (a damaged copy?)"))?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| token_err(format!("{addr:?} is not an address with a port")))?;
        let parts: Vec<&str> = body.split('-').collect();
        let [prefix, id, secret, ca] = parts[..] else {
            return Err(token_err(format!(
                "expected {PREFIX}-ID-SECRET-FINGERPRINT@ADDRESS"
            )));
        };
        if prefix != PREFIX {
            return Err(token_err(format!(
                "it starts with {prefix:?}, this version reads {PREFIX:?} tokens"
            )));
        }
        let id_bytes: [u8; 4] = hex_field(id, "id")?;
        Ok(JoinToken {
            addr,
            id: hex::encode(id_bytes),
            secret: hex_field(secret, "secret")?,
            ca: hex_field(ca, "CA fingerprint")?,
        })
    }
}

/// Parses a token lifetime such as `90s`, `30m`, `2h` or `1d` (at most [`MAX_TTL`]).
pub fn parse_ttl(text: &str) -> std::result::Result<Duration, String> {
    let (num, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and s, m, h or d (e.g. 30m)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86400),
        _ => {
            return Err(format!(
                "{text:?}: the unit must be s, m, h or d (e.g. 30m)"
            ))
        }
    };
    let ttl = Duration::from_secs(secs);
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(format!("{text:?}: a token lasts from 1s to 7d"));
    }
    Ok(ttl)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One token as the first node keeps it: never the secret, only its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredToken {
    id: String,
    secret_sha256: String,
    /// Seconds since the epoch after which the token is refused.
    expires: u64,
    /// The name of the node that used it, once used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    used_by: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    #[serde(default)]
    token: Vec<StoredToken>,
}

/// The tokens a node has handed out, in `STATE_DIR/join-tokens.toml` (mode 0600), changed
/// under an exclusive lock on `join-tokens.lock` so that `ssi cluster token` and the daemon
/// redeeming a token never lose each other's change.
#[derive(Clone, Debug)]
pub struct TokenStore {
    path: PathBuf,
}

/// Why a token was refused (sent to the joining node as one line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token with this id and secret.
    Unknown,
    /// Used before, by the node named.
    Used(String),
    /// Past its expiry, this many seconds ago.
    Expired(u64),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unknown => write!(
                f,
                "token unknown here (mistyped, tampered with, or made on another node)"
            ),
            Refusal::Used(by) => write!(
                f,
                "token already used (by node {by}): make a new one with `ssi cluster token`"
            ),
            Refusal::Expired(ago) => write!(
                f,
                "token expired {ago} s ago: make a new one with `ssi cluster token`"
            ),
        }
    }
}

fn secret_hash(secret: &[u8; 16]) -> String {
    hex::encode(Sha256::digest(secret))
}

impl TokenStore {
    /// The store of the node whose state directory is `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        TokenStore {
            path: state_dir.join(TOKENS_FILE),
        }
    }

    /// The file holding the tokens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `change` on the stored tokens under the lock and writes them back.
    fn with_locked<T>(&self, change: impl FnOnce(&mut StoreFile) -> T) -> Result<T> {
        let lock_path = self.path.with_extension("lock");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io(&lock_path, errno.into()))?;
        let mut store = match std::fs::read_to_string(&self.path) {
            Ok(text) => toml::from_str(&text).map_err(|e| Error::Key {
                path: self.path.clone(),
                reason: e.to_string().trim_end().replace('\n', " "),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreFile::default(),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let out = change(&mut store);
        let text = toml::to_string(&store).map_err(|e| Error::Key {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = self.path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(out)
    }

    /// Makes a new token good for `ttl` and returns its id and secret (the only time the
    /// secret exists outside the joining node).
    pub fn create(&self, ttl: Duration) -> Result<(String, [u8; 16])> {
        let id = hex::encode(rand::random::<[u8; 4]>());
        let secret: [u8; 16] = rand::random();
        let now = unix_now();
        self.with_locked(|store| {
            store.token.retain(|t| t.expires + REMEMBER.as_secs() > now);
            store.token.push(StoredToken {
                id: id.clone(),
                secret_sha256: secret_hash(&secret),
                expires: now + ttl.as_secs(),
                used_by: None,
            });
        })?;
        Ok((id, secret))
    }

    /// Uses the token `id` for the node `name`: it must be known with this secret, unused
    /// and unexpired; it is marked used (and written) before this returns `Ok`.
    pub fn redeem(&self, id: &str, secret: &[u8; 16], name: &str) -> Result<Result<(), Refusal>> {
        let hash = secret_hash(secret);
        let now = unix_now();
        self.with_locked(|store| {
            // Hashes of 128-bit secrets compared: a timing difference tells nothing usable.
            let Some(t) = store
                .token
                .iter_mut()
                .find(|t| t.id == id && t.secret_sha256 == hash)
            else {
                return Err(Refusal::Unknown);
            };
            if let Some(by) = &t.used_by {
                return Err(Refusal::Used(by.clone()));
            }
            if now > t.expires {
                return Err(Refusal::Expired(now - t.expires));
            }
            t.used_by = Some(name.to_string());
            Ok(())
        })
    }
}

/// What a joining node sends once TLS is up.
#[derive(Clone, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The token's id.
    pub token_id: String,
    /// The token's secret.
    pub secret: [u8; 16],
    /// The joining node's name (its certificate's common name).
    pub name: String,
    /// A certificate request (PEM) for the key the joining node made.
    pub csr_pem: String,
}

impl fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("token_id", &self.token_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The first node's answer.
#[derive(Clone, Serialize, Deserialize)]
pub enum EnrollResponse {
    /// The node's certificate, the CA certificate and the cluster key (hex), all PEM/text.
    Admitted {
        /// The new node certificate (PEM).
        cert_pem: String,
        /// The cluster CA certificate (PEM).
        ca_pem: String,
        /// The cluster (gossip) key, as its file holds it.
        cluster_key: String,
    },
    /// Refused, with the reason in one line.
    Refused(String),
}

impl fmt::Debug for EnrollResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnrollResponse::Admitted { .. } => f.write_str("Admitted { .. }"),
            EnrollResponse::Refused(r) => f.debug_tuple("Refused").field(r).finish(),
        }
    }
}

/// Accepts the server only if it shows, after its own certificate, a CA certificate whose
/// SHA-256 is the token's and which signed its node certificate.
#[derive(Debug)]
struct PinnedCa {
    fingerprint: [u8; 32],
    mismatch: Arc<AtomicBool>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| <[u8; 32]>::from(Sha256::digest(c.as_ref())) == self.fingerprint)
        else {
            self.mismatch.store(true, Ordering::Relaxed);
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("bad CA certificate: {e}")))?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        // The client config allows TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOfferedOrEnabled,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &crate::tls::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        crate::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What the first node gave a joining node.
#[derive(Clone)]
pub struct Admission {
    /// This node's certificate (PEM).
    pub cert_pem: String,
    /// The cluster CA certificate (PEM), whose fingerprint is the token's.
    pub ca_pem: String,
    /// The cluster key, as its file holds it.
    pub cluster_key: String,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Admission { .. }")
    }
}

/// Asks the node named by `token` to admit this machine as the node `name`, sending the
/// certificate request `csr_pem`. Fails with one line if the node cannot be reached, shows
/// another CA than the token's, or refuses the token.
pub async fn request(token: &JoinToken, name: &str, csr_pem: &str) -> Result<Admission> {
    let peer = token.addr.to_string();
    match tokio::time::timeout(TIMEOUT, exchange(token, name, csr_pem)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Peer {
            peer,
            reason: format!("no answer within {} s", TIMEOUT.as_secs()),
        }),
    }
}

async fn exchange(token: &JoinToken, name: &str, csr_pem: &str) -> Result<Admission> {
    let peer = token.addr.to_string();
    let mismatch = Arc::new(AtomicBool::new(false));
    let mut config = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| token_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            fingerprint: token.ca,
            mismatch: mismatch.clone(),
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    let tcp = tokio::net::TcpStream::connect(token.addr)
        .await
        .map_err(|e| Error::net(format!("connect to {peer}"), e))?;
    let mut conn = match SecureStream::client_with(tcp, Arc::new(config), peer.clone()).await {
        Ok(c) => c,
        Err(_) if mismatch.load(Ordering::Relaxed) => {
            return Err(Error::Auth {
                peer,
                reason: "its cluster CA is not the one the token names (a tampered token, \
                         or another cluster): nothing was sent"
                    .into(),
            })
        }
        Err(e) => return Err(e),
    };
    conn.send(&EnrollRequest {
        token_id: token.id.clone(),
        secret: token.secret,
        name: name.to_string(),
        csr_pem: csr_pem.to_string(),
    })
    .await?;
    let answer = conn
        .recv::<EnrollResponse>()
        .await?
        .ok_or_else(|| Error::Peer {
            peer: peer.clone(),
            reason: "closed the connection without an answer".into(),
        })?;
    match answer {
        EnrollResponse::Admitted {
            cert_pem,
            ca_pem,
            cluster_key,
        } => {
            if crate::pki::fingerprint(&ca_pem)? != token.ca {
                return Err(Error::Auth {
                    peer,
                    reason: "it sent a CA certificate other than the token's".into(),
                });
            }
            Ok(Admission {
                cert_pem,
                ca_pem,
                cluster_key,
            })
        }
        EnrollResponse::Refused(reason) => Err(Error::JoinRefused { peer, reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> JoinToken {
        JoinToken {
            addr: "10.0.0.1:7700".parse().expect("addr"),
            id: "0a1b2c3d".into(),
            secret: [7; 16],
            ca: [9; 32],
        }
    }

    #[test]
    fn a_token_reads_back_and_a_damaged_one_is_refused_with_a_reason() {
        let t = token();
        let text = t.to_string();
        assert_eq!(text.parse::<JoinToken>().expect("parse"), t);
        assert!(!format!("{t:?}").contains(&hex::encode(t.secret)));
        let cut = &text[..text.len() - 20];
        assert!(cut.parse::<JoinToken>().is_err());
        let err = text
            .replacen("0707", "07zz", 1)
            .parse::<JoinToken>()
            .expect_err("not hex")
            .to_string();
        assert!(err.contains("secret is not hexadecimal"), "{err}");
        let err = text
            .replace("ssi1-", "ssi9-")
            .parse::<JoinToken>()
            .expect_err("version")
            .to_string();
        assert!(err.contains("ssi9"), "{err}");
    }

    #[test]
    fn ttls_parse_with_units_and_bounds() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("8d").is_err());
        assert!(parse_ttl("5").is_err());
        assert!(parse_ttl("m").is_err());
    }

    #[test]
    fn a_token_is_good_once_and_the_store_keeps_no_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = TokenStore::new(dir.path());
        let (id, secret) = store.create(Duration::from_secs(60)).expect("create");
        let text = std::fs::read_to_string(store.path()).expect("read");
        assert!(!text.contains(&hex::encode(secret)), "{text}");
        let mut wrong = secret;
        wrong[0] ^= 1;
        assert_eq!(
            store.redeem(&id, &wrong, "n2").expect("io"),
            Err(Refusal::Unknown)
        );
        assert_eq!(store.redeem(&id, &secret, "n2").expect("io"), Ok(()));
        assert_eq!(
            store.redeem(&id, &secret, "n3").expect("io"),
            Err(Refusal::Used("n2".into()))
        );
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(store.path()).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = TokenStore::new(dir.path());
        let (id, secret) = store.create(Duration::from_secs(60)).expect("create");
        // Age it by rewriting its expiry into the past.
        store
            .with_locked(|s| s.token[0].expires = unix_now() - 5)
            .expect("age");
        match store.redeem(&id, &secret, "n2").expect("io") {
            Err(Refusal::Expired(ago)) => assert!(ago >= 5),
            other => panic!("expected expiry, got {other:?}"),
        }
    }
}
