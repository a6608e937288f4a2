//! Certificate subjects: how a grid user is named.
//!
//! Printed in the slash form grid tools use (`/DC=org/O=Grid/CN=alice`, as in grid-mapfiles and
//! VOMS), in the order the certificate lists them; kept as (OID, value) pairs so that a VO
//! certificate can carry the same name as the user's own certificate.

use std::fmt;

use serde::{Deserialize, Serialize};
use x509_parser::x509::X509Name;

use crate::error::{Error, Result};

/// OID arcs of the attribute types that have a short name in the printed form.
const SHORT_NAMES: &[(&[u64], &str)] = &[
    (&[2, 5, 4, 3], "CN"),
    (&[2, 5, 4, 6], "C"),
    (&[2, 5, 4, 7], "L"),
    (&[2, 5, 4, 8], "ST"),
    (&[2, 5, 4, 10], "O"),
    (&[2, 5, 4, 11], "OU"),
    (&[0, 9, 2342, 19200300, 100, 1, 25], "DC"),
    (&[0, 9, 2342, 19200300, 100, 1, 1], "UID"),
];

/// One attribute of a name: its type (OID arcs) and value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NameAttr {
    /// The attribute type.
    pub oid: Vec<u64>,
    /// Its value as text.
    pub value: String,
}

/// A certificate subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subject {
    /// The attributes in certificate order.
    pub attrs: Vec<NameAttr>,
}

impl Subject {
    /// The subject `/O=<org>/OU=<unit>/CN=<cn>` (for accounts known only locally).
    pub fn simple(org: &str, unit: &str, cn: &str) -> Self {
        let a = |oid: &[u64], v: &str| NameAttr {
            oid: oid.to_vec(),
            value: v.to_string(),
        };
        Subject {
            attrs: vec![
                a(&[2, 5, 4, 10], org),
                a(&[2, 5, 4, 11], unit),
                a(&[2, 5, 4, 3], cn),
            ],
        }
    }

    /// The subject of a parsed certificate name; refused if an attribute is not text.
    pub fn from_x509(name: &X509Name<'_>) -> Result<Self> {
        let mut attrs = Vec::new();
        for a in name.iter_attributes() {
            let oid: Vec<u64> = a
                .attr_type()
                .iter()
                .ok_or_else(|| {
                    Error::Credential(format!("name attribute {} is too large", a.attr_type()))
                })?
                .collect();
            let value = a.as_str().map_err(|e| {
                Error::Credential(format!("name attribute {}: not text: {e}", a.attr_type()))
            })?;
            attrs.push(NameAttr {
                oid,
                value: value.to_string(),
            });
        }
        if attrs.is_empty() {
            return Err(Error::Credential("certificate has an empty subject".into()));
        }
        Ok(Subject { attrs })
    }

    /// The same name for rcgen; refused when an attribute type repeats, since rcgen keeps one
    /// value per type and the name would silently change.
    pub fn to_rcgen(&self) -> Result<rcgen::DistinguishedName> {
        let mut dn = rcgen::DistinguishedName::new();
        for (i, a) in self.attrs.iter().enumerate() {
            if self.attrs[..i].iter().any(|b| b.oid == a.oid) {
                return Err(Error::Credential(format!(
                    "{self}: attribute {} appears twice; such names cannot be reissued",
                    short_name(&a.oid)
                )));
            }
            dn.push(
                rcgen::DnType::from_oid(&a.oid),
                rcgen::DnValue::Utf8String(a.value.clone()),
            );
        }
        Ok(dn)
    }

    /// The common name, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.oid == [2, 5, 4, 3])
            .map(|a| a.value.as_str())
    }
}

fn short_name(oid: &[u64]) -> String {
    match SHORT_NAMES.iter().find(|(o, _)| *o == oid) {
        Some((_, n)) => n.to_string(),
        None => oid.iter().map(u64::to_string).collect::<Vec<_>>().join("."),
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in &self.attrs {
            write!(f, "/{}={}", short_name(&a.oid), a.value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prints_in_slash_form_and_round_trips_through_a_certificate() {
        let s = Subject::simple("Grid", "local", "alice");
        assert_eq!(s.to_string(), "/O=Grid/OU=local/CN=alice");
        assert_eq!(s.common_name(), Some("alice"));
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = s.to_rcgen().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        assert_eq!(Subject::from_x509(x.subject()).unwrap(), s);
    }

    #[test]
    fn repeated_attribute_types_are_refused_for_reissue() {
        let mut s = Subject::simple("Grid", "a", "alice");
        s.attrs.insert(
            0,
            NameAttr {
                oid: vec![0, 9, 2342, 19200300, 100, 1, 25],
                value: "org".into(),
            },
        );
        s.attrs.insert(
            0,
            NameAttr {
                oid: vec![0, 9, 2342, 19200300, 100, 1, 25],
                value: "example".into(),
            },
        );
        assert_eq!(s.to_string(), "/DC=example/DC=org/O=Grid/OU=a/CN=alice");
        let e = s.to_rcgen().unwrap_err().to_string();
        assert!(e.contains("DC appears twice"), "{e}");
    }
}
