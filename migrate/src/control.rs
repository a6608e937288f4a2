//! What a daemon and a helper it started tell each other on the helper's control socket:
//! typed, versioned messages. The daemon sends the [`Job`] first, then [`Order`]s; the helper
//! sends [`Report`]s.
//!
//! ```text
//!   message   [length u32 LE][postcard((VERSION u16, body))]
//! ```
//! A message of another version is refused with both versions named (daemon and helper are the
//! same executable, so this only happens across an upgrade while a migration runs).

use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;

use checkpoint::Bound;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::protocol::Verdict;
use crate::{Error, Result};

/// Version of the messages of this module.
pub const VERSION: u16 = 3;
/// Largest message accepted (reports and orders are small).
pub const MAX_MESSAGE: usize = 1 << 20;

/// The work a helper is started for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Job {
    /// Migrate the tree under `pid` out, one [`Order`] at a time, on the data stream (its
    /// frames authenticated with `key`, which both daemons derived from their session).
    MigrateOut {
        /// Root of the tree (pid in the node's namespace).
        pid: i32,
        /// Key of the data stream.
        key: [u8; 32],
    },
    /// Receive a tree on the data stream, restore it with the helper's stdio descriptors as
    /// its outside streams, and hold it stopped until [`Order::Release`].
    MigrateIn {
        /// Key of the data stream.
        key: [u8; 32],
        /// The most the tree may hold (`None`: a tree of root's, restored as it comes).
        bound: Option<Bound>,
    },
    /// Write a checkpoint of the tree under `pid` into `dir`.
    Checkpoint {
        /// Root of the tree.
        pid: i32,
        /// Image directory.
        dir: PathBuf,
        /// Let the tree run on (else it is killed once the image is written).
        leave_running: bool,
        /// The user asking, whose rights the image is written with (`None`: root).
        user: Option<User>,
        /// Key the image is sealed with.
        seal: [u8; 32],
    },
    /// Checkpoint the tree under `pid` periodically (fault tolerance): one image per
    /// [`Order::Checkpoint`], the tree running on, each image after the first of a chain
    /// holding only the pages written since the previous one.
    Periodic {
        /// Root of the tree.
        pid: i32,
        /// Key the images are sealed with (as root's: the daemon restarts them itself).
        seal: [u8; 32],
    },
    /// Restore the checkpoint in `dir`, with the helper's stdio descriptors as its outside
    /// streams.
    Restore {
        /// Image directory.
        dir: PathBuf,
        /// The user asking, who must own the image and whose rights bound it (`None`: root).
        user: Option<User>,
        /// Key the image must be sealed with.
        seal: [u8; 32],
    },
}

/// A user a helper works for: it reaches files with their ids, never with root's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// What the daemon tells a migration helper once it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    /// Source: send a pre-copy round while the tree runs (the first: all its memory).
    Round,
    /// Source: freeze the tree and send its last image.
    Freeze,
    /// Source: kill the frozen copy (`Commit`), or stop and resume it (`Abort`).
    Verdict(Verdict),
    /// Target: tell the source, on the data stream, that the tree is held here.
    Announce,
    /// Target: let the tree go.
    Release,
    /// Target: kill what is held or built, and tell the source why if the stream still goes.
    Discard(String),
    /// Periodic: write the next image into `dir` and make it durable (every file and the
    /// directory synced); `parent` is where the previous image lies relative to `dir`
    /// (`None`: start a new chain with a whole image). Answered by `Checkpointed` or `Failed`.
    Checkpoint {
        /// Image directory (created).
        dir: PathBuf,
        /// The previous image of the chain, relative to `dir`.
        parent: Option<String>,
    },
}

/// What a helper tells its daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Report {
    /// Source: a pre-copy round went out while the tree ran.
    Round {
        /// Page bytes in this round.
        page_bytes: u64,
        /// Time the round took.
        millis: u64,
        /// Bytes sent on the data stream so far, framing included.
        sent: u64,
    },
    /// Source: the tree is frozen and its last image sent.
    Frozen {
        /// Page bytes in the last image.
        page_bytes: u64,
        /// Time from the freeze to the end of the last image, in microseconds.
        micros: u64,
        /// Bytes sent on the data stream in all, framing included.
        sent: u64,
        /// Pids of the frozen tree, parents first.
        pids: Vec<i32>,
    },
    /// Source: the target holds the whole tree (its word on the data stream).
    TargetHolds {
        /// Time the target's restore of the last image took, in microseconds.
        micros: u64,
    },
    /// Source: after the last image, no word from the target came: why.
    NoAnswer(String),
    /// Source: the frozen copy is dead (every process got SIGKILL).
    Killed,
    /// Target: the whole tree is restored and held stopped.
    Held {
        /// Its root.
        root: i32,
        /// All its pids, parents first.
        pids: Vec<i32>,
        /// Time from the first bytes of the last image to the tree being whole, microseconds.
        micros: u64,
    },
    /// Target: the tree runs.
    Released,
    /// A checkpoint was written.
    Written {
        /// Page bytes written.
        page_bytes: u64,
        /// Pids of the tree.
        pids: Vec<i32>,
    },
    /// A checkpoint was restored and runs.
    Restored {
        /// Its root.
        root: i32,
        /// All its pids.
        pids: Vec<i32>,
        /// Time the restore took, microseconds.
        micros: u64,
    },
    /// Periodic: an image was written and is durable; the tree runs on.
    Checkpointed {
        /// Page bytes written in this image.
        page_bytes: u64,
        /// Page bytes left in its parents.
        parent_bytes: u64,
        /// How long the tree was frozen, microseconds.
        freeze_micros: u64,
        /// Pids of the tree.
        pids: Vec<i32>,
    },
    /// The helper failed; nothing it did is left half-done (a frozen source copy resumed, a
    /// target's processes killed).
    Failed(String),
}

fn protocol(e: impl std::fmt::Display) -> Error {
    Error::Protocol(format!("control socket: {e}"))
}

/// A message ready to write: its length, then its body.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>> {
    let body = postcard::to_stdvec(&(VERSION, msg)).map_err(protocol)?;
    let len = u32::try_from(body.len()).map_err(protocol)?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The length of a message's body, from its first four bytes.
pub fn body_len(head: [u8; 4]) -> Result<usize> {
    let n = usize::try_from(u32::from_le_bytes(head)).map_err(protocol)?;
    if n > MAX_MESSAGE {
        return Err(protocol(format!("a message of {n} bytes")));
    }
    Ok(n)
}

/// A message from its body; one of another version is refused.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let (version, rest): (u16, &[u8]) = postcard::take_from_bytes(body).map_err(protocol)?;
    if version != VERSION {
        return Err(protocol(format!(
            "message version {version}, this ssid speaks {VERSION}"
        )));
    }
    postcard::from_bytes(rest).map_err(protocol)
}

/// Writes one message.
pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<()> {
    w.write_all(&encode(msg)?)
        .and_then(|()| w.flush())
        .map_err(crate::io("write to the control socket"))
}

/// Reads one message; `None` when the other end closed.
pub fn recv<T: DeserializeOwned>(r: &mut impl Read) -> Result<Option<T>> {
    let mut head = [0u8; 4];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(crate::io("read the control socket")(e)),
    }
    let mut body = vec![0u8; body_len(head)?];
    r.read_exact(&mut body)
        .map_err(crate::io("read the control socket"))?;
    decode(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_go_through_and_another_version_is_refused() {
        let job = Job::Checkpoint {
            pid: 4100,
            dir: "/tmp/img".into(),
            leave_running: true,
            user: Some(User {
                uid: 1000,
                gid: 100,
                groups: vec![100, 27],
            }),
            seal: [9; 32],
        };
        let mut buf = encode(&job).expect("encode");
        buf.extend(encode(&Order::Release).expect("encode"));
        let mut r = &buf[..];
        assert_eq!(recv::<Job>(&mut r).expect("job"), Some(job));
        assert_eq!(recv::<Order>(&mut r).expect("order"), Some(Order::Release));
        assert_eq!(recv::<Order>(&mut r).expect("end"), None);

        let old = postcard::to_stdvec(&(VERSION + 1, Order::Round)).expect("encode");
        let e = decode::<Order>(&old).expect_err("refused");
        assert!(
            e.to_string().contains(&format!("version {}", VERSION + 1)),
            "{e}"
        );
    }
}
