//! The migration data path over loopback TCP: image bytes sealed in frames (AES-256-GCM with
//! the key exported from the daemons' TLS session, `migrate::framing`) against the same bytes
//! written raw, with no framing nor crypto at all (a stricter reference than the HMAC frames
//! in clear this path used before). Same sizes, same run: median and spread (min..max) of 7
//! runs and the ratio. Run: `cargo bench -p migrate --bench data_path`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use migrate::framing::{Direction, FrameReader, FrameWriter, Kind};

const RUNS: usize = 7;
const SIZES: [usize; 2] = [64 << 20, 256 << 20];
const KEY: [u8; 32] = [9; 32];

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (s, _) = l.accept().expect("accept");
    (c, s)
}

/// Moves `size` bytes of "pages" (1 MiB writes, as the dumper does) one way; the time from the
/// first write to the last byte read.
fn run(size: usize, sealed: bool) -> Duration {
    let (tx, rx) = pair();
    let reader = std::thread::spawn(move || {
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 20];
        if sealed {
            let mut r = FrameReader::new(&rx, &KEY, Direction::ToTarget);
            loop {
                let n = r.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                got += n;
            }
            assert_eq!(r.finish_image().expect("end"), Kind::FinalEnd);
        } else {
            let mut rx = rx;
            loop {
                let n = rx.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                got += n;
            }
        }
        got
    });
    let page: Vec<u8> = (0..1 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let t = Instant::now();
    if sealed {
        let mut w = FrameWriter::new(&tx, &KEY, Direction::ToTarget);
        for _ in 0..size / page.len() {
            w.write_all(&page).expect("write");
        }
        w.end_image(Kind::FinalEnd).expect("end");
        drop(w);
    } else {
        let mut tx = &tx;
        for _ in 0..size / page.len() {
            tx.write_all(&page).expect("write");
        }
    }
    tx.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let got = reader.join().expect("reader");
    let d = t.elapsed();
    assert_eq!(got, size);
    d
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    println!("migration data path over loopback, median of {RUNS} runs (spread min..max):");
    for size in SIZES {
        let gbps = |d: Duration| size as f64 / d.as_secs_f64() / 1e9;
        let (mut raw, mut sealed) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            raw.push(gbps(run(size, false)));
            sealed.push(gbps(run(size, true)));
        }
        let (r, rlo, rhi) = stats(raw);
        let (s, slo, shi) = stats(sealed);
        println!(
            "  {:>4} MiB  raw TCP       {r:>5.2} GB/s  ({rlo:.2}..{rhi:.2})",
            size >> 20
        );
        println!(
            "  {:>4} MiB  sealed frames {s:>5.2} GB/s  ({slo:.2}..{shi:.2})  ratio {:.2}",
            size >> 20,
            s / r
        );
    }
}
