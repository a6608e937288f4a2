//! Sessions of `ssi run` and `ssi attach`: the user's input goes to the process, its output
//! comes back, wherever it runs.
//!
//! ```text
//!   ssi ==control socket==> home ssid ==RPC (TCP)==> host ssid --pipes--> process
//!        Input  ------------------->  ------------------->
//!        Output <-------------------  <-------------------
//! ```
//!
//! When home and host are the same node the RPC hop is skipped. The home watches membership:
//! when the host dies, the client is told its process is lost.

use std::future::Future;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use ssi_core::control::{
    ControlConn, ControlReceiver, ControlRequest, ControlResponse, ControlSender,
};
use ssi_core::membership::MemberEvent;
use ssi_core::process::{Caller, Input, Output, ProcState, ProcessView, RunSpec, EXIT_SSI_ERROR};
use ssi_core::rpc::{RpcRequest, RpcResponse};
use ssi_core::wire::{SecureReceiver, SecureSender, SecureStream};
use ssi_core::NodeId;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::node::Node;
use crate::procman::ProcMan;
use crate::{peer, route};

/// Where input comes from.
pub trait InputSource {
    /// The next input; `None` when the user went away.
    fn next_input(&mut self) -> impl Future<Output = Result<Option<Input>>> + Send;
}

/// Where output goes.
pub trait OutputSink {
    /// Hands one output over.
    fn put(&mut self, o: Output) -> impl Future<Output = Result<()>> + Send;
}

impl<T: InputSource + Send> InputSource for &mut T {
    fn next_input(&mut self) -> impl Future<Output = Result<Option<Input>>> + Send {
        (**self).next_input()
    }
}

impl<T: OutputSink + Send> OutputSink for &mut T {
    fn put(&mut self, o: Output) -> impl Future<Output = Result<()>> + Send {
        (**self).put(o)
    }
}

impl InputSource for ControlReceiver {
    async fn next_input(&mut self) -> Result<Option<Input>> {
        match self.recv::<ControlRequest>().await? {
            None => Ok(None),
            Some(ControlRequest::Input(i)) => Ok(Some(i)),
            Some(other) => Err(anyhow!("unexpected request during a session: {other:?}")),
        }
    }
}

impl OutputSink for ControlSender {
    async fn put(&mut self, o: Output) -> Result<()> {
        Ok(self.send(&ControlResponse::Output(o)).await?)
    }
}

impl InputSource for SecureReceiver<TcpStream> {
    async fn next_input(&mut self) -> Result<Option<Input>> {
        match self.recv::<RpcRequest>().await? {
            None => Ok(None),
            Some(RpcRequest::Input(i)) => Ok(Some(i)),
            Some(other) => Err(anyhow!("unexpected request during a session: {other:?}")),
        }
    }
}

impl OutputSink for SecureSender<TcpStream> {
    async fn put(&mut self, o: Output) -> Result<()> {
        Ok(self.send(&RpcResponse::Output(o)).await?)
    }
}

/// How following a process on one node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// It ended, or its user went away.
    Done,
    /// It moved to this node; follow it there.
    Moved(NodeId),
}

/// Runs the two directions of a session side by side until one of them ends the leg. Each
/// direction waits on its own: a program that stops reading its stdin until its output is read
/// (`cat` with a full pipe) must not stop its output from being read.
async fn both_ways(
    input: impl Future<Output = Result<Leg>>,
    output: impl Future<Output = Result<Leg>>,
) -> Result<Leg> {
    tokio::select! {
        r = output => r,
        r = input => r,
    }
}

/// Passes input `i` to `gpid` hosted here, unless the process has moved away: then `i` joins
/// `undelivered`, as does everything after the first input given back, so that their order
/// holds. Input for a process that just ended (its exit is on its way) goes nowhere.
async fn deliver(pm: &ProcMan, gpid: i32, i: Input, undelivered: &mut Vec<Input>) {
    if !undelivered.is_empty() {
        undelivered.push(i);
        return;
    }
    match pm.input(gpid, i).await {
        Ok(None) => {}
        Ok(Some(back)) => undelivered.push(back),
        Err(e) => tracing::debug!(gpid, error = %e, "input not delivered"),
    }
}

/// Carries one hosted process's output to `sink` and input from `source` until it ends or
/// moves (the `Moved` output is passed on too). If the user goes away first, the process group
/// gets SIGHUP, as when a terminal hangs up. Input that came when the process had already
/// moved away is left in `undelivered`, in order, for the node it went to.
pub async fn follow_local(
    pm: &ProcMan,
    gpid: i32,
    mut outputs: mpsc::Receiver<Output>,
    mut source: impl InputSource,
    mut sink: impl OutputSink,
    forward_input: bool,
    undelivered: &mut Vec<Input>,
) -> Result<Leg> {
    let input = async {
        loop {
            match source.next_input().await {
                Ok(Some(i)) if forward_input => deliver(pm, gpid, i, undelivered).await,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    if forward_input {
                        let _ = pm.input(gpid, Input::Signal(libc::SIGHUP)).await;
                    }
                    return Ok(Leg::Done);
                }
            }
        }
    };
    let output = async {
        while let Some(o) = outputs.recv().await {
            let leg = match o {
                Output::Exited(_) => Some(Leg::Done),
                Output::Moved { node } => Some(Leg::Moved(node)),
                _ => None,
            };
            sink.put(o).await?;
            if let Some(leg) = leg {
                return Ok(leg);
            }
        }
        Ok(Leg::Done)
    };
    both_ways(input, output).await
}

/// Chooses the node for a new process.
async fn place(node: &Node, spec: &RunSpec) -> Result<NodeId, (String, i32)> {
    let view = node
        .gossip
        .view()
        .await
        .map_err(|e| (e.to_string(), EXIT_SSI_ERROR))?;
    if let Some(id) = spec.node {
        return match view.iter().find(|n| n.id == id) {
            Some(n) if n.state.is_active() => Ok(id),
            Some(n) => Err((
                format!("node {id} ({}) is {}", n.name, n.state),
                EXIT_SSI_ERROR,
            )),
            None => Err((format!("unknown node {id}"), EXIT_SSI_ERROR)),
        };
    }
    let req = crate::sched::state::request(spec.cpus, spec.mem_bytes, &spec.constraints);
    node.sched
        .place(&view, &req, &spec.command_line())
        .ok_or_else(|| {
            (
                format!("no alive node fits the request ({req:?})"),
                EXIT_SSI_ERROR,
            )
        })
}

/// The exit code a client uses for a failed start (as a shell does).
fn spawn_exit_code(errno: i32) -> i32 {
    match errno {
        libc::ENOENT => 127,
        libc::EACCES | libc::ENOEXEC | libc::EPERM | libc::ENOTDIR => 126,
        _ => EXIT_SSI_ERROR,
    }
}

async fn fail(conn: &mut ControlConn, message: String, code: i32) -> Result<()> {
    conn.send(&ControlResponse::Error { message, code }).await?;
    Ok(())
}

/// Serves `ssi run` on a control connection.
pub async fn run(
    node: &Arc<Node>,
    spec: RunSpec,
    caller: Caller,
    mut conn: ControlConn,
) -> Result<()> {
    let host = match place(node, &spec).await {
        Ok(h) => h,
        Err((message, code)) => return fail(&mut conn, message, code).await,
    };
    let host_name = node.name_of(host).await;
    if host == node.config.id {
        let pm = match node.local_procs() {
            Ok(pm) => pm,
            Err(e) => return fail(&mut conn, e.to_string(), EXIT_SSI_ERROR).await,
        };
        let (tx, rx) = mpsc::channel(8);
        let follower = (!spec.detach).then_some(tx);
        let gpid = match pm.spawn(&spec, &caller, follower).await? {
            Ok(gpid) => {
                node.metrics.launched();
                if let Some(f) = spec.ft {
                    crate::ft::protect(node, gpid, caller.uid, f);
                }
                gpid
            }
            Err(f) => {
                let msg = format!("node {host} ({host_name}): {}", f.reason);
                return fail(&mut conn, msg, spawn_exit_code(f.errno)).await;
            }
        };
        conn.send(&ControlResponse::Started {
            gpid,
            node: host,
            node_name: host_name,
        })
        .await?;
        if spec.detach {
            return Ok(());
        }
        return follow(node, gpid, host, &caller, conn, true, Some(Open::Local(rx))).await;
    }
    let remote = async {
        let mut rpc = peer::connect(node, host).await?;
        rpc.send(&RpcRequest::Spawn {
            spec: spec.clone(),
            caller: caller.clone(),
        })
        .await?;
        let answer = rpc.recv::<RpcResponse>().await?;
        Ok::<_, anyhow::Error>((rpc, answer))
    };
    let (rpc, answer) = match remote.await {
        Ok(r) => r,
        Err(e) => return fail(&mut conn, format!("node {host}: {e:#}"), EXIT_SSI_ERROR).await,
    };
    let gpid = match answer {
        Some(RpcResponse::Started { gpid }) => gpid,
        Some(RpcResponse::SpawnFailed { reason, errno }) => {
            let msg = format!("node {host} ({host_name}): {reason}");
            return fail(&mut conn, msg, spawn_exit_code(errno)).await;
        }
        Some(RpcResponse::Error { message }) => {
            return fail(&mut conn, format!("node {host}: {message}"), EXIT_SSI_ERROR).await
        }
        other => {
            let msg = format!("node {host}: unexpected answer {other:?}");
            return fail(&mut conn, msg, EXIT_SSI_ERROR).await;
        }
    };
    node.directory().insert(
        gpid,
        ProcessView {
            gpid,
            ppid: 0,
            node: host,
            node_name: host_name.clone(),
            state: ProcState::Running,
            user: crate::procman::ps::user_name(caller.uid),
            uid: caller.uid,
            cpu_percent: 0.0,
            rss_bytes: 0,
            start_time: ssi_core::auth::unix_ms() / 1000,
            threads: 1,
            command: spec.command_line(),
            to: None,
            ft: spec.ft.map(|f| ssi_core::process::FtView {
                every_ms: f.every_ms,
                ..Default::default()
            }),
        },
    );
    conn.send(&ControlResponse::Started {
        gpid,
        node: host,
        node_name: host_name,
    })
    .await?;
    if spec.detach {
        return Ok(());
    }
    follow(
        node,
        gpid,
        host,
        &caller,
        conn,
        true,
        Some(Open::Remote(Box::new(rpc))),
    )
    .await
}

/// Serves `ssi restart` on a control connection: restores the image on a node, then follows
/// the restored process like `ssi run` does.
pub async fn restart(
    node: &Node,
    dir: String,
    on: Option<NodeId>,
    detach: bool,
    caller: Caller,
    mut conn: ControlConn,
) -> Result<()> {
    let spec = RunSpec {
        argv: vec![format!("restart {dir}").into_bytes()],
        env: Vec::new(),
        cwd: Vec::new(),
        node: on,
        cpus: None,
        mem_bytes: None,
        detach,
        constraints: Vec::new(),
        rlimits: Vec::new(),
        ft: None,
    };
    let host = match place(node, &spec).await {
        Ok(h) => h,
        Err((message, code)) => return fail(&mut conn, message, code).await,
    };
    let restored = if host == node.config.id {
        crate::migration::checkpoint::restart(node, &dir, &caller).await
    } else {
        let req = RpcRequest::Restart {
            dir: dir.clone(),
            caller: caller.clone(),
        };
        match peer::ask(node, host, &req).await {
            Ok(RpcResponse::Restored { gpid, .. }) => Ok(gpid),
            Ok(RpcResponse::Error { message }) => Err(anyhow!("{message}")),
            Ok(other) => Err(anyhow!("unexpected answer {other:?}")),
            Err(e) => Err(e),
        }
    };
    let gpid = match restored {
        Ok(g) => g,
        Err(e) => {
            let msg = format!("node {host}: cannot restart {dir}: {e:#}");
            return fail(&mut conn, msg, EXIT_SSI_ERROR).await;
        }
    };
    let node_name = node.name_of(host).await;
    conn.send(&ControlResponse::Started {
        gpid,
        node: host,
        node_name,
    })
    .await?;
    if detach {
        return Ok(());
    }
    follow(node, gpid, host, &caller, conn, true, None).await
}

/// Serves `ssi attach` on a control connection.
pub async fn attach(node: &Node, gpid: i32, caller: Caller, mut conn: ControlConn) -> Result<()> {
    let host = match route::locate(node, gpid).await {
        Ok(h) => h,
        Err(e) => return fail(&mut conn, e.to_string(), EXIT_SSI_ERROR).await,
    };
    let first = match open(node, gpid, host, &caller, false).await {
        Ok(o) => o,
        Err(e) => return fail(&mut conn, format!("{e:#}"), EXIT_SSI_ERROR).await,
    };
    let node_name = node.name_of(host).await;
    conn.send(&ControlResponse::Started {
        gpid,
        node: host,
        node_name,
    })
    .await?;
    follow(node, gpid, host, &caller, conn, false, Some(first)).await
}

/// A way to follow a process on its current node.
enum Open {
    /// It runs here: its output channel.
    Local(mpsc::Receiver<Output>),
    /// It runs on another node: the session connection to that node.
    Remote(Box<SecureStream<TcpStream>>),
}

/// Starts following `gpid` on `host` (with input when `input`).
async fn open(node: &Node, gpid: i32, host: NodeId, caller: &Caller, input: bool) -> Result<Open> {
    if host == node.config.id {
        let rx = node.local_procs()?.attach(gpid, caller).await?;
        return Ok(Open::Local(rx));
    }
    let mut rpc = peer::connect(node, host).await?;
    rpc.send(&RpcRequest::Attach {
        gpid,
        caller: caller.clone(),
        input,
    })
    .await?;
    Ok(Open::Remote(Box::new(rpc)))
}

/// Follows `gpid` for the client on `conn`, from node to node as it migrates, until it ends,
/// is lost, or the client goes away.
async fn follow(
    node: &Node,
    gpid: i32,
    mut host: NodeId,
    caller: &Caller,
    conn: ControlConn,
    input: bool,
    mut first: Option<Open>,
) -> Result<()> {
    let (mut client_tx, mut client_rx) = conn.split();
    // Input the process's last node gave back because it had moved on: it goes first, in
    // order, to the node it went to.
    let mut carried: Vec<Input> = Vec::new();
    loop {
        let opened = match first.take() {
            Some(o) => Ok(o),
            None => open(node, gpid, host, caller, input).await,
        };
        let leg = match opened {
            Ok(Open::Local(rx)) => {
                let pm = node.local_procs()?;
                let mut back = Vec::new();
                for i in carried.drain(..) {
                    deliver(pm, gpid, i, &mut back).await;
                }
                let leg = follow_local(
                    pm,
                    gpid,
                    rx,
                    &mut client_rx,
                    &mut client_tx,
                    input,
                    &mut back,
                )
                .await?;
                if !back.is_empty() {
                    tracing::info!(
                        gpid,
                        inputs = back.len(),
                        "input that came after the process left goes on to where it went"
                    );
                }
                carried = back;
                leg
            }
            Ok(Open::Remote(rpc)) => {
                let name = node.name_of(host).await;
                let (mut host_tx, host_rx) = (*rpc).split();
                for i in carried.drain(..) {
                    host_tx.send(&RpcRequest::Input(i)).await?;
                }
                relay(
                    node,
                    gpid,
                    host,
                    &name,
                    &mut client_rx,
                    &mut client_tx,
                    (host_tx, host_rx),
                    input,
                    &mut carried,
                )
                .await?
            }
            Err(e) => {
                let why = format!(
                    "process {gpid} moved to node {host} but cannot be followed there: {e:#}"
                );
                client_tx.put(Output::Lost(why)).await?;
                return Ok(());
            }
        };
        match leg {
            Leg::Done => return Ok(()),
            Leg::Moved(to) => {
                tracing::info!(gpid, from = %host, %to, "following a migrated process");
                if let Some(p) = node.directory().get_mut(&gpid) {
                    p.node = to;
                }
                host = to;
            }
        }
    }
}

/// Where `gpid` runs now if its host `host` went away after it had moved on (before the
/// host could say so): the node it runs on, if not `host`.
async fn moved_elsewhere(node: &Node, gpid: i32, host: NodeId) -> Option<NodeId> {
    match route::runs_at(node, gpid).await {
        Some(at) if at != host => {
            tracing::info!(gpid, from = %host, to = %at, "its host went away, but the process runs on elsewhere");
            Some(at)
        }
        _ => None,
    }
}

/// How long a home waits for a fault-tolerant process whose node died to run again
/// elsewhere (detection is over by then; this covers the claim and the restore).
const FT_RESTART_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where `gpid` runs again after its host `host` went away: for a fault-tolerant process,
/// the node that restarted it (waited for, [`FT_RESTART_WAIT`] at most); for others, the node
/// it had moved to, if any.
async fn found_again(node: &Node, gpid: i32, host: NodeId, ft: bool) -> Option<NodeId> {
    if !ft {
        return moved_elsewhere(node, gpid, host).await;
    }
    let deadline = tokio::time::Instant::now() + FT_RESTART_WAIT;
    loop {
        if let Some(at) = moved_elsewhere(node, gpid, host).await {
            tracing::info!(gpid, from = %host, to = %at, "following a fault-tolerant process restarted elsewhere");
            return Some(at);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// How long a home waits, once its process moved, for the input it was sending to go out and
/// for the node the process left to give back what the process could no longer take.
const FENCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The home side of a remote session: client <-> host, until the process ends, is lost, or
/// moves. When it moves, the input being sent goes out whole, the home closes its side, and
/// what the host gives back (input that came after the process left) is added to `carried`,
/// to be sent first where the process went.
#[allow(clippy::too_many_arguments)]
async fn relay(
    node: &Node,
    gpid: i32,
    host: NodeId,
    host_name: &str,
    client_rx: &mut ControlReceiver,
    client_tx: &mut ControlSender,
    (mut host_tx, mut host_rx): (SecureSender<TcpStream>, SecureReceiver<TcpStream>),
    forward_input: bool,
    carried: &mut Vec<Input>,
) -> Result<Leg> {
    let mut events = node.gossip.subscribe();
    // A fault-tolerant process is restarted elsewhere when its node dies: the session waits
    // for it there, and input the dead node did not take is sent there.
    let ft = node.directory().get(&gpid).is_some_and(|p| p.ft.is_some());
    let mut unsent: Vec<Input> = Vec::new();
    let lost = |why: &str| {
        Output::Lost(format!(
            "node {host} ({host_name}) {why}; process {gpid} is lost"
        ))
    };
    // Once the output side ends, the input side is asked to stop between two inputs, never in
    // the middle of sending one.
    let stop = tokio::sync::Notify::new();
    let leg = {
        let input = async {
            loop {
                let next = tokio::select! {
                    biased;
                    () = stop.notified() => return Ok::<(), anyhow::Error>(()),
                    i = client_rx.next_input() => i,
                };
                match next {
                    Ok(Some(i)) if forward_input => {
                        if let Err(e) = host_tx.send(&RpcRequest::Input(i.clone())).await {
                            if !ft {
                                return Err(e.into());
                            }
                            // the host went away: the output side finds where it runs again
                            unsent.push(i);
                            stop.notified().await;
                            return Ok(());
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        // The user went away: hang up, as a terminal would.
                        if forward_input {
                            let _ = host_tx
                                .send(&RpcRequest::Input(Input::Signal(libc::SIGHUP)))
                                .await;
                        }
                        return Ok(());
                    }
                }
            }
        };
        let output = async {
            loop {
                tokio::select! {
                    r = host_rx.recv::<RpcResponse>() => match r {
                        Ok(Some(RpcResponse::Output(o))) => {
                            let leg = match o {
                                Output::Exited(_) => {
                                    node.directory().remove(&gpid);
                                    Some(Leg::Done)
                                }
                                Output::Moved { node: to } => Some(Leg::Moved(to)),
                                _ => None,
                            };
                            client_tx.put(o).await?;
                            if let Some(leg) = leg {
                                return Ok(leg);
                            }
                        }
                        Ok(Some(RpcResponse::Error { message })) => {
                            client_tx.send(&ControlResponse::Error { message, code: EXIT_SSI_ERROR }).await?;
                            return Ok(Leg::Done);
                        }
                        Ok(Some(other)) => return Err(anyhow!("unexpected message from node {host}: {other:?}")),
                        Ok(None) | Err(_) => {
                            if let Some(to) = found_again(node, gpid, host, ft).await {
                                return Ok(Leg::Moved(to));
                            }
                            client_tx.put(lost("went away")).await?;
                            return Ok(Leg::Done);
                        }
                    },
                    ev = events.recv() => {
                        if let Ok(MemberEvent::Dead(id) | MemberEvent::Left(id)) = ev {
                            if id.id == host {
                                if let Some(to) = found_again(node, gpid, host, ft).await {
                                    return Ok(Leg::Moved(to));
                                }
                                client_tx.put(lost("died")).await?;
                                return Ok(Leg::Done);
                            }
                        }
                    }
                }
            }
        };
        tokio::pin!(input);
        tokio::pin!(output);
        let leg = tokio::select! {
            r = &mut output => r?,
            r = &mut input => {
                r?;
                return Ok(Leg::Done);
            }
        };
        // however the output side ended (a move told or found, an end, a loss)
        stop.notify_one();
        if matches!(leg, Leg::Moved(_))
            && tokio::time::timeout(FENCE_TIMEOUT, &mut input)
                .await
                .is_err()
        {
            tracing::warn!(gpid, %host, "input to a moved process was still being sent: dropped");
        }
        leg
    };
    if matches!(leg, Leg::Moved(_)) {
        let _ = host_tx.close().await;
        let back = tokio::time::timeout(FENCE_TIMEOUT, async {
            loop {
                match host_rx.recv::<RpcResponse>().await {
                    Ok(Some(RpcResponse::Undelivered { inputs })) => return inputs,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return Vec::new(),
                }
            }
        })
        .await
        .unwrap_or_default();
        carried.extend(back);
    }
    carried.extend(unsent);
    Ok(leg)
}
