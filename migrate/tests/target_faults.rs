//! A helper when the other side misbehaves. When the target reads the whole last image and
//! then goes away without a word, the source reports `NoAnswer`, keeps the tree frozen, and
//! kills or resumes it by the verdict its daemon gives. When the target stops reading, the
//! source gives up once the stream has stood still for its stall limit, and the tree runs on;
//! when the source stops sending, so does the target. Real process, real freeze, real frames;
//! the other side and the daemon are threads.

use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use migrate::control::{self, Order, Report};
use migrate::framing::{limit_stalls, Direction, FrameReader, Kind};
use migrate::{outbound, Verdict};

const KEY: [u8; 32] = [7; 32];

fn root_or_skip() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    eprintln!("skipped: migration (ptrace, freezing a tree) needs root");
    false
}

/// A process that sleeps with nothing open but its standard streams (/dev/null): what the
/// test runner leaves open would be fds leading outside the tree, which a dump refuses. It
/// stops itself once its other fds are closed, so that nothing seen before that moment (a
/// `python3` wrapper script with its own pipes, say) is taken for the sleeper.
fn sleeper() -> Child {
    let child = Command::new("python3")
        .args([
            "-c",
            "import os, signal, time\nos.closerange(3, 65536)\n\
             os.kill(os.getpid(), signal.SIGSTOP)\ntime.sleep(60)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn python3");
    let pid = child.id();
    wait_state(pid, |s| s == Some('T'));
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    assert_eq!(fds, 3, "the sleeper closed its other fds");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGCONT,
    )
    .expect("SIGCONT");
    wait_state(pid, |s| s == Some('S'));
    child
}

/// Waits up to 10 s for the state of `pid` (`None` once it is gone) to satisfy `ok`.
fn wait_state(pid: u32, ok: impl Fn(Option<char>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = state(pid);
    while !ok(last) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        last = state(pid);
    }
    assert!(ok(last), "pid {pid}: state {last:?}");
}

/// The state letter of `pid` in /proc (R, S, t, Z, ...).
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// A daemon on the other end of a helper's control socket: sends `orders` one by one, each
/// after the report it waits for, and returns every report.
fn daemon(
    ctl: UnixStream,
    script: Vec<(Option<&'static str>, Order)>,
) -> std::thread::JoinHandle<Vec<Report>> {
    std::thread::spawn(move || {
        let mut ctl = ctl;
        let mut seen = Vec::new();
        for (wait_for, order) in script {
            if let Some(want) = wait_for {
                loop {
                    let r: Report = control::recv(&mut ctl)
                        .expect("report")
                        .unwrap_or_else(|| panic!("helper gone before {want}: {seen:?}"));
                    let done = format!("{r:?}").starts_with(want);
                    seen.push(r);
                    if done {
                        break;
                    }
                }
            }
            control::send(&mut ctl, &order).expect("order");
        }
        while let Ok(Some(r)) = control::recv::<Report>(&mut ctl) {
            seen.push(r);
        }
        seen
    })
}

/// Migrates `pid` out (no pre-copy) to a target that reads every image, then closes without a
/// word; `verdict` is what the daemon says then. Returns the result and the reports.
fn migrate_without_answer(pid: u32, verdict: Verdict) -> (migrate::Result<()>, Vec<Report>) {
    let (source, target) = UnixStream::pair().expect("socketpair");
    let peer = std::thread::spawn(move || {
        let mut r = FrameReader::new(&target, &KEY, Direction::ToTarget);
        loop {
            match r.finish_image().expect("read an image") {
                Kind::FinalEnd => break,
                Kind::RoundEnd => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
        // gone without a word
    });
    let (ours, theirs) = UnixStream::pair().expect("control pair");
    let d = daemon(
        theirs,
        vec![
            (None, Order::Freeze),
            (Some("NoAnswer"), Order::Verdict(verdict)),
        ],
    );
    let r = outbound::run(i32::try_from(pid).expect("pid"), &source, &KEY, &ours);
    drop(ours);
    peer.join().expect("target thread");
    (r, d.join().expect("daemon thread"))
}

#[test]
fn no_answer_then_commit_kills_the_frozen_tree() {
    if !root_or_skip() {
        return;
    }
    let mut child = sleeper();
    let (r, reports) = migrate_without_answer(child.id(), Verdict::Commit);
    assert!(r.is_ok(), "{r:?}\nreports: {reports:?}");
    assert!(
        matches!(&reports[..], [Report::Frozen { .. }, Report::NoAnswer(why), Report::Killed] if why.contains("closed the data stream")),
        "{reports:?}"
    );
    // killed: gone, or a zombie (its parent, this test, is also its tracer, and the freezer
    // may have reaped it while waiting for the kill)
    wait_state(child.id(), |s| matches!(s, None | Some('Z')));
    if let Ok(status) = child.wait() {
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(nix::sys::signal::Signal::SIGKILL as i32),
            "{status}"
        );
    }
}

#[test]
fn no_answer_then_abort_resumes_the_tree() {
    if !root_or_skip() {
        return;
    }
    let child = sleeper();
    let (r, reports) = migrate_without_answer(child.id(), Verdict::Abort);
    assert!(r.is_ok(), "{r:?}\nreports: {reports:?}");
    assert!(
        matches!(&reports[..], [Report::Frozen { .. }, Report::NoAnswer(_)]),
        "{reports:?}"
    );
    // resumed: running or sleeping again, neither stopped nor gone
    runs_on(child);
}

/// Checks that `child` runs (or sleeps) again, neither stopped nor gone; then ends it.
fn runs_on(mut child: Child) {
    wait_state(child.id(), |s| matches!(s, Some('S' | 'R')));
    assert!(child.try_wait().expect("try_wait").is_none(), "it runs on");
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `side` on one end of a socket pair whose reads and writes stall after 1 s, while a
/// thread holds the other end open and neither reads nor writes until `side` returns; its
/// result and how long it took.
fn against_silent_peer<T>(side: impl FnOnce(&UnixStream) -> T) -> (T, Duration) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    limit_stalls(&ours, Duration::from_secs(1)).expect("stall limit");
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
        drop(theirs);
    });
    let started = Instant::now();
    let r = side(&ours);
    let took = started.elapsed();
    let _ = done_tx.send(());
    peer.join().expect("peer thread");
    (r, took)
}

#[test]
fn a_target_that_stops_reading_fails_the_copy_and_the_tree_runs_on() {
    if !root_or_skip() {
        return;
    }
    let child = sleeper();
    let (ours, theirs) = UnixStream::pair().expect("control pair");
    // all memory in one round, then the last image: more than the socket buffers hold
    let d = daemon(
        theirs,
        vec![(None, Order::Round), (Some("Round"), Order::Freeze)],
    );
    let (r, took) = against_silent_peer(|source| {
        outbound::run(i32::try_from(child.id()).expect("pid"), source, &KEY, &ours)
    });
    drop(ours);
    let _ = d.join();
    let e = r.expect_err("the copy cannot finish");
    assert!(e.to_string().contains("stalled"), "{e}");
    assert!(took < Duration::from_secs(30), "gave up after {took:?}");
    runs_on(child);
}

#[test]
fn a_source_that_stops_sending_fails_the_target_soon() {
    if !root_or_skip() {
        return;
    }
    let (ours, _theirs) = UnixStream::pair().expect("control pair");
    let (r, took) =
        against_silent_peer(|target| migrate::inbound::run(target, &KEY, None, [0, 1, 2], &ours));
    let e = r.expect_err("nothing can be restored");
    assert!(e.to_string().contains("stalled"), "{e}");
    // the stall limit, then at most the drain's idle time
    assert!(took < Duration::from_secs(15), "gave up after {took:?}");
}
