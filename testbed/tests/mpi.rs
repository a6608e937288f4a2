//! End-to-end test of `ssi mpirun`: the real Open MPI mpirun, its daemons started through ssi
//! on three testbed nodes in network namespaces, and an MPI program (point-to-point around a
//! ring, an allreduce) built with mpicc.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use testbed::{wait_until, Testbed};

mod common;
use common::{json, root_or_skip, ssi, ssi_cmd, testbed};

/// How long one MPI job may take from start to exit (it takes about 2 s).
const JOB: Duration = Duration::from_secs(30);

/// Whether Open MPI's compiler and launcher are installed; prints why not.
fn open_mpi_or_skip() -> bool {
    let found = |p: &str| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found("mpicc") && found("mpirun") {
        return true;
    }
    eprintln!(
        "skipped: mpicc or mpirun not found (scripts/setup.sh installs openmpi-bin and \
         libopenmpi-dev)"
    );
    false
}

/// Compiles `tests/progs/NAME.c` with mpicc into `dir`.
fn mpicc(name: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/progs")
        .join(format!("{name}.c"));
    let out = dir.join(name);
    let st = Command::new("mpicc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run mpicc");
    assert!(st.success(), "mpicc {} failed", src.display());
    out
}

/// A running `ssi mpirun` in a process group of its own, with its output collected; the whole
/// group is killed if the test ends before it does.
struct Job {
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

impl Job {
    fn start(tb: &Testbed, cwd: &Path, args: &[&str]) -> Job {
        let mut cmd = ssi_cmd(tb, 1, args);
        cmd.current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().expect("start ssi mpirun");
        let stdout = child.stdout.take().map(collect);
        let stderr = child.stderr.take().map(collect);
        Job {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for the exit (at most [`JOB`]); returns the exit code, stdout and stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let ended = wait_until(JOB, || self.child.try_wait().ok().flatten().is_some());
        let code = if ended {
            self.child.wait().expect("wait").code()
        } else {
            self.kill();
            None
        };
        let out = self
            .stdout
            .take()
            .map(|h| h.join().expect("stdout"))
            .unwrap_or_default();
        let err = self
            .stderr
            .take()
            .map(|h| h.join().expect("stderr"))
            .unwrap_or_default();
        assert!(
            ended,
            "ssi mpirun did not end within {JOB:?}\nstdout:\n{out}\nstderr:\n{err}"
        );
        (code, out, err)
    }

    fn kill(&mut self) {
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

/// One rank's line: `rank R of N host H pid P left L token T buffer ok allreduce S max M`.
#[derive(Debug)]
struct RankLine {
    rank: i64,
    size: i64,
    host: String,
    pid: i64,
    left: i64,
    token: i64,
    buffer: String,
    sum: i64,
    max: i64,
}

fn parse(line: &str) -> Option<RankLine> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let expect = [
        (0, "rank"),
        (2, "of"),
        (4, "host"),
        (6, "pid"),
        (8, "left"),
        (10, "token"),
        (12, "buffer"),
        (14, "allreduce"),
        (16, "max"),
    ];
    if w.len() != 18 || expect.iter().any(|(i, k)| w[*i] != *k) {
        return None;
    }
    let n = |i: usize| w[i].parse::<i64>().ok();
    Some(RankLine {
        rank: n(1)?,
        size: n(3)?,
        host: w[5].to_string(),
        pid: n(7)?,
        left: n(9)?,
        token: n(11)?,
        buffer: w[13].to_string(),
        sum: n(15)?,
        max: n(17)?,
    })
}

/// The ranks of `prog` that `ssi ps` lists: gpid -> node id.
fn ranks_in_ps(tb: &Testbed, prog: &str) -> BTreeMap<i64, i64> {
    json(&ssi(tb, 1, &["ps", "--json"]))
        .as_array()
        .expect("array")
        .iter()
        .filter(|p| {
            p["command"]
                .as_str()
                .is_some_and(|c| c.split_whitespace().next() == Some(prog))
        })
        .filter_map(|p| Some((p["gpid"].as_i64()?, p["node"].as_i64()?)))
        .collect()
}

#[test]
fn mpi_ring_and_allreduce_over_three_netns_nodes() {
    if !root_or_skip("ssi mpirun over network namespaces") || !open_mpi_or_skip() {
        return;
    }
    let (dir, tb) = testbed(3, true);
    let prog = mpicc("mpi_ring", dir.path());
    let prog_str = prog.to_str().expect("utf-8 path");
    // One rank per CPU of the cluster: slots are CPUs, so each node gets `cpus` ranks (on the
    // 2-CPU machines of the project, -np 6). All testbed nodes report the host's CPUs.
    let cpus = json(&ssi(&tb, 1, &["nodes", "--json"]))[0]["cpus"]
        .as_i64()
        .expect("cpus");
    let np = 3 * cpus;
    let hold = dir.path().join("hold");
    let hold_str = hold.to_str().expect("utf-8 path");
    let job = Job::start(
        &tb,
        dir.path(),
        &["mpirun", "-np", &np.to_string(), prog_str, hold_str],
    );

    // While the ranks wait for `hold`, they are processes of the cluster.
    let mut seen = BTreeMap::new();
    let all_listed = wait_until(JOB, || {
        seen = ranks_in_ps(&tb, prog_str);
        seen.len() == usize::try_from(np).expect("np")
    });
    std::fs::write(&hold, b"").expect("create the hold file");
    let (code, out, err) = job.finish();
    assert!(
        all_listed,
        "ssi ps shows ranks {seen:?}, want {np}\n{out}\n{err}"
    );
    assert_eq!(code, Some(0), "exit code\nstdout:\n{out}\nstderr:\n{err}");

    let lines: Vec<RankLine> = out.lines().filter_map(parse).collect();
    assert_eq!(lines.len() as i64, np, "one line per rank\n{out}\n{err}");
    let want_sum: i64 = (1..=np).map(|r| r * r).sum();
    let mut per_host: BTreeMap<&str, i64> = BTreeMap::new();
    let mut ranks = BTreeSet::new();
    for l in &lines {
        assert_eq!(l.size, np, "{l:?}");
        assert_eq!(l.left, (l.rank + np - 1) % np, "{l:?}");
        let want_token = if l.rank == 0 {
            np * (np - 1) / 2
        } else {
            l.rank * (l.rank + 1) / 2
        };
        assert_eq!(l.token, want_token, "{l:?}");
        assert_eq!(l.buffer, "ok", "{l:?}");
        assert_eq!((l.sum, l.max), (want_sum, np - 1), "{l:?}");
        // getpid() of a rank is its global pid, listed by `ssi ps` on the node of its host.
        let node = seen.get(&l.pid).copied();
        assert_eq!(
            node.map(|n| format!("n{n}")),
            Some(l.host.clone()),
            "{l:?} {seen:?}"
        );
        *per_host.entry(l.host.as_str()).or_default() += 1;
        ranks.insert(l.rank);
    }
    assert_eq!(ranks, (0..np).collect(), "every rank once");
    assert_eq!(
        per_host,
        BTreeMap::from([("n1", cpus), ("n2", cpus), ("n3", cpus)]),
        "ranks per host (one per CPU of each node)\n{out}"
    );
    assert!(out.contains(&format!("all {np} ranks agree")), "{out}");

    // The exit code is mpirun's: a rank that fails makes it fail with that code.
    let job = Job::start(
        &tb,
        dir.path(),
        &["mpirun", "-np", "2", "sh", "-c", "exit 3"],
    );
    let (code, out, err) = job.finish();
    assert_eq!(code, Some(3), "stdout:\n{out}\nstderr:\n{err}");
    drop(tb);
}
