//! Admitting a new machine that shows a join token (`ssi cluster join`), on a node that holds
//! the cluster CA key (the one that ran `ssi cluster init`). The token format, its store and
//! the exchange are in `ssi_core::enroll`; this side checks the token, signs the new node's
//! certificate request and hands over the CA certificate and the cluster key, all inside the
//! TLS connection the new node checked against the token's CA fingerprint.

use std::net::SocketAddr;

use anyhow::{anyhow, Result};
use ssi_core::config::NodeConfig;
use ssi_core::enroll::{EnrollRequest, EnrollResponse, TokenStore, TIMEOUT};
use ssi_core::wire::SecureStream;
use tokio::net::TcpStream;

/// Answers one enrollment connection: one request, one answer. A refusal is sent to the
/// joining node and returned as an error (the caller logs it, rate-limited).
pub async fn serve(
    config: &NodeConfig,
    mut conn: SecureStream<TcpStream>,
    peer: SocketAddr,
) -> Result<()> {
    let req = match tokio::time::timeout(TIMEOUT, conn.recv::<EnrollRequest>()).await {
        Err(_) => {
            return Err(anyhow!(
                "join from {peer}: no request within {} s",
                TIMEOUT.as_secs()
            ))
        }
        Ok(next) => next?.ok_or_else(|| anyhow!("join from {peer}: closed before asking"))?,
    };
    let config = config.clone();
    let token_id = req.token_id.clone();
    let name = req.name.clone();
    let answer = tokio::task::spawn_blocking(move || admit(&config, &req))
        .await
        .map_err(|e| anyhow!("join from {peer}: {e}"))?;
    let outcome = match &answer {
        Ok(_) => Ok(()),
        Err(reason) => Err(anyhow!(
            "join of {name:?} from {peer} with token {token_id} refused: {reason}"
        )),
    };
    let msg = answer.unwrap_or_else(EnrollResponse::Refused);
    conn.send(&msg).await?;
    if outcome.is_ok() {
        tracing::info!(%peer, node = %name, token = %token_id, "admitted a new node: certificate issued");
    }
    outcome
}

/// A node name that can go into a certificate and a log line as it is.
fn check_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "node name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

/// Checks the token, then issues the certificate: the token is spent before anything is
/// signed, so a second use of it is refused even if this one fails later.
fn admit(config: &NodeConfig, req: &EnrollRequest) -> std::result::Result<EnrollResponse, String> {
    let id = config.id;
    if !config.ca_key_file.exists() {
        return Err(format!(
            "node {id} does not admit nodes (no CA key at {}): use a token of the node that ran \
             `ssi cluster init`",
            config.ca_key_file.display()
        ));
    }
    check_name(&req.name)?;
    let store = TokenStore::new(&config.state_dir);
    match store.redeem(&req.token_id, &req.secret, &req.name) {
        Ok(Ok(())) => {}
        Ok(Err(refusal)) => return Err(refusal.to_string()),
        Err(e) => return Err(format!("node {id} cannot read its tokens: {e}")),
    }
    let internal = |e: ssi_core::error::Error| format!("node {id}: {e}");
    let cert_pem = ssi_core::pki::sign_node_request(
        &config.tls.ca,
        &config.ca_key_file,
        &req.csr_pem,
        &req.name,
    )
    .map_err(internal)?;
    let ca_pem = std::fs::read_to_string(&config.tls.ca)
        .map_err(|e| internal(ssi_core::error::Error::io(&config.tls.ca, e)))?;
    ssi_core::pki::check_private(&config.cluster_key_file).map_err(internal)?;
    let cluster_key = std::fs::read_to_string(&config.cluster_key_file)
        .map_err(|e| internal(ssi_core::error::Error::io(&config.cluster_key_file, e)))?;
    Ok(EnrollResponse::Admitted {
        cert_pem,
        ca_pem,
        cluster_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_garble_a_certificate_or_log_are_refused() {
        assert!(check_name("n2").is_ok());
        assert!(check_name("web-01.example").is_ok());
        for bad in ["", "a b", "x\ny", "é", &"n".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
