//! Grid identities and VO credentials (single sign-on).
//!
//! ```text
//!  user cert (cluster CA or trusted grid CA) --verify_identity--> Subject
//!  Subject + VO registry membership ---------CertAuthority::issue_vo--> VoCredential
//!        VoCredential.cert_pem  (X.509, FQANs in an extension; for ssi and TLS)
//!        VoCredential.token     (JWT, same claims; for HTTP clients)
//!  any node: TrustAnchors::verify_vo_cert / verify_token --> VoIdentity (or Expired)
//! ```
//!
//! A VO credential is short-lived (the login lifetime, hours): until it expires every node and
//! the job service accept it without asking again; after that the user logs in again.

mod attributes;
mod ca;
mod subject;
mod token;
mod trust;

pub use attributes::FQAN_EXTENSION_OID;
pub use ca::CertAuthority;
pub use subject::{NameAttr, Subject};
pub use token::{Claims, AUDIENCE};
pub use trust::TrustAnchors;

use serde::{Deserialize, Serialize};

use crate::vo::Fqan;

/// A credential handed to a user at login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VoCredential {
    /// The VO certificate (PEM) for the user's key.
    pub cert_pem: String,
    /// The equivalent bearer token.
    pub token: String,
    /// The user's subject.
    pub subject: String,
    /// The VO.
    pub vo: String,
    /// Expiry, unix seconds.
    pub not_after: i64,
}

/// Who a verified VO credential says the caller is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoIdentity {
    /// The user's subject.
    pub subject: String,
    /// The VO.
    pub vo: String,
    /// FQANs held in the VO.
    pub fqans: Vec<Fqan>,
    /// Expiry, unix seconds.
    pub not_after: i64,
}

impl VoIdentity {
    /// Whether the identity holds the admin role at its VO's root.
    pub fn is_vo_admin(&self) -> bool {
        self.fqans
            .iter()
            .any(|f| f.is_root() && f.role.as_deref() == Some(crate::vo::ADMIN_ROLE))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
