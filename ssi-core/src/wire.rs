//! Framing of messages between processes: versioned envelopes over length-delimited frames,
//! and the encrypted, mutually authenticated stream daemons use to talk to each other over TCP.
//!
//! ```text
//!  client (node certificate)                 server (node certificate)
//!    |== TLS 1.3 handshake: each checks the other's certificate against the cluster CA ==|
//!    |== frames: [length u32 BE][postcard(version, body)], inside TLS records            ==|
//! ```
//!
//! TLS gives confidentiality, integrity, ordering and replay protection to every frame; a
//! connection can also end its framed exchange and hand its socket to a bulk transfer with a
//! key exported from the TLS session ([`SecureStream::into_raw`]).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use tokio_rustls::TlsStream;

use crate::error::{Error, Result};
use crate::tls::TlsContext;

/// Version of every message format of this crate; a peer speaking another is refused.
pub const PROTOCOL_VERSION: u16 = 6;
/// Largest frame accepted.
pub const MAX_FRAME: usize = 16 << 20;
/// How long the TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A TCP (or any byte) stream between two daemons: TLS 1.3 with node certificates of the
/// cluster CA on both ends, carrying versioned frames.
#[derive(Debug)]
pub struct SecureStream<S> {
    framed: Framed<TlsStream<S>, LengthDelimitedCodec>,
    peer: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SecureStream<S> {
    /// Opens TLS as the connecting side; fails if the peer's certificate is not a node
    /// certificate of our cluster CA, if it refuses ours, or after [`HANDSHAKE_TIMEOUT`].
    pub async fn client(stream: S, tls: &TlsContext, peer: impl Into<String>) -> Result<Self> {
        let peer = peer.into();
        let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
        let fut = connector.connect(TlsContext::node_name(), stream);
        let tls_stream = handshake(fut, &peer).await?;
        Ok(Self::established(TlsStream::Client(tls_stream), peer))
    }

    /// Accepts TLS as the listening side; a peer without a node certificate of our cluster CA
    /// is refused.
    pub async fn server(stream: S, tls: &TlsContext, peer: impl Into<String>) -> Result<Self> {
        let peer = peer.into();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
        let tls_stream = handshake(acceptor.accept(stream), &peer).await?;
        Ok(Self::established(TlsStream::Server(tls_stream), peer))
    }

    /// Opens TLS as the connecting side with a TLS configuration of the caller's (a joining
    /// node has no certificate yet and checks the server its own way, see [`crate::enroll`]).
    pub async fn client_with(
        stream: S,
        config: std::sync::Arc<rustls::ClientConfig>,
        peer: impl Into<String>,
    ) -> Result<Self> {
        let peer = peer.into();
        let connector = tokio_rustls::TlsConnector::from(config);
        let fut = connector.connect(TlsContext::node_name(), stream);
        let tls_stream = handshake(fut, &peer).await?;
        Ok(Self::established(TlsStream::Client(tls_stream), peer))
    }

    /// Accepts TLS as the listening side and says what the peer came for: a node (it showed a
    /// node certificate of our cluster CA, else it is refused) or a new node asking to join
    /// (it asked for ALPN [`crate::enroll::ALPN`]; it shows no certificate and may only ask
    /// to enroll).
    pub async fn accept(
        stream: S,
        tls: &TlsContext,
        peer: impl Into<String>,
    ) -> Result<Accepted<S>> {
        let peer = peer.into();
        let fut = async {
            let start =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                    .await?;
            let enroll = start
                .client_hello()
                .alpn()
                .is_some_and(|mut protos| protos.any(|p| p == crate::enroll::ALPN));
            let config = if enroll {
                tls.enroll.clone()
            } else {
                tls.server.clone()
            };
            Ok::<_, std::io::Error>((enroll, start.into_stream(config).await?))
        };
        let (enroll, tls_stream) = handshake(fut, &peer).await?;
        let conn = Self::established(TlsStream::Server(tls_stream), peer);
        Ok(if enroll {
            Accepted::Enroll(conn)
        } else {
            Accepted::Node(conn)
        })
    }

    fn established(stream: TlsStream<S>, peer: String) -> Self {
        SecureStream {
            framed: Framed::new(stream, codec()),
            peer,
        }
    }

    /// The peer this stream talks to, for messages.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        send_frame(&mut self.framed, msg, &self.peer).await
    }

    /// Receives one message; `Ok(None)` when the peer closed the connection.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        recv_frame(&mut self.framed, &self.peer).await
    }

    /// Ends the framed exchange and hands back the byte stream with a 32-byte key exported
    /// from the TLS session under `label` (RFC 8446 section 7.5), for a bulk transfer that
    /// seals its own frames: both ends derive the same key, it never crosses the network, and
    /// it is bound to this connection's handshake. Fails if bytes past the last frame were
    /// read already or are still waiting to be sent: switch after a request and its answer,
    /// before either side writes raw bytes.
    pub fn into_raw(self, label: &[u8]) -> Result<(S, [u8; 32])> {
        let peer = self.peer;
        let beyond = || Error::Malformed {
            peer: peer.clone(),
            reason: "bytes beyond the last frame before the raw stream".into(),
        };
        let parts = self.framed.into_parts();
        if !parts.read_buf.is_empty() || !parts.write_buf.is_empty() {
            return Err(beyond());
        }
        let (io, mut conn): (S, rustls::Connection) = match parts.io {
            TlsStream::Client(s) => {
                let (io, c) = s.into_inner();
                (io, c.into())
            }
            TlsStream::Server(s) => {
                let (io, c) = s.into_inner();
                (io, c.into())
            }
        };
        let state = conn.process_new_packets().map_err(|e| Error::Malformed {
            peer: peer.clone(),
            reason: e.to_string(),
        })?;
        if state.plaintext_bytes_to_read() > 0 || state.tls_bytes_to_write() > 0 {
            return Err(beyond());
        }
        let full_label = [b"EXPORTER-".as_slice(), label].concat();
        let key = conn
            .export_keying_material([0u8; 32], &full_label, None)
            .map_err(|e| Error::Malformed {
                peer: peer.clone(),
                reason: format!("cannot export a key: {e}"),
            })?;
        Ok((io, key))
    }

    /// Splits the stream into a sending and a receiving half, for full-duplex use.
    pub fn split(self) -> (SecureSender<S>, SecureReceiver<S>) {
        let (sink, stream) = self.framed.split();
        (
            SecureSender {
                sink,
                peer: self.peer.clone(),
            },
            SecureReceiver {
                stream,
                peer: self.peer,
            },
        )
    }
}

/// What an accepted connection is for (see [`SecureStream::accept`]).
#[derive(Debug)]
pub enum Accepted<S> {
    /// Another node of the cluster, authenticated by its certificate.
    Node(SecureStream<S>),
    /// A machine with a join token: unauthenticated until it proves the token.
    Enroll(SecureStream<S>),
}

/// Runs a TLS handshake with a deadline; its failure says whose certificate was refused.
async fn handshake<F, T>(fut: F, peer: &str) -> Result<T>
where
    F: std::future::Future<Output = std::io::Result<T>>,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, fut).await {
        Err(_) => Err(Error::Peer {
            peer: peer.into(),
            reason: "TLS handshake timed out".into(),
        }),
        Ok(Err(e)) => Err(Error::Auth {
            peer: peer.into(),
            reason: handshake_failure(&e),
        }),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Says in words why a TLS handshake failed, naming the cluster CA where it is the cause.
fn handshake_failure(e: &std::io::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return format!("TLS handshake: {e}");
    };
    match tls {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "its certificate is not from our cluster CA".into()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName) => {
            "its certificate is not a node certificate".into()
        }
        rustls::Error::NoCertificatesPresented => "it showed no certificate".into(),
        rustls::Error::AlertReceived(
            a @ (A::UnknownCA | A::BadCertificate | A::CertificateUnknown | A::AccessDenied),
        ) => format!(
            "refused by peer ({a:?}): it does not accept our certificate (another cluster CA?)"
        ),
        other => format!("TLS handshake: {other}"),
    }
}

/// The sending half of a [`SecureStream`].
#[derive(Debug)]
pub struct SecureSender<S> {
    sink: SplitSink<Framed<TlsStream<S>, LengthDelimitedCodec>, Bytes>,
    peer: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SecureSender<S> {
    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        send_frame(&mut self.sink, msg, &self.peer).await
    }

    /// Sends what is buffered and closes this direction (TLS close_notify, then a TCP
    /// half-close): the peer's receiver sees the end (`Ok(None)`) while the other direction
    /// stays open.
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
    stream: SplitStream<Framed<TlsStream<S>, LengthDelimitedCodec>>,
    peer: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SecureReceiver<S> {
    /// Receives one message; `Ok(None)` when the peer closed the connection.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        recv_frame(&mut self.stream, &self.peer).await
    }
}

async fn send_frame<K, T>(sink: &mut K, msg: &T, peer: &str) -> Result<()>
where
    K: futures::Sink<Bytes, Error = std::io::Error> + Unpin,
    T: Serialize,
{
    sink.send(Bytes::from(encode(msg)?))
        .await
        .map_err(|e| Error::net(format!("send to {peer}"), e))
}

/// One frame, decoded. A peer that closes the TCP connection without a TLS close_notify has
/// closed it as far as we care (daemons drop finished connections without one): every frame
/// delivered was authenticated, and a frame cut short is not delivered. So an attacker on the
/// path can end a connection early (as a TCP reset would) but never alter what it carried.
async fn recv_frame<K, T>(stream: &mut K, peer: &str) -> Result<Option<T>>
where
    K: futures::Stream<Item = std::io::Result<BytesMut>> + Unpin,
    T: DeserializeOwned,
{
    match stream.next().await {
        None => Ok(None),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Some(Err(e)) => Err(Error::net(format!("receive from {peer}"), e)),
        Some(Ok(frame)) => decode(&frame, peer).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::tests::context;

    #[tokio::test]
    async fn nodes_of_one_ca_talk_both_ways() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, cb) = (
            context(dir.path(), "ca", "a"),
            context(dir.path(), "ca", "b"),
        );
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let mut s = SecureStream::server(b, &cb, "client")
                .await
                .expect("server handshake");
            let got: Option<String> = s.recv().await.expect("recv");
            s.send(&format!("echo {}", got.unwrap_or_default()))
                .await
                .expect("send");
        });
        let mut c = SecureStream::client(a, &ca, "server")
            .await
            .expect("client handshake");
        c.send(&"hi".to_string()).await.expect("send");
        let back: Option<String> = c.recv().await.expect("recv");
        assert_eq!(back.as_deref(), Some("echo hi"));
        server.await.expect("server task");
        assert_eq!(c.recv::<String>().await.expect("end"), None, "closed");
    }

    #[tokio::test]
    async fn a_node_of_another_ca_is_refused_on_both_sides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = context(dir.path(), "ca", "seed");
        let theirs = context(dir.path(), "other-ca", "intruder");
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move { SecureStream::server(b, &ours, "intruder").await });
        let cerr = SecureStream::client(a, &theirs, "seed")
            .await
            .expect_err("client must fail")
            .to_string();
        assert!(cerr.contains("not from our cluster CA"), "{cerr}");
        let serr = server
            .await
            .expect("task")
            .expect_err("server must refuse")
            .to_string();
        assert!(serr.contains("cluster CA"), "{serr}");
    }

    #[tokio::test]
    async fn a_certificate_of_the_ca_that_is_not_a_node_s_is_refused() {
        use rustls::pki_types::pem::PemObject;
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = context(dir.path(), "ca", "seed");
        // what the CA will issue to a user: signed by it, but not valid for the node name
        let ca_dir = dir.path().join("ca");
        let ca_key = rcgen::KeyPair::from_pem(
            &std::fs::read_to_string(ca_dir.join(crate::pki::CA_KEY)).expect("ca key"),
        )
        .expect("parse");
        let ca_pem = std::fs::read_to_string(ca_dir.join(crate::pki::CA_CERT)).expect("ca");
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("issuer");
        let user_key = rcgen::KeyPair::generate().expect("key");
        let user = rcgen::CertificateParams::new(vec!["alice".to_string()])
            .expect("params")
            .signed_by(&user_key, &issuer)
            .expect("sign");
        let ca_der =
            rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca der");
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(user_key.serialize_pem().as_bytes())
                .expect("key der");
        let alice =
            TlsContext::new(vec![ca_der], vec![user.der().clone()], key).expect("alice context");
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move { SecureStream::server(b, &ours, "alice").await });
        let _ = SecureStream::client(a, &alice, "seed").await;
        let serr = server
            .await
            .expect("task")
            .expect_err("server must refuse")
            .to_string();
        assert!(serr.contains("not a node certificate"), "{serr}");
    }

    #[tokio::test]
    async fn raw_streams_share_an_exported_key() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, cb) = (
            context(dir.path(), "ca", "a"),
            context(dir.path(), "ca", "b"),
        );
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let mut s = SecureStream::server(b, &cb, "client")
                .await
                .expect("server handshake");
            let _: Option<String> = s.recv().await.expect("recv");
            // the answer is the last frame: the client writes raw bytes only after it
            s.send(&"ready".to_string()).await.expect("send");
            let (mut raw, k) = s.into_raw(b"data").expect("raw");
            let mut got = [0u8; 5];
            raw.read_exact(&mut got).await.expect("raw read");
            (got, k)
        });
        let mut c = SecureStream::client(a, &ca, "server")
            .await
            .expect("client handshake");
        c.send(&"switch".to_string()).await.expect("send");
        let _: Option<String> = c.recv().await.expect("recv");
        let (mut raw, k) = c.into_raw(b"data").expect("raw");
        raw.write_all(b"bytes").await.expect("raw write");
        let (got, server_key) = server.await.expect("server task");
        assert_eq!(&got, b"bytes");
        assert_eq!(k, server_key, "both ends derive the same key");
        assert_ne!(k, [0u8; 32]);
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
