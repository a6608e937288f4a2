//! Dump and restore of a process with 256 MiB and 1 GiB resident (`progs/resident.c`),
//! by this crate and by CRIU, against references measured in the same run on the same memory
//! and disk (see `refs.rs`): a serial copy loop and a two-thread read+write pipeline, the
//! physical limit of the syscalls a dump or a restore must at least make.
//!
//! Every measurement starts with the page cache dropped, the image to restore read back in
//! for a hot one: what the machine's other work left in memory would otherwise make the fresh
//! memory of a dump's page cache or a restore's process cost a reclaim, more or less at random.
//!
//! Figures, each over `runs` runs (median and min-max), in seconds:
//! - dump, image in the page cache (no fsync);
//! - dump + fsync of every image file (a durable image);
//! - restore from a hot page cache (the image just written);
//! - restore from a cold cache (`sync; echo 3 > /proc/sys/vm/drop_caches` before each);
//! - incremental dump after a tenth of the pages changed since a pre-dump (this crate only:
//!   CRIU's pre-dump needs soft-dirty bits, which this kernel lacks), against the full dump.
//!
//! CRIU is `$SSI_CRIU`, else `criu` on `PATH`; without it the CRIU columns say "not
//! compared". It dumps with `--shell-job --leave-running` (as this crate's dump resumes the
//! process) and restores with `--shell-job -d`; both restore the process under its own pid.
//!
//! Run as root: `cargo bench -p checkpoint --bench dump_restore [-- SIZES_MIB RUNS]`
//! (defaults 256,1024 and 5).

mod criu;
mod disk;
mod refs;
mod resident;

use std::path::{Path, PathBuf};
use std::time::Instant;

use checkpoint::{AfterDump, DirSink, DumpOptions, Image, RestoreOptions};
use criu::Criu;
use refs::Copier;
use resident::{kill_and_wait, Resident};
use testbed::stats::Spread;

/// Seconds of each run of one figure, for each way of doing it.
#[derive(Default)]
struct Figure {
    serial: Vec<f64>,
    pipeline: Vec<f64>,
    ours: Vec<f64>,
    criu: Vec<f64>,
}

struct Bench {
    bin: PathBuf,
    work: PathBuf,
    criu: Option<Criu>,
    runs: usize,
}

/// The images the dumps left, for the restores.
struct Images {
    ours: PathBuf,
    criu: PathBuf,
    /// The file of our image holding the pages (its largest), read by the restore references.
    pages: PathBuf,
}

fn largest_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("image dir")
        .filter_map(|e| e.ok())
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .map(|e| e.path())
        .expect("an image file")
}

fn our_dump(pid: i32, dir: &Path, opts: &DumpOptions, parent: Option<&Image>) -> f64 {
    let _ = std::fs::remove_dir_all(dir);
    let t = Instant::now();
    checkpoint::dump(pid, opts, parent, &mut DirSink::new(dir).expect("sink")).expect("dump");
    t.elapsed().as_secs_f64()
}

fn resume() -> DumpOptions {
    DumpOptions {
        after: AfterDump::Resume,
        ..Default::default()
    }
}

/// Dumps of one process, each kind once per run, interleaved so that a disturbance of the
/// machine hits all of them alike. Returns (page cache, durable) figures and the last images.
fn dumps(b: &Bench, mib: usize) -> (Figure, Figure, Images) {
    let (mut cached, mut durable) = (Figure::default(), Figure::default());
    let p = Resident::start(&b.bin, &b.work, mib, false);
    let imgs = Images {
        ours: b.work.join("ours"),
        criu: b.work.join("criu"),
        pages: PathBuf::new(),
    };
    let reference = b.work.join("reference.bin");
    for _ in 0..b.runs {
        for (how, page, sync) in [
            (Copier::SerialLoop, &mut cached.serial, &mut durable.serial),
            (
                Copier::Pipeline,
                &mut cached.pipeline,
                &mut durable.pipeline,
            ),
        ] {
            let (w, f) = refs::copy_out(how, p.pid(), p.addr, p.len, &reference);
            page.push(w);
            sync.push(w + f);
            std::fs::remove_file(&reference).expect("rm reference file");
        }
        disk::drop_caches();
        let d = our_dump(p.pid(), &imgs.ours, &resume(), None);
        cached.ours.push(d);
        durable.ours.push(d + disk::fsync_dir(&imgs.ours));
        if let Some(c) = &b.criu {
            disk::drop_caches();
            let d = c.dump(p.pid(), &imgs.criu);
            cached.criu.push(d);
            durable.criu.push(d + disk::fsync_dir(&imgs.criu));
        }
    }
    let pid = p.pid();
    drop(p);
    kill_and_wait(pid);
    let pages = largest_file(&imgs.ours);
    (cached, durable, Images { pages, ..imgs })
}

/// One restore of each kind, from a hot cache (caches dropped, the images read back) or
/// (`cold`) after dropping the caches.
fn restore_once(b: &Bench, mib: usize, imgs: &Images, cold: bool, fig: &mut Figure) {
    let settle = || {
        disk::drop_caches();
        if !cold {
            disk::warm(&imgs.ours);
            if b.criu.is_some() {
                disk::warm(&imgs.criu);
            }
        }
    };
    for how in [Copier::SerialLoop, Copier::Pipeline] {
        let fresh = Resident::start(&b.bin, &b.work, mib, true);
        settle();
        let s = refs::copy_in(how, &imgs.pages, fresh.pid(), fresh.addr, fresh.len);
        match how {
            Copier::SerialLoop => fig.serial.push(s),
            Copier::Pipeline => fig.pipeline.push(s),
        }
    }
    settle();
    let t = Instant::now();
    let img = Image::load(&imgs.ours).expect("load image");
    let r = checkpoint::restore(&img, &RestoreOptions::default()).expect("restore");
    fig.ours.push(t.elapsed().as_secs_f64());
    drop(img);
    kill_and_wait(r.root);
    if let Some(c) = &b.criu {
        settle();
        fig.criu.push(c.restore(&imgs.criu));
        // CRIU restores the process under its pid, which is our image's root too.
        kill_and_wait(r.root);
    }
}

/// Incremental dumps, each of a fresh process: pre-dump, a tenth of the pages rewritten,
/// dump against the pre-dump. Returns (seconds, MiB of pages written, seconds frozen).
fn incremental(b: &Bench, mib: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut secs, mut mibs, mut frozen) = (Vec::new(), Vec::new(), Vec::new());
    let (pre, inc) = (b.work.join("pre"), b.work.join("inc"));
    for _ in 0..b.runs {
        let p = Resident::start(&b.bin, &b.work, mib, false);
        let opts = DumpOptions {
            pre_dump: true,
            tracker_in_process: true,
            ..Default::default()
        };
        our_dump(p.pid(), &pre, &opts, None);
        p.rewrite_tenth();
        let prev = Image::load(&pre).expect("load pre-dump");
        let opts = DumpOptions {
            parent_path: Some("../pre".into()),
            ..resume()
        };
        let _ = std::fs::remove_dir_all(&inc);
        disk::drop_caches();
        let t = Instant::now();
        let out = checkpoint::dump(
            p.pid(),
            &opts,
            Some(&prev),
            &mut DirSink::new(&inc).expect("sink"),
        )
        .expect("incremental dump");
        secs.push(t.elapsed().as_secs_f64());
        mibs.push(out.page_bytes as f64 / f64::from(1 << 20));
        frozen.push(out.frozen_for.as_secs_f64());
    }
    (secs, mibs, frozen)
}

fn spread(v: &[f64]) -> Option<Spread> {
    Spread::of(v)
}

/// One markdown row: references, ours, CRIU, and the ratios of medians.
fn row(mib: usize, what: &str, f: &Figure, bytes: usize) {
    let cell = |v: &[f64]| spread(v).map_or("-".into(), |s| s.show(3));
    let (ours, limit) = (spread(&f.ours), spread(&f.pipeline));
    let gbps = ours.map_or(0.0, |o| bytes as f64 / o.median / 1e9);
    let vs_limit = match (ours, limit) {
        (Some(o), Some(l)) => format!("{:.0}%", 100.0 * l.ratio_to(&o)),
        _ => "-".into(),
    };
    let (criu, vs_criu) = match (spread(&f.criu), ours) {
        (Some(c), Some(o)) => (c.show(3), format!("{:.2}x", c.ratio_to(&o))),
        _ => ("not compared".into(), "-".into()),
    };
    println!(
        "| {mib} MiB | {what} | {} | {} | {} ({gbps:.2} GB/s) | {vs_limit} | {criu} | {vs_criu} |",
        cell(&f.serial),
        cell(&f.pipeline),
        cell(&f.ours),
    );
}

fn args() -> (Vec<usize>, usize) {
    let a: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let sizes = a.first().map_or_else(
        || vec![256, 1024],
        |s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
    );
    let runs = a.get(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    (sizes, runs.max(1))
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipped: the checkpoint benchmark needs root");
        return;
    }
    let (sizes, runs) = args();
    // CRIU's detached restores become our children, so that we reap them: this machine's
    // init may not, and a zombie keeps the pid the next restore needs.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let tmp = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
    let b = Bench {
        bin: resident::build(tmp.path()),
        work: tmp.path().to_path_buf(),
        criu: Criu::find(),
        runs,
    };
    println!(
        "dump/restore, {runs} runs each, seconds: median (min-max); CRIU: {}",
        b.criu
            .as_ref()
            .map_or("not found (set SSI_CRIU or put criu on PATH)", |c| &c
                .version)
    );
    println!("| size | figure | serial copy loop | two-thread limit | ssi checkpoint | limit/ours | CRIU 4.2 | CRIU/ours |");
    println!("|---|---|---|---|---|---|---|---|");
    for &mib in &sizes {
        let bytes = mib << 20;
        let (cached, durable, imgs) = dumps(&b, mib);
        row(mib, "dump, page cache", &cached, bytes);
        row(mib, "dump + fsync", &durable, bytes);
        let (mut hot, mut cold) = (Figure::default(), Figure::default());
        for _ in 0..runs {
            restore_once(&b, mib, &imgs, false, &mut hot);
            restore_once(&b, mib, &imgs, true, &mut cold);
        }
        row(mib, "restore, hot cache", &hot, bytes);
        row(mib, "restore, cold cache", &cold, bytes);
        let (secs, mibs, frozen) = incremental(&b, mib);
        let (s, full) = (spread(&secs), spread(&cached.ours));
        if let (Some(s), Some(full), Some(m), Some(fz)) = (s, full, spread(&mibs), spread(&frozen))
        {
            println!(
                "| {mib} MiB | incremental dump (10% rewritten) | - | - | {} s, {:.1} MiB, frozen {} ms | {:.0}% of full dump | not possible here (no soft-dirty) | - |",
                s.show(3),
                m.median,
                fz.scaled(1e3).show(0),
                100.0 * s.ratio_to(&full)
            );
        }
        for d in [&imgs.ours, &imgs.criu] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
