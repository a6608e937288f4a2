//! An external policy: any program that reads requests and writes decisions as JSON lines, so
//! that admins can write one in any language.
//!
//! For each placement, one line goes to the program's stdin:
//!
//! ```json
//! {"request": {"cpus": 2, "mem_bytes": null, "constraints": []},
//!  "nodes": [{"id": 1, "name": "n1", "cpus": 4, "mem_total_bytes": 0, "mem_free_bytes": 0,
//!             "load": 0.5, "procs": 3, "labels": {}, "pending": 0}, ...]}
//! ```
//!
//! and the program answers with one line, `{"node": 2}` (or `{"node": null}`: nothing fits).
//! Only nodes that fit the request are sent. An answer that is late (over the timeout), not
//! JSON, or names a node not offered counts as a failure: the built-in `least-loaded` decides
//! instead, the failure is recorded (`ssi sched show`), and the program is restarted at the
//! next placement. A placement never waits longer than the timeout.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use serde::Serialize;
use ssi_core::NodeId;

use crate::policy::{LeastLoaded, Policy};
use crate::sample::{NodeSample, Request};

#[derive(Serialize)]
struct Query<'a> {
    request: &'a Request,
    nodes: Vec<&'a NodeSample>,
}

#[derive(Debug)]
struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A policy delegated to a program.
#[derive(Debug)]
pub struct External {
    program: String,
    args: Vec<String>,
    timeout: Duration,
    running: Option<Running>,
    /// Placements the program answered.
    pub answered: u64,
    /// Placements the default decided because the program failed.
    pub fallbacks: u64,
    /// The last failure, for `ssi sched show`.
    pub last_error: Option<String>,
    failure: Option<String>,
}

impl External {
    /// A policy that runs `program` with `args`, waiting at most `timeout` per decision.
    pub fn new(program: String, args: Vec<String>, timeout: Duration) -> External {
        External {
            program,
            args,
            timeout,
            running: None,
            answered: 0,
            fallbacks: 0,
            last_error: None,
            failure: None,
        }
    }

    fn start(&self) -> Result<Running, String> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(l) = line else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Ok(Running {
            child,
            stdin,
            lines,
        })
    }

    fn ask(&mut self, fitting: Vec<&NodeSample>, req: &Request) -> Result<Option<NodeId>, String> {
        if self.running.is_none() {
            self.running = Some(self.start()?);
        }
        let run = self.running.as_mut().ok_or("not running")?;
        let ids: Vec<NodeId> = fitting.iter().map(|n| n.id).collect();
        let mut line = serde_json::to_vec(&Query {
            request: req,
            nodes: fitting,
        })
        .map_err(|e| e.to_string())?;
        line.push(b'\n');
        run.stdin
            .write_all(&line)
            .and_then(|()| run.stdin.flush())
            .map_err(|e| format!("cannot write to it: {e}"))?;
        let reply = match run.lines.recv_timeout(self.timeout) {
            Ok(l) => l,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("no answer within {} ms", self.timeout.as_millis()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("it exited".into()),
        };
        let bad = |why: &str| format!("bad answer {reply:?}: {why}");
        let v: serde_json::Value = serde_json::from_str(&reply).map_err(|e| bad(&e.to_string()))?;
        let node = match v.get("node") {
            None => return Err(bad("no \"node\" key")),
            Some(serde_json::Value::Null) => None,
            Some(n) => Some(NodeId(
                n.as_u64()
                    .and_then(|x| u16::try_from(x).ok())
                    .ok_or_else(|| bad("node is not a node id"))?,
            )),
        };
        match node {
            Some(id) if !ids.contains(&id) => {
                Err(format!("answered node {id}, which was not offered"))
            }
            other => Ok(other),
        }
    }
}

impl Policy for External {
    fn name(&self) -> &str {
        "external"
    }

    fn take_failure(&mut self) -> Option<String> {
        self.failure.take()
    }

    fn report(&self) -> Option<String> {
        Some(format!(
            "{} {}: {} answered, {} decided by least-loaded instead{}",
            self.program,
            self.args.join(" "),
            self.answered,
            self.fallbacks,
            self.last_error
                .as_ref()
                .map(|e| format!("; last failure: {e}"))
                .unwrap_or_default()
        ))
    }

    fn place(&mut self, nodes: &[NodeSample], req: &Request) -> Option<NodeId> {
        let fitting: Vec<&NodeSample> = nodes.iter().filter(|n| req.fits(n)).collect();
        match self.ask(fitting, req) {
            Ok(choice) => {
                self.answered += 1;
                choice
            }
            Err(reason) => {
                self.fallbacks += 1;
                self.failure = Some(reason.clone());
                self.last_error = Some(reason);
                // A program that failed once is restarted next time.
                self.running = None;
                LeastLoaded.place(nodes, req)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::node;

    fn script(body: &str) -> External {
        External::new(
            "python3".into(),
            vec!["-c".into(), body.into()],
            Duration::from_millis(2000),
        )
    }

    fn nodes() -> Vec<NodeSample> {
        vec![node(1, 2, 0.0), node(2, 2, 1.5), node(3, 2, 1.0)]
    }

    #[test]
    fn a_program_decides() {
        // Chooses the busiest node: not what any built-in would do.
        let mut p = script(
            "import sys, json\nfor l in sys.stdin:\n q = json.loads(l)\n n = max(q['nodes'], key=lambda n: n['load'])\n print(json.dumps({'node': n['id']}), flush=True)\n",
        );
        assert_eq!(p.place(&nodes(), &Request::default()), Some(NodeId(2)));
        assert_eq!(p.place(&nodes(), &Request::default()), Some(NodeId(2)));
        assert_eq!((p.answered, p.fallbacks), (2, 0));
    }

    #[test]
    fn a_slow_program_falls_back_and_is_reported() {
        let mut p = script("import time\ntime.sleep(30)\n");
        p.timeout = Duration::from_millis(200);
        let t = std::time::Instant::now();
        assert_eq!(p.place(&nodes(), &Request::default()), Some(NodeId(1)));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "placement waited {:?}",
            t.elapsed()
        );
        assert_eq!(p.fallbacks, 1);
        assert!(p
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no answer")));
    }

    #[test]
    fn garbage_missing_programs_and_unoffered_nodes_fall_back() {
        let mut garbage = script("import sys\nfor l in sys.stdin: print('yes', flush=True)\n");
        assert_eq!(
            garbage.place(&nodes(), &Request::default()),
            Some(NodeId(1))
        );
        assert!(garbage
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("bad answer")));

        let mut echo = External::new("/bin/cat".into(), vec![], Duration::from_millis(2000));
        assert_eq!(echo.place(&nodes(), &Request::default()), Some(NodeId(1)));
        assert!(echo
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no \"node\" key")));

        let mut liar =
            script("import sys\nfor l in sys.stdin: print('{\"node\": 99}', flush=True)\n");
        assert_eq!(liar.place(&nodes(), &Request::default()), Some(NodeId(1)));
        assert!(liar
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("not offered")));

        let mut missing = External::new(
            "/nonexistent/policy".into(),
            vec![],
            Duration::from_millis(100),
        );
        assert_eq!(
            missing.place(&nodes(), &Request::default()),
            Some(NodeId(1))
        );
        assert!(missing
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot start")));
    }
}
