//! The daemon's side of the init channel: starting the init, and asking it things.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use ssi_core::pids::PidRange;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

use super::{ExitStatus, FromInit, SpawnRequest, ToInit, MAX_MESSAGE};
use crate::sys;

/// A started init: its process (in the root namespace) and the daemon's end of the channel.
#[derive(Debug)]
pub struct Started {
    /// The init process.
    pub child: Child,
    /// The channel.
    pub sock: OwnedFd,
}

/// Creates the node's pid namespace and its init. Must run before the daemon starts any
/// thread: `unshare(CLONE_NEWPID)` makes the next child of this process land in a new
/// namespace as its pid 1. The kernel refuses to create threads while a process's children
/// would land in another pid namespace than its own, so the daemon goes back to its own
/// namespace for children (`setns`) right after starting the init. With `hostname`, the init
/// puts the node's processes in a UTS namespace of their own with that host name.
pub fn start_init(range: PidRange, hostname: Option<&str>) -> Result<Started> {
    let own = std::fs::File::open("/proc/self/ns/pid").context("cannot open /proc/self/ns/pid")?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)
        .context("cannot create the node's pid namespace (unshare CLONE_NEWPID)")?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("cannot create the init channel")?;
    // The init inherits its end across exec.
    fcntl(&theirs, FcntlArg::F_SETFD(FdFlag::empty())).context("fcntl")?;
    let mut init = Command::new("/proc/self/exe");
    init.arg("ns-init")
        .arg("--fd")
        .arg(theirs.as_raw_fd().to_string())
        .arg("--first")
        .arg(range.first.to_string())
        .arg("--last")
        .arg(range.last.to_string())
        .stdin(std::process::Stdio::null());
    if let Some(h) = hostname {
        init.arg("--hostname").arg(h);
    }
    let child = init.spawn();
    nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWPID)
        .context("cannot return to the daemon's own pid namespace")?;
    let child = child.context("cannot start the namespace init")?;
    drop(theirs);
    Ok(Started { child, sock: ours })
}

/// Why a spawn failed.
#[derive(Debug, Clone)]
pub struct SpawnFailure {
    /// One line.
    pub reason: String,
    /// The errno (ENOENT: not found, EACCES: not executable, ...).
    pub errno: i32,
}

/// What the init tells the process manager, in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitEvent {
    /// A program was started under this pid (before its answer reaches the requester, and
    /// before any exit of it).
    Spawned(i32),
    /// A process of the namespace ended.
    Exited(i32, ExitStatus),
}

/// Someone waiting for the answer to a request, and whether a start is announced as an event.
type Waiter = (oneshot::Sender<FromInit>, bool);

/// Talks to the init; clonable through `Arc`.
#[derive(Debug)]
pub struct InitClient {
    sock: AsyncFd<OwnedFd>,
    pending: Mutex<VecDeque<Waiter>>,
    send_lock: tokio::sync::Mutex<()>,
}

fn gone() -> anyhow::Error {
    anyhow::anyhow!("the node's namespace init is gone")
}

impl InitClient {
    /// Wraps the channel and starts reading it; exits of processes go to `exits`. When the
    /// init goes away, `exits` is closed.
    pub fn start(sock: OwnedFd, exits: mpsc::Sender<InitEvent>) -> Result<Arc<Self>> {
        fcntl(&sock, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).context("fcntl")?;
        let client = Arc::new(InitClient {
            sock: sys::async_fd(sock).context("cannot register the init channel")?,
            pending: Mutex::new(VecDeque::new()),
            send_lock: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(client.clone().read_loop(exits));
        Ok(client)
    }

    async fn read_loop(self: Arc<Self>, exits: mpsc::Sender<InitEvent>) {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let got = self
                .sock
                .async_io(tokio::io::Interest::READABLE, |fd| {
                    sys::recv_with_fds(fd.as_raw_fd(), &mut buf).map_err(std::io::Error::from)
                })
                .await;
            let n = match got {
                Ok((0, _)) | Err(_) => break,
                Ok((n, _)) => n,
            };
            let msg: FromInit = match postcard::from_bytes(&buf[..n]) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(error = %e, "undecodable message from the namespace init");
                    continue;
                }
            };
            match msg {
                FromInit::Exited { pid, status } => {
                    let _ = exits.send(InitEvent::Exited(pid, status)).await;
                }
                reply => {
                    let waiter = self.lock_pending().pop_front();
                    if let Some((w, announce)) = waiter {
                        if let (true, FromInit::Spawned { gpid }) = (announce, &reply) {
                            let _ = exits.send(InitEvent::Spawned(*gpid)).await;
                        }
                        let _ = w.send(reply);
                    }
                }
            }
        }
        tracing::error!("the namespace init closed its channel");
        self.lock_pending().clear();
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiter>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn request(&self, msg: &ToInit, fds: &[RawFd]) -> Result<FromInit> {
        let announce = matches!(msg, ToInit::Spawn(_));
        if fds.len() > sys::MAX_FDS {
            bail!(
                "{} fds in one request; the init takes at most {}",
                fds.len(),
                sys::MAX_FDS
            );
        }
        let bytes = postcard::to_stdvec(msg).context("cannot encode a request")?;
        if bytes.len() > MAX_MESSAGE {
            bail!(
                "request too large ({} bytes; arguments and environment must stay under {} KiB)",
                bytes.len(),
                MAX_MESSAGE / 1024
            );
        }
        let (tx, rx) = oneshot::channel();
        {
            let _order = self.send_lock.lock().await;
            self.lock_pending().push_back((tx, announce));
            let sent = self
                .sock
                .async_io(tokio::io::Interest::WRITABLE, |fd| {
                    sys::send_with_fds(fd.as_raw_fd(), &bytes, fds).map_err(std::io::Error::from)
                })
                .await;
            if let Err(e) = sent {
                self.lock_pending().pop_back();
                if e.raw_os_error() == Some(Errno::EMSGSIZE as i32) {
                    bail!("request too large for the init channel");
                }
                return Err(gone());
            }
        }
        rx.await.map_err(|_| gone())
    }

    /// Starts a program; returns its global pid.
    pub async fn spawn(
        &self,
        req: SpawnRequest,
        stdio: [&OwnedFd; 3],
    ) -> Result<Result<i32, SpawnFailure>> {
        let fds = stdio.map(|f| f.as_raw_fd());
        match self.request(&ToInit::Spawn(req), &fds).await? {
            FromInit::Spawned { gpid } => Ok(Ok(gpid)),
            FromInit::SpawnFailed { reason, errno } => Ok(Err(SpawnFailure { reason, errno })),
            other => bail!("unexpected answer from the namespace init: {other:?}"),
        }
    }

    /// Starts one of ssid's helpers in the namespace (as root) with `fds` as its fds 0, 1, ...;
    /// returns its pid in the namespace.
    pub async fn helper(&self, argv: Vec<Vec<u8>>, fds: &[&OwnedFd]) -> Result<i32> {
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        match self.request(&ToInit::Helper { argv }, &raw).await? {
            FromInit::Spawned { gpid } => Ok(gpid),
            FromInit::SpawnFailed { reason, .. } => bail!("{reason}"),
            other => bail!("unexpected answer from the namespace init: {other:?}"),
        }
    }

    /// Sends `sig` to `target` (pid, or -pgid) inside the namespace.
    pub async fn signal(&self, target: i32, sig: i32) -> Result<()> {
        match self.request(&ToInit::Signal { target, sig }, &[]).await? {
            FromInit::Signalled { error: None } => Ok(()),
            FromInit::Signalled { error: Some(e) } => bail!("{e}"),
            other => bail!("unexpected answer from the namespace init: {other:?}"),
        }
    }
}
