//! The runtime that drives the membership core with real I/O: gossip datagrams over UDP,
//! authenticated with the cluster key and checked against replays (see [`crate::auth`]), and
//! timers on the tokio clock.
//!
//! It runs as one task that owns the [`Membership`] core, on a thread and runtime of its own:
//! whatever else the daemon does (a worker blocked in a file system call, a slow request)
//! cannot hold back its probes and answers, which the rest of the cluster reads as this node
//! being dead. The rest of the daemon talks to it through a [`GossipHandle`] and hears about
//! changes through [`GossipHandle::subscribe`].
//!
//! When a timer is due, the datagrams already received are handled first: after the thread
//! was held up (a loaded CPU), the acks and refutations waiting in the socket count before a
//! probe or a suspicion times out, and the core is told how late the timer was, so that its
//! local health makes it slower to accuse others while it is the slow one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::time::DelayQueue;

use crate::auth::{ClusterKey, Datagrams};
use crate::error::{Error, Result};
use crate::membership::{MemberEvent, MemberRecord, Membership, Output, TimerEvent};
use crate::node::{NodeId, NodeIdentity};
use crate::probe::ProbeData;
use crate::view::NodeView;

/// The membership core as the daemon runs it.
pub type Core = Membership<StdRng>;

enum Command {
    View(oneshot::Sender<Vec<NodeView>>),
    Identity(oneshot::Sender<NodeIdentity>),
    ActiveMembers(oneshot::Sender<usize>),
    ActiveIdentity(NodeId, oneshot::Sender<Option<NodeIdentity>>),
    Snapshot(oneshot::Sender<Vec<MemberRecord>>),
    Publish(ProbeData),
    Admit(MemberRecord),
    Join {
        seed: NodeIdentity,
        members: Vec<MemberRecord>,
    },
    Leave(oneshot::Sender<()>),
}

/// A cheap, clonable handle to the gossip task.
#[derive(Clone, Debug)]
pub struct GossipHandle {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<MemberEvent>,
    traffic: Arc<Traffic>,
}

/// Gossip datagrams sent and received since the task started (received ones counted before
/// they are authenticated), for the daemon's metrics.
#[derive(Debug, Default)]
pub struct Traffic {
    sent_packets: AtomicU64,
    sent_bytes: AtomicU64,
    received_packets: AtomicU64,
    received_bytes: AtomicU64,
}

/// A reading of [`Traffic`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    /// Datagrams sent.
    pub sent_packets: u64,
    /// Their bytes (sealed, as on the wire).
    pub sent_bytes: u64,
    /// Datagrams received.
    pub received_packets: u64,
    /// Their bytes.
    pub received_bytes: u64,
}

impl Traffic {
    fn count(packets: &AtomicU64, bytes: &AtomicU64, n: usize) {
        packets.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn read(&self) -> TrafficCounts {
        TrafficCounts {
            sent_packets: self.sent_packets.load(Ordering::Relaxed),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            received_packets: self.received_packets.load(Ordering::Relaxed),
            received_bytes: self.received_bytes.load(Ordering::Relaxed),
        }
    }
}

fn gone() -> Error {
    Error::Membership("the gossip task has stopped".into())
}

impl GossipHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// The gossip traffic so far.
    pub fn traffic(&self) -> TrafficCounts {
        self.traffic.read()
    }

    /// One row per known node.
    pub async fn view(&self) -> Result<Vec<NodeView>> {
        self.ask(Command::View).await
    }

    /// This node's current identity.
    pub async fn identity(&self) -> Result<NodeIdentity> {
        self.ask(Command::Identity).await
    }

    /// Number of other active members.
    pub async fn active_members(&self) -> Result<usize> {
        self.ask(Command::ActiveMembers).await
    }

    /// The active member with node id `id`, if any.
    pub async fn active_identity(&self, id: NodeId) -> Result<Option<NodeIdentity>> {
        self.ask(|tx| Command::ActiveIdentity(id, tx)).await
    }

    /// All this node knows of the cluster, to hand to a joining node.
    pub async fn snapshot(&self) -> Result<Vec<MemberRecord>> {
        self.ask(Command::Snapshot).await
    }

    /// Publishes this node's probe data.
    pub async fn publish(&self, probe: ProbeData) -> Result<()> {
        self.tx
            .send(Command::Publish(probe))
            .await
            .map_err(|_| gone())
    }

    /// Takes in a node that joined through us.
    pub async fn admit(&self, member: MemberRecord) -> Result<()> {
        self.tx
            .send(Command::Admit(member))
            .await
            .map_err(|_| gone())
    }

    /// Adopts a seed's membership state and announces ourselves to it.
    pub async fn join(&self, seed: NodeIdentity, members: Vec<MemberRecord>) -> Result<()> {
        self.tx
            .send(Command::Join { seed, members })
            .await
            .map_err(|_| gone())
    }

    /// Leaves the cluster gracefully; returns once the farewell datagrams are sent.
    pub async fn leave(&self) -> Result<()> {
        self.ask(Command::Leave).await
    }

    /// Membership events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.events.subscribe()
    }
}

/// Logs a kind of message at most once per interval, counting what it held back.
#[derive(Debug)]
pub struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl RateLimited {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        RateLimited {
            every,
            last: None,
            held: 0,
        }
    }

    /// Whether to log now; if so, also how many were held back since the last line.
    pub fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

struct Agent {
    core: Core,
    socket: UdpSocket,
    datagrams: Datagrams,
    timers: DelayQueue<TimerEvent>,
    events: broadcast::Sender<MemberEvent>,
    bad_packets: RateLimited,
    protocol_errors: RateLimited,
    traffic: Arc<Traffic>,
}

/// Datagrams handled at most before a due timer (a flood cannot stop the probes).
const DRAIN_BEFORE_TIMER: usize = 256;

/// Starts the gossip task on `socket` (already bound), on a thread of its own; returns its
/// handle. The task ends when every handle is dropped or after [`GossipHandle::leave`].
pub fn spawn(core: Core, socket: std::net::UdpSocket, key: ClusterKey) -> Result<GossipHandle> {
    let (tx, rx) = mpsc::channel(256);
    let (events, _) = broadcast::channel(1024);
    let traffic = Arc::new(Traffic::default());
    socket
        .set_nonblocking(true)
        .map_err(|e| Error::net("gossip socket: set non-blocking", e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::net("gossip runtime", e))?;
    let agent_events = events.clone();
    let agent_traffic = traffic.clone();
    std::thread::Builder::new()
        .name("gossip".into())
        .spawn(move || {
            runtime.block_on(async move {
                let socket = match UdpSocket::from_std(socket) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "gossip socket unusable");
                        return;
                    }
                };
                let agent = Agent {
                    core,
                    socket,
                    datagrams: Datagrams::new(key),
                    timers: DelayQueue::new(),
                    events: agent_events,
                    bad_packets: RateLimited::new(Duration::from_secs(10)),
                    protocol_errors: RateLimited::new(Duration::from_secs(10)),
                    traffic: agent_traffic,
                };
                agent.run(rx).await;
            });
        })
        .map_err(|e| Error::net("gossip thread", e))?;
    Ok(GossipHandle {
        tx,
        events,
        traffic,
    })
}

impl Agent {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 65536];
        loop {
            tokio::select! {
                recv = self.socket.recv_from(&mut buf) => match recv {
                    Ok((n, from)) => self.received(&buf[..n], from),
                    Err(e) => tracing::warn!(error = %e, "gossip socket receive failed"),
                },
                Some(expired) = self.timers.next(), if !self.timers.is_empty() => {
                    self.drain(&mut buf);
                    let due = expired.deadline().into_std();
                    let timer = expired.into_inner();
                    self.core.timer_late(&timer, Instant::now().saturating_duration_since(due));
                    let r = self.core.handle_timer(timer);
                    self.note(r);
                }
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        if self.on_command(cmd).await {
                            return;
                        }
                    }
                    None => return,
                },
            }
            self.flush().await;
        }
    }

    fn received(&mut self, packet: &[u8], from: SocketAddr) {
        let t = &self.traffic;
        Traffic::count(&t.received_packets, &t.received_bytes, packet.len());
        self.on_datagram(packet, from);
    }

    /// Handles the datagrams already waiting in the socket (up to [`DRAIN_BEFORE_TIMER`]).
    fn drain(&mut self, buf: &mut [u8]) {
        for _ in 0..DRAIN_BEFORE_TIMER {
            match self.socket.try_recv_from(buf) {
                Ok((n, from)) => self.received(&buf[..n], from),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "gossip socket receive failed");
                    return;
                }
            }
        }
    }

    fn on_datagram(&mut self, packet: &[u8], from: SocketAddr) {
        match self.datagrams.open(packet) {
            Ok(payload) => {
                let r = self.core.handle_packet(payload);
                self.note(r);
            }
            Err(e) => {
                if let Some(held) = self.bad_packets.admit() {
                    tracing::warn!(%from, reason = %e, held_back = held, "dropped gossip datagram");
                }
            }
        }
    }

    fn note(&mut self, r: Result<()>) {
        if let Err(e) = r {
            if let Some(held) = self.protocol_errors.admit() {
                tracing::debug!(error = %e, held_back = held, "membership protocol error");
            }
        }
    }

    /// Handles a command; returns true when the task must stop.
    async fn on_command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::View(tx) => {
                let _ = tx.send(self.core.view());
            }
            Command::Identity(tx) => {
                let _ = tx.send(self.core.identity().clone());
            }
            Command::ActiveMembers(tx) => {
                let _ = tx.send(self.core.active_members());
            }
            Command::ActiveIdentity(id, tx) => {
                let _ = tx.send(self.core.active_identity(id));
            }
            Command::Snapshot(tx) => {
                let _ = tx.send(self.core.snapshot());
            }
            Command::Publish(probe) => {
                let r = self.core.publish(probe);
                self.note(r);
            }
            Command::Admit(member) => {
                let r = self.core.apply(vec![member]);
                self.note(r);
            }
            Command::Join { seed, members } => {
                let r = self
                    .core
                    .apply(members)
                    .and_then(|()| self.core.announce(seed));
                self.note(r);
            }
            Command::Leave(tx) => {
                let r = self.core.leave();
                self.note(r);
                self.flush().await;
                let _ = tx.send(());
                return true;
            }
        }
        false
    }

    async fn flush(&mut self) {
        let outputs: Vec<Output> = self.core.drain().collect();
        for out in outputs {
            match out {
                Output::Send { to, data } => {
                    let packet = self.datagrams.seal(&data);
                    match self.socket.send_to(&packet, to.addr).await {
                        Ok(n) => {
                            let t = &self.traffic;
                            Traffic::count(&t.sent_packets, &t.sent_bytes, n);
                        }
                        Err(e) => tracing::debug!(to = %to, error = %e, "gossip send failed"),
                    }
                }
                Output::Schedule { timer, after } => {
                    self.timers.insert(timer, after);
                }
                Output::Event(event) => {
                    log_event(&event);
                    // Nobody listening is fine.
                    let _ = self.events.send(event);
                }
            }
        }
    }
}

fn log_event(event: &MemberEvent) {
    match event {
        MemberEvent::Up(id) => {
            tracing::info!(node = %id.id, addr = %id.addr, gen = id.gen, "node alive")
        }
        MemberEvent::Dead(id) => tracing::warn!(node = %id.id, addr = %id.addr, "node dead"),
        MemberEvent::Left(id) => tracing::info!(node = %id.id, addr = %id.addr, "node left"),
        MemberEvent::Replaced { old, new } => {
            tracing::info!(node = %new.id, old_gen = old.gen, new_gen = new.gen, "node restarted")
        }
        MemberEvent::Joined => tracing::info!("joined the cluster"),
        MemberEvent::Alone => tracing::warn!("no other member is alive"),
        MemberEvent::Rejoined(id) => {
            tracing::warn!(
                gen = id.gen,
                "declared dead by the cluster; rejoined under a new generation"
            )
        }
        MemberEvent::Defunct => tracing::error!("declared dead by the cluster and cannot rejoin"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GossipConfig;
    use crate::view::MemberState;
    use rand::SeedableRng;

    fn member(id: u16) -> (std::net::UdpSocket, Core) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let me = NodeIdentity {
            id: NodeId(id),
            addr: socket.local_addr().expect("addr"),
            gen: 1,
        };
        let core = Membership::new(
            me,
            format!("n{id}"),
            &GossipConfig::default(),
            StdRng::seed_from_u64(id.into()),
        );
        (socket, core)
    }

    /// Node 1 starts its gossip from a daemon runtime with one worker, node 2 from another
    /// runtime; then node 1's worker blocks (as in a file system call that hangs) for longer
    /// than a crashed node takes to be declared dead. Node 2 must not declare node 1 dead.
    #[test]
    fn a_blocked_daemon_runtime_does_not_hold_back_gossip() {
        let key = ClusterKey::from_bytes(&[7u8; 32]).expect("key");
        let daemon = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("daemon runtime");
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("other runtime");
        let (s1, c1) = member(1);
        let (s2, c2) = member(2);
        let seed = c1.identity().clone();
        let one = daemon
            .block_on(async { spawn(c1, s1, key.clone()) })
            .expect("node 1");
        let two = other
            .block_on(async { spawn(c2, s2, key) })
            .expect("node 2");
        let mut events = two.subscribe();
        other.block_on(two.join(seed, vec![])).expect("join");
        let alive = |h: &GossipHandle| {
            other
                .block_on(h.view())
                .expect("view")
                .iter()
                .filter(|r| r.state == MemberState::Alive)
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(&one) < 2 || alive(&two) < 2 {
            assert!(Instant::now() < deadline, "the two nodes never met");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Three seconds: several times what a silent node takes to be declared dead.
        let blocked = daemon.spawn(async { std::thread::sleep(Duration::from_secs(3)) });
        daemon.block_on(blocked).expect("blocking task");
        while let Ok(event) = events.try_recv() {
            assert!(
                !matches!(event, MemberEvent::Dead(_)),
                "node 2 declared node 1 dead while node 1's daemon runtime was blocked"
            );
        }
        assert_eq!(alive(&two), 2);
        drop(one);
        drop(daemon);
    }

    #[test]
    fn rate_limit_holds_back_and_counts() {
        let mut r = RateLimited::new(Duration::from_secs(3600));
        assert_eq!(r.admit(), Some(0));
        assert_eq!(r.admit(), None);
        assert_eq!(r.admit(), None);
        r.last = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(r.admit(), Some(2));
    }
}
