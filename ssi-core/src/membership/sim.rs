//! A deterministic simulation of many membership cores: simulated clock, lossy network with
//! latency, no sockets. Same seed, same run.
//!
//! Used by the unit tests of this module and by the membership benchmark of the testbed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::auth::DATAGRAM_OVERHEAD;
use crate::config::GossipConfig;
use crate::node::{NodeId, NodeIdentity};
use crate::probe::ProbeData;

use super::{MemberEvent, Membership, Output, TimerEvent};

/// Settings of a simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Members at the start.
    pub members: usize,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// One-way latency, uniform in `[latency_min, latency_max]`.
    pub latency_min: Duration,
    /// See `latency_min`.
    pub latency_max: Duration,
    /// Membership timing of every member.
    pub gossip: GossipConfig,
    /// Seed of every random choice.
    pub seed: u64,
    /// Whether members publish probe data every `gossip.info_interval`.
    pub publish_info: bool,
}

impl SimConfig {
    /// `members` members, no loss, 100-300 us latency, default timing.
    pub fn new(members: usize, seed: u64) -> Self {
        SimConfig {
            members,
            loss: 0.0,
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_micros(300),
            gossip: GossipConfig::default(),
            seed,
            publish_info: false,
        }
    }
}

/// One event seen by one member at a simulated time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// When.
    pub at: Duration,
    /// Which member saw it (index).
    pub observer: usize,
    /// What.
    pub event: MemberEvent,
}

enum Action {
    Deliver { to: usize, data: Vec<u8> },
    Timer { node: usize, epoch: u32, timer: TimerEvent },
    Publish { node: usize, epoch: u32 },
}

struct Scheduled {
    at: Duration,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct SimNode {
    core: Membership<SmallRng>,
    up: bool,
    /// Bumped at each restart so that timers of a previous life are ignored.
    epoch: u32,
}

/// The simulated cluster.
pub struct Sim {
    cfg: SimConfig,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    rng: SmallRng,
    /// Every event every member reported.
    pub seen: Vec<Seen>,
    /// Datagram bytes sent (payload plus authentication envelope; no UDP/IP headers).
    pub bytes_sent: u64,
    /// Datagrams sent.
    pub packets_sent: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("members", &self.nodes.len())
            .finish()
    }
}

fn identity(index: usize, gen: u64) -> NodeIdentity {
    let id = u16::try_from(index + 1).unwrap_or(u16::MAX);
    NodeIdentity {
        id: NodeId(id),
        addr: SocketAddr::from(([10, 77, (id >> 8) as u8, (id & 0xff) as u8], 7700)),
        gen,
    }
}

impl Sim {
    /// Builds the cluster: every member knows member 0 and announces itself to it.
    pub fn new(cfg: SimConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let nodes = (0..cfg.members)
            .map(|i| SimNode {
                core: Membership::new(
                    identity(i, 1),
                    format!("n{}", i + 1),
                    &cfg.gossip,
                    SmallRng::seed_from_u64(rng.random()),
                ),
                up: true,
                epoch: 0,
            })
            .collect();
        let mut sim = Sim {
            cfg,
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            rng,
            seen: Vec::new(),
            bytes_sent: 0,
            packets_sent: 0,
        };
        for i in 1..sim.nodes.len() {
            let seed = sim.nodes[0].core.identity().clone();
            // Announcing to a known seed cannot fail.
            let _ = sim.nodes[i].core.announce(seed);
            sim.flush(i);
        }
        for i in 0..sim.nodes.len() {
            sim.schedule_publish(i, Duration::ZERO);
        }
        sim
    }

    /// Simulated time now.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Member `i`'s core, to inspect.
    pub fn core(&self, i: usize) -> &Membership<SmallRng> {
        &self.nodes[i].core
    }

    /// Runs until simulated time `until`.
    pub fn run_until(&mut self, until: Duration) {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Some(Reverse(ev)) = self.queue.pop() else {
                break;
            };
            self.now = ev.at;
            self.step(ev.action);
        }
        self.now = until;
    }

    /// Runs for `d` more simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Stops member `i` abruptly (like SIGKILL): it sends and answers nothing any more.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.nodes[i].epoch += 1;
    }

    /// Member `i` leaves gracefully.
    pub fn leave(&mut self, i: usize) {
        // Leaving cannot fail for a running member.
        let _ = self.nodes[i].core.leave();
        self.flush(i);
        self.nodes[i].up = false;
        self.nodes[i].epoch += 1;
    }

    /// Restarts member `i` under a new generation and has it announce itself to `seed`.
    pub fn restart(&mut self, i: usize, seed: usize) {
        let gen = self.nodes[i].core.identity().gen + 1;
        let epoch = self.nodes[i].epoch + 1;
        self.nodes[i] = SimNode {
            core: Membership::new(
                identity(i, gen),
                format!("n{}", i + 1),
                &self.cfg.gossip,
                SmallRng::seed_from_u64(self.rng.random()),
            ),
            up: true,
            epoch,
        };
        let seed_id = self.nodes[seed].core.identity().clone();
        let _ = self.nodes[i].core.announce(seed_id);
        self.flush(i);
        self.schedule_publish(i, Duration::ZERO);
    }

    fn push(&mut self, after: Duration, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: self.now + after,
            seq: self.seq,
            action,
        }));
    }

    fn schedule_publish(&mut self, node: usize, after: Duration) {
        if self.cfg.publish_info {
            let epoch = self.nodes[node].epoch;
            self.push(after, Action::Publish { node, epoch });
        }
    }

    fn step(&mut self, action: Action) {
        match action {
            Action::Deliver { to, data } => {
                if self.nodes[to].up {
                    // Malformed packets cannot happen here; a protocol error is ignored as the
                    // daemon does.
                    let _ = self.nodes[to].core.handle_packet(&data);
                    self.flush(to);
                }
            }
            Action::Timer { node, epoch, timer } => {
                if self.nodes[node].up && self.nodes[node].epoch == epoch {
                    let _ = self.nodes[node].core.handle_timer(timer);
                    self.flush(node);
                }
            }
            Action::Publish { node, epoch } => {
                if self.nodes[node].up && self.nodes[node].epoch == epoch {
                    let _ = self.nodes[node].core.publish(ProbeData {
                        cpus: 2,
                        ..ProbeData::default()
                    });
                    self.flush(node);
                    let every = self.cfg.gossip.info_interval;
                    self.schedule_publish(node, every);
                }
            }
        }
    }

    fn flush(&mut self, from: usize) {
        let out: Vec<Output> = self.nodes[from].core.drain().collect();
        for o in out {
            match o {
                Output::Send { to, data } => {
                    self.packets_sent += 1;
                    self.bytes_sent += (data.len() + DATAGRAM_OVERHEAD) as u64;
                    if self.rng.random::<f64>() < self.cfg.loss {
                        continue;
                    }
                    let lo = self.cfg.latency_min.as_nanos() as u64;
                    let hi = self.cfg.latency_max.as_nanos() as u64;
                    let lat = Duration::from_nanos(self.rng.random_range(lo..=hi.max(lo)));
                    let to = usize::from(to.id.0) - 1;
                    self.push(lat, Action::Deliver { to, data });
                }
                Output::Schedule { timer, after } => {
                    let epoch = self.nodes[from].epoch;
                    self.push(after, Action::Timer { node: from, epoch, timer });
                }
                Output::Event(event) => self.seen.push(Seen {
                    at: self.now,
                    observer: from,
                    event,
                }),
            }
        }
    }
}
