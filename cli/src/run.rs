//! `ssi run` and `ssi attach`: a process somewhere in the cluster, wired to this terminal.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ssi_core::control::{ControlReceiver, ControlRequest, ControlResponse, ControlSender};
use ssi_core::process::{Input, Output, RunSpec, EXIT_LOST};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

/// Signals the client forwards to the process group of the program.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// What `ssi run` was told on the command line.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// Command and arguments.
    pub command: Vec<std::ffi::OsString>,
    /// Node to run on.
    pub node: Option<u16>,
    /// CPUs needed.
    pub cpus: Option<u32>,
    /// Memory needed, bytes.
    pub mem: Option<u64>,
    /// Return after the start.
    pub detach: bool,
    /// Labels the node must carry.
    pub constraints: Vec<(String, String)>,
    /// Fault tolerance (`--ft`).
    pub ft: Option<ssi_core::process::FtSpec>,
}

/// Time between two checkpoints of `ssi run --ft` without `--checkpoint-every`.
pub const DEFAULT_CHECKPOINT_MS: u64 = 10_000;

/// Runs the command; returns the exit code the client must exit with.
pub async fn run(socket: &Path, args: RunArgs) -> Result<i32> {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let spec = RunSpec {
        argv: args.command.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: current_env(),
        cwd: cwd.as_os_str().as_bytes().to_vec(),
        node: args.node.map(ssi_core::NodeId),
        cpus: args.cpus,
        mem_bytes: args.mem,
        detach: args.detach,
        constraints: args.constraints,
        rlimits: current_rlimits(),
        ft: args.ft,
    };
    let detach = spec.detach;
    session(socket, ControlRequest::Run(spec), detach).await
}

/// This process's resource limits, as (`RLIMIT_*` number, soft, hard).
pub fn current_rlimits() -> Vec<(u32, u64, u64)> {
    use nix::sys::resource::{getrlimit, Resource};
    [
        Resource::RLIMIT_CPU,
        Resource::RLIMIT_FSIZE,
        Resource::RLIMIT_DATA,
        Resource::RLIMIT_STACK,
        Resource::RLIMIT_CORE,
        Resource::RLIMIT_RSS,
        Resource::RLIMIT_NPROC,
        Resource::RLIMIT_NOFILE,
        Resource::RLIMIT_MEMLOCK,
        Resource::RLIMIT_AS,
        Resource::RLIMIT_LOCKS,
        Resource::RLIMIT_SIGPENDING,
        Resource::RLIMIT_MSGQUEUE,
        Resource::RLIMIT_NICE,
        Resource::RLIMIT_RTPRIO,
        Resource::RLIMIT_RTTIME,
    ]
    .into_iter()
    .filter_map(|r| getrlimit(r).ok().map(|(soft, hard)| (r as u32, soft, hard)))
    .collect()
}

/// This process's environment, as `KEY=VALUE` entries.
pub fn current_env() -> Vec<Vec<u8>> {
    std::env::vars_os()
        .map(|(k, v)| {
            let mut e = k.as_bytes().to_vec();
            e.push(b'=');
            e.extend_from_slice(v.as_bytes());
            e
        })
        .collect()
}

/// Sends `req` (a run or a restart), then follows the process unless `detach`; returns the
/// exit code the client must exit with.
pub async fn session(socket: &Path, req: ControlRequest, detach: bool) -> Result<i32> {
    let mut conn = crate::client::connect(socket).await?;
    conn.send(&req).await?;
    let gpid = match conn.recv::<ControlResponse>().await? {
        Some(ControlResponse::Started { gpid, .. }) => gpid,
        Some(ControlResponse::Error { message, code }) => {
            eprintln!("ssi: {message}");
            return Ok(code);
        }
        other => bail!("unexpected answer from ssid: {other:?}"),
    };
    if detach {
        println!("{gpid}");
        return Ok(0);
    }
    let (tx, rx) = conn.split();
    tokio::spawn(forward_input(tx));
    follow(rx).await
}

/// Follows the output of a running process; returns its exit code.
pub async fn attach(socket: &Path, gpid: i32) -> Result<i32> {
    let mut conn = crate::client::connect(socket).await?;
    conn.send(&ControlRequest::Attach { gpid }).await?;
    match conn.recv::<ControlResponse>().await? {
        Some(ControlResponse::Started { .. }) => {}
        Some(ControlResponse::Error { message, code }) => {
            eprintln!("ssi: {message}");
            return Ok(code);
        }
        other => bail!("unexpected answer from ssid: {other:?}"),
    }
    let (_tx, rx) = conn.split();
    follow(rx).await
}

/// Sends our stdin and the signals we receive to the process.
async fn forward_input(mut tx: ControlSender) {
    let (sig_tx, mut sig_rx) = tokio::sync::mpsc::channel::<i32>(16);
    for sig in FORWARDED {
        let Ok(mut stream) = signal(SignalKind::from_raw(sig)) else {
            continue;
        };
        let sig_tx = sig_tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if sig_tx.send(sig).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 64 * 1024];
    let mut stdin_open = true;
    loop {
        let input = tokio::select! {
            n = stdin.read(&mut buf), if stdin_open => match n {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    Input::StdinEof
                }
                Ok(n) => Input::Stdin(buf[..n].to_vec()),
            },
            Some(sig) = sig_rx.recv() => Input::Signal(sig),
        };
        if tx.send(&ControlRequest::Input(input)).await.is_err() {
            return;
        }
    }
}

/// Writes the process's output here until it ends; returns the exit code.
async fn follow(mut rx: ControlReceiver) -> Result<i32> {
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    loop {
        match rx.recv::<ControlResponse>().await {
            Ok(Some(ControlResponse::Output(o))) => match o {
                Output::Stdout(b) => {
                    // A closed stdout (e.g. `| head`) ends our interest, as for a local program.
                    if out.write_all(&b).await.is_err() || out.flush().await.is_err() {
                        return Ok(141);
                    }
                }
                Output::Stderr(b) => {
                    let _ = err.write_all(&b).await;
                    let _ = err.flush().await;
                }
                Output::Dropped(n) => {
                    eprintln!("ssi: {n} bytes of earlier output were dropped while detached");
                }
                Output::Exited(status) => return Ok(status.shell_code()),
                // The daemons follow a migrating process; nothing to do here.
                Output::Moved { .. } => {}
                Output::Lost(why) => {
                    eprintln!("ssi: {why}");
                    return Ok(EXIT_LOST);
                }
            },
            Ok(Some(ControlResponse::Error { message, code })) => {
                eprintln!("ssi: {message}");
                return Ok(code);
            }
            Ok(Some(other)) => bail!("unexpected message from ssid: {other:?}"),
            Ok(None) | Err(_) => {
                eprintln!("ssi: lost the connection to ssid; the process may still run");
                return Ok(EXIT_LOST);
            }
        }
    }
}
