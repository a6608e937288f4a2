//! Framing of messages between processes: versioned envelopes over length-delimited frames,
//! and the authenticated stream daemons use to talk to each other over TCP.
//!
//! ```text
//!  client                                   server
//!    | Hello   [magic "SSI" 1][nonce_c]      |
//!    |-------------------------------------->|
//!    | Challenge [nonce_s][HMAC(k, S|nc|ns)] |
//!    |<--------------------------------------|
//!    | Proof   [HMAC(k, C|ns|nc)]            |
//!    |-------------------------------------->|  wrong key: Verdict "refused", close
//!    | Verdict [1]                           |
//!    |<--------------------------------------|
//!    |== frames: postcard(version, body) + HMAC(session, dir, seq, frame) ==|
//! ```
//!
//! The session key is `HMAC(k, "session" | nonce_c | nonce_s)`; each direction counts its
//! frames, so a frame replayed, dropped or moved is detected.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::auth::{ClusterKey, TAG_LEN};
use crate::error::{Error, Result};

/// Version of every message format of this crate; a peer speaking another is refused.
pub const PROTOCOL_VERSION: u16 = 5;
/// Largest frame accepted.
pub const MAX_FRAME: usize = 16 << 20;
/// How long the authentication handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

const MAGIC: &[u8; 4] = b"SSI\x01";
const NONCE_LEN: usize = 32;

/// A length-delimited codec with the frame limit of this protocol.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Encodes `body` in a versioned envelope.
pub fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(&(PROTOCOL_VERSION, body)).map_err(|e| Error::Malformed {
        peer: "self".into(),
        reason: format!("cannot encode: {e}"),
    })
}

/// Decodes a versioned envelope; an unknown version is refused, not guessed.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], peer: &str) -> Result<T> {
    let (version, rest): (u16, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|e| Error::Malformed {
            peer: peer.into(),
            reason: format!("no version: {e}"),
        })?;
    if version != PROTOCOL_VERSION {
        return Err(Error::Malformed {
            peer: peer.into(),
            reason: format!("protocol version {version}, this node speaks {PROTOCOL_VERSION}"),
        });
    }
    postcard::from_bytes(rest).map_err(|e| Error::Malformed {
        peer: peer.into(),
        reason: e.to_string(),
    })
}

/// Which end of a connection we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

/// A TCP (or any byte) stream between two daemons, authenticated with the cluster key.
#[derive(Debug)]
pub struct SecureStream<S> {
    framed: Framed<S, LengthDelimitedCodec>,
    session: ClusterKey,
    role: Role,
    sent: u64,
    received: u64,
    peer: String,
}

/// A frame exchanged before the session exists.
#[derive(Debug, Serialize, Deserialize)]
enum Handshake {
    Hello {
        magic: [u8; 4],
        nonce: [u8; NONCE_LEN],
    },
    Challenge {
        nonce: [u8; NONCE_LEN],
        proof: Vec<u8>,
    },
    Proof {
        proof: Vec<u8>,
    },
    Verdict {
        accepted: bool,
        reason: String,
    },
}

impl<S: AsyncRead + AsyncWrite + Unpin> SecureStream<S> {
    /// Authenticates as the connecting side; fails if the peer does not hold `key`, refuses
    /// us, or takes longer than [`HANDSHAKE_TIMEOUT`].
    pub async fn client(stream: S, key: &ClusterKey, peer: impl Into<String>) -> Result<Self> {
        let peer = peer.into();
        let fut = Self::client_inner(stream, key, peer.clone());
        tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
            .await
            .map_err(|_| Error::Peer {
                peer,
                reason: "authentication handshake timed out".into(),
            })?
    }

    async fn client_inner(stream: S, key: &ClusterKey, peer: String) -> Result<Self> {
        let mut framed = Framed::new(stream, codec());
        let nonce_c: [u8; NONCE_LEN] = rand::random();
        send_raw(
            &mut framed,
            &Handshake::Hello {
                magic: *MAGIC,
                nonce: nonce_c,
            },
            &peer,
        )
        .await?;
        let Handshake::Challenge {
            nonce: nonce_s,
            proof,
        } = recv_raw(&mut framed, &peer).await?
        else {
            return Err(auth_err(&peer, "expected a challenge"));
        };
        let server_ok = key.verify(&[b"server", &nonce_c, &nonce_s], &proof);
        // Prove ourselves even when the server failed, so that it can log a clear refusal.
        let proof = key.tag(&[b"client", &nonce_s, &nonce_c]).to_vec();
        send_raw(&mut framed, &Handshake::Proof { proof }, &peer).await?;
        let verdict = recv_raw(&mut framed, &peer).await;
        match verdict {
            Ok(Handshake::Verdict {
                accepted: false,
                reason,
            }) => return Err(auth_err(&peer, &format!("refused by peer: {reason}"))),
            Ok(Handshake::Verdict { accepted: true, .. }) if server_ok => {}
            Ok(Handshake::Verdict { accepted: true, .. }) => {
                return Err(auth_err(&peer, "peer does not hold our cluster key"))
            }
            Ok(_) => return Err(auth_err(&peer, "expected a verdict")),
            Err(e) => return Err(e),
        }
        Ok(Self::established(
            framed,
            key,
            &nonce_c,
            &nonce_s,
            Role::Client,
            peer,
        ))
    }

    /// Authenticates as the accepting side; a peer with a wrong key is told so and refused.
    pub async fn server(stream: S, key: &ClusterKey, peer: impl Into<String>) -> Result<Self> {
        let peer = peer.into();
        let fut = Self::server_inner(stream, key, peer.clone());
        tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
            .await
            .map_err(|_| Error::Peer {
                peer,
                reason: "authentication handshake timed out".into(),
            })?
    }

    async fn server_inner(stream: S, key: &ClusterKey, peer: String) -> Result<Self> {
        let mut framed = Framed::new(stream, codec());
        let Handshake::Hello {
            magic,
            nonce: nonce_c,
        } = recv_raw(&mut framed, &peer).await?
        else {
            return Err(auth_err(&peer, "expected a hello"));
        };
        if &magic != MAGIC {
            return Err(auth_err(&peer, "not an ssi peer (bad magic)"));
        }
        let nonce_s: [u8; NONCE_LEN] = rand::random();
        let proof = key.tag(&[b"server", &nonce_c, &nonce_s]).to_vec();
        send_raw(
            &mut framed,
            &Handshake::Challenge {
                nonce: nonce_s,
                proof,
            },
            &peer,
        )
        .await?;
        let Handshake::Proof { proof } = recv_raw(&mut framed, &peer).await? else {
            return Err(auth_err(&peer, "expected a proof"));
        };
        if !key.verify(&[b"client", &nonce_s, &nonce_c], &proof) {
            let reason = "wrong cluster key".to_string();
            let refusal = Handshake::Verdict {
                accepted: false,
                reason: reason.clone(),
            };
            // Best effort: the peer may already be gone.
            let _ = send_raw(&mut framed, &refusal, &peer).await;
            return Err(auth_err(&peer, &reason));
        }
        let ok = Handshake::Verdict {
            accepted: true,
            reason: String::new(),
        };
        send_raw(&mut framed, &ok, &peer).await?;
        Ok(Self::established(
            framed,
            key,
            &nonce_c,
            &nonce_s,
            Role::Server,
            peer,
        ))
    }

    fn established(
        framed: Framed<S, LengthDelimitedCodec>,
        key: &ClusterKey,
        nonce_c: &[u8],
        nonce_s: &[u8],
        role: Role,
        peer: String,
    ) -> Self {
        let session = ClusterKey::from_bytes(&key.tag(&[b"session", nonce_c, nonce_s]))
            .unwrap_or_else(|_| unreachable!("a 32-byte tag is a valid key"));
        SecureStream {
            framed,
            session,
            role,
            sent: 0,
            received: 0,
            peer,
        }
    }

    /// The peer this stream talks to, for messages.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    fn direction(&self, sending: bool) -> &'static [u8] {
        match (self.role, sending) {
            (Role::Client, true) | (Role::Server, false) => b"c2s",
            _ => b"s2c",
        }
    }

    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        let frame = seal(&self.session, self.direction(true), self.sent, msg)?;
        self.sent += 1;
        self.framed
            .send(frame)
            .await
            .map_err(|e| Error::net(format!("send to {}", self.peer), e))
    }

    /// Receives one message; `Ok(None)` when the peer closed the connection cleanly.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        let Some(frame) = self.framed.next().await else {
            return Ok(None);
        };
        let frame = frame.map_err(|e| Error::net(format!("receive from {}", self.peer), e))?;
        let msg = open(
            &self.session,
            self.direction(false),
            self.received,
            &frame,
            &self.peer,
        )?;
        self.received += 1;
        Ok(Some(msg))
    }

    /// Ends the framed exchange and hands back the byte stream with a 32-byte key derived
    /// from this connection's session key and `label`, for a bulk transfer that authenticates
    /// its own frames (both ends derive the same key; it never crosses the network). Fails if
    /// bytes past the last frame were read already or are still waiting to be sent: switch
    /// after a request and its answer, before either side writes raw bytes.
    pub fn into_raw(self, label: &[u8]) -> Result<(S, [u8; TAG_LEN])> {
        let parts = self.framed.into_parts();
        if !parts.read_buf.is_empty() || !parts.write_buf.is_empty() {
            return Err(Error::Malformed {
                peer: self.peer,
                reason: "bytes beyond the last frame before the raw stream".into(),
            });
        }
        Ok((parts.io, self.session.tag(&[b"derive", label])))
    }

    /// Splits the stream into a sending and a receiving half, for full-duplex use.
    pub fn split(self) -> (SecureSender<S>, SecureReceiver<S>) {
        let send_dir = self.direction(true);
        let recv_dir = self.direction(false);
        let (sink, stream) = self.framed.split();
        (
            SecureSender {
                sink,
                session: self.session.clone(),
                dir: send_dir,
                sent: self.sent,
                peer: self.peer.clone(),
            },
            SecureReceiver {
                stream,
                session: self.session,
                dir: recv_dir,
                received: self.received,
                peer: self.peer,
            },
        )
    }
}

/// The sending half of a [`SecureStream`].
#[derive(Debug)]
pub struct SecureSender<S> {
    sink: SplitSink<Framed<S, LengthDelimitedCodec>, Bytes>,
    session: ClusterKey,
    dir: &'static [u8],
    sent: u64,
    peer: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SecureSender<S> {
    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        let frame = seal(&self.session, self.dir, self.sent, msg)?;
        self.sent += 1;
        self.sink
            .send(frame)
            .await
            .map_err(|e| Error::net(format!("send to {}", self.peer), e))
    }

    /// Sends what is buffered and closes this direction: the peer's receiver sees the end
    /// (`Ok(None)`) while the other direction stays open.
    pub async fn close(&mut self) -> Result<()> {
        self.sink
            .close()
            .await
            .map_err(|e| Error::net(format!("close the stream to {}", self.peer), e))
    }
}

/// The receiving half of a [`SecureStream`].
#[derive(Debug)]
pub struct SecureReceiver<S> {
    stream: SplitStream<Framed<S, LengthDelimitedCodec>>,
    session: ClusterKey,
    dir: &'static [u8],
    received: u64,
    peer: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SecureReceiver<S> {
    /// Receives one message; `Ok(None)` when the peer closed the connection cleanly.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        let Some(frame) = self.stream.next().await else {
            return Ok(None);
        };
        let frame = frame.map_err(|e| Error::net(format!("receive from {}", self.peer), e))?;
        let msg = open(&self.session, self.dir, self.received, &frame, &self.peer)?;
        self.received += 1;
        Ok(Some(msg))
    }
}

/// Encodes `msg` and appends its tag for frame number `seq` in direction `dir`.
fn seal<T: Serialize>(session: &ClusterKey, dir: &[u8], seq: u64, msg: &T) -> Result<Bytes> {
    let mut frame = encode(msg)?;
    let tag = session.tag(&[dir, &seq.to_be_bytes(), &frame]);
    frame.extend_from_slice(&tag);
    Ok(Bytes::from(frame))
}

/// Checks the tag of frame number `seq` and decodes it.
fn open<T: DeserializeOwned>(
    session: &ClusterKey,
    dir: &[u8],
    seq: u64,
    frame: &BytesMut,
    peer: &str,
) -> Result<T> {
    let malformed = |reason: &str| Error::Malformed {
        peer: peer.into(),
        reason: reason.into(),
    };
    if frame.len() < TAG_LEN {
        return Err(malformed("frame shorter than its tag"));
    }
    let (body, tag) = frame.split_at(frame.len() - TAG_LEN);
    if !session.verify(&[dir, &seq.to_be_bytes(), body], tag) {
        return Err(malformed("frame failed authentication"));
    }
    decode(body, peer)
}

fn auth_err(peer: &str, reason: &str) -> Error {
    Error::Auth {
        peer: peer.into(),
        reason: reason.into(),
    }
}

async fn send_raw<S, T>(
    framed: &mut Framed<S, LengthDelimitedCodec>,
    msg: &T,
    peer: &str,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: Serialize,
{
    framed
        .send(Bytes::from(encode(msg)?))
        .await
        .map_err(|e| Error::net(format!("send to {peer}"), e))
}

async fn recv_raw<S, T>(framed: &mut Framed<S, LengthDelimitedCodec>, peer: &str) -> Result<T>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: DeserializeOwned,
{
    match framed.next().await {
        Some(Ok(frame)) => decode(&frame, peer),
        Some(Err(e)) => Err(Error::net(format!("receive from {peer}"), e)),
        None => Err(Error::Peer {
            peer: peer.into(),
            reason: "connection closed during authentication".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ClusterKey {
        ClusterKey::from_bytes(&[b; 32]).expect("key")
    }

    #[tokio::test]
    async fn same_key_talks_both_ways() {
        let (a, b) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut s = SecureStream::server(b, &key(7), "client")
                .await
                .expect("server auth");
            let got: Option<String> = s.recv().await.expect("recv");
            s.send(&format!("echo {}", got.unwrap_or_default()))
                .await
                .expect("send");
        });
        let mut c = SecureStream::client(a, &key(7), "server")
            .await
            .expect("client auth");
        c.send(&"hi".to_string()).await.expect("send");
        let back: Option<String> = c.recv().await.expect("recv");
        assert_eq!(back.as_deref(), Some("echo hi"));
        server.await.expect("server task");
    }

    #[tokio::test]
    async fn wrong_key_is_refused_on_both_sides() {
        let (a, b) = tokio::io::duplex(4096);
        let server =
            tokio::spawn(async move { SecureStream::server(b, &key(1), "intruder").await });
        let client = SecureStream::client(a, &key(2), "seed").await;
        let cerr = client.expect_err("client must fail").to_string();
        assert!(cerr.contains("wrong cluster key"), "{cerr}");
        let serr = server
            .await
            .expect("task")
            .expect_err("server must refuse")
            .to_string();
        assert!(serr.contains("wrong cluster key"), "{serr}");
    }

    #[tokio::test]
    async fn raw_streams_share_a_derived_key() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, b) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut s = SecureStream::server(b, &key(3), "client")
                .await
                .expect("server auth");
            let _: Option<String> = s.recv().await.expect("recv");
            // the answer is the last frame: the client writes raw bytes only after it
            s.send(&"ready".to_string()).await.expect("send");
            let (mut raw, k) = s.into_raw(b"data").expect("raw");
            let mut got = [0u8; 5];
            raw.read_exact(&mut got).await.expect("raw read");
            (got, k)
        });
        let mut c = SecureStream::client(a, &key(3), "server")
            .await
            .expect("client auth");
        c.send(&"switch".to_string()).await.expect("send");
        let _: Option<String> = c.recv().await.expect("recv");
        let (mut raw, k) = c.into_raw(b"data").expect("raw");
        raw.write_all(b"bytes").await.expect("raw write");
        let (got, server_key) = server.await.expect("server task");
        assert_eq!(&got, b"bytes");
        assert_eq!(k, server_key, "both ends derive the same key");
        assert_ne!(
            k,
            key(3).tag(&[b"derive", b"data"]),
            "not from the cluster key alone"
        );
    }

    #[test]
    fn unknown_version_is_refused() {
        let bytes = postcard::to_stdvec(&(PROTOCOL_VERSION + 1, "x")).expect("encode");
        let err = decode::<String>(&bytes, "peer").expect_err("version");
        let want = format!("protocol version {}", PROTOCOL_VERSION + 1);
        assert!(err.to_string().contains(&want), "{err}");
        let ok = encode(&"x".to_string()).expect("encode");
        assert_eq!(decode::<String>(&ok, "peer").expect("decode"), "x");
    }
}
