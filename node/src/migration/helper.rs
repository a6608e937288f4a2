//! The daemon's side of a helper: starting it in the node's namespace with its job and its
//! descriptors, giving it orders, reading its reports.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;

use anyhow::{Context, Result};
use migrate::control::{self, Job, Order, Report};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::helpers::{HelperFds, MODE};
use crate::procman::ProcMan;

/// Where the daemon gives a helper its orders.
#[derive(Debug)]
pub struct Orders(OwnedWriteHalf);

/// Where the daemon reads a helper's reports.
#[derive(Debug)]
pub struct Reports(OwnedReadHalf);

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
    pm.helper(argv, &fds.in_order(&null))
        .await
        .context("cannot start the helper")?;
    // it holds its copies now: ours go, so that its end closes when it ends
    drop(fds);
    let (r, w) = ours.into_split();
    let mut orders = Orders(w);
    orders.send(job).await?;
    Ok((orders, Reports(r)))
}

impl Orders {
    async fn send<T: serde::Serialize>(&mut self, msg: &T) -> Result<()> {
        let bytes = control::encode(msg)?;
        self.0
            .write_all(&bytes)
            .await
            .context("cannot talk to the helper")
    }

    /// Gives the helper an order.
    pub async fn order(&mut self, o: &Order) -> Result<()> {
        self.send(o).await
    }
}

impl Reports {
    /// The helper's next report; `None` once it closed its control socket.
    pub async fn next(&mut self) -> Result<Option<Report>> {
        let mut head = [0u8; 4];
        match self.0.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e).context("helper control socket"),
        }
        let mut body = vec![0u8; control::body_len(head)?];
        self.0
            .read_exact(&mut body)
            .await
            .context("helper control socket")?;
        Ok(Some(control::decode(&body)?))
    }
}
