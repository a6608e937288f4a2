//! Carrying a process's stdout and stderr to whoever follows it.
//!
//! Two pumps read the pipes in chunks of up to 64 KiB and hand them to one distributor per
//! process. While someone is attached, the distributor forwards each chunk and waits until it
//! is taken: a slow reader slows the pumps, the pipes fill, and the program blocks on write,
//! so nothing is lost however large or fast the output. While nobody is attached (a detached
//! run), the distributor keeps the last [`RING_BYTES`] of output for the next `attach` and lets
//! the program run freely, counting what it drops.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::time::Duration;

use ssi_core::process::{ExitStatus, Output};
use ssi_core::NodeId;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};

/// Output kept for a detached process.
pub const RING_BYTES: usize = 1 << 20;
/// How long to wait for the pipes to close after the process exited (a background child may
/// hold them open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
const CHUNK: usize = 64 * 1024;

enum Chunk {
    Data(Output),
    Eof,
}

/// How a hosted process stopped being hosted here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// It exited.
    Exited(ExitStatus),
    /// It moved to another node.
    Moved(NodeId),
    /// It arrived by migration but was discarded here: why (it runs on at its source, or is
    /// lost with it).
    Discarded(String),
}

impl End {
    fn output(self) -> Output {
        match self {
            End::Exited(s) => Output::Exited(s),
            End::Moved(node) => Output::Moved { node },
            End::Discarded(why) => Output::Lost(why),
        }
    }
}

/// Starts the pumps and the distributor of one process; `finished` runs once the exit status
/// has been handed to a follower.
pub fn start(
    stdout: OwnedFd,
    stderr: OwnedFd,
    attach: mpsc::Receiver<mpsc::Sender<Output>>,
    exit: watch::Receiver<Option<End>>,
    first: Option<mpsc::Sender<Output>>,
    finished: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = mpsc::channel(8);
    let out = pipe::Receiver::from_owned_fd(stdout)?;
    let err = pipe::Receiver::from_owned_fd(stderr)?;
    tokio::spawn(pump(out, tx.clone(), Output::Stdout));
    tokio::spawn(pump(err, tx, Output::Stderr));
    let dist = Distributor {
        ring: VecDeque::new(),
        ring_bytes: 0,
        dropped: 0,
        follower: first,
    };
    tokio::spawn(dist.run(rx, attach, exit, finished));
    Ok(())
}

async fn pump(mut pipe: pipe::Receiver, tx: mpsc::Sender<Chunk>, wrap: fn(Vec<u8>) -> Output) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(Chunk::Data(wrap(buf[..n].to_vec()))).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(Chunk::Eof).await;
}

struct Distributor {
    ring: VecDeque<Output>,
    ring_bytes: usize,
    dropped: u64,
    follower: Option<mpsc::Sender<Output>>,
}

fn size(o: &Output) -> usize {
    match o {
        Output::Stdout(b) | Output::Stderr(b) => b.len(),
        _ => 0,
    }
}

impl Distributor {
    async fn run(
        mut self,
        mut chunks: mpsc::Receiver<Chunk>,
        mut attach: mpsc::Receiver<mpsc::Sender<Output>>,
        mut exit: watch::Receiver<Option<End>>,
        finished: impl FnOnce(),
    ) {
        let mut open_pipes = 2;
        let mut status: Option<End> = exit.borrow().clone();
        let mut exit_watch_open = true;
        let grace = tokio::time::sleep(Duration::from_secs(u64::MAX / 4));
        tokio::pin!(grace);
        loop {
            if let Some(st) = &status {
                if open_pipes == 0 {
                    if self.deliver(st.clone().output()).await {
                        finished();
                        return;
                    }
                    // Nobody follows: wait for an attach to hand the status over.
                    match attach.recv().await {
                        Some(f) => self.attach(f).await,
                        None => return,
                    }
                    continue;
                }
            }
            tokio::select! {
                c = chunks.recv(), if open_pipes > 0 => match c {
                    Some(Chunk::Data(o)) => {
                        self.deliver(o).await;
                    }
                    Some(Chunk::Eof) | None => open_pipes -= 1,
                },
                f = attach.recv() => match f {
                    Some(f) => self.attach(f).await,
                    None => return,
                },
                changed = exit.changed(), if exit_watch_open && status.is_none() => {
                    if changed.is_err() {
                        exit_watch_open = false;
                    } else {
                        status = exit.borrow().clone();
                        if status.is_some() {
                            grace.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                        }
                    }
                }
                () = &mut grace, if status.is_some() && open_pipes > 0 => {
                    open_pipes = 0;
                }
            }
        }
    }

    /// A new follower takes over (the previous one is dropped) and first gets what was kept.
    async fn attach(&mut self, f: mpsc::Sender<Output>) {
        self.follower = None;
        if self.dropped > 0 {
            let d = std::mem::take(&mut self.dropped);
            if f.send(Output::Dropped(d)).await.is_err() {
                self.dropped = d;
                return;
            }
        }
        while let Some(o) = self.ring.pop_front() {
            let n = size(&o);
            match f.send(o).await {
                Ok(()) => self.ring_bytes -= n,
                Err(mpsc::error::SendError(back)) => {
                    self.ring.push_front(back);
                    return;
                }
            }
        }
        self.follower = Some(f);
    }

    /// Hands `o` to the follower; keeps it when nobody follows. True when a follower took it.
    async fn deliver(&mut self, o: Output) -> bool {
        if let Some(f) = &self.follower {
            match f.send(o).await {
                Ok(()) => return true,
                Err(mpsc::error::SendError(back)) => {
                    self.follower = None;
                    self.keep(back);
                }
            }
        } else {
            self.keep(o);
        }
        false
    }

    fn keep(&mut self, o: Output) {
        if matches!(o, Output::Exited(_) | Output::Moved { .. }) {
            return;
        }
        self.ring_bytes += size(&o);
        self.ring.push_back(o);
        while self.ring_bytes > RING_BYTES {
            match self.ring.pop_front() {
                Some(old) => {
                    self.ring_bytes -= size(&old);
                    self.dropped += size(&old) as u64;
                }
                None => break,
            }
        }
    }
}
