//! Dump and restore throughput of a process with 64 MiB, 256 MiB and 1 GiB resident, against
//! the physical limit measured in the same run on the same disk:
//!
//! - dump reference: `process_vm_readv` of the same memory into a reused buffer + `write` of it
//!   to a file in the same directory (page cache, no fsync), as the dump does;
//! - restore reference: `read` of the image's bytes from the page cache + `process_vm_writev`
//!   into fresh memory of a fresh process, as the restore does;
//! - incremental: a dump after 10% of the pages changed since a pre-dump, and how long it kept
//!   the tree frozen (the downtime a migration's last round would cost).
//!
//! Medians of several runs. CRIU 4.2 times are the figures measured on this kind of machine
//! (shared/FACTS.md), not measured here. Run: `cargo bench -p checkpoint --bench dump_restore`
//! (as root; `CKPT_BENCH_SIZES=64,256` to choose sizes).

use std::fs::File;
use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use checkpoint::{AfterDump, DirSink, DumpOptions, Image, RestoreOptions};
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;

const CHUNK: usize = 1 << 20;

struct Hog {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    addr: usize,
    len: usize,
}

impl Hog {
    fn start(bin: &Path, mib: usize, reserve: bool) -> Hog {
        let mut cmd = Command::new(bin);
        cmd.arg(mib.to_string());
        if reserve {
            cmd.arg("reserve");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("ready line");
        let f: Vec<&str> = line.split_whitespace().collect();
        let addr = usize::from_str_radix(f[2], 16).expect("addr");
        let len = usize::from_str_radix(f[3], 16).expect("len");
        Hog {
            child,
            out,
            addr,
            len,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn cmd(&mut self, c: &str) {
        self.child
            .stdin
            .as_mut()
            .expect("stdin")
            .write_all(c.as_bytes())
            .expect("write");
        let mut line = String::new();
        self.out.read_line(&mut line).expect("reply");
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ =
            nix::sys::signal::killpg(Pid::from_raw(self.pid()), nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn ref_dump(h: &Hog, buf: &mut [u8], path: &Path) -> f64 {
    let t = Instant::now();
    let mut f = File::create(path).expect("create");
    let mut at = 0;
    while at < h.len {
        let n = CHUNK.min(h.len - at);
        let remote = [RemoteIoVec {
            base: h.addr + at,
            len: n,
        }];
        let got = process_vm_readv(
            Pid::from_raw(h.pid()),
            &mut [IoSliceMut::new(&mut buf[..n])],
            &remote,
        )
        .expect("readv");
        f.write_all(&buf[..got]).expect("write");
        at += n;
    }
    drop(f);
    let s = t.elapsed().as_secs_f64();
    std::fs::remove_file(path).expect("rm");
    s
}

fn ref_restore(h: &Hog, buf: &mut [u8], image_pages: &Path) -> f64 {
    let t = Instant::now();
    let mut f = File::open(image_pages).expect("open");
    let mut at = 0;
    while at < h.len {
        let n = CHUNK.min(h.len - at);
        f.read_exact(&mut buf[..n]).expect("read");
        let remote = [RemoteIoVec {
            base: h.addr + at,
            len: n,
        }];
        process_vm_writev(Pid::from_raw(h.pid()), &[IoSlice::new(&buf[..n])], &remote)
            .expect("writev");
        at += n;
    }
    t.elapsed().as_secs_f64()
}

fn build(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/progs/incr.c");
    let out = dir.join("incr");
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc")
        .success();
    assert!(ok, "cc failed");
    out
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipped: the checkpoint benchmark needs root");
        return;
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("CKPT_BENCH_SIZES")
        .unwrap_or_else(|_| "64,256,1024".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let work = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
    let bin = build(work.path());
    let mut buf = vec![1u8; CHUNK];
    // CRIU 4.2 on this kind of machine (shared/FACTS.md): (dump s, restore s), best figures
    let criu = |mib: usize| match mib {
        256 => Some((0.24, 0.22)),
        1024 => Some((1.1, 0.7)),
        _ => None,
    };
    println!("checkpoint dump/restore, medians; reference = same bytes moved by raw syscalls in this run");
    println!(
        "{:>6} | {:>9} {:>9} {:>7} {:>6} | {:>9} {:>9} {:>7} {:>6} | {:>14} {:>14} | {:>9} {:>8} {:>7} {:>8}",
        "size", "ref GB/s", "dump s", "GB/s", "ratio", "ref GB/s", "restore s", "GB/s", "ratio", "CRIU dump x", "CRIU rest. x",
        "incr s", "incr MiB", "/full", "frozen s"
    );
    for &mib in &sizes {
        let runs = if mib >= 1024 { 3 } else { 5 };
        let mut hog = Hog::start(&bin, mib, false);
        let bytes = hog.len;
        let refd: Vec<f64> = (0..runs)
            .map(|_| ref_dump(&hog, &mut buf, &work.path().join("ref.bin")))
            .collect();
        let mut dumps = Vec::new();
        let img_dir = work.path().join(format!("img-{mib}"));
        for _ in 0..runs {
            let _ = std::fs::remove_dir_all(&img_dir);
            let opts = DumpOptions {
                after: AfterDump::Resume,
                ..Default::default()
            };
            let t = Instant::now();
            checkpoint::dump(
                hog.pid(),
                &opts,
                None,
                &mut DirSink::new(&img_dir).expect("sink"),
            )
            .expect("dump");
            dumps.push(t.elapsed().as_secs_f64());
        }
        // incremental: pre-dump, change 10% of the pages, dump against it
        let pre = work.path().join(format!("pre-{mib}"));
        let inc = work.path().join(format!("inc-{mib}"));
        let opts = DumpOptions {
            pre_dump: true,
            tracker_in_process: true,
            ..Default::default()
        };
        checkpoint::dump(
            hog.pid(),
            &opts,
            None,
            &mut DirSink::new(&pre).expect("sink"),
        )
        .expect("pre-dump");
        hog.cmd(&format!("w {}\n", bytes / 4096 / 10));
        let prev = Image::load(&pre).expect("load pre-dump");
        let opts = DumpOptions {
            after: AfterDump::Resume,
            parent_path: Some(format!("../pre-{mib}")),
            ..Default::default()
        };
        let t = Instant::now();
        let out = checkpoint::dump(
            hog.pid(),
            &opts,
            Some(&prev),
            &mut DirSink::new(&inc).expect("sink"),
        )
        .expect("incremental dump");
        let incr_s = t.elapsed().as_secs_f64();
        let incr_mib = out.page_bytes as f64 / (1 << 20) as f64;
        let incr_frozen = out.frozen_for.as_secs_f64();
        drop(prev);
        let pid = hog.pid();
        drop(hog);
        wait_gone(pid);
        let pages_file = img_dir.join(format!("pages-{pid}.rec"));
        let mut restores = Vec::new();
        let mut refr = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let img = Image::load(&img_dir).expect("load");
            let r = checkpoint::restore(&img, &RestoreOptions::default()).expect("restore");
            restores.push(t.elapsed().as_secs_f64());
            let _ =
                nix::sys::signal::kill(Pid::from_raw(r.root), nix::sys::signal::Signal::SIGKILL);
            let _ = r.wait();
            wait_gone(pid);
            let fresh = Hog::start(&bin, mib, true);
            refr.push(ref_restore(&fresh, &mut buf, &pages_file));
        }
        let (rd, d, rr, r) = (median(refd), median(dumps), median(refr), median(restores));
        let (cd, cr) = criu(mib).map_or(("-".into(), "-".into()), |(cd, cr)| {
            (
                format!("{:.2}s {:.1}x", cd, cd / d),
                format!("{:.2}s {:.1}x", cr, cr / r),
            )
        });
        println!(
            "{:>4}Mi | {:>9.2} {:>9.3} {:>7.2} {:>5.0}% | {:>9.2} {:>9.3} {:>7.2} {:>5.0}% | {:>14} {:>14} | {:>9.3} {:>8.1} {:>6.0}% {:>8.3}",
            mib,
            gbps(bytes, rd),
            d,
            gbps(bytes, d),
            100.0 * rd / d,
            gbps(bytes, rr),
            r,
            gbps(bytes, r),
            100.0 * rr / r,
            cd,
            cr,
            incr_s,
            incr_mib,
            100.0 * incr_s / d,
            incr_frozen
        );
        let _ = std::fs::remove_dir_all(&img_dir);
        let _ = std::fs::remove_dir_all(&pre);
        let _ = std::fs::remove_dir_all(&inc);
    }
}
