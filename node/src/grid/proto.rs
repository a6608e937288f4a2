//! Messages of the grid services between daemons, carried in `RpcRequest::Grid` and
//! `RpcResponse::Grid` as postcard bytes with a version first.

use anyhow::{bail, Context, Result};
use grid_node::accounts::Lease;
use grid_node::store::{Entries, Table};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::replica::{Change, Snapshot};

/// The version of these messages; another is refused.
const VERSION: u32 = 1;

/// An operation on the store, done by its primary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    /// Read a key.
    Get {
        /// Table.
        table: Table,
        /// Key.
        key: String,
    },
    /// Compare and swap a key.
    Cas {
        /// Table.
        table: Table,
        /// Key.
        key: String,
        /// Value expected.
        expected: Option<Vec<u8>>,
        /// Value to set.
        new: Option<Vec<u8>>,
    },
    /// Read a range.
    Scan {
        /// Table.
        table: Table,
        /// Key prefix.
        prefix: String,
        /// Keys after this one.
        after: Option<String>,
        /// At most this many.
        limit: usize,
    },
}

/// A request of one daemon's grid services to another's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// To the primary: do this operation.
    Op(Op),
    /// From the primary: apply change `seq`.
    Apply {
        /// Its number.
        seq: u64,
        /// The change.
        change: Change,
    },
    /// From the primary to a copy that was behind: the whole state.
    Install(Snapshot),
    /// The sequence number of the answering node's copy.
    Seq,
    /// The answering node's whole copy.
    Pull,
    /// Make sure this pool account exists on the answering node.
    EnsureAccount(Lease),
}

/// An answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    /// The value read.
    Value(Option<Vec<u8>>),
    /// Whether a compare-and-swap applied.
    Applied(bool),
    /// The entries scanned.
    Entries(Entries),
    /// The answering node is not the primary (the asker's view is out of date).
    NotPrimary,
    /// A copy's sequence number.
    Seq(u64),
    /// A copy is behind: it holds changes up to this one and needs the whole state.
    Behind(u64),
    /// A whole copy.
    Snapshot(Snapshot),
    /// Done.
    Done,
    /// Failed, in one line.
    Error(String),
}

/// Encodes `m` with the version in front.
pub fn encode<T: Serialize>(m: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(&(VERSION, m)).context("cannot encode a grid message")
}

/// Decodes a message, refusing another version.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (version, rest): (u32, &[u8]) =
        postcard::take_from_bytes(bytes).context("undecodable grid message")?;
    if version != VERSION {
        bail!("grid message version {version}, this ssid speaks {VERSION}");
    }
    postcard::from_bytes(rest).context("undecodable grid message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_other_versions_are_refused() {
        let m = Request::Op(Op::Get {
            table: Table::Vos,
            key: "atlas".into(),
        });
        let back: Request = decode(&encode(&m).unwrap()).unwrap();
        assert!(matches!(back, Request::Op(Op::Get { key, .. }) if key == "atlas"));
        let other = postcard::to_allocvec(&(2u32, Request::Seq)).unwrap();
        let err = decode::<Request>(&other).unwrap_err().to_string();
        assert_eq!(err, "grid message version 2, this ssid speaks 1");
    }
}
