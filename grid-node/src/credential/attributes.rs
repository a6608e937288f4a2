//! The certificate extension that carries a member's FQANs.
//!
//! VOMS puts its attributes in a whole attribute certificate inside the extension; here the
//! extension is simpler, because the VO certificate is itself issued by the cluster CA that
//! vouches for the attributes: its content is `SEQUENCE OF UTF8String`, one FQAN each, all of
//! one VO. It is marked non-critical so that TLS stacks that do not know it still accept the
//! certificate as a client certificate.
//!
//! The OID sits in the Internet "experimental" arc (1.3.6.1.3, RFC 1155), under 7700, the port
//! ssi uses; a deployment that exchanges these certificates with other grids should move it to a
//! registered enterprise arc.

use asn1_rs::{FromDer, ToDer};

use crate::error::{Error, Result};
use crate::vo::Fqan;

/// The extension's OID arcs.
pub const FQAN_EXTENSION_OID: &[u64] = &[1, 3, 6, 1, 3, 7700, 1];

/// The extension's DER content for `fqans`.
pub fn encode(fqans: &[Fqan]) -> Result<Vec<u8>> {
    let texts: Vec<String> = fqans.iter().map(Fqan::to_string).collect();
    texts
        .to_der_vec()
        .map_err(|e| Error::Credential(format!("encoding fqans: {e}")))
}

/// The FQANs in the extension's DER content, checked to be of one VO.
pub fn decode(content: &[u8]) -> Result<Vec<Fqan>> {
    let (rest, texts) = <Vec<String>>::from_der(content).map_err(|e| {
        Error::Credential(format!("fqan extension: not a SEQUENCE OF UTF8String: {e}"))
    })?;
    if !rest.is_empty() {
        return Err(Error::Credential(format!(
            "fqan extension: {} bytes after its content",
            rest.len()
        )));
    }
    let fqans = texts
        .iter()
        .map(|t| t.parse())
        .collect::<Result<Vec<Fqan>>>()?;
    match fqans.first() {
        None => Err(Error::Credential("fqan extension: no fqan".into())),
        Some(f) if fqans.iter().any(|g| g.vo != f.vo) => Err(Error::Credential(
            "fqan extension: fqans of more than one vo".into(),
        )),
        Some(_) => Ok(fqans),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_mixed_or_garbage_content() {
        let f: Vec<Fqan> = ["/atlas", "/atlas/prod/Role=pilot"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(decode(&encode(&f).unwrap()).unwrap(), f);
        let mixed: Vec<Fqan> = ["/atlas", "/cms"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(decode(&encode(&mixed).unwrap())
            .unwrap_err()
            .to_string()
            .contains("more than one vo"));
        assert!(decode(&encode(&[]).unwrap()).is_err());
        assert!(decode(b"\x30\x03\x0c\x01").is_err());
        let mut trailing = encode(&f).unwrap();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
    }
}
