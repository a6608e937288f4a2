//! A deterministic simulation of many membership cores: simulated clock, lossy network with
//! latency, no sockets. Same seed, same run.
//!
//! Every member runs the very [`Membership`] core the daemon runs; the simulator only carries
//! datagrams (dropping each with probability `loss`, delaying it uniformly in the latency
//! range) and timers. Members join the way daemons do: member 0 is the seed, every other one
//! announces itself to it (every `join_spacing`, and again every `join_retry` while alone).
//! Used by the tests of this module and by the `membership_sim` benchmark, up to 10,000 members
//! in one process.

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

use super::{MemberEvent, MemberRecord, Membership, Output, TimerEvent};

/// Which events the simulation keeps in [`Sim::seen`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// Every event.
    All,
    /// Only verdicts and identity changes (`Dead`, `Left`, `Replaced`, `Rejoined`,
    /// `Defunct`): at 10,000 members the `Up` events alone would take gigabytes.
    Verdicts,
}

/// How the members first meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// Member 0 is up; every other one announces itself to it in turn (`join_spacing` apart)
    /// and gets the full state back in datagrams: the announce path, O(n²) datagrams in all.
    Announce,
    /// Every member adopts the full membership at once through [`Membership::apply`], as a
    /// daemon does with the snapshot its seed sends over TCP; probe data then spreads by
    /// publication. For the largest simulations, where n² feed datagrams cost too much.
    Snapshot,
}

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
    /// How the members first meet.
    pub bootstrap: Bootstrap,
    /// With [`Bootstrap::Announce`], time between two members' first announcements (zero: all
    /// at once).
    pub join_spacing: Duration,
    /// Which events to keep.
    pub record: Record,
}

impl SimConfig {
    /// `members` members, no loss, 100-300 us latency, default timing, all announcing at once.
    pub fn new(members: usize, seed: u64) -> Self {
        SimConfig {
            members,
            loss: 0.0,
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_micros(300),
            gossip: GossipConfig::default(),
            seed,
            publish_info: false,
            bootstrap: Bootstrap::Announce,
            join_spacing: Duration::ZERO,
            record: Record::All,
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

#[derive(Debug)]
enum Action {
    Deliver {
        to: usize,
        data: Vec<u8>,
    },
    Timer {
        node: usize,
        epoch: u32,
        timer: TimerEvent,
    },
    Publish {
        node: usize,
        epoch: u32,
    },
    Join {
        node: usize,
        epoch: u32,
    },
}

#[derive(Debug)]
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

#[derive(Debug)]
struct SimNode {
    core: Membership<SmallRng>,
    up: bool,
    isolated: bool,
    /// Bumped at each stop so that timers of a previous life are ignored.
    epoch: u32,
}

/// The simulated cluster.
#[derive(Debug)]
pub struct Sim {
    cfg: SimConfig,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    rng: SmallRng,
    /// Every event every member reported (as filtered by [`SimConfig::record`]).
    pub seen: Vec<Seen>,
    /// Datagram bytes sent (payload plus authentication envelope; no UDP/IP headers).
    pub bytes_sent: u64,
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Largest datagram payload sent.
    pub largest_datagram: usize,
    /// Datagrams a core refused as malformed.
    pub refused: u64,
    /// Reused buffer for the outputs of one core.
    outbox: Vec<Output>,
}

fn identity(index: usize, gen: u64) -> NodeIdentity {
    let id = u16::try_from(index + 1).unwrap_or(u16::MAX);
    let [hi, lo] = id.to_be_bytes();
    NodeIdentity {
        id: NodeId(id),
        addr: SocketAddr::from(([10, 77, hi, lo], 7700)),
        gen,
    }
}

impl Sim {
    /// Builds the cluster as [`SimConfig::bootstrap`] says.
    ///
    /// # Panics
    /// With more than 65,535 members (node ids are 16 bits).
    pub fn new(cfg: SimConfig) -> Self {
        assert!(
            cfg.members <= usize::from(u16::MAX),
            "at most 65535 members"
        );
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
                isolated: false,
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
            largest_datagram: 0,
            refused: 0,
            outbox: Vec::new(),
        };
        let everyone: Vec<MemberRecord> = match sim.cfg.bootstrap {
            Bootstrap::Announce => Vec::new(),
            Bootstrap::Snapshot => (0..sim.nodes.len())
                .map(|i| MemberRecord {
                    identity: identity(i, 1),
                    incarnation: 0,
                    active: true,
                    suspect: false,
                })
                .collect(),
        };
        for i in 0..sim.nodes.len() {
            if !everyone.is_empty() {
                // A fresh core accepts any snapshot.
                let _ = sim.nodes[i].core.apply(everyone.clone());
            }
            sim.flush(i);
            if i > 0 {
                let at = match sim.cfg.bootstrap {
                    Bootstrap::Announce => {
                        sim.cfg.join_spacing * u32::try_from(i).unwrap_or(u32::MAX)
                    }
                    Bootstrap::Snapshot => sim.cfg.gossip.join_retry,
                };
                sim.push(at, Action::Join { node: i, epoch: 0 });
            }
            let phase = sim
                .cfg
                .gossip
                .info_interval
                .mul_f64(sim.rng.random::<f64>());
            sim.schedule_publish(i, phase);
        }
        sim
    }

    /// Simulated time now.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Number of members (up or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Member `i`'s core, to inspect.
    pub fn core(&self, i: usize) -> &Membership<SmallRng> {
        &self.nodes[i].core
    }

    /// Whether member `i` runs.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].up
    }

    /// Sets the probability that a datagram is lost, from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.cfg.loss = loss;
    }

    /// Cuts member `i` off the network (every datagram to or from it is lost), or reconnects it.
    pub fn isolate(&mut self, i: usize, isolated: bool) {
        self.nodes[i].isolated = isolated;
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
        self.kill(i);
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
            isolated: false,
            epoch,
        };
        self.flush(i);
        self.announce(i, seed);
        self.schedule_publish(i, Duration::ZERO);
    }

    /// Announces member `i` to `seed`, then again every `join_retry` while it is alone, as
    /// the daemon does.
    fn announce(&mut self, i: usize, seed: usize) {
        let seed_id = self.nodes[seed].core.identity().clone();
        // Announcing to another member cannot fail.
        let _ = self.nodes[i].core.announce(seed_id);
        self.flush(i);
        let epoch = self.nodes[i].epoch;
        self.push(self.cfg.gossip.join_retry, Action::Join { node: i, epoch });
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

    /// Plausible figures of a node: they change every time, as real ones do.
    fn probe_data(&mut self) -> ProbeData {
        let r = &mut self.rng;
        let load = |r: &mut SmallRng| f64::from(r.random_range(0..800u32)) / 100.0;
        ProbeData {
            cpus: 1 << r.random_range(1..7u32),
            mem_total_bytes: 16 << 30,
            mem_free_bytes: r.random_range(1u64..16 << 20) << 10,
            load1: load(r),
            load5: load(r),
            load15: load(r),
            ssi_procs: r.random_range(0..50),
        }
    }

    fn step(&mut self, action: Action) {
        match action {
            Action::Deliver { to, data } => {
                if self.nodes[to].up {
                    if self.nodes[to].core.handle_packet(&data).is_err() {
                        self.refused += 1;
                    }
                    self.flush(to);
                }
            }
            Action::Timer { node, epoch, timer } => {
                if self.nodes[node].up && self.nodes[node].epoch == epoch {
                    // A running core accepts its own timers.
                    let _ = self.nodes[node].core.handle_timer(timer);
                    self.flush(node);
                }
            }
            Action::Publish { node, epoch } => {
                if self.nodes[node].up && self.nodes[node].epoch == epoch {
                    let probe = self.probe_data();
                    let _ = self.nodes[node].core.publish(probe);
                    self.flush(node);
                    let every = self.cfg.gossip.info_interval;
                    self.schedule_publish(node, every);
                }
            }
            Action::Join { node, epoch } => {
                let n = &self.nodes[node];
                if !n.up || n.epoch != epoch {
                    return;
                }
                if n.core.active_members() == 0 {
                    self.announce(node, 0);
                } else {
                    self.push(self.cfg.gossip.join_retry, Action::Join { node, epoch });
                }
            }
        }
    }

    fn flush(&mut self, from: usize) {
        let Sim {
            cfg,
            now,
            seq,
            queue,
            nodes,
            rng,
            seen,
            bytes_sent,
            packets_sent,
            largest_datagram,
            outbox,
            ..
        } = self;
        let epoch = nodes[from].epoch;
        let isolated = nodes[from].isolated;
        let lo = cfg.latency_min.as_nanos() as u64;
        let hi = (cfg.latency_max.as_nanos() as u64).max(lo);
        let mut outputs = std::mem::take(outbox);
        outputs.extend(nodes[from].core.drain());
        for o in outputs.drain(..) {
            let (after, action) = match o {
                Output::Send { to, data } => {
                    *packets_sent += 1;
                    *bytes_sent += (data.len() + DATAGRAM_OVERHEAD) as u64;
                    *largest_datagram = (*largest_datagram).max(data.len());
                    let to = usize::from(to.id.0) - 1;
                    if isolated || nodes[to].isolated || rng.random::<f64>() < cfg.loss {
                        continue;
                    }
                    let lat = Duration::from_nanos(rng.random_range(lo..=hi));
                    (lat, Action::Deliver { to, data })
                }
                Output::Schedule { timer, after } => (
                    after,
                    Action::Timer {
                        node: from,
                        epoch,
                        timer,
                    },
                ),
                Output::Event(event) => {
                    let keep = cfg.record == Record::All
                        || !matches!(
                            event,
                            MemberEvent::Up(_) | MemberEvent::Joined | MemberEvent::Alone
                        );
                    if keep {
                        seen.push(Seen {
                            at: *now,
                            observer: from,
                            event,
                        });
                    }
                    continue;
                }
            };
            *seq += 1;
            queue.push(Reverse(Scheduled {
                at: *now + after,
                seq: *seq,
                action,
            }));
        }
        *outbox = outputs;
    }
}
