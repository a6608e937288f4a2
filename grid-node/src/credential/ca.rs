//! The issuing side: a CA (the cluster CA) that signs VO credentials and, for users without a
//! grid certificate, identity certificates.
//!
//! The CA is passed in as a certificate and a PKCS#8 key in PEM, as the daemon keeps them; the
//! grid services never write the key anywhere.

use rcgen::{
    CertificateParams, CustomExtension, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, SubjectPublicKeyInfo,
};
use time::OffsetDateTime;

use super::token::{self, Claims};
use super::{attributes, Subject, VoCredential};
use crate::error::{Error, Result};
use crate::vo::Fqan;

/// A CA able to issue certificates and tokens.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
    subject: String,
    token_alg: jsonwebtoken::Algorithm,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

fn rc(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::Credential(format!("{what}: {e}"))
}

fn at(unix: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| Error::Credential(format!("time {unix}: {e}")))
}

/// A fresh random serial number (positive, 16 bytes, time-ordered).
fn serial() -> SerialNumber {
    let mut b = *uuid::Uuid::now_v7().as_bytes();
    b[0] &= 0x7f;
    SerialNumber::from_slice(&b)
}

impl CertAuthority {
    /// A new self-signed CA named `/O=<org>/CN=<cn>` with a P-256 key, valid `years` from `now`.
    pub fn generate(org: &str, cn: &str, now: i64, years: i64) -> Result<Self> {
        let key = KeyPair::generate().map_err(rc("generating ca key"))?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rc("ca params"))?;
        let subject = Subject {
            attrs: Subject::simple(org, "ca", cn).attrs,
        };
        p.distinguished_name = subject.to_rcgen()?;
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = at(now - 60)?;
        p.not_after = at(now + years * 365 * 86_400)?;
        p.serial_number = Some(serial());
        let cert = p.self_signed(&key).map_err(rc("self-signing ca"))?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// The CA of certificate `cert_pem` with key `key_pem` (PKCS#8).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem).map_err(rc("ca key"))?;
        let token_alg = token::algorithm_for(key.algorithm())?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| Error::Credential(format!("ca certificate: not PEM: {e}")))?;
        let x = pem
            .parse_x509()
            .map_err(|e| Error::Credential(format!("ca certificate: {e}")))?;
        if x.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(Error::Credential(
                "ca key does not match the ca certificate".into(),
            ));
        }
        let subject = Subject::from_x509(x.subject())?.to_string();
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(rc("ca certificate"))?;
        Ok(CertAuthority {
            issuer,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            subject,
            token_alg,
        })
    }

    /// The CA certificate (PEM), what verifiers need.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    fn leaf(
        &self,
        subject: &Subject,
        not_before: i64,
        not_after: i64,
    ) -> Result<CertificateParams> {
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rc("params"))?;
        p.distinguished_name = subject.to_rcgen()?;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = at(not_before)?;
        p.not_after = at(not_after)?;
        p.serial_number = Some(serial());
        p.use_authority_key_identifier_extension = true;
        Ok(p)
    }

    fn sign(&self, p: &CertificateParams, public_key_pem: &str) -> Result<rcgen::Certificate> {
        let spki =
            SubjectPublicKeyInfo::from_pem(public_key_pem).map_err(rc("requester public key"))?;
        p.signed_by(&spki, &self.issuer)
            .map_err(rc("signing certificate"))
    }

    /// An identity certificate for `subject`'s key, valid from `now` for `lifetime` seconds.
    pub fn issue_identity(
        &self,
        subject: &Subject,
        public_key_pem: &str,
        now: i64,
        lifetime: i64,
    ) -> Result<String> {
        let p = self.leaf(subject, now - 60, now + lifetime)?;
        Ok(self.sign(&p, public_key_pem)?.pem())
    }

    /// A VO credential: a certificate for `subject`'s key carrying `fqans`, and the equivalent
    /// bearer token, both valid from `now` for `lifetime` seconds. `fqans` must be non-empty
    /// and of one VO (the caller takes them from the VO registry).
    pub fn issue_vo(
        &self,
        subject: &Subject,
        fqans: &[Fqan],
        public_key_pem: &str,
        now: i64,
        lifetime: i64,
    ) -> Result<VoCredential> {
        let vo = fqans
            .first()
            .map(|f| f.vo.clone())
            .ok_or_else(|| Error::Credential(format!("{subject}: no fqan to issue")))?;
        let not_after = now + lifetime;
        let mut p = self.leaf(subject, now - 60, not_after)?;
        let content = attributes::encode(fqans)?;
        p.custom_extensions = vec![CustomExtension::from_oid_content(
            attributes::FQAN_EXTENSION_OID,
            content,
        )];
        let serial = p
            .serial_number
            .as_ref()
            .map(|s| hex::encode(s.to_bytes()))
            .unwrap_or_default();
        let cert = self.sign(&p, public_key_pem)?;
        let claims = Claims {
            iss: self.subject.clone(),
            sub: subject.to_string(),
            aud: token::AUDIENCE.to_string(),
            vo: vo.clone(),
            fqans: fqans.iter().map(Fqan::to_string).collect(),
            iat: now,
            nbf: now - 60,
            exp: not_after,
            jti: serial,
        };
        let token = token::sign(&claims, self.token_alg, &self.key_pem)?;
        Ok(VoCredential {
            cert_pem: cert.pem(),
            token,
            subject: subject.to_string(),
            vo,
            not_after,
        })
    }
}
