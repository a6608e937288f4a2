//! End-to-end: incremental dumps with dirty-page tracking (uffd-wp + PAGEMAP_SCAN), as a
//! library pre-copy on a live tree (directories and streams) and as separate dumper runs
//! (tracker left in the process). Soft-dirty is tried too and skipped where the kernel has none.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use checkpoint::track::softdirty::SoftDirtyTracker;
use checkpoint::track::{DirtyTracker, TrackedRange};
use checkpoint::{AfterDump, DirSink, DumpOptions, Image, Periodic, PreCopy, StreamSink};
use common::*;

const TOTAL: u64 = 32 << 20;

fn cmd(p: &mut Prog, line: &str, reply: &str) -> String {
    p.stdin
        .as_mut()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    p.expect(reply)
}

#[test]
fn precopy_rounds_into_directories() {
    require_root!();
    let mut p = Prog::start(Command::new(build("incr", &[])));
    p.expect("ready");
    let base = tempfile::tempdir().unwrap();
    let d = |n: &str| base.path().join(n);
    let (mut pc, first) = PreCopy::start(p.pid, &mut DirSink::new(d("r0")).unwrap()).unwrap();
    println!("round 0: {} bytes", first.page_bytes);
    assert!(first.page_bytes >= TOTAL, "first round copies everything");
    cmd(&mut p, "w 819\n", "done"); // 10% of the pages
    let r1 = pc
        .round(&mut DirSink::new(d("r1")).unwrap(), Some("../r0".into()))
        .unwrap();
    println!(
        "round 1: {} bytes written, {} in parent",
        r1.page_bytes, r1.parent_bytes
    );
    // 819 writes hit 819 distinct pages; the stack, stdio and libc data add a few dozen
    assert!(r1.page_bytes <= (819 + 64) * 4096, "{}", r1.page_bytes);
    assert!(r1.page_bytes >= 700 * 4096, "{}", r1.page_bytes);
    assert!(r1.parent_bytes >= TOTAL - 819 * 4096);
    cmd(&mut p, "w 40\n", "done");
    let fin = pc
        .finish(
            &DumpOptions {
                parent_path: Some("../r1".into()),
                ..Default::default()
            },
            &mut DirSink::new(d("final")).unwrap(),
        )
        .unwrap();
    println!(
        "final: {} bytes written, {} in parent",
        fin.page_bytes, fin.parent_bytes
    );
    assert!(fin.page_bytes <= (40 + 64) * 4096, "{}", fin.page_bytes);
    p.reap();
    let img = Image::load(d("final")).unwrap();
    assert!(
        img.parent().and_then(|p| p.parent()).is_some(),
        "chain of three images"
    );
    wait_gone(&img.inventory.pids);
    let mut r = restore(&img).unwrap();
    r.send("check\n");
    let (code, out) = r.finish();
    assert!(out.contains("memory ok"), "{out}");
    assert_eq!(code, 0);
}

/// Periodic checkpoints of a tree that runs on: the first image is whole, the next ones hold
/// only what was written since, a chain can start over whole, and the last image of a chain
/// restores the memory as it was at that checkpoint.
#[test]
fn periodic_checkpoints_are_incremental_and_restorable() {
    require_root!();
    let mut p = Prog::start(Command::new(build("incr", &[])));
    p.expect("ready");
    let base = tempfile::tempdir().unwrap();
    let d = |n: &str| base.path().join(n);
    let mut per = Periodic::new(p.pid);
    let c0 = per
        .checkpoint(&mut DirSink::new(d("c0")).unwrap(), None)
        .unwrap();
    assert!(
        c0.page_bytes >= TOTAL,
        "the first is whole: {}",
        c0.page_bytes
    );
    cmd(&mut p, "w 300\n", "done");
    let c1 = per
        .checkpoint(&mut DirSink::new(d("c1")).unwrap(), Some("../c0".into()))
        .unwrap();
    assert!(c1.page_bytes <= (300 + 64) * 4096, "{}", c1.page_bytes);
    assert!(c1.page_bytes >= 250 * 4096, "{}", c1.page_bytes);
    cmd(&mut p, "w 20\n", "done");
    let c2 = per
        .checkpoint(&mut DirSink::new(d("c2")).unwrap(), Some("../c1".into()))
        .unwrap();
    assert!(c2.page_bytes <= (20 + 64) * 4096, "{}", c2.page_bytes);
    // a new chain: whole again, then incremental again
    let c3 = per
        .checkpoint(&mut DirSink::new(d("c3")).unwrap(), None)
        .unwrap();
    assert!(c3.page_bytes >= TOTAL, "rebased: {}", c3.page_bytes);
    cmd(&mut p, "w 10\n", "done");
    let c4 = per
        .checkpoint(&mut DirSink::new(d("c4")).unwrap(), Some("../c3".into()))
        .unwrap();
    assert!(c4.page_bytes <= (10 + 64) * 4096, "{}", c4.page_bytes);
    drop(per);
    // the tree ran on throughout; kill it and bring back the second chain's last image
    cmd(&mut p, "w 5\n", "done");
    kill_group(p.pid);
    p.reap();
    let img = Image::load(d("c4")).unwrap();
    assert!(img.parent().is_some(), "c4 is chained to c3");
    wait_gone(&img.inventory.pids);
    let mut r = restore(&img).unwrap();
    r.send("check\n");
    let (code, out) = r.finish();
    assert!(out.contains("memory ok"), "{out}");
    assert_eq!(code, 0);
}

#[test]
fn precopy_rounds_over_streams() {
    require_root!();
    let mut p = Prog::start(Command::new(build("incr", &[])));
    p.expect("ready");
    let mut s0 = StreamSink::new(Vec::new());
    let (mut pc, _) = PreCopy::start(p.pid, &mut s0).unwrap();
    cmd(&mut p, "w 300\n", "done");
    let mut s1 = StreamSink::new(Vec::new());
    pc.round(&mut s1, None).unwrap();
    cmd(&mut p, "w 20\n", "done");
    let mut s2 = StreamSink::new(Vec::new());
    pc.finish(&DumpOptions::default(), &mut s2).unwrap();
    p.reap();
    let bytes2 = s2.into_inner();
    assert!(
        bytes2.len() < 1 << 20,
        "final delta is small: {}",
        bytes2.len()
    );
    // the three images back to back on one byte stream, as over one TCP connection
    let mut wire = s0.into_inner();
    wire.extend(s1.into_inner());
    wire.extend(&bytes2);
    let mut r = &wire[..];
    let i0 = Image::read_stream(&mut r, None).unwrap();
    let i1 = Image::read_stream(&mut r, Some(i0)).unwrap();
    let i2 = Image::read_stream(&mut r, Some(i1)).unwrap();
    assert!(r.is_empty(), "each image reads exactly its own records");
    wait_gone(&i2.inventory.pids);
    let mut r = restore(&i2).unwrap();
    r.send("check\n");
    let (code, out) = r.finish();
    assert!(out.contains("memory ok"), "{out}");
    assert_eq!(code, 0);
}

/// Pre-copy of a tree that forks, execs and reaps children and starts threads all the time:
/// processes that end between rounds leave the next image, new ones enter it whole, one that
/// execs is saved whole again, and the restored tree goes on with every child accounted for.
#[test]
fn precopy_of_a_tree_that_forks_execs_and_reaps() {
    require_root!();
    let mut p = Prog::start(Command::new(build("churn", &[])));
    p.expect("ready");
    let mut s0 = StreamSink::new(Vec::new());
    let (mut pc, first) = PreCopy::start(p.pid, &mut s0).unwrap();
    let mut wire = s0.into_inner();
    let mut seen: std::collections::HashSet<i32> = first.pids.iter().copied().collect();
    let mut rounds = 1;
    // rounds until children were seen coming and going (each round takes a few ms)
    while rounds < 6 || seen.len() < first.pids.len() + 10 {
        assert!(rounds < 200, "no child came and went in {rounds} rounds");
        let mut s = StreamSink::new(Vec::new());
        let out = pc.round(&mut s, None).unwrap();
        println!("round {rounds}: {:?}", out.pids);
        seen.extend(out.pids);
        wire.extend(s.into_inner());
        rounds += 1;
    }
    let mut s = StreamSink::new(Vec::new());
    let fin = pc.finish(&DumpOptions::default(), &mut s).unwrap();
    wire.extend(s.into_inner());
    p.reap();
    println!(
        "{rounds} pre-copy rounds, {} processes seen, {} in the final image",
        seen.len(),
        fin.pids.len()
    );
    let mut r = &wire[..];
    let mut img = Image::read_stream(&mut r, None).unwrap();
    while !r.is_empty() {
        img = Image::read_stream(&mut r, Some(img)).unwrap();
    }
    let zombies: Vec<i32> = img.inventory.zombies.iter().map(|z| z.pid).collect();
    println!("final: {:?}, zombies {zombies:?}", img.inventory.pids);
    wait_gone(&img.inventory.pids);
    wait_gone(&zombies);
    let mut r = restore(&img).unwrap();
    r.send("check\n");
    let (code, out) = r.finish();
    assert!(out.contains("memory ok"), "{out}");
    assert!(out.contains("children ok"), "{out}");
    assert!(out.contains("threads ok"), "{out}");
    assert_eq!(code, 0);
}

/// Applies the images on stdin one by one as they arrive (a `Restorer` in the pid namespace it
/// runs in, as its pid 1), then waits for the restored root and exits with its code. The
/// restored tree's stdin is what follows the last image. Run by
/// `chain_applied_as_it_streams_while_the_source_runs`.
#[test]
#[ignore = "helper process for chain_applied_as_it_streams_while_the_source_runs"]
fn streaming_restorer_helper() {
    let mut r = checkpoint::Restorer::new(Default::default()).unwrap();
    // unbuffered: what follows the last image is the restored tree's
    let stdin = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned().unwrap());
    let mut images = 0;
    let restored = loop {
        images += 1;
        if let Some(t) = r.apply_stream(&stdin).unwrap() {
            break t;
        }
    };
    eprintln!("applied {images} images");
    let code = restored.wait().unwrap();
    std::process::exit(code);
}

/// Pre-copy of the changing tree streamed into a restorer in another pid namespace, which
/// applies each image while the source runs on: processes that came and went, exec'd or were
/// born between rounds are killed, rebuilt or created there, and the final image brings the
/// tree up to date.
#[test]
fn chain_applied_as_it_streams_while_the_source_runs() {
    require_root!();
    let mut p = Prog::start(Command::new(build("churn", &[])));
    p.expect("ready");
    let mut helper = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "streaming_restorer_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = helper.id() as i32;
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if wait_done
            .recv_timeout(std::time::Duration::from_secs(60))
            .is_err()
        {
            kill_group(group);
        }
    });
    let mut to = helper.stdin.take().unwrap();
    let (mut pc, _) = PreCopy::start(p.pid, &mut StreamSink::new(&mut to)).unwrap();
    for _ in 0..8 {
        pc.round(&mut StreamSink::new(&mut to), None).unwrap();
    }
    let fin = pc
        .finish(&DumpOptions::default(), &mut StreamSink::new(&mut to))
        .unwrap();
    p.reap();
    println!("final image: {:?}", fin.pids);
    to.write_all(b"check\n").unwrap();
    drop(to);
    let out = helper.wait_with_output().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(text.contains("memory ok"), "{text}");
    assert!(text.contains("children ok"), "{text}");
    assert!(text.contains("threads ok"), "{text}");
    assert!(out.status.success(), "{:?}", out.status);
}

#[test]
fn pre_dump_then_dump_from_separate_runs() {
    require_root!();
    let mut p = Prog::start(Command::new(build("incr", &[])));
    p.expect("ready");
    let fds_before = cmd(&mut p, "fds\n", "fds");
    let base = tempfile::tempdir().unwrap();
    let pre = base.path().join("pre");
    let opts = DumpOptions {
        pre_dump: true,
        tracker_in_process: true,
        ..Default::default()
    };
    checkpoint::dump(p.pid, &opts, None, &mut DirSink::new(&pre).unwrap()).unwrap();
    // the tracker waits in the process for the next dumper
    let fds_between = cmd(&mut p, "fds\n", "fds");
    assert_ne!(fds_before, fds_between);
    cmd(&mut p, "w 500\n", "done");
    let prev = Image::load(&pre).unwrap();
    let opts = DumpOptions {
        after: AfterDump::Resume,
        parent_path: Some("../pre".into()),
        ..Default::default()
    };
    let out = checkpoint::dump(
        p.pid,
        &opts,
        Some(&prev),
        &mut DirSink::new(base.path().join("dump")).unwrap(),
    )
    .unwrap();
    println!(
        "dump after pre-dump: {} bytes written, {} in parent",
        out.page_bytes, out.parent_bytes
    );
    assert!(out.page_bytes <= (500 + 64) * 4096, "{}", out.page_bytes);
    // the final dump took the tracker out again
    assert_eq!(cmd(&mut p, "fds\n", "fds"), fds_before);
    drop(prev);
    kill_group(p.pid);
    p.reap();
    let img = Image::load(base.path().join("dump")).unwrap();
    wait_gone(&img.inventory.pids);
    let mut r = restore(&img).unwrap();
    r.send("check\n");
    let (code, out) = r.finish();
    assert!(out.contains("memory ok"), "{out}");
    assert_eq!(code, 0);
}

#[test]
fn soft_dirty_tracker() {
    if let Err(e) = SoftDirtyTracker::probe() {
        eprintln!("skipped: {e}");
        return;
    }
    require_root!();
    let mut p = Prog::start(Command::new(build("incr", &[])));
    p.expect("ready");
    let mut t = SoftDirtyTracker::start(p.pid).unwrap();
    cmd(&mut p, "w 10\n", "done");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", p.pid)).unwrap();
    let mut dirty = 0;
    for l in maps.lines() {
        let (a, b) = l
            .split_whitespace()
            .next()
            .unwrap()
            .split_once('-')
            .unwrap();
        let (s, e) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        if e - s == TOTAL {
            let w = t
                .take_written(TrackedRange {
                    start: s,
                    end: e,
                    kernel_tracked: true,
                })
                .unwrap()
                .unwrap();
            dirty = w.iter().map(|r| (r.1 - r.0) / 4096).sum::<u64>();
        }
    }
    assert_eq!(dirty, 10);
}
