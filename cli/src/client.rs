//! The connection to the local daemon's control socket, shared by every command.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use ssi_core::control::{ControlConn, ControlRequest, ControlResponse, DEFAULT_SOCKET, SOCKET_ENV};

/// The control socket: `--socket`, else `$SSI_SOCKET`, else the default.
pub fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Connects to the local daemon, with a message that says what to do when it is not there.
pub async fn connect(path: &Path) -> Result<ControlConn> {
    ControlConn::connect(path).await.map_err(|e| {
        let cause = match &e {
            ssi_core::Error::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        anyhow!(
            "cannot reach ssid at {}: {cause} (is ssid running on this node? start it, or point \
             --socket or {SOCKET_ENV} at its ssid.sock)",
            path.display()
        )
    })
}

/// Sends one request and returns the answer, turning a daemon-side error into an error.
pub async fn call(path: &Path, req: ControlRequest) -> Result<ControlResponse> {
    let mut conn = connect(path).await?;
    match conn.call(&req).await? {
        ControlResponse::Error { message, .. } => bail!("{message}"),
        other => Ok(other),
    }
}
