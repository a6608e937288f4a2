//! TLS 1.3 between daemons (rustls with the aws-lc-rs provider; the hybrid post-quantum key
//! exchange X25519MLKEM768 is preferred): both ends show a node certificate from
//! the cluster CA (see [`crate::pki`]) and check the other's.
//!
//! A [`TlsContext`] is built once per daemon from its [`TlsFiles`] and shared by every
//! connection, so that the client side's session cache lets a second connection to the same
//! node resume instead of running the full handshake again.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

use crate::error::{Error, Result};
use crate::pki::{check_private, TlsFiles, NODE_NAME};

/// The TLS settings of one daemon, as client and as server.
#[derive(Clone, Debug)]
pub struct TlsContext {
    /// For connections this daemon opens.
    pub client: Arc<ClientConfig>,
    /// For connections it accepts.
    pub server: Arc<ServerConfig>,
    /// For connections that ask to join the cluster (ALPN [`crate::enroll::ALPN`]): no
    /// client certificate, and the CA certificate sent after this node's so that the new node
    /// can check it against its token's fingerprint.
    pub enroll: Arc<ServerConfig>,
}

/// The crypto of every TLS connection of ssi (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_err(what: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Error::Key {
        path: what.to_path_buf(),
        reason: e.to_string(),
    }
}

impl TlsContext {
    /// Loads the CA certificate, this node's certificate and its key (which must be private
    /// to this user, see [`check_private`]).
    pub fn load(files: &TlsFiles) -> Result<Self> {
        check_private(&files.key)?;
        let ca: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.ca)
            .and_then(|it| it.collect::<std::result::Result<_, _>>())
            .map_err(|e| tls_err(&files.ca, e))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .and_then(|it| it.collect::<std::result::Result<_, _>>())
            .map_err(|e| tls_err(&files.cert, e))?;
        if chain.is_empty() {
            return Err(tls_err(&files.cert, "no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| tls_err(&files.key, e))?;
        Self::new(ca, chain, key).map_err(|e| tls_err(&files.cert, e))
    }

    /// Builds the context from certificates and a key already read.
    pub fn new(
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> std::result::Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for c in ca.iter().cloned() {
            roots
                .add(c)
                .map_err(|e| format!("bad CA certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("no CA certificate".into());
        }
        let enroll_chain: Vec<CertificateDer<'static>> =
            chain.iter().chain(ca.iter()).cloned().collect();
        let roots = Arc::new(roots);
        let e = |e: rustls::Error| e.to_string();
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| e.to_string())?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(e)?
            .with_client_cert_verifier(Arc::new(NodeClientVerifier {
                inner: client_verifier,
            }))
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(e)?;
        let mut enroll = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(e)?
            .with_no_client_auth()
            .with_single_cert(enroll_chain, key.clone_key())
            .map_err(e)?;
        enroll.alpn_protocols = vec![crate::enroll::ALPN.to_vec()];
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(e)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(e)?;
        Ok(TlsContext {
            client: Arc::new(client),
            server: Arc::new(server),
            enroll: Arc::new(enroll),
        })
    }

    /// The name a node's certificate must be valid for.
    pub fn node_name() -> ServerName<'static> {
        ServerName::DnsName(
            rustls::pki_types::DnsName::try_from(NODE_NAME)
                .unwrap_or_else(|_| unreachable!("a valid DNS name"))
                .to_owned(),
        )
    }
}

/// Accepts a client certificate only if it chains to the cluster CA *and* is a node's
/// (valid for [`NODE_NAME`]): certificates the CA issues to users are refused here.
#[derive(Debug)]
struct NodeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for NodeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("bad client certificate: {e}")))?;
        cert.verify_is_valid_for_subject_name(&TlsContext::node_name())
            .map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            })?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A CA and node certificate made in a temporary directory; `ca` names the CA directory.
    pub(crate) fn context(dir: &std::path::Path, ca: &str, node: &str) -> TlsContext {
        let ca_dir = dir.join(ca);
        if !ca_dir.join(crate::pki::CA_KEY).exists() {
            crate::pki::init_ca(&ca_dir, ca).expect("init ca");
        }
        let out = dir.join(node);
        crate::pki::issue_node_cert(&ca_dir, &out, node).expect("issue");
        TlsContext::load(&TlsFiles {
            ca: ca_dir.join(crate::pki::CA_CERT),
            cert: out.join(crate::pki::NODE_CERT),
            key: out.join(crate::pki::NODE_KEY),
        })
        .expect("load")
    }
}
