//! The bearer token form of a VO credential, for HTTP clients that cannot present a client
//! certificate (py-tes, curl, workflow engines).
//!
//! A JWT (RFC 7519) signed by the cluster CA's own key, with the same subject, VO, FQANs and
//! expiry as the VO certificate. JWT because every HTTP stack and grid token tool (WLCG tokens,
//! OIDC) reads it; `jsonwebtoken` because it is the maintained Rust implementation; signed with
//! the CA key (ES256 for a P-256 CA, ES384, or EdDSA) rather than a shared secret so that any
//! node, and any service given only the CA certificate, can verify a token but none can mint
//! one. The algorithm comes from the CA key, never from the token's header.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The audience of every token: the grid services of one ssi cluster.
pub const AUDIENCE: &str = "ssi-grid";

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The CA that signed it (its subject).
    pub iss: String,
    /// The user's certificate subject.
    pub sub: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
    /// The VO this credential is for.
    pub vo: String,
    /// The FQANs held in that VO.
    pub fqans: Vec<String>,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Not before (unix seconds).
    pub nbf: i64,
    /// Expires at (unix seconds).
    pub exp: i64,
    /// Unique id (the VO certificate's serial number in hex).
    pub jti: String,
}

/// The JWT algorithm for a CA key of rcgen's algorithm `alg`.
pub fn algorithm_for(alg: &rcgen::SignatureAlgorithm) -> Result<Algorithm> {
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Ok(Algorithm::ES256)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        Ok(Algorithm::ES384)
    } else if alg == &rcgen::PKCS_ED25519 {
        Ok(Algorithm::EdDSA)
    } else {
        Err(Error::Credential(format!(
            "ca key algorithm {alg:?} cannot sign tokens (use P-256, P-384 or Ed25519)"
        )))
    }
}

/// Signs `claims` with the CA's PKCS#8 private key.
pub fn sign(claims: &Claims, alg: Algorithm, key_pem: &str) -> Result<String> {
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(key_pem.as_bytes()),
        _ => EncodingKey::from_ec_pem(key_pem.as_bytes()),
    }
    .map_err(|e| Error::Credential(format!("ca key for tokens: {e}")))?;
    jsonwebtoken::encode(&Header::new(alg), claims, &key)
        .map_err(|e| Error::Credential(format!("signing token: {e}")))
}

/// The key that verifies tokens of a CA whose public key is `raw` (the subjectPublicKey bits).
pub fn decoding_key(alg: Algorithm, raw: &[u8]) -> DecodingKey {
    match alg {
        Algorithm::EdDSA => DecodingKey::from_ed_der(raw),
        _ => DecodingKey::from_ec_der(raw),
    }
}

/// The claims of `token` if its signature is the CA's and it is for this audience and issuer.
/// Expiry is left to the caller, which knows the time and says so in its error.
pub fn verify(token: &str, alg: Algorithm, key: &DecodingKey, issuer: &str) -> Result<Claims> {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.set_audience(&[AUDIENCE]);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "nbf", "sub", "iss", "aud"]);
    jsonwebtoken::decode::<Claims>(token, key, &v)
        .map(|d| d.claims)
        .map_err(|e| Error::Credential(format!("bearer token refused: {e}")))
}
