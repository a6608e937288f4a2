//! The verifying side: which CAs are trusted for what, and the checks every node runs on a
//! presented certificate or token.
//!
//! Two kinds of anchors: the cluster CA, the only one whose VO credentials are accepted (it
//! issues them), and grid CAs an admin declares trusted for identities (users who log in with a
//! certificate from their home grid). A certificate is accepted when a trusted CA's subject is
//! its issuer, that CA's key verifies its signature, and `now` is inside its validity.
//! Revocation lists are not consulted: VO credentials are short-lived instead.

use jsonwebtoken::{Algorithm, DecodingKey};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::Oid;
use x509_parser::pem::Pem;

use super::{attributes, token, Subject, VoIdentity};
use crate::error::{Error, Result};
use crate::vo::Fqan;

/// One trusted CA certificate.
struct Anchor {
    der: Vec<u8>,
    subject: String,
}

impl Anchor {
    fn from_pem(pem: &str) -> Result<Self> {
        let der = pem_der(pem, "trusted ca")?;
        let (_, x) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| Error::Credential(format!("trusted ca: {e}")))?;
        if !x.is_ca() {
            return Err(Error::Credential(format!(
                "{}: not a ca certificate",
                x.subject()
            )));
        }
        let subject = Subject::from_x509(x.subject())?.to_string();
        Ok(Anchor { der, subject })
    }

    fn parsed(&self) -> Result<X509Certificate<'_>> {
        x509_parser::parse_x509_certificate(&self.der)
            .map(|(_, x)| x)
            .map_err(|e| Error::Credential(format!("{}: {e}", self.subject)))
    }
}

fn pem_der(pem: &str, what: &str) -> Result<Vec<u8>> {
    let (_, p): (_, Pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| Error::Credential(format!("{what}: not a PEM certificate: {e}")))?;
    Ok(p.contents)
}

/// The CAs this node trusts, and the key that verifies tokens.
pub struct TrustAnchors {
    cluster: Anchor,
    grid: Vec<Anchor>,
    token_alg: Algorithm,
    token_key: DecodingKey,
}

impl std::fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let grid: Vec<&str> = self.grid.iter().map(|a| a.subject.as_str()).collect();
        f.debug_struct("TrustAnchors")
            .field("cluster", &self.cluster.subject)
            .field("grid", &grid)
            .finish_non_exhaustive()
    }
}

impl TrustAnchors {
    /// Anchors with the cluster CA `cluster_pem` and the grid CAs `grid_pems`.
    pub fn new(cluster_pem: &str, grid_pems: &[String]) -> Result<Self> {
        let cluster = Anchor::from_pem(cluster_pem)?;
        let (token_alg, token_key) = {
            let x = cluster.parsed()?;
            let spki = x.public_key();
            let alg = spki_algorithm(
                &spki.algorithm.algorithm,
                spki.algorithm.parameters.as_ref(),
            )?;
            (alg, token::decoding_key(alg, &spki.subject_public_key.data))
        };
        let grid = grid_pems
            .iter()
            .map(|p| Anchor::from_pem(p))
            .collect::<Result<_>>()?;
        Ok(TrustAnchors {
            cluster,
            grid,
            token_alg,
            token_key,
        })
    }

    /// The subject of a valid identity certificate from the cluster CA or a grid CA.
    ///
    /// That the presenter holds the certificate's key is the transport's to prove (TLS client
    /// authentication, or a signature the caller checks); this checks the certificate itself.
    pub fn verify_identity(&self, cert_pem: &str, now: i64) -> Result<Subject> {
        let der = pem_der(cert_pem, "identity certificate")?;
        let x = parse(&der)?;
        let anchors = std::iter::once(&self.cluster).chain(&self.grid);
        check_issued(&x, anchors, now)
    }

    /// The identity a VO certificate (from the cluster CA) carries.
    pub fn verify_vo_cert(&self, cert_pem: &str, now: i64) -> Result<VoIdentity> {
        let der = pem_der(cert_pem, "vo certificate")?;
        let x = parse(&der)?;
        let subject = check_issued(&x, std::iter::once(&self.cluster), now)?;
        let oid = Oid::from(attributes::FQAN_EXTENSION_OID)
            .map_err(|_| Error::Credential("fqan extension oid".into()))?;
        let ext = x
            .get_extension_unique(&oid)
            .map_err(|e| Error::Credential(format!("{subject}: {e}")))?
            .ok_or_else(|| {
                Error::Credential(format!("{subject}: certificate carries no vo attributes"))
            })?;
        let fqans = attributes::decode(ext.value)?;
        Ok(VoIdentity {
            subject: subject.to_string(),
            vo: fqans[0].vo.clone(),
            fqans,
            not_after: x.validity().not_after.timestamp(),
        })
    }

    /// The identity a bearer token carries, if the cluster CA signed it and it has not expired.
    pub fn verify_token(&self, token: &str, now: i64) -> Result<VoIdentity> {
        let c = token::verify(
            token,
            self.token_alg,
            &self.token_key,
            &self.cluster.subject,
        )?;
        if now >= c.exp {
            return Err(Error::Expired {
                subject: c.sub,
                expired_at: c.exp,
            });
        }
        if now < c.nbf {
            return Err(Error::Credential(format!(
                "{}: token not valid before {}",
                c.sub, c.nbf
            )));
        }
        let fqans = c
            .fqans
            .iter()
            .map(|f| f.parse())
            .collect::<Result<Vec<Fqan>>>()?;
        if fqans.is_empty() || fqans.iter().any(|f| f.vo != c.vo) {
            return Err(Error::Credential(format!(
                "{}: token fqans do not match vo {}",
                c.sub, c.vo
            )));
        }
        Ok(VoIdentity {
            subject: c.sub,
            vo: c.vo,
            fqans,
            not_after: c.exp,
        })
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, x)| x)
        .map_err(|e| Error::Credential(format!("certificate: {e}")))
}

/// The subject of `x` if one of `anchors` issued it and it is valid at `now`.
fn check_issued<'a>(
    x: &X509Certificate<'_>,
    anchors: impl Iterator<Item = &'a Anchor>,
    now: i64,
) -> Result<Subject> {
    let subject = Subject::from_x509(x.subject())?;
    let mut issuer_known = false;
    for a in anchors {
        let ca = a.parsed()?;
        if ca.subject().as_raw() != x.issuer().as_raw() {
            continue;
        }
        issuer_known = true;
        if x.verify_signature(Some(ca.public_key())).is_ok() {
            let v = x.validity();
            if now >= v.not_after.timestamp() {
                return Err(Error::Expired {
                    subject: subject.to_string(),
                    expired_at: v.not_after.timestamp(),
                });
            }
            if now < v.not_before.timestamp() {
                return Err(Error::Credential(format!(
                    "{subject}: not valid before {}",
                    v.not_before
                )));
            }
            return Ok(subject);
        }
    }
    if issuer_known {
        return Err(Error::Credential(format!(
            "{subject}: signature does not verify with its issuer's key"
        )));
    }
    Err(Error::Untrusted {
        subject: subject.to_string(),
        issuer: Subject::from_x509(x.issuer())
            .map(|s| s.to_string())
            .unwrap_or_else(|_| x.issuer().to_string()),
    })
}

/// The JWT algorithm of a CA public key, from its SubjectPublicKeyInfo algorithm.
fn spki_algorithm(alg: &Oid<'_>, params: Option<&asn1_rs::Any<'_>>) -> Result<Algorithm> {
    let ec: Oid<'static> = asn1_rs::oid!(1.2.840 .10045 .2 .1);
    let ed25519: Oid<'static> = asn1_rs::oid!(1.3.101 .112);
    let p256: Oid<'static> = asn1_rs::oid!(1.2.840 .10045 .3 .1 .7);
    let p384: Oid<'static> = asn1_rs::oid!(1.3.132 .0 .34);
    if *alg == ed25519 {
        return Ok(Algorithm::EdDSA);
    }
    if *alg == ec {
        let curve = params.and_then(|p| p.clone().oid().ok());
        if curve.as_ref() == Some(&p256) {
            return Ok(Algorithm::ES256);
        }
        if curve.as_ref() == Some(&p384) {
            return Ok(Algorithm::ES384);
        }
    }
    Err(Error::Credential(format!(
        "cluster ca key type {alg} cannot verify tokens"
    )))
}
