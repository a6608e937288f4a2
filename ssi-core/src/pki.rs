//! The cluster's certificate authority and the node certificates it issues (rcgen), and the
//! checks on the secret files a daemon reads.
//!
//! ```text
//!   ssid --init-ca DIR                 DIR/ca.pem (public), DIR/ca.key (0600, stays with the admin)
//!   ssid --issue-cert OUT --ca DIR     OUT/node.pem, OUT/node.key (0600): one pair per node
//!   ssi cluster init / join            the same files where the node's config says; a joining
//!                                      node sends a certificate request (its key stays home)
//! ```
//!
//! A node certificate names [`NODE_NAME`] as its DNS subject alternative name: that name,
//! and a chain to the cluster CA, are what makes a certificate a node's (certificates the
//! same CA issues later for users will not carry it). Keys are ECDSA P-256.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The DNS name every node certificate carries, and the one each side checks on the other.
pub const NODE_NAME: &str = "ssi-node";
/// File name of the CA certificate in a CA directory.
pub const CA_CERT: &str = "ca.pem";
/// File name of the CA's private key in a CA directory.
pub const CA_KEY: &str = "ca.key";
/// File name of a node certificate in the directory `issue_node_cert` writes.
pub const NODE_CERT: &str = "node.pem";
/// File name of a node's private key in that directory.
pub const NODE_KEY: &str = "node.key";

fn pki_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("{what}: {e}"))
}

/// Writes `text` to a new file `path` with `mode`; an existing file is never overwritten.
pub fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// Makes a new cluster CA in `dir`: `ca.pem` (mode 0644) and `ca.key` (mode 0600). Refuses
/// to replace an existing CA.
pub fn init_ca(dir: &Path, cluster_name: &str) -> Result<()> {
    create_dir(dir)?;
    init_ca_files(&dir.join(CA_CERT), &dir.join(CA_KEY), cluster_name)
}

/// Makes a new cluster CA: its certificate at `cert` (mode 0644) and its key at `key` (mode
/// 0600), creating their directories. Refuses to replace an existing file.
pub fn init_ca_files(cert_path: &Path, key_path: &Path, cluster_name: &str) -> Result<()> {
    let key = KeyPair::generate().map_err(|e| pki_err("cannot make the CA key", e))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| pki_err("CA params", e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("ssi cluster CA {cluster_name}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(|e| pki_err("cannot sign the CA certificate", e))?;
    for p in [cert_path, key_path] {
        if let Some(parent) = p.parent() {
            create_dir(parent)?;
        }
    }
    // The key first: a certificate without its key is a half-made CA.
    write_new(key_path, &key.serialize_pem(), 0o600)?;
    write_new(cert_path, &cert.pem(), 0o644)
}

/// The parameters of a node certificate for the node called `name`.
fn node_params(name: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(vec![NODE_NAME.to_string()])
        .map_err(|e| pki_err("node certificate params", e))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let serial: [u8; 16] = rand::random();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    Ok(params)
}

/// Loads the CA that signs: its certificate (PEM) and its key, which must be private.
fn load_issuer(ca_cert_path: &Path, ca_key_path: &Path) -> Result<Issuer<'static, KeyPair>> {
    check_private(ca_key_path)?;
    let ca_key_pem = std::fs::read_to_string(ca_key_path).map_err(|e| Error::io(ca_key_path, e))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .map_err(|e| pki_err(&format!("{}", ca_key_path.display()), e))?;
    let ca_pem = std::fs::read_to_string(ca_cert_path).map_err(|e| Error::io(ca_cert_path, e))?;
    Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| pki_err(&format!("{}", ca_cert_path.display()), e))
}

/// Issues a node certificate from the CA in `ca_dir` into `out_dir` (`node.pem`, and
/// `node.key` mode 0600); `name` is the node's name, kept as the certificate's common name.
pub fn issue_node_cert(ca_dir: &Path, out_dir: &Path, name: &str) -> Result<()> {
    create_dir(out_dir)?;
    issue_node_files(
        &ca_dir.join(CA_CERT),
        &ca_dir.join(CA_KEY),
        &out_dir.join(NODE_CERT),
        &out_dir.join(NODE_KEY),
        name,
    )
}

/// Issues a node certificate from the CA at `ca_cert`/`ca_key` to `cert_out` (0644) with a
/// new key at `key_out` (0600); neither may exist yet.
pub fn issue_node_files(
    ca_cert: &Path,
    ca_key: &Path,
    cert_out: &Path,
    key_out: &Path,
    name: &str,
) -> Result<()> {
    let issuer = load_issuer(ca_cert, ca_key)?;
    let key = KeyPair::generate().map_err(|e| pki_err("cannot make a node key", e))?;
    let cert = node_params(name)?
        .signed_by(&key, &issuer)
        .map_err(|e| pki_err("cannot sign the node certificate", e))?;
    write_new(key_out, &key.serialize_pem(), 0o600)?;
    write_new(cert_out, &cert.pem(), 0o644)
}

/// A new node key and a certificate request for it (both PEM): what a joining node makes,
/// so that its key never leaves it.
pub fn node_key_and_request(name: &str) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(|e| pki_err("cannot make a node key", e))?;
    // Only what a request can carry: the signer decides the rest (see `sign_node_request`).
    let mut params = CertificateParams::new(vec![NODE_NAME.to_string()])
        .map_err(|e| pki_err("certificate request params", e))?;
    params.distinguished_name.push(DnType::CommonName, name);
    let csr = params
        .serialize_request(&key)
        .map_err(|e| pki_err("cannot make a certificate request", e))?;
    let csr = csr
        .pem()
        .map_err(|e| pki_err("cannot encode the certificate request", e))?;
    Ok((key.serialize_pem(), csr))
}

/// Signs a joining node's certificate request with the CA at `ca_cert`/`ca_key`: the request's
/// signature is checked (it proves the key) and only its public key is taken; the certificate
/// is a node certificate for `name`, whatever else the request asks. Returns it as PEM.
pub fn sign_node_request(
    ca_cert: &Path,
    ca_key: &Path,
    csr_pem: &str,
    name: &str,
) -> Result<String> {
    let issuer = load_issuer(ca_cert, ca_key)?;
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| pki_err("bad certificate request", e))?;
    let request = CertificateSigningRequestParams {
        params: node_params(name)?,
        public_key: csr.public_key,
    };
    let cert = request
        .signed_by(&issuer)
        .map_err(|e| pki_err("cannot sign the node certificate", e))?;
    Ok(cert.pem())
}

/// The SHA-256 of the first certificate in `pem` (DER bytes): what a join token pins the
/// cluster CA by.
pub fn fingerprint(pem: &str) -> Result<[u8; 32]> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| pki_err("CA certificate", "no certificate in the PEM text"))?
        .map_err(|e| pki_err("CA certificate", e))?;
    Ok(Sha256::digest(der.as_ref()).into())
}

/// Refuses a secret file that group or others may read or write, or that another user owns:
/// such a key is no secret any more, and a daemon running on it would lend root's trust to
/// whoever can read it.
pub fn check_private(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mode = meta.mode() & 0o7777;
    let secret_err = |reason: String| Error::Key {
        path: path.to_path_buf(),
        reason,
    };
    if !meta.is_file() {
        return Err(secret_err("not a regular file".into()));
    }
    if mode & 0o077 != 0 {
        return Err(secret_err(format!(
            "mode {mode:04o} lets group or others at it: chmod 600 {}",
            path.display()
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(secret_err(format!(
            "owned by uid {}, not by uid {me} that reads it",
            meta.uid()
        )));
    }
    Ok(())
}

/// Refuses a file the daemon trusts but need not keep secret (the CA certificate) if group or
/// others may change it, or if it belongs to another user than the daemon's or root: whoever
/// can replace it chooses which certificates the daemon accepts.
pub fn check_trusted(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mode = meta.mode() & 0o7777;
    let me = nix::unistd::geteuid().as_raw();
    let reason = if !meta.is_file() {
        "not a regular file".to_string()
    } else if mode & 0o022 != 0 {
        format!(
            "mode {mode:04o} lets group or others change it: chmod 644 {}",
            path.display()
        )
    } else if meta.uid() != me && meta.uid() != 0 {
        format!(
            "owned by uid {}, neither root nor uid {me} that reads it",
            meta.uid()
        )
    } else {
        return Ok(());
    };
    Err(Error::Key {
        path: path.to_path_buf(),
        reason,
    })
}

/// Where a node's TLS identity lives: the cluster CA certificate, its own certificate and key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsFiles {
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM, mode 0600).
    pub key: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_ca_issues_node_certs_and_refuses_to_be_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca");
        init_ca(&ca, "test").expect("init ca");
        let again = init_ca(&ca, "test").expect_err("existing CA");
        assert!(again.to_string().contains("ca.key"), "{again}");
        issue_node_cert(&ca, &dir.path().join("n1"), "n1").expect("issue");
        let key = dir.path().join("n1").join(NODE_KEY);
        check_private(&key).expect("node key is private");
        let mode = std::fs::metadata(&key).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_request_is_signed_as_a_node_certificate_that_tls_accepts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca");
        init_ca(&ca, "test").expect("init ca");
        let (key_pem, csr_pem) = node_key_and_request("n2").expect("request");
        let cert_pem =
            sign_node_request(&ca.join(CA_CERT), &ca.join(CA_KEY), &csr_pem, "n2").expect("sign");
        let n2 = dir.path().join("n2");
        std::fs::create_dir_all(&n2).expect("mkdir");
        write_new(&n2.join(NODE_KEY), &key_pem, 0o600).expect("key");
        write_new(&n2.join(NODE_CERT), &cert_pem, 0o644).expect("cert");
        crate::tls::TlsContext::load(&TlsFiles {
            ca: ca.join(CA_CERT),
            cert: n2.join(NODE_CERT),
            key: n2.join(NODE_KEY),
        })
        .expect("a usable node identity");
        let ca_pem = std::fs::read_to_string(ca.join(CA_CERT)).expect("ca");
        assert_eq!(
            fingerprint(&ca_pem).expect("fp"),
            fingerprint(&ca_pem).expect("fp")
        );
        assert!(sign_node_request(&ca.join(CA_CERT), &ca.join(CA_KEY), "junk", "n2").is_err());
    }

    #[test]
    fn a_readable_secret_is_refused_with_a_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k");
        std::fs::write(&p, "secret").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = check_private(&p).expect_err("group-readable").to_string();
        assert!(
            err.contains("mode 0640") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        check_private(&p).expect("private");
    }
}
