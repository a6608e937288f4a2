//! The daemon's side of a helper: starting it in the node's namespace with its job and its
//! descriptors, giving it orders, reading its reports. Every wait for a report has a deadline
//! (`limits.helper_timeout`): a helper that does not report in time is killed (SIGKILL; a
//! tree it was restoring dies with it, one it was dumping is let go by ptrace) and the
//! request fails saying so.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use migrate::control::{self, Job, Order, Report};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::helpers::{HelperFds, MODE};
use crate::node::Node;
use crate::procman::ProcMan;

/// A started helper: its pid in the node's namespace, how many reports came from it, and
/// whether it is gone (its control socket closed: its pid may be another's by now).
#[derive(Debug, Clone)]
pub struct Started {
    pid: i32,
    reports: Arc<AtomicU64>,
    gone: Arc<AtomicBool>,
}

/// Where the daemon gives a helper its orders.
#[derive(Debug)]
pub struct Orders {
    w: OwnedWriteHalf,
    helper: Started,
}

/// Where the daemon reads a helper's reports.
#[derive(Debug)]
pub struct Reports {
    r: OwnedReadHalf,
    helper: Started,
}

impl Started {
    /// Kills the helper if it made no report since `seen` reports for `timeout` (it is waited
    /// on for something): the reader of its reports then sees it gone.
    pub fn deadline(&self, node: &Arc<Node>, seen: u64, timeout: Duration, what: String) {
        let (node, me) = (node.clone(), self.clone());
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if me.reports.load(Ordering::SeqCst) == seen && !me.gone.load(Ordering::SeqCst) {
                tracing::warn!(pid = me.pid, %what, ?timeout, "helper did not report in time: killed");
                me.kill(&node).await;
            }
        });
    }

    async fn kill(&self, node: &Node) {
        if self.gone.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(pm) = node.local_procs() {
            if let Err(e) = pm.kill_helper(self.pid).await {
                tracing::warn!(pid = self.pid, error = %format!("{e:#}"), "cannot kill a helper");
            }
        }
    }
}

/// Starts a helper for `job` with the data stream `data` and the restored tree's streams
/// `stdio`, if it needs them.
pub async fn start(
    pm: &ProcMan,
    job: &Job,
    data: Option<OwnedFd>,
    stdio: Option<[OwnedFd; 3]>,
) -> Result<(Orders, Reports)> {
    let (ours, theirs) = StdUnixStream::pair().context("cannot create a socket pair")?;
    ours.set_nonblocking(true).context("nonblocking")?;
    let ours = UnixStream::from_std(ours)?;
    let null: OwnedFd = std::fs::File::open("/dev/null")
        .context("cannot open /dev/null")?
        .into();
    let log = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot duplicate stderr")?;
    let fds = HelperFds {
        control: theirs.into(),
        log,
        data,
        stdio,
    };
    let argv = vec![b"/proc/self/exe".to_vec(), MODE.as_bytes().to_vec()];
    let pid = pm
        .helper(argv, &fds.in_order(&null))
        .await
        .context("cannot start the helper")?;
    let helper = Started {
        pid,
        reports: Arc::new(AtomicU64::new(0)),
        gone: Arc::new(AtomicBool::new(false)),
    };
    // it holds its copies now: ours go, so that its end closes when it ends
    drop(fds);
    let (r, w) = ours.into_split();
    let mut orders = Orders {
        w,
        helper: helper.clone(),
    };
    orders.send(job).await?;
    Ok((orders, Reports { r, helper }))
}

impl Orders {
    async fn send<T: serde::Serialize>(&mut self, msg: &T) -> Result<()> {
        let bytes = control::encode(msg)?;
        self.w
            .write_all(&bytes)
            .await
            .context("cannot talk to the helper")
    }

    /// Gives the helper an order.
    pub async fn order(&mut self, o: &Order) -> Result<()> {
        self.send(o).await
    }

    /// The helper these orders go to.
    pub fn helper(&self) -> &Started {
        &self.helper
    }

    /// How many reports came from the helper so far.
    pub fn reports_seen(&self) -> u64 {
        self.helper.reports.load(Ordering::SeqCst)
    }
}

impl Reports {
    /// The helper's next report; `None` once it closed its control socket.
    pub async fn next(&mut self) -> Result<Option<Report>> {
        let mut head = [0u8; 4];
        match self.r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) => {
                self.helper.gone.store(true, Ordering::SeqCst);
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    return Ok(None);
                }
                return Err(e).context("helper control socket");
            }
        }
        let mut body = vec![0u8; control::body_len(head)?];
        self.r
            .read_exact(&mut body)
            .await
            .context("helper control socket")?;
        self.helper.reports.fetch_add(1, Ordering::SeqCst);
        Ok(Some(control::decode(&body)?))
    }

    /// The helper's next report within `timeout`; a helper silent for longer is killed and
    /// this fails naming `what` it was doing.
    pub async fn next_within(
        &mut self,
        node: &Node,
        timeout: Duration,
        what: &str,
    ) -> Result<Option<Report>> {
        match tokio::time::timeout(timeout, self.next()).await {
            Ok(r) => r,
            Err(_) => {
                self.helper.kill(node).await;
                bail!(
                    "the {what} helper did not finish within {} ms (limits.helper_timeout_ms): \
                     killed",
                    timeout.as_millis()
                )
            }
        }
    }
}
