//! End-to-end tests of the shared file system: real daemons, real FUSE mounts, real kills.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::dfs::{dfs_testbed, private_testbed, sh_in, status, wait_ready, HEAL};
use common::root_or_skip;
use sha2::{Digest, Sha256};
use testbed::wait_until;

#[test]
fn written_on_one_node_is_read_on_another_with_owner_mode_and_times() {
    if !root_or_skip("mounting the dfs") {
        return;
    }
    let (_one, _dir, tb) = dfs_testbed(3);
    let (m1, m2, m3) = (tb.dfs_mount(1), tb.dfs_mount(2), tb.dfs_mount(3));
    fs::create_dir(m1.join("d")).expect("mkdir");
    let data: Vec<u8> = (0..(5u32 << 20)).map(|i| (i % 251) as u8).collect();
    fs::write(m1.join("d/f"), &data).expect("write");
    let f = m1.join("d/f");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).expect("chmod");
    nix::unistd::chown(&f, Some(1234.into()), Some(4321.into())).expect("chown");
    let when = nix::sys::time::TimeSpec::new(1_600_000_000, 123_456_789);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &f,
        &when,
        &when,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .expect("utimensat");
    std::os::unix::fs::symlink("d/f", m1.join("link")).expect("symlink");
    let want = fs::metadata(&f).expect("stat");
    for m in [&m2, &m3] {
        let got = fs::metadata(m.join("d/f")).expect("stat elsewhere");
        assert_eq!(
            (got.uid(), got.gid(), got.mode(), got.len()),
            (1234, 4321, want.mode(), data.len() as u64)
        );
        assert_eq!(
            (got.mtime(), got.mtime_nsec()),
            (1_600_000_000, 123_456_789)
        );
        assert_eq!(got.ctime(), want.ctime());
        assert!(
            fs::read(m.join("d/f")).expect("read") == data,
            "content differs"
        );
        assert_eq!(
            fs::read_link(m.join("link")).expect("readlink"),
            Path::new("d/f")
        );
    }
    // rename is atomic and seen everywhere; a hard link counts
    fs::rename(m2.join("d/f"), m2.join("g")).expect("rename");
    fs::hard_link(m3.join("g"), m3.join("d/h")).expect("link");
    assert_eq!(fs::metadata(m1.join("d/h")).expect("stat").nlink(), 2);
    assert!(wait_until(Duration::from_secs(3), || !m1
        .join("d/f")
        .exists()));
}

#[test]
fn unlinked_open_files_and_locks_hold_across_nodes() {
    if !root_or_skip("mounting the dfs") {
        return;
    }
    let (_one, _dir, tb) = dfs_testbed(2);
    let (m1, m2) = (tb.dfs_mount(1), tb.dfs_mount(2));
    fs::write(m1.join("kept"), b"still here").expect("write");
    let mut open_on_2 = fs::File::open(m2.join("kept")).expect("open on 2");
    fs::remove_file(m1.join("kept")).expect("unlink on 1");
    // names are cached by other nodes' kernels for up to a second (attr::TTL)
    assert!(wait_until(Duration::from_secs(3), || !m2
        .join("kept")
        .exists()));
    let mut got = String::new();
    open_on_2
        .read_to_string(&mut got)
        .expect("read after unlink");
    assert_eq!(got, "still here");
    drop(open_on_2);

    fs::write(m1.join("lock"), b"").expect("create");
    let holder = fs::File::open(m1.join("lock")).expect("open on 1");
    let held = nix::fcntl::Flock::lock(holder, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .expect("flock on 1");
    let other = fs::File::open(m2.join("lock")).expect("open on 2");
    let refused = nix::fcntl::Flock::lock(other, nix::fcntl::FlockArg::LockExclusiveNonblock);
    let (other, errno) = refused.expect_err("the lock is held on node 1");
    assert_eq!(errno, nix::errno::Errno::EWOULDBLOCK);
    drop(held);
    nix::fcntl::Flock::lock(other, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .expect("free once node 1 closed it");
}

/// A record: sequence number, payload, and a SHA-256 of both (512 bytes in all).
fn record(seq: u64) -> Vec<u8> {
    let mut r = seq.to_le_bytes().to_vec();
    r.extend((0..472u32).map(|i| (seq as u32).wrapping_mul(31).wrapping_add(i) as u8));
    let sum = Sha256::digest(&r);
    r.extend_from_slice(&sum);
    r
}

/// Appends fsync'd records until told to stop or the file system fails; counts acknowledged
/// records and gives the error that stopped it.
fn writer(path: &Path, stop: &AtomicBool, acked: &AtomicU64) -> Option<std::io::Error> {
    let mut f = match OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => return Some(e),
    };
    while !stop.load(Ordering::Relaxed) {
        let seq = acked.load(Ordering::Relaxed);
        if let Err(e) = f.write_all(&record(seq)).and_then(|()| f.sync_all()) {
            return Some(e);
        }
        acked.store(seq + 1, Ordering::Relaxed);
    }
    None
}

fn check_records(path: &Path, acked: u64) {
    let data = fs::read(path).expect("read records");
    assert!(
        data.len() as u64 >= acked * 512,
        "{}: {} bytes, {acked} records acknowledged",
        path.display(),
        data.len()
    );
    for seq in 0..acked {
        let at = usize::try_from(seq * 512).expect("offset");
        assert_eq!(
            &data[at..at + 512],
            record(seq).as_slice(),
            "record {seq} damaged"
        );
    }
}

fn wait_acked(
    acked: &AtomicU64,
    more_than: u64,
    w: &std::thread::JoinHandle<Option<std::io::Error>>,
    when: &str,
) {
    let ok = wait_until(HEAL, || {
        acked.load(Ordering::Relaxed) > more_than + 5 || w.is_finished()
    });
    assert!(
        ok && !w.is_finished(),
        "{when}: the writer made no progress past {more_than} records (stopped: {})",
        w.is_finished()
    );
}

#[test]
fn acknowledged_records_survive_node_kills() {
    if !root_or_skip("mounting the dfs") {
        return;
    }
    let (_one, _dir, mut tb) = dfs_testbed(3);
    let path = tb.dfs_mount(1).join("records");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let w = {
        let (stop, acked, path) = (stop.clone(), acked.clone(), path.clone());
        std::thread::spawn(move || writer(&path, &stop, &acked))
    };
    for victim in [2, 3] {
        wait_acked(&acked, acked.load(Ordering::Relaxed), &w, "before a kill");
        tb.kill(victim).expect("kill");
        // the writer goes on with the other two nodes
        wait_acked(
            &acked,
            acked.load(Ordering::Relaxed),
            &w,
            &format!("node {victim} dead"),
        );
        tb.start(victim).expect("restart");
        wait_ready(&tb, victim, 3, 3);
    }
    wait_acked(&acked, acked.load(Ordering::Relaxed), &w, "all back");
    tb.kill(1).expect("kill the writer's node");
    stop.store(true, Ordering::Relaxed);
    let stopped_by = w.join().expect("writer");
    eprintln!("writer stopped by: {stopped_by:?}");
    let acked = acked.load(Ordering::Relaxed);
    assert!(acked > 15, "only {acked} records written");
    for n in [2, 3] {
        wait_ready(&tb, n, 3, 2);
        check_records(&tb.dfs_mount(n).join("records"), acked);
    }
}

/// Appends short records with `O_APPEND` to `path` (no sync), `count` of them.
fn appender(path: &Path, count: u64) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
        .expect("open for appending");
    for seq in 0..count {
        f.write_all(format!("{seq:08}\n").as_bytes())
            .expect("append");
    }
}

#[test]
#[ignore = "failed once in a full run under load (node 1 read back the right size with wrong content from line 0; see docs/DFS.md known problems); passes alone; run with --ignored"]
fn appends_keep_their_order_while_other_handles_publish_and_other_nodes_stat() {
    if !root_or_skip("mounting the dfs") {
        return;
    }
    // A stale size in an attribute answer makes the kernel put the next O_APPEND write at
    // the old end, over earlier records: seen when a getattr raced with a commit of this
    // node's writes (a flush from another handle, or a recall from another node).
    let (_one, _dir, tb) = dfs_testbed(2);
    let (p1, p2) = (
        tb.dfs_mount(1).join("appended"),
        tb.dfs_mount(2).join("appended"),
    );
    fs::write(&p1, b"").expect("create");
    let count = 1500;
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let p = p1.clone();
        std::thread::spawn(move || appender(&p, count))
    };
    let busy = [p1.clone(), p2.clone()].map(|p| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let f = fs::File::open(&p).expect("open another handle");
            while !stop.load(Ordering::Relaxed) {
                let _ = f.sync_all();
                let _ = fs::metadata(&p);
            }
        })
    });
    w.join().expect("appender");
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.join().expect("publisher");
    }
    let want: String = (0..count).map(|s| format!("{s:08}\n")).collect();
    for p in [&p1, &p2] {
        let got = fs::read_to_string(p).expect("read back");
        let first_bad = got.lines().zip(want.lines()).position(|(a, b)| a != b);
        let around: Vec<&str> = got.lines().skip(first_bad.unwrap_or(0)).take(4).collect();
        assert!(
            got == want,
            "{}: {} bytes of {}, first wrong line {first_bad:?}: {around:?}",
            p.display(),
            got.len(),
            want.len()
        );
    }
}

#[test]
fn a_dead_voter_is_replaced_and_its_chunks_copied_again() {
    if !root_or_skip("mounting the dfs") {
        return;
    }
    let (_one, _dir, mut tb) = dfs_testbed(4);
    let data: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 253) as u8).collect();
    fs::write(tb.dfs_mount(1).join("f"), &data).expect("write");
    wait_ready(&tb, 1, 3, 4);
    let s = status(&tb, 1).expect("status");
    let leader = usize::try_from(s["leader"].as_u64().expect("leader")).expect("id");
    tb.kill(leader).expect("kill the leader");
    let observer = if leader == 4 { 3 } else { 4 };
    let healed = wait_until(HEAL, || {
        status(&tb, observer).is_some_and(|s| {
            let voters: Vec<u64> = s["voters"]
                .as_array()
                .map(|v| v.iter().filter_map(|x| x.as_u64()).collect())
                .unwrap_or_default();
            s["leader"].as_u64().is_some_and(|l| l != leader as u64)
                && voters.len() == 3
                && !voters.contains(&(leader as u64))
                && s["under_replicated"] == 0
                && s["rereplicated"].as_u64() > Some(0)
        })
    });
    assert!(healed, "not healed: {:?}", status(&tb, observer));
    assert!(fs::read(tb.dfs_mount(observer).join("f")).expect("read") == data);
    // the node comes back, catches up and reads the file
    tb.start(leader).expect("restart");
    wait_ready(&tb, leader, 3, 4);
    assert!(fs::read(tb.dfs_mount(leader).join("f")).expect("read") == data);
}

#[test]
fn nodes_with_private_mounts_share_only_the_dfs() {
    if !root_or_skip("network and mount namespaces") {
        return;
    }
    let (_one, _dir, tb) = private_testbed(2);
    assert_eq!(tb.dfs_mount(1), tb.dfs_mount(2), "one path on every node");
    sh_in(
        &tb,
        1,
        "/",
        "echo mine > /tmp/private && mkdir /mnt/ssi/work && echo shared > /mnt/ssi/work/f",
    );
    let seen = sh_in(&tb, 2, "/", "ls /tmp; cat /mnt/ssi/work/f");
    assert!(
        !seen.contains("private"),
        "node 2 sees node 1's /tmp: {seen}"
    );
    assert!(seen.contains("shared"), "{seen}");
    let others = tb.node_dir(2).join("dfs");
    let hidden = sh_in(&tb, 1, "/", &format!("ls -A {} | wc -l", others.display()));
    assert_eq!(hidden.trim(), "0", "node 1 sees node 2's data directory");
    // `ssi run` from a directory of the DFS runs there on another node
    let ssi = tb.bin("ssi");
    let out = sh_in(
        &tb,
        1,
        "/mnt/ssi/work",
        &format!(
            "{} run --node 2 -- sh -c 'pwd; cat f; hostname'",
            ssi.display()
        ),
    );
    assert_eq!(out, "/mnt/ssi/work\nshared\nn2\n");
}

/// A small tmpfs mounted over a directory while the value lives.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "small"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_on_a_replica_fails_the_fsync_with_enospc_and_keeps_the_old_data() {
    if !root_or_skip("mounting the dfs") {
        return;
    }
    let (_one, _dir, tb) = dfs_testbed(2);
    let (m1, m2) = (tb.dfs_mount(1), tb.dfs_mount(2));
    fs::write(m1.join("f"), b"old").expect("write");
    // Node 2's chunks go to a 1 MiB disk: the next chunk it must hold does not fit.
    let full = SmallDisk::mount(&tb.node_dir(2).join("dfs/chunks"), "1m");
    let mut f = OpenOptions::new()
        .write(true)
        .open(m1.join("f"))
        .expect("open");
    f.write_all(&vec![7u8; 6 << 20])
        .expect("written on node 1's disk");
    let e = f.sync_all().expect_err("node 2's disk is full");
    assert_eq!(
        e.raw_os_error(),
        Some(nix::errno::Errno::ENOSPC as i32),
        "{e}"
    );
    // The failed fsync dropped the unpublished writes: neither this node's readers (even
    // before the kernel's asynchronous release of `f`) nor another node's recall once the
    // disk has room again can see them.
    drop(f);
    let short = |b: Vec<u8>| format!("{} bytes, first {:?}", b.len(), &b[..b.len().min(8)]);
    let here = fs::read(m1.join("f")).expect("read");
    assert!(
        here == b"old",
        "the committed version stays: {}",
        short(here)
    );
    drop(full);
    let there = fs::read(m2.join("f")).expect("read on 2");
    assert!(there == b"old", "on node 2: {}", short(there));
    // With room again, the same write goes through.
    let data = vec![9u8; 6 << 20];
    fs::write(m1.join("f"), &data).expect("write with room");
    assert!(fs::read(m2.join("f")).expect("read on 2") == data);
}

#[test]
fn without_a_majority_of_voters_requests_fail_with_eio_and_status_says_why() {
    if !root_or_skip("mounting the dfs") {
        return;
    }
    let (_one, _dir, mut tb) = dfs_testbed(3);
    let m1 = tb.dfs_mount(1);
    fs::write(m1.join("f"), b"data").expect("write");
    tb.kill(2).expect("kill");
    tb.kill(3).expect("kill");
    // Until the membership declares them dead it says no leader answered; then why.
    let why = |s: &serde_json::Value| s["unavailable"].as_str().unwrap_or("").to_string();
    let mut seen = String::new();
    let said = wait_until(HEAL, || {
        seen = status(&tb, 1).map(|s| why(&s)).unwrap_or_default();
        seen.contains("no majority")
    });
    assert!(said, "status on node 1: {seen:?}");
    assert!(seen.contains("1 of 3"), "{seen}");
    let text = common::ssi(&tb, 1, &["dfs", "status"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("UNAVAILABLE:"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    // A request that needs the metadata fails with EIO (after a few seconds, not hangs).
    let e = fs::metadata(m1.join("new")).expect_err("no metadata without a majority");
    assert_eq!(e.raw_os_error(), Some(nix::errno::Errno::EIO as i32), "{e}");
    // With one voter back, the file system answers again and lost nothing.
    tb.start(2).expect("restart");
    wait_ready(&tb, 1, 3, 2);
    assert_eq!(fs::read(m1.join("f")).expect("read"), b"data");
}
