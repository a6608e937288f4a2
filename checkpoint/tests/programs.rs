//! End-to-end: programs nobody in the project wrote for this (Python), a static binary,
//! credentials, and a restore inside a fresh pid namespace.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use checkpoint::{DirSink, DumpOptions};
use common::*;

const PYTHON: &str = r#"
import sys, os, threading, hashlib
os.closerange(3, 4096)  # fds inherited from the test runner
data = {i: str(i) * 10 for i in range(200000)}
digest = hashlib.sha256(repr(sorted(data.items())[:5000]).encode()).hexdigest()
ev = threading.Event()
box = []
def worker():
    ev.wait()
    box.append(sum(range(1000)))
t = threading.Thread(target=worker)
t.start()
f = open(sys.argv[1], "w")
f.write("before\n")
f.flush()
print("ready", os.getpid(), flush=True)
sys.stdin.readline()
ev.set()
t.join()
f.write("after\n")
f.close()
ok = hashlib.sha256(repr(sorted(data.items())[:5000]).encode()).hexdigest() == digest
print("data", "ok" if ok else "bad")
print("thread", "ok" if box == [499500] else "bad")
print("pid", os.getpid(), flush=True)
"#;

#[test]
fn python_program() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("py.txt");
    let mut cmd = Command::new("python3");
    cmd.args(["-c", PYTHON]).arg(&out_file);
    let mut p = Prog::start(cmd);
    p.expect("ready");
    let pid = p.pid;
    let (code, out) = roundtrip(p);
    println!("exit {code}:\n{out}");
    assert!(out.contains("data ok"), "{out}");
    assert!(out.contains("thread ok"), "{out}");
    assert!(out.contains(&format!("pid {pid}")), "{out}");
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "before\nafter\n"
    );
}

const ASYNCIO: &str = r#"
import asyncio, os, sys
os.closerange(3, 4096)  # fds inherited from the test runner
async def main():
    loop = asyncio.get_running_loop()
    ticks = 0
    go = loop.create_future()
    loop.add_reader(0, lambda: go.done() or go.set_result(sys.stdin.readline()))
    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)
    t = asyncio.create_task(ticker())
    await asyncio.sleep(0.2)
    print("ready", os.getpid(), flush=True)
    await go
    before = ticks
    # The restored loop's timers must fire again: wait for 5 more ticks, with a deadline
    # long enough for a loaded machine (a fixed 0.2 s window failed under a CPU hog).
    deadline = loop.time() + 20
    while ticks <= before + 5 and loop.time() < deadline:
        await asyncio.sleep(0.05)
    print("asyncio", "ok" if ticks > before + 5 else "bad", flush=True)
    t.cancel()
asyncio.run(main())
"#;

#[test]
fn python_asyncio_event_loop() {
    require_root!();
    let mut cmd = Command::new("python3");
    cmd.args(["-c", ASYNCIO]);
    let mut p = Prog::start(cmd);
    p.expect("ready");
    let (code, out) = roundtrip(p);
    println!("exit {code}:\n{out}");
    assert!(out.contains("asyncio ok"), "{out}");
    assert_eq!(code, 0);
}

#[test]
fn static_binary() {
    require_root!();
    let mut p = Prog::start(Command::new(build("simple", &["-static"])));
    p.expect("ready");
    let (code, out) = roundtrip(p);
    println!("exit {code}:\n{out}");
    for c in ["heap ok", "anon ok", "counter 42", "malloc ok"] {
        assert!(out.contains(c), "{c}: {out}");
    }
    assert_eq!(code, 0);
}

#[test]
fn credentials() {
    require_root!();
    let mut p = Prog::start(Command::new(build("creds", &[])));
    p.expect("ready");
    let (code, out) = roundtrip(p);
    println!("exit {code}:\n{out}");
    for c in ["uids ok", "gids ok", "groups ok", "caps ok"] {
        assert!(out.contains(c), "{c}: {out}");
    }
    assert_eq!(code, 0);
}

/// Restores the image named by CKPT_IMAGE into the pid namespace it runs in (as its pid 1),
/// waits for the restored root and exits with its code. Run by `restore_in_new_pid_namespace`.
#[test]
#[ignore = "helper process for restore_in_new_pid_namespace"]
fn pidns_helper() {
    let dir = std::env::var("CKPT_IMAGE").expect("CKPT_IMAGE");
    let img = checkpoint::Image::load(dir).expect("load");
    let r = checkpoint::restore(&img, &Default::default()).expect("restore in pid namespace");
    let code = r.wait().unwrap();
    std::process::exit(code);
}

#[test]
fn restore_in_new_pid_namespace() {
    require_root!();
    let mut p = Prog::start(Command::new(build("simple", &[])));
    p.expect("ready");
    let pid = p.pid;
    let dir = tempfile::tempdir().unwrap();
    checkpoint::dump(
        pid,
        &DumpOptions::default(),
        None,
        &mut DirSink::new(dir.path()).unwrap(),
    )
    .unwrap();
    p.reap();
    // the helper is pid 1 of a new pid namespace; the restored process gets the same pid there
    let mut helper = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pidns_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CKPT_IMAGE", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // the helper's whole group is killed if it has not finished within a minute
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
    helper.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let out = helper.wait_with_output().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(text.contains(&format!("pid {pid} ppid-ok 1")), "{text}");
    assert!(
        text.contains("heap ok") && text.contains("counter 42"),
        "{text}"
    );
    assert!(out.status.success(), "{:?}", out.status);
}
