use std::time::{SystemTime, UNIX_EPOCH};

use super::*;
use crate::error::Error;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn fq(list: &[&str]) -> Vec<Fqan> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn user_key() -> (rcgen::KeyPair, String) {
    let k = rcgen::KeyPair::generate().unwrap();
    let pem = k.public_key_pem();
    (k, pem)
}

#[test]
fn vo_certificate_and_token_carry_the_same_identity() {
    let t = now();
    let ca = CertAuthority::generate("ssi", "cluster ca", t, 1).unwrap();
    let anchors = TrustAnchors::new(ca.cert_pem(), &[]).unwrap();
    let alice = Subject::simple("Grid", "users", "alice");
    let (_, pk) = user_key();
    let fqans = fq(&["/atlas", "/atlas/prod/Role=pilot"]);
    let cred = ca.issue_vo(&alice, &fqans, &pk, t, 3600).unwrap();
    let by_cert = anchors.verify_vo_cert(&cred.cert_pem, t).unwrap();
    let by_token = anchors.verify_token(&cred.token, t).unwrap();
    assert_eq!(by_cert, by_token);
    assert_eq!(by_cert.subject, "/O=Grid/OU=users/CN=alice");
    assert_eq!(by_cert.vo, "atlas");
    assert_eq!(by_cert.fqans, fqans);
    assert_eq!(by_cert.not_after, t + 3600);
    assert!(!by_cert.is_vo_admin());
    // The certificate is an ordinary client certificate for the user's key.
    let (_, p) = x509_parser::pem::parse_x509_pem(cred.cert_pem.as_bytes()).unwrap();
    let x = p.parse_x509().unwrap();
    assert!(!x.is_ca());
    let (_, spki) = x509_parser::pem::parse_x509_pem(pk.as_bytes()).unwrap();
    assert_eq!(x.public_key().raw, spki.contents.as_slice());
}

#[test]
fn expired_credentials_are_refused_naming_the_expiry() {
    let t = now();
    let ca = CertAuthority::generate("ssi", "cluster ca", t - 7200, 1).unwrap();
    let anchors = TrustAnchors::new(ca.cert_pem(), &[]).unwrap();
    let (_, pk) = user_key();
    let cred = ca
        .issue_vo(
            &Subject::simple("Grid", "users", "bob"),
            &fq(&["/cms"]),
            &pk,
            t - 7200,
            60,
        )
        .unwrap();
    for e in [
        anchors.verify_token(&cred.token, t).unwrap_err(),
        anchors.verify_vo_cert(&cred.cert_pem, t).unwrap_err(),
    ] {
        match &e {
            Error::Expired { expired_at, .. } => assert_eq!(*expired_at, t - 7140),
            other => panic!("not an expiry: {other}"),
        }
        assert!(e.to_string().contains("/O=Grid/OU=users/CN=bob"), "{e}");
        assert!(e.to_string().contains("log in again"), "{e}");
    }
    // Still valid just before expiry.
    assert!(anchors.verify_token(&cred.token, t - 7141).is_ok());
}

#[test]
fn credentials_of_another_ca_or_altered_ones_are_refused() {
    let t = now();
    let ca = CertAuthority::generate("ssi", "cluster ca", t, 1).unwrap();
    let rogue = CertAuthority::generate("ssi", "cluster ca", t, 1).unwrap();
    let anchors = TrustAnchors::new(ca.cert_pem(), &[]).unwrap();
    let (_, pk) = user_key();
    let s = Subject::simple("Grid", "users", "eve");
    let forged = rogue
        .issue_vo(&s, &fq(&["/atlas/Role=admin"]), &pk, t, 3600)
        .unwrap();
    // Same issuer name, other key: the signature check catches it.
    let e = anchors
        .verify_vo_cert(&forged.cert_pem, t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("signature does not verify"), "{e}");
    assert!(anchors
        .verify_token(&forged.token, t)
        .unwrap_err()
        .to_string()
        .contains("bearer token refused"));

    // A token whose claims were edited no longer verifies.
    let real = ca.issue_vo(&s, &fq(&["/atlas"]), &pk, t, 3600).unwrap();
    let parts: Vec<&str> = real.token.split('.').collect();
    let forged_claims = forged.token.split('.').nth(1).unwrap();
    let spliced = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    assert!(anchors.verify_token(&spliced, t).is_err());
    // Algorithm confusion: an unsigned token ("alg": "none") is refused.
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    assert!(anchors
        .verify_token(&format!("{none_header}.{}.", parts[1]), t)
        .is_err());
    assert!(anchors.verify_token("garbage", t).is_err());
}

#[test]
fn identities_from_trusted_grid_cas_are_accepted_and_others_not() {
    let t = now();
    let cluster = CertAuthority::generate("ssi", "cluster ca", t, 1).unwrap();
    let grid = CertAuthority::generate("EGI", "grid ca", t, 1).unwrap();
    let other = CertAuthority::generate("Else", "other ca", t, 1).unwrap();
    let anchors = TrustAnchors::new(cluster.cert_pem(), &[grid.cert_pem().to_string()]).unwrap();
    let (_, pk) = user_key();
    let s = Subject::simple("EGI", "people", "carol");
    let from_grid = grid.issue_identity(&s, &pk, t, 3600).unwrap();
    assert_eq!(anchors.verify_identity(&from_grid, t).unwrap(), s);
    let from_cluster = cluster.issue_identity(&s, &pk, t, 3600).unwrap();
    assert_eq!(anchors.verify_identity(&from_cluster, t).unwrap(), s);
    let from_other = other.issue_identity(&s, &pk, t, 3600).unwrap();
    let e = anchors
        .verify_identity(&from_other, t)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/O=EGI/OU=people/CN=carol: issuer /O=Else/OU=ca/CN=other ca is not a trusted CA"
    );
    // Only the cluster CA issues VO credentials: a grid CA's VO certificate is not one.
    let vo_by_grid = grid.issue_vo(&s, &fq(&["/atlas"]), &pk, t, 3600).unwrap();
    assert!(matches!(
        anchors.verify_vo_cert(&vo_by_grid.cert_pem, t),
        Err(Error::Untrusted { .. })
    ));
    // An identity certificate is not a VO credential.
    assert!(anchors
        .verify_vo_cert(&from_cluster, t)
        .unwrap_err()
        .to_string()
        .contains("no vo attributes"));
}

#[test]
fn a_ca_key_that_does_not_match_its_certificate_is_refused() {
    let t = now();
    let a = CertAuthority::generate("ssi", "a", t, 1).unwrap();
    let k = rcgen::KeyPair::generate().unwrap();
    let e = CertAuthority::from_pem(a.cert_pem(), &k.serialize_pem())
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match"), "{e}");
}
