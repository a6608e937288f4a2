//! A hosted process's standard input. What its user sends is queued here and written into its
//! stdin pipe by a task of its own, as fast as the program reads; a sender waits while the
//! queue is full (back-pressure up to the client). When the process moves to another node,
//! [`Stdin::hand_over`] stops the writing and takes out, in order, what the program has not
//! read: the bytes in the pipe, then the queue, and whether the input had ended. The target
//! node's daemon puts them in front of its own queue ([`Stdin::feed_front`]).

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use ssi_core::rpc::Handover;
use tokio::net::unix::pipe;
use tokio::sync::Notify;

/// Bytes queued beyond which a sender waits for the program to read.
const QUEUE_LIMIT: usize = 256 << 10;
/// Bytes written into the pipe at once.
const CHUNK: usize = 64 << 10;

#[derive(Debug, Default)]
struct State {
    /// The write end of the stdin pipe, until the input ends, the program closes its stdin or
    /// the process moves away.
    pipe: Option<Arc<pipe::Sender>>,
    /// A read end of the pipe taken when the input ended: what is left in the pipe can still
    /// be counted and handed over, and the program still sees end of file.
    rest: Option<OwnedFd>,
    /// Bytes not yet in the pipe.
    queue: Vec<u8>,
    /// The input ends after the queue.
    eof: bool,
    /// The process moved away (its input was handed over).
    moved: bool,
}

impl State {
    /// No more input goes in: it has no pipe (none from the start, the program closed its
    /// stdin, or the process moved away).
    fn closed(&self) -> bool {
        self.pipe.is_none() && self.rest.is_none()
    }
}

/// The stdin of one hosted process (see the module doc).
#[derive(Debug)]
pub struct Stdin {
    state: Mutex<State>,
    /// Wakes the writer (new bytes, end of input, the record gone) and senders waiting for
    /// room.
    changed: Arc<Notify>,
}

impl Drop for Stdin {
    fn drop(&mut self) {
        self.changed.notify_waiters();
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A read end of the pipe whose write end is `w`, non-blocking (Linux lets a pipe be opened
/// again, in the other direction, through /proc).
fn read_end(w: &impl AsRawFd) -> Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", w.as_raw_fd());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .with_context(|| format!("cannot open the stdin pipe for reading through {path}"))?;
    Ok(f.into())
}

/// Everything in the pipe behind `r` now (non-blocking reads until it is empty).
fn drain(r: &OwnedFd) -> Result<Vec<u8>> {
    let mut f = std::fs::File::from(r.try_clone().context("cannot duplicate a pipe end")?);
    let mut out = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(out),
            Err(e) => return Err(e).context("cannot read the stdin pipe"),
        }
    }
}

impl Stdin {
    /// The stdin of a process whose stdin pipe has the write end `w` (`None`: it has no input,
    /// e.g. it was started detached with /dev/null). Starts the writer task.
    pub fn start(w: Option<OwnedFd>) -> Result<Arc<Stdin>> {
        let pipe = match w {
            Some(w) => Some(Arc::new(
                pipe::Sender::from_owned_fd(w).context("cannot watch the stdin pipe")?,
            )),
            None => None,
        };
        let has_pipe = pipe.is_some();
        let me = Arc::new(Stdin {
            state: Mutex::new(State {
                pipe,
                ..State::default()
            }),
            changed: Arc::new(Notify::new()),
        });
        if has_pipe {
            tokio::spawn(writer(Arc::downgrade(&me), me.changed.clone()));
        }
        Ok(me)
    }

    /// Queues `bytes` for the program, then waits while the queue is over its limit: a sender
    /// that is cancelled while it waits loses nothing. Bytes for a program that closed its
    /// stdin are dropped, as a pipe would refuse them. False if the process moved away: the
    /// bytes were not taken (the caller sends them where it went).
    pub async fn send(&self, bytes: &[u8]) -> bool {
        {
            let st = &mut *lock(&self.state);
            if st.moved {
                return false;
            }
            if st.closed() || st.eof {
                return true;
            }
            st.queue.extend_from_slice(bytes);
        }
        self.changed.notify_waiters();
        loop {
            let room = self.changed.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let st = lock(&self.state);
                if st.closed() || st.queue.len() <= QUEUE_LIMIT {
                    return true;
                }
            }
            room.await;
        }
    }

    /// The input ends once the queue is written. False if the process moved away (see
    /// [`Stdin::send`]).
    pub fn end(&self) -> bool {
        {
            let mut st = lock(&self.state);
            if st.moved {
                return false;
            }
            st.eof = true;
        }
        self.changed.notify_waiters();
        true
    }

    /// Bytes the program has not read yet: queued here or in its pipe.
    pub fn unread(&self) -> usize {
        let st = lock(&self.state);
        let in_pipe = match (&st.pipe, &st.rest) {
            (Some(w), _) => crate::sys::pipe_unread(w.as_fd()).unwrap_or(0),
            (None, Some(r)) => crate::sys::pipe_unread(r.as_fd()).unwrap_or(0),
            (None, None) => 0,
        };
        st.queue.len() + in_pipe
    }

    /// Stops the input of a process that moved away (its copy here is frozen and reads no
    /// more) and takes out what it had not read. Input sent from now on is refused (see
    /// [`Stdin::send`]).
    pub fn hand_over(&self) -> Result<Handover> {
        let mut st = lock(&self.state);
        let reader = match st.pipe.clone() {
            Some(w) => Some(read_end(w.as_ref())?),
            None => st.rest.take(),
        };
        let mut bytes = match &reader {
            Some(r) => drain(r)?,
            None => Vec::new(),
        };
        bytes.append(&mut st.queue);
        let eof = st.eof;
        st.pipe = None;
        st.moved = true;
        st.eof = false;
        drop(st);
        self.changed.notify_waiters();
        Ok(Handover { bytes, eof })
    }

    /// Puts what a process had not read on the node it came from in front of its input here.
    pub fn feed_front(&self, left: Handover) {
        let mut st = lock(&self.state);
        if st.closed() {
            return;
        }
        st.queue.splice(0..0, left.bytes);
        st.eof |= left.eof;
        drop(st);
        self.changed.notify_waiters();
    }
}

/// Writes the queue into the pipe as the program reads, then closes the pipe at the end of
/// the input; ends when the pipe is gone (end of input, program closed its stdin, hand-over)
/// or the process record is.
async fn writer(me: std::sync::Weak<Stdin>, changed: Arc<Notify>) {
    loop {
        let wake = changed.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let w = {
            let Some(stdin) = me.upgrade() else { return };
            let mut st = lock(&stdin.state);
            let Some(w) = st.pipe.clone() else { return };
            if st.queue.is_empty() {
                if st.eof {
                    // Keep a read end, so what the program has not read can still be counted
                    // and handed over; it sees end of file once it has read it.
                    match read_end(w.as_ref()) {
                        Ok(r) => st.rest = Some(r),
                        Err(e) => {
                            tracing::debug!(error = %format!("{e:#}"), "stdin left uncounted")
                        }
                    }
                    st.pipe = None;
                    return;
                }
                None
            } else {
                Some(w)
            }
        };
        let Some(w) = w else {
            wake.await;
            continue;
        };
        if w.writable().await.is_err() {
            return;
        }
        let Some(stdin) = me.upgrade() else { return };
        let mut st = lock(&stdin.state);
        // under the lock: a hand-over sees the pipe and the queue as one
        if st.pipe.as_ref().is_none_or(|p| !Arc::ptr_eq(p, &w)) {
            return;
        }
        let n = st.queue.len().min(CHUNK);
        match w.try_write(&st.queue[..n]) {
            Ok(done) => {
                st.queue.drain(..done);
                drop(st);
                changed.notify_waiters();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                // the program closed its stdin: no more input for it
                st.queue.clear();
                st.pipe = None;
                drop(st);
                changed.notify_waiters();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe_pair() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
    }

    async fn read_some(r: &OwnedFd, want: usize) -> Vec<u8> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut got = Vec::new();
        let mut f = std::fs::File::from(r.try_clone().expect("dup"));
        let mut buf = vec![0u8; 1 << 16];
        while got.len() < want && std::time::Instant::now() < deadline {
            // the read end is blocking: read only what is there
            let n = crate::sys::pipe_unread(r.as_fd()).expect("FIONREAD");
            if n == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
            let m = n.min(buf.len()).min(want - got.len());
            let k = f.read(&mut buf[..m]).expect("read");
            got.extend_from_slice(&buf[..k]);
        }
        got
    }

    #[tokio::test]
    async fn input_reaches_the_pipe_in_order_then_end_of_file() {
        let (r, w) = pipe_pair();
        let s = Stdin::start(Some(w)).expect("start");
        s.send(b"hello ").await;
        s.send(b"world").await;
        s.end();
        assert_eq!(read_some(&r, 11).await, b"hello world");
        // end of file once the writer let go of the pipe
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while lock(&s.state).pipe.is_some() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut f = std::fs::File::from(r);
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).expect("read to end");
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_hand_over_takes_the_pipe_then_the_queue_and_the_end() {
        let (r, w) = pipe_pair();
        let s = Stdin::start(Some(w)).expect("start");
        // more than a pipe holds: part in the pipe, the rest queued
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        s.send(&data).await;
        s.end();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.unread() < data.len() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let first = read_some(&r, 1000).await;
        assert_eq!(first, data[..1000]);
        let left = s.hand_over().expect("hand over");
        assert!(left.eof);
        assert_eq!(left.bytes, data[1000..]);
        // input after the move is refused, to be sent where the process went
        assert!(!s.send(b"late").await);
        assert!(!s.end());
        // and the target puts it in front of its own input
        let (r2, w2) = pipe_pair();
        let t = Stdin::start(Some(w2)).expect("start");
        t.feed_front(left);
        assert_eq!(read_some(&r2, data.len() - 1000).await, data[1000..]);
    }

    #[tokio::test]
    async fn what_is_left_after_the_end_is_still_counted_and_handed_over() {
        let (_r, w) = pipe_pair();
        let s = Stdin::start(Some(w)).expect("start");
        s.send(b"abc").await;
        s.end();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while lock(&s.state).rest.is_none() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(s.unread(), 3);
        let left = s.hand_over().expect("hand over");
        assert_eq!(
            left,
            Handover {
                bytes: b"abc".to_vec(),
                eof: true
            }
        );
    }

    #[tokio::test]
    async fn input_for_a_program_that_closed_its_stdin_is_dropped() {
        let (r, w) = pipe_pair();
        let s = Stdin::start(Some(w)).expect("start");
        drop(r);
        s.send(b"nobody reads this").await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !lock(&s.state).closed() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(lock(&s.state).closed());
        assert!(s.send(b"more").await, "taken, and dropped");
        assert_eq!(s.unread(), 0);
    }
}
