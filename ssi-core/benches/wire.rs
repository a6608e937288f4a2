//! What TLS costs between daemons, over loopback TCP, against the same exchange in clear:
//!
//! * a request and its answer on a new connection (what `ssi run`, `ps`, `kill` ... do between
//!   daemons): plaintext frames, TLS resumed (the daemon's shared context), TLS full handshake;
//! * bulk frames of 1 MiB (session output, handed-over input) through a `SecureStream`.
//!
//! Prints median and spread (min..max) of 7 runs and the ratio to plaintext measured in the
//! same run. Run: `cargo bench -p ssi-core --bench wire`.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use ssi_core::tls::TlsContext;
use ssi_core::wire::{codec, SecureStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

const RUNS: usize = 7;
const ROUND_TRIPS: usize = 200;
const BULK: usize = 256 << 20;
const CHUNK: usize = 1 << 20;

fn context(dir: &std::path::Path, node: &str) -> TlsContext {
    let ca = dir.join("ca");
    if !ca.join("ca.key").exists() {
        ssi_core::pki::init_ca(&ca, "bench").expect("ca");
    }
    let out = dir.join(node);
    ssi_core::pki::issue_node_cert(&ca, &out, node).expect("issue");
    TlsContext::load(&ssi_core::pki::TlsFiles {
        ca: ca.join("ca.pem"),
        cert: out.join("node.pem"),
        key: out.join("node.key"),
    })
    .expect("load")
}

#[derive(Clone, Copy)]
enum Mode {
    Plain,
    Tls,
}

/// A server answering each request frame with one answer frame, for every connection.
async fn serve(listener: TcpListener, mode: Mode, tls: TlsContext) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        s.set_nodelay(true).ok();
        let tls = tls.clone();
        tokio::spawn(async move {
            match mode {
                Mode::Plain => {
                    let mut f = Framed::new(s, codec());
                    while let Some(Ok(req)) = f.next().await {
                        if f.send(req.freeze()).await.is_err() {
                            return;
                        }
                    }
                }
                Mode::Tls => {
                    let Ok(mut c) = SecureStream::server(s, &tls, "bench").await else {
                        return;
                    };
                    while let Ok(Some(req)) = c.recv::<serde_bytes::ByteBuf>().await {
                        if c.send(&req).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// Median time of one connect + request + answer, over `ROUND_TRIPS`.
async fn round_trip(
    addr: std::net::SocketAddr,
    mode: Mode,
    tls: &TlsContext,
    fresh: bool,
) -> Duration {
    let req = serde_bytes::ByteBuf::from(vec![7u8; 200]);
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        let s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).ok();
        match mode {
            Mode::Plain => {
                let mut f = Framed::new(s, codec());
                f.send(bytes::Bytes::from(req.to_vec()))
                    .await
                    .expect("send");
                f.next().await.expect("answer").expect("frame");
            }
            Mode::Tls => {
                // a context of its own: no session to resume, the full handshake
                let ctx = if fresh {
                    fresh_client(tls)
                } else {
                    tls.clone()
                };
                let mut c = SecureStream::client(s, &ctx, "bench").await.expect("tls");
                c.send(&req).await.expect("send");
                c.recv::<serde_bytes::ByteBuf>()
                    .await
                    .expect("recv")
                    .expect("answer");
            }
        }
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn fresh_client(tls: &TlsContext) -> TlsContext {
    let mut client = (*tls.client).clone();
    client.resumption = rustls::client::Resumption::disabled();
    TlsContext {
        client: std::sync::Arc::new(client),
        ..tls.clone()
    }
}

/// Time to move `BULK` bytes in 1 MiB frames one way.
async fn bulk(mode: Mode, tls: &TlsContext) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server_tls = tls.clone();
    let sink = tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        let mut got = 0usize;
        match mode {
            Mode::Plain => {
                let mut s = s;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = s.read(&mut buf).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
            }
            Mode::Tls => {
                let mut c = SecureStream::server(s, &server_tls, "bench")
                    .await
                    .expect("tls");
                while let Some(b) = c.recv::<serde_bytes::ByteBuf>().await.expect("recv") {
                    got += b.len();
                }
            }
        }
        got
    });
    let s = TcpStream::connect(addr).await.expect("connect");
    let chunk = serde_bytes::ByteBuf::from(vec![0x5au8; CHUNK]);
    let t = Instant::now();
    // The client's read half lives until the sink has read everything: closing a socket with
    // unread bytes (TLS 1.3 session tickets) resets the connection under the sink.
    let mut keep = None;
    match mode {
        Mode::Plain => {
            let mut s = s;
            for _ in 0..BULK / CHUNK {
                s.write_all(&chunk).await.expect("write");
            }
            s.shutdown().await.expect("shutdown");
        }
        Mode::Tls => {
            let c = SecureStream::client(s, tls, "bench").await.expect("tls");
            let (mut tx, rx) = c.split();
            for _ in 0..BULK / CHUNK {
                tx.send(&chunk).await.expect("send");
            }
            tx.close().await.expect("close");
            keep = Some(rx);
        }
    }
    let got = sink.await.expect("sink");
    let d = t.elapsed();
    drop(keep);
    assert!(got >= BULK, "received {got} of {BULK}");
    d
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = context(dir.path(), "n1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut addrs = Vec::new();
        for mode in [Mode::Plain, Mode::Tls] {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addrs.push(l.local_addr().expect("addr"));
            tokio::spawn(serve(l, mode, tls.clone()));
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let (mut plain, mut resumed, mut full) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            plain.push(us(round_trip(addrs[0], Mode::Plain, &tls, false).await));
            resumed.push(us(round_trip(addrs[1], Mode::Tls, &tls, false).await));
            full.push(us(round_trip(addrs[1], Mode::Tls, &tls, true).await));
        }
        let (p, ..) = stats(plain.clone());
        println!("connect + request + answer, {ROUND_TRIPS} per run, median of {RUNS} runs (spread min..max):");
        for (name, v) in [("plaintext", plain), ("TLS resumed", resumed), ("TLS full handshake", full)] {
            let (m, lo, hi) = stats(v);
            println!("  {name:<20} {m:>8.0} us  ({lo:.0}..{hi:.0})  +{:.0} us vs plaintext", m - p);
        }
        let gbps = |d: Duration| BULK as f64 / d.as_secs_f64() / 1e9;
        let (mut bp, mut bt) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            bp.push(gbps(bulk(Mode::Plain, &tls).await));
            bt.push(gbps(bulk(Mode::Tls, &tls).await));
        }
        let (p, plo, phi) = stats(bp);
        let (t, tlo, thi) = stats(bt);
        println!("bulk {} MiB in 1 MiB frames, median of {RUNS} runs:", BULK >> 20);
        println!("  plaintext TCP        {p:>6.2} GB/s  ({plo:.2}..{phi:.2})");
        println!("  SecureStream (TLS)   {t:>6.2} GB/s  ({tlo:.2}..{thi:.2})  ratio {:.2}", t / p);
    });
}
