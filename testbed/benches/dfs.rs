//! The shared file system against the local ext4 and a FUSE passthrough (bindfs), in the same
//! run: sequential write and read, 4 KiB random write and read (fio, buffered, fsync at the
//! end), and a create/stat/unlink loop; the DFS with R=1 and R=3 on a 3-node testbed.
//!
//! Run (root, Debian's `fio` and `bindfs`): `cargo build --release --workspace --bins &&
//! cargo bench -p testbed --bench dfs [-- SEQ_MIB RAND_MIB RUNS]` (defaults 1024, 256, 5).
//! Prints, per workload and target, the median of the runs, their spread (min-max) and the
//! ratio of the median to ext4's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use testbed::{NodeOptions, Testbed};

/// One fio job on `dir`; gives bytes/s (sequential) or IOPS (random).
fn fio(dir: &Path, rw: &str, bs: &str, mib: u64) -> Result<f64> {
    let out = Command::new("fio")
        .args([
            "--name=bench",
            "--ioengine=psync",
            "--end_fsync=1",
            "--output-format=json",
        ])
        .arg(format!("--directory={}", dir.display()))
        .arg(format!("--rw={rw}"))
        .arg(format!("--bs={bs}"))
        .arg(format!("--size={mib}M"))
        .output()
        .context("cannot run fio (apt-get install fio)")?;
    if !out.status.success() {
        bail!(
            "fio {rw} on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).context("fio json")?;
    let side = if rw.contains("read") { "read" } else { "write" };
    let job = &doc["jobs"][0][side];
    Ok(if bs == "4k" {
        job["iops"].as_f64().unwrap_or(0.0)
    } else {
        job["bw_bytes"].as_f64().unwrap_or(0.0) / 1e6
    })
}

/// create + stat + unlink of `n` files: operations per second.
fn metadata(dir: &Path, n: usize) -> Result<f64> {
    let t = Instant::now();
    for i in 0..n {
        let p = dir.join(format!("m{i}"));
        std::fs::File::create(&p).with_context(|| format!("create {}", p.display()))?;
        std::fs::metadata(&p)?;
        std::fs::remove_file(&p)?;
    }
    Ok((3 * n) as f64 / t.elapsed().as_secs_f64())
}

struct Sizes {
    seq_mib: u64,
    rand_mib: u64,
    runs: usize,
}

/// Every workload on `dir`, `runs` times: one list of samples per workload.
fn workloads(dir: &Path, s: &Sizes) -> Result<Vec<Vec<f64>>> {
    let mut samples = vec![Vec::new(); 5];
    for _ in 0..s.runs {
        let run = dir.join("run");
        std::fs::create_dir_all(&run)?;
        samples[0].push(fio(&run, "write", "1M", s.seq_mib)?);
        samples[1].push(fio(&run, "read", "1M", s.seq_mib)?);
        std::fs::remove_dir_all(&run)?;
        std::fs::create_dir_all(&run)?;
        samples[2].push(fio(&run, "randwrite", "4k", s.rand_mib)?);
        samples[3].push(fio(&run, "randread", "4k", s.rand_mib)?);
        std::fs::remove_dir_all(&run)?;
        std::fs::create_dir_all(&run)?;
        samples[4].push(metadata(&run, 500)?);
        std::fs::remove_dir_all(&run)?;
    }
    Ok(samples)
}

fn median_spread(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// A bindfs mount of `src` at `mnt`, unmounted when dropped.
struct Bindfs(PathBuf);

impl Bindfs {
    fn mount(src: &Path, mnt: &Path) -> Result<Bindfs> {
        std::fs::create_dir_all(src)?;
        std::fs::create_dir_all(mnt)?;
        let st = Command::new("bindfs")
            .arg(src)
            .arg(mnt)
            .status()
            .context("cannot run bindfs (apt-get install bindfs)")?;
        if !st.success() {
            bail!("bindfs {} {} failed", src.display(), mnt.display());
        }
        Ok(Bindfs(mnt.to_path_buf()))
    }
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn dfs_samples(base: &Path, replicas: u32, s: &Sizes) -> Result<Vec<Vec<f64>>> {
    let opts = NodeOptions {
        dfs: Some(vec![format!("replicas = {replicas}")]),
        ..NodeOptions::default()
    };
    let tb = Testbed::up_with(&base.join(format!("tb-r{replicas}")), 3, false, opts)?;
    let mnt = tb.dfs_mount(1);
    let ready = testbed::wait_until(std::time::Duration::from_secs(60), || {
        std::fs::write(mnt.join("probe"), b"x").is_ok()
    });
    if !ready {
        bail!("the dfs of the testbed did not come up");
    }
    std::fs::remove_file(mnt.join("probe"))?;
    workloads(&mnt, s)
}

fn main() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: the dfs benchmark mounts file systems and needs root");
        return Ok(());
    }
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let s = Sizes {
        seq_mib: args.first().copied().unwrap_or(1024),
        rand_mib: args.get(1).copied().unwrap_or(256),
        runs: args.get(2).map_or(5, |r| *r as usize),
    };
    let base = std::env::temp_dir().join(format!("ssi-bench-dfs-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    let ext4 = workloads(&base.join("ext4"), &s)?;
    let bind = {
        let _m = Bindfs::mount(&base.join("bindsrc"), &base.join("bind"))?;
        workloads(&base.join("bind"), &s)?
    };
    let r1 = dfs_samples(&base, 1, &s)?;
    let r3 = dfs_samples(&base, 3, &s)?;
    let names = [
        ("sequential write", "MB/s", s.seq_mib),
        ("sequential read", "MB/s", s.seq_mib),
        ("4 KiB random write", "IOPS", s.rand_mib),
        ("4 KiB random read", "IOPS", s.rand_mib),
        ("create+stat+unlink", "ops/s", 0),
    ];
    println!(
        "{:<20} {:>6} {:<8} {:>10} {:>21} {:>8}",
        "workload", "MiB", "target", "median", "spread (min-max)", "vs ext4"
    );
    for (i, (name, unit, mib)) in names.iter().enumerate() {
        let (reference, _, _) = median_spread(&mut ext4[i].clone());
        for (target, samples) in [
            ("ext4", &ext4),
            ("bindfs", &bind),
            ("dfs R=1", &r1),
            ("dfs R=3", &r3),
        ] {
            let (m, lo, hi) = median_spread(&mut samples[i].clone());
            println!(
                "{name:<20} {mib:>6} {target:<8} {m:>10.0} {:>21} {:>7.0}%  {unit}",
                format!("{lo:.0}-{hi:.0}"),
                100.0 * m / reference
            );
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
