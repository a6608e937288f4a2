//! End-to-end test of `ssi top`: it runs in a tmux pane of a fixed size against a 3-node
//! testbed; the test reads the screen with `capture-pane`, types keys with `send-keys`, and
//! checks what the cluster did with `ssi ps --json`. The screen is saved as an artifact in
//! `target/tmp/` for people to look at.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use testbed::{wait_until, Testbed};

/// A tmux server of this test's own (`tmux -L NAME`), killed when dropped.
struct Tmux {
    name: String,
}

impl Tmux {
    /// Starts `command` (a shell line) in a detached session of `width` x `height`.
    fn start(command: &str, width: u16, height: u16) -> Tmux {
        let t = Tmux {
            name: format!("ssi-top-test-{}", std::process::id()),
        };
        let out = t.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.name, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux not found: scripts/setup.sh installs it")
    }

    /// The screen as text.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p"]).stdout).into_owned()
    }

    /// The screen with its colours, as escape sequences (`cat` it in a terminal).
    fn screen_in_colour(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-e"]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success(), "send-keys {keys:?}");
    }

    /// Waits until the screen satisfies `cond`; panics with the screen otherwise.
    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let ok = wait_until(SETTLE, || {
            last = self.screen();
            cond(&last)
        });
        assert!(ok, "ssi top never showed {what}; screen:\n{last}");
        last
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Starts `args` detached on node `node` through node 1; returns its global pid.
fn detached(tb: &Testbed, node: usize, args: &[&str]) -> i64 {
    let mut a = vec!["run", "--detach", "--node"];
    let n = node.to_string();
    a.push(&n);
    a.push("--");
    a.extend_from_slice(args);
    let out = ssi(tb, 1, &a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a global pid")
}

/// The `ssi ps --json` row of `gpid`, if it is listed.
fn ps_row(tb: &Testbed, gpid: i64) -> Option<serde_json::Value> {
    let list = json(&ssi(tb, 1, &["ps", "--json"]));
    list.as_array()?
        .iter()
        .find(|p| p["gpid"].as_i64() == Some(gpid))
        .cloned()
}

/// Saves a screen where people and CI keep test artifacts.
fn save(name: &str, text: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("save capture");
    eprintln!("saved {}", path.display());
    path
}

#[test]
fn top_shows_the_cluster_and_kills_and_migrates_the_selected_process() {
    if !root_or_skip("hosting processes") {
        return;
    }
    let (dir, tb) = testbed(3, false);
    let progs = tempfile::tempdir().expect("tempdir");
    let burn = compile("burn", progs.path());
    // the sleeper has the lower global pid (node 2's range), so the burner above it shows
    // that rows are sorted by CPU, not by pid
    let sleeper = detached(&tb, 2, &["sleep", "600"]);
    let burner = detached(&tb, 3, &[burn.to_str().expect("path"), "600000"]);
    let busy = wait_until(SETTLE, || {
        ps_row(&tb, burner).and_then(|p| p["cpu_percent"].as_f64()) > Some(1.0)
    });
    assert!(busy, "the burner never used CPU");

    let status = dir.path().join("top-status");
    let line = format!(
        "SSI_SOCKET={} {} top; echo \"exit $?\" > {}",
        tb.socket(1).display(),
        tb.bin("ssi").display(),
        status.display()
    );
    let tmux = Tmux::start(&line, 120, 30);
    let screen = tmux.wait_for("3 alive nodes and both processes", |s| {
        s.contains("3/3 nodes alive")
            && s.contains(&format!("{sleeper}"))
            && s.contains(&format!("{burner}"))
    });
    save("top-capture.txt", &screen);
    save("top-capture.ansi", &tmux.screen_in_colour());
    for name in ["n1", "n2", "n3"] {
        let row = screen
            .lines()
            .find(|l| l.contains(&format!(" {name} ")) && l.contains("alive"))
            .unwrap_or_else(|| panic!("no row for node {name}:\n{screen}"));
        assert!(
            row.contains('[') && row.contains("/2"),
            "no load bar for {name}: {row}"
        );
    }
    let row_of = |s: &str, gpid: i64| s.lines().position(|l| l.contains(&format!(" {gpid} ")));
    let b = row_of(&screen, burner).expect("burner row");
    let s = row_of(&screen, sleeper).expect("sleeper row");
    assert!(b < s, "the burner is not above the sleeper:\n{screen}");
    assert!(
        screen.lines().any(|l| l.contains(&format!(">{burner:>8}"))),
        "the busiest process is not selected:\n{screen}"
    );

    // k: SIGTERM to the selected process, the burner
    tmux.keys(&["k"]);
    tmux.wait_for("the burner gone", |s| {
        s.contains(&format!("sent SIGTERM to {burner}")) && row_of(s, burner).is_none()
    });
    assert!(ps_row(&tb, burner).is_none(), "the burner still runs");

    // m, a node id, Enter: the sleeper (now selected) moves to node 1
    tmux.keys(&["m"]);
    tmux.wait_for("the migration prompt", |s| {
        s.contains(&format!("migrate {sleeper} to node:"))
    });
    tmux.keys(&["1", "Enter"]);
    let moved = tmux.wait_for("the migration done", |s| {
        s.contains(&format!("migrated {sleeper} to node 1"))
    });
    save("top-after-migrate.txt", &moved);
    let node = ps_row(&tb, sleeper).map(|p| p["node"].clone());
    assert_eq!(
        node,
        Some(serde_json::json!(1)),
        "ssi ps does not show the sleeper on node 1"
    );

    tmux.keys(&["q"]);
    let quit = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&status).is_ok_and(|s| s.trim() == "exit 0")
    });
    assert!(quit, "ssi top did not exit 0 on q");
    let _ = ssi(&tb, 1, &["kill", "-s", "KILL", &sleeper.to_string()]);
}
