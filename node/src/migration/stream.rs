//! The data stream of a migration: the RPC connection of the offer, turned over to the
//! helpers once the target said `Ready`, with a key both daemons derive from its session.

use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use ssi_core::wire::SecureStream;
use tokio::net::TcpStream;

/// Label of the key the two daemons derive for a migration's data stream.
const DATA_KEY_LABEL: &[u8] = b"ssi migration data stream";

/// Ends the RPC exchange on `conn` and turns it into the raw data stream a helper takes over
/// (a blocking socket), with the key the helpers authenticate their frames with.
pub fn data_stream(conn: SecureStream<TcpStream>) -> Result<(OwnedFd, [u8; 32])> {
    let (tcp, key) = conn.into_raw(DATA_KEY_LABEL)?;
    let std = tcp.into_std().context("data stream")?;
    std.set_nonblocking(false).context("data stream")?;
    Ok((std.into(), key))
}
