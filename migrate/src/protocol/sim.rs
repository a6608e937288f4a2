//! A deterministic simulation of migrations: the very [`Source`] and [`Target`] machines the
//! daemons run, driven with a simulated clock, a network that loses, delays, repeats and cuts
//! messages, helpers that take time to copy and restore, nodes that crash (and may restart),
//! membership that notices late, a home node feeding the process input, and a user who may
//! kill the process. Same seed, same run.
//!
//! Three nodes: the source (0), the target (1) and the home (2, never faulty), which sends the
//! process input wherever it believes the process runs and follows it when it moves, as the
//! daemons' sessions do (the source gives back what came after the hand-over; the home sends
//! that first, then what is newer). One migration per run; [`Sim::inject`] puts one fault in at
//! a chosen step. [`Sim::check`] holds the invariants after every step; [`Sim::finish`] those of
//! the end (see `invariants.rs`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use ssi_core::NodeId;

use super::{
    answer_unknown, Handover, Machine, MigrationId, MigrationMsg, Outcome, Policy, Source,
    SourceCmd, SourceEvent, Target, TargetCmd, TargetEvent, TargetOutcome, Timeouts, Verdict,
};

const SOURCE: usize = 0;
const TARGET: usize = 1;
const MS: fn(u64) -> Duration = Duration::from_millis;

/// Settings of one simulated migration.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// The source's round policy.
    pub policy: Policy,
    /// The protocol's limits (shorter than the daemon's, for a quick simulation).
    pub timeouts: Timeouts,
    /// How long an RPC waits for its answer.
    pub rpc_timeout: Duration,
    /// One-way latency, uniform in this range.
    pub latency: (Duration, Duration),
    /// How long membership takes to notice a node down, or up again.
    pub detect: Duration,
    /// Bytes of input the home sends, one every `input_every`.
    pub input_bytes: u32,
    /// See `input_bytes`.
    pub input_every: Duration,
    /// The running copy reads one byte of input this often.
    pub read_every: Duration,
    /// When the simulation stops.
    pub horizon: Duration,
}

impl SimConfig {
    /// A run with `seed`: a few pre-copy rounds, timings scaled down from the daemon's.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            policy: Policy {
                max_rounds: 4,
                stop_bytes: 4 << 20,
                min_shrink_percent: 80,
            },
            timeouts: Timeouts {
                answer: MS(1_000),
                retry: MS(20),
                retry_max: MS(200),
                hold: MS(3_000),
            },
            rpc_timeout: MS(50),
            latency: (Duration::from_micros(100), MS(2)),
            detect: MS(300),
            input_bytes: 200,
            input_every: MS(5),
            read_every: MS(3),
            horizon: MS(30_000),
        }
    }
}

/// One fault, put in at a chosen step of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A node crashes: its copy of the tree and everything it held die with it; it restarts
    /// after the delay (a new run), or never.
    Crash {
        /// The source (0) or the target (1).
        node: usize,
        /// When it comes back, if it does.
        restart_after: Option<Duration>,
    },
    /// The network between source and target is cut (the data stream breaks, RPCs fail) and
    /// heals after the delay.
    Cut {
        /// How long.
        heal_after: Duration,
    },
    /// The data stream breaks (only it).
    BreakStream,
    /// The next message between the two daemons is lost.
    Lose,
    /// The next message between the two daemons arrives this much later.
    Delay(Duration),
    /// The next message between the two daemons arrives twice, the second this much later.
    Duplicate(Duration),
    /// The user kills the process.
    OwnerKill,
}

/// The kinds of faults, each with its parameters drawn from `rng`.
pub fn fault_kinds(rng: &mut SmallRng) -> Vec<Fault> {
    let restart = |rng: &mut SmallRng| Some(MS(rng.random_range(100..5_000)));
    vec![
        Fault::Crash {
            node: SOURCE,
            restart_after: restart(rng),
        },
        Fault::Crash {
            node: SOURCE,
            restart_after: None,
        },
        Fault::Crash {
            node: TARGET,
            restart_after: restart(rng),
        },
        Fault::Crash {
            node: TARGET,
            restart_after: None,
        },
        // short ones, and ones longer than membership takes to declare a node down, or than
        // a target holds a tree for a source it sees down
        Fault::Cut {
            heal_after: MS(rng.random_range(10..250)),
        },
        Fault::Cut {
            heal_after: MS(rng.random_range(400..2_500)),
        },
        Fault::Cut {
            heal_after: MS(rng.random_range(3_500..8_000)),
        },
        Fault::BreakStream,
        Fault::Lose,
        Fault::Delay(MS(rng.random_range(30..3_000))),
        Fault::Duplicate(MS(rng.random_range(1..3_000))),
        Fault::OwnerKill,
    ]
}

/// Where a copy of the tree is, on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copy {
    /// None.
    None,
    /// Being built from the images (target).
    Partial,
    /// Whole, restored and stopped, waiting for the commit (target).
    Held,
    /// Frozen for its last image (source).
    Frozen,
    /// Running.
    Running,
}

/// What travels between the nodes.
#[derive(Clone, Debug)]
enum Wire {
    /// An RPC request between the daemons (`id`: its number, for the answer).
    Request {
        from: usize,
        from_run: u64,
        id: u64,
        msg: Request,
    },
    /// The answer to request `id`.
    Answer { id: u64, msg: Option<Answer> },
    /// Image frames (the last one or not), source to target.
    Image { last: bool },
    /// The target holds the tree (data stream).
    Prepared,
}

#[derive(Clone, Debug)]
enum Request {
    Offer,
    Migration(MigrationMsg),
}

#[derive(Clone, Debug)]
enum Answer {
    Ready,
    Refused,
    Migration(Option<MigrationMsg>),
}

/// What happens next.
#[derive(Clone, Debug)]
enum Action {
    /// Delivery to node `to` (of its run `to_run`) over the link `stream` (the data stream) or
    /// an RPC connection.
    Deliver {
        to: usize,
        to_run: u64,
        wire: Wire,
    },
    /// An RPC got no answer in time.
    RpcTimeout {
        id: u64,
    },
    /// A source helper's step is done.
    SourceStep {
        run: u64,
        step: Step,
    },
    /// A target helper finished restoring the last image.
    Restored {
        run: u64,
    },
    /// A timer of a machine.
    SourceTimer {
        run: u64,
        timer: super::SourceTimer,
    },
    TargetTimer {
        run: u64,
        timer: super::TargetTimer,
    },
    /// The data stream broke: the helpers notice.
    StreamBroken {
        stream: u32,
    },
    /// Membership: `observer` learns that the other node is up or down.
    Detect {
        observer: usize,
        up: bool,
        epoch: u32,
    },
    /// A crashed node comes back.
    Restart {
        node: usize,
    },
    /// The cut heals.
    Heal {
        epoch: u32,
    },
    /// The home sends the next input byte; a copy reads one.
    Feed,
    Read {
        node: usize,
    },
    /// The home's session learns that the process moved (from `node`), or gets back the input
    /// that came after the hand-over.
    Moved {
        run: u64,
    },
    GivenBack {
        bytes: Vec<u32>,
    },
    /// The home gives up waiting for the input given back.
    FenceTimeout,
    /// The home's session notices that the node it followed the process on died.
    HostLost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Round,
    Frozen,
    Killed,
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

/// The home's session with the process.
#[derive(Debug, Default)]
struct Home {
    /// Where it sends input.
    dest: usize,
    next: u32,
    /// Waiting for what the old host gives back; newer input waits here.
    fencing: bool,
    held: Vec<u32>,
}

/// An RPC in flight: who asked, and whether its answer came.
#[derive(Debug)]
struct Rpc {
    from: usize,
    from_run: u64,
    offer: bool,
    answered: bool,
}

/// A simulated migration (see the module doc).
#[derive(Debug)]
pub struct Sim {
    cfg: SimConfig,
    rng: SmallRng,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    id: MigrationId,
    up: [bool; 2],
    run: [u64; 2],
    crashed: [bool; 2],
    /// What each node believes of the other (membership).
    sees_up: [bool; 2],
    detect_epoch: [u32; 2],
    cut: bool,
    cut_epoch: u32,
    cut_since: Option<Duration>,
    longest_cut: Duration,
    source: Option<Source>,
    target: Option<Target>,
    /// The data stream: its number (a new one per offer) and whether it is open.
    stream: u32,
    stream_open: bool,
    /// The source helper is between its last image and the verdict.
    source_waiting: bool,
    source_helper: bool,
    copies: [Copy; 2],
    /// Input queued for the copy on each node (the stdin queue of its record).
    queues: [VecDeque<u32>; 2],
    /// A read of the copy on each node is due.
    reading: [bool; 2],
    /// The source took its copy's input out: newer input goes back to the home.
    input_taken: bool,
    given_back: Vec<u32>,
    home: Home,
    consumed: Vec<u32>,
    owner_killed: bool,
    /// Signals the source keeps for the target (the owner's kill during the move).
    pending_kill: bool,
    rpcs: Vec<Rpc>,
    next_rpc: u64,
    /// The fault of this run, and at which step it is put in.
    fault: Option<(usize, Fault)>,
    /// The next message between the daemons meets the fault.
    message_fault: Option<Fault>,
    steps: usize,
    /// How the user was told, and how the target ended.
    pub outcome: Option<Outcome>,
    /// See `outcome`.
    pub target_outcome: Option<TargetOutcome>,
}

impl Sim {
    /// A fresh run: the tree runs on the source, the home feeds it, the migration starts.
    pub fn new(cfg: SimConfig) -> Sim {
        let rng = SmallRng::seed_from_u64(cfg.seed);
        let id = MigrationId {
            gpid: 4100,
            epoch: 1,
            source_run: 1,
        };
        let mut sim = Sim {
            rng,
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            id,
            up: [true; 2],
            run: [1; 2],
            crashed: [false; 2],
            sees_up: [true; 2],
            detect_epoch: [0; 2],
            cut: false,
            cut_epoch: 0,
            cut_since: None,
            longest_cut: Duration::ZERO,
            source: Some(Source::new(id, NodeId(2), cfg.policy, cfg.timeouts)),
            target: None,
            stream: 0,
            stream_open: false,
            source_waiting: false,
            source_helper: false,
            copies: [Copy::Running, Copy::None],
            queues: [VecDeque::new(), VecDeque::new()],
            reading: [false; 2],
            input_taken: false,
            given_back: Vec::new(),
            home: Home::default(),
            consumed: Vec::new(),
            owner_killed: false,
            pending_kill: false,
            rpcs: Vec::new(),
            next_rpc: 0,
            fault: None,
            message_fault: None,
            steps: 0,
            outcome: None,
            target_outcome: None,
            cfg,
        };
        sim.push(Duration::ZERO, Action::Feed);
        sim.source_commands();
        sim
    }

    /// Puts `fault` in just before step `step` (counted from 0; steps are the protocol's
    /// events, not the input's).
    pub fn inject(&mut self, step: usize, fault: Fault) {
        self.fault = Some((step, fault));
    }

    /// Protocol steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Simulated time now.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Runs to the horizon, calling `check` after every step.
    pub fn run(&mut self, mut check: impl FnMut(&Sim)) {
        while let Some(Reverse(next)) = self.queue.pop() {
            if next.at > self.cfg.horizon {
                break;
            }
            self.now = next.at;
            let protocol = !matches!(next.action, Action::Feed | Action::Read { .. });
            if protocol {
                if let Some((at, fault)) = self.fault {
                    if at == self.steps {
                        self.fault = None;
                        self.apply(fault);
                    }
                }
                self.steps += 1;
            }
            self.step(next.action);
            check(self);
        }
    }

    /// The copies of the tree, on the source and the target.
    pub fn copies(&self) -> [Copy; 2] {
        self.copies
    }

    /// The input bytes the running copies read, in order.
    pub fn consumed(&self) -> &[u32] {
        &self.consumed
    }

    /// Bytes the home sent.
    pub fn sent(&self) -> u32 {
        self.home.next
    }

    /// Whether the owner's kill reached the process.
    pub fn owner_killed(&self) -> bool {
        self.owner_killed
    }

    /// Whether node `i` crashed during the run (the source 0, the target 1).
    pub fn crashed(&self, i: usize) -> bool {
        self.crashed[i]
    }

    /// Whether node `i` runs at the end.
    pub fn is_up(&self, i: usize) -> bool {
        self.up[i]
    }

    /// The longest time the two nodes were cut off from each other.
    pub fn longest_cut(&self) -> Duration {
        self.longest_cut
    }

    /// The run's settings.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    fn push(&mut self, after: Duration, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: self.now + after,
            seq: self.seq,
            action,
        }));
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = self.cfg.latency;
        let lo = lo.as_micros() as u64;
        let hi = (hi.as_micros() as u64).max(lo);
        Duration::from_micros(self.rng.random_range(lo..=hi))
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        let node_up = |n: usize| n > TARGET || self.up[n];
        let cut = self.cut && a <= TARGET && b <= TARGET;
        node_up(a) && node_up(b) && !cut
    }

    fn apply(&mut self, fault: Fault) {
        match fault {
            Fault::Crash {
                node,
                restart_after,
            } => {
                self.crash(node);
                if let Some(d) = restart_after {
                    self.push(d, Action::Restart { node });
                }
            }
            Fault::Cut { heal_after } => {
                self.cut = true;
                self.cut_epoch += 1;
                self.cut_since = Some(self.now);
                self.break_stream();
                let epoch = self.cut_epoch;
                self.push(heal_after, Action::Heal { epoch });
                for observer in [SOURCE, TARGET] {
                    self.detect(observer, false);
                }
            }
            Fault::BreakStream => self.break_stream(),
            Fault::OwnerKill => self.owner_kill(),
            f @ (Fault::Lose | Fault::Delay(_) | Fault::Duplicate(_)) => {
                self.message_fault = Some(f)
            }
        }
    }

    fn crash(&mut self, node: usize) {
        if !self.up[node] {
            return;
        }
        self.up[node] = false;
        self.crashed[node] = true;
        // the node's namespace dies with its daemon: its copy, its input, its migration
        self.copies[node] = Copy::None;
        self.queues[node].clear();
        if node == SOURCE {
            self.source = None;
            self.source_helper = false;
            self.source_waiting = false;
            self.given_back.clear();
        } else {
            self.target = None;
        }
        self.break_stream();
        self.detect(1 - node, false);
        if node == SOURCE {
            let d = self.cfg.detect;
            self.push(d, Action::HostLost);
        }
    }

    fn detect(&mut self, observer: usize, up: bool) {
        self.detect_epoch[observer] += 1;
        let epoch = self.detect_epoch[observer];
        let d = self.cfg.detect;
        self.push(
            d,
            Action::Detect {
                observer,
                up,
                epoch,
            },
        );
    }

    fn break_stream(&mut self) {
        if self.stream_open {
            self.stream_open = false;
            let stream = self.stream;
            let lat = self.latency();
            self.push(lat, Action::StreamBroken { stream });
        }
    }

    /// The owner's `ssi kill`: it reaches the node that lists the process (the source until
    /// the move is confirmed, then the target), if that node can be reached.
    fn owner_kill(&mut self) {
        let at_source = self.source.as_ref().is_some_and(|s| !s.done());
        if at_source {
            self.owner_killed = true;
            if self.copies[SOURCE] != Copy::None {
                self.copies[SOURCE] = Copy::None;
                self.queues[SOURCE].clear();
            }
            // the daemon keeps the signal for the target, and its machine hears of the end
            self.pending_kill = true;
            self.source_event(SourceEvent::TreeEnded);
        } else if self.up[TARGET] && self.copies[TARGET] == Copy::Running {
            self.owner_killed = true;
            self.copies[TARGET] = Copy::None;
        }
    }

    fn step(&mut self, action: Action) {
        match action {
            Action::Deliver { to, to_run, wire } => {
                if to > TARGET || (self.up[to] && self.run[to] == to_run) {
                    self.deliver(to, wire);
                }
            }
            Action::RpcTimeout { id } => self.rpc_timeout(id),
            Action::SourceStep { run, step } => {
                if self.up[SOURCE] && self.run[SOURCE] == run && self.source_helper {
                    self.source_step(step);
                }
            }
            Action::Restored { run } => {
                if self.up[TARGET]
                    && self.run[TARGET] == run
                    && self.copies[TARGET] == Copy::Partial
                {
                    self.copies[TARGET] = Copy::Held;
                    self.target_event(TargetEvent::Prepared);
                }
            }
            Action::SourceTimer { run, timer } => {
                if self.up[SOURCE] && self.run[SOURCE] == run {
                    self.source_event(SourceEvent::Timer(timer));
                }
            }
            Action::TargetTimer { run, timer } => {
                if self.up[TARGET] && self.run[TARGET] == run {
                    self.target_event(TargetEvent::Timer(timer));
                }
            }
            Action::StreamBroken { stream } => {
                if stream == self.stream {
                    self.stream_broken();
                }
            }
            Action::Detect {
                observer,
                up,
                epoch,
            } => self.detected(observer, up, epoch),
            Action::Restart { node } => {
                self.up[node] = true;
                self.run[node] += 1;
                self.detect(1 - node, true);
            }
            Action::Heal { epoch } => {
                if epoch == self.cut_epoch && self.cut {
                    self.cut = false;
                    if let Some(since) = self.cut_since.take() {
                        self.longest_cut = self.longest_cut.max(self.now - since);
                    }
                    for observer in [SOURCE, TARGET] {
                        self.detect(observer, true);
                    }
                }
            }
            Action::Feed => self.feed(),
            Action::Read { node } => {
                self.reading[node] = false;
                if self.copies[node] == Copy::Running {
                    if let Some(b) = self.queues[node].pop_front() {
                        self.consumed.push(b);
                    }
                }
                self.wake(node);
            }
            Action::Moved { run } => {
                if self.up[SOURCE] && self.run[SOURCE] == run {
                    self.home.fencing = true;
                    // the home asks the old host for what it could no longer take
                    let lat = self.latency() * 2;
                    let bytes = std::mem::take(&mut self.given_back);
                    self.push(lat, Action::GivenBack { bytes });
                }
                let timeout = self.cfg.rpc_timeout * 4;
                self.push(timeout, Action::FenceTimeout);
            }
            Action::GivenBack { bytes } => {
                if self.home.fencing {
                    self.switch_home(bytes);
                }
            }
            Action::HostLost => {
                // it looks for the process elsewhere before calling it lost
                if self.home.dest == SOURCE && self.copies[TARGET] != Copy::None {
                    self.switch_home(Vec::new());
                }
            }
            Action::FenceTimeout => {
                if self.home.fencing && !self.up[SOURCE] {
                    // what the old host held died with it
                    self.switch_home(Vec::new());
                }
            }
        }
    }

    /// The copy on `node` reads its input, one byte every `read_every`, while it runs and has
    /// some.
    fn wake(&mut self, node: usize) {
        if !self.reading[node]
            && self.copies[node] == Copy::Running
            && !self.queues[node].is_empty()
        {
            self.reading[node] = true;
            let every = self.cfg.read_every;
            self.push(every, Action::Read { node });
        }
    }

    fn switch_home(&mut self, mut bytes: Vec<u32>) {
        self.home.fencing = false;
        self.home.dest = TARGET;
        bytes.append(&mut self.home.held);
        for b in bytes {
            self.send_input(b);
        }
    }

    fn feed(&mut self) {
        if self.home.next >= self.cfg.input_bytes {
            return;
        }
        let b = self.home.next;
        self.home.next += 1;
        if self.home.fencing {
            self.home.held.push(b);
        } else {
            self.send_input(b);
        }
        let every = self.cfg.input_every;
        self.push(every, Action::Feed);
    }

    /// The home's session carries input to its node in order (a TCP connection): modelled as
    /// arriving at once.
    fn send_input(&mut self, b: u32) {
        let to = self.home.dest;
        if !self.up[to] {
            return;
        }
        if to == SOURCE && self.input_taken {
            self.given_back.push(b);
        } else {
            self.queues[to].push_back(b);
            self.wake(to);
        }
    }

    fn detected(&mut self, observer: usize, up: bool, epoch: u32) {
        if epoch != self.detect_epoch[observer] || !self.up[observer] {
            return;
        }
        let other = 1 - observer;
        let truth = self.up[other] && !self.cut;
        if up != truth {
            return;
        }
        self.sees_up[observer] = up;
        if observer == SOURCE {
            self.source_event(if up {
                SourceEvent::TargetUp
            } else {
                SourceEvent::TargetDown
            });
        } else {
            self.target_event(if up {
                TargetEvent::SourceUp
            } else {
                TargetEvent::SourceDown
            });
        }
    }

    /// Sends an RPC from `from` to the other daemon, through the message fault if one waits.
    fn request(&mut self, from: usize, msg: Request) {
        let id = self.next_rpc;
        self.next_rpc += 1;
        self.rpcs.push(Rpc {
            from,
            from_run: self.run[from],
            offer: matches!(msg, Request::Offer),
            answered: false,
        });
        let timeout = self.cfg.rpc_timeout;
        self.push(timeout, Action::RpcTimeout { id });
        let wire = Wire::Request {
            from,
            from_run: self.run[from],
            id,
            msg,
        };
        self.transmit(from, 1 - from, wire);
    }

    /// Carries a message between the daemons (RPC requests and answers), through the
    /// message fault if one waits.
    fn transmit(&mut self, from: usize, to: usize, wire: Wire) {
        if !self.reachable(from, to) {
            return;
        }
        let to_run = self.run[to];
        let lat = self.latency();
        match self.message_fault.take() {
            Some(Fault::Lose) => {}
            Some(Fault::Delay(d)) => self.push(lat + d, Action::Deliver { to, to_run, wire }),
            Some(Fault::Duplicate(d)) => {
                self.push(
                    lat,
                    Action::Deliver {
                        to,
                        to_run,
                        wire: wire.clone(),
                    },
                );
                self.push(lat + d, Action::Deliver { to, to_run, wire });
            }
            _ => self.push(lat, Action::Deliver { to, to_run, wire }),
        }
    }

    /// Carries a frame on the data stream (lost if the stream broke meanwhile).
    fn on_stream(&mut self, from: usize, wire: Wire) {
        if self.stream_open {
            let to = 1 - from;
            let to_run = self.run[to];
            let lat = self.latency();
            self.push(lat, Action::Deliver { to, to_run, wire });
        }
    }

    fn deliver(&mut self, to: usize, wire: Wire) {
        match wire {
            Wire::Request {
                from,
                from_run,
                id,
                msg,
            } => {
                let answer = self.serve(to, from, from_run, id, msg);
                self.transmit(
                    to,
                    from,
                    Wire::Answer {
                        id,
                        msg: Some(answer),
                    },
                );
            }
            Wire::Answer { id, msg } => self.answered(id, msg),
            Wire::Image { last } => {
                if !self.stream_open || to != TARGET {
                    return;
                }
                if self.copies[TARGET] == Copy::None {
                    self.copies[TARGET] = Copy::Partial;
                }
                if last {
                    let run = self.run[TARGET];
                    let took = MS(self.rng.random_range(1..20));
                    self.push(took, Action::Restored { run });
                }
            }
            Wire::Prepared => {
                if self.source_waiting {
                    self.source_event(SourceEvent::Prepared);
                }
            }
        }
    }

    /// A daemon answers an RPC.
    fn serve(&mut self, me: usize, from: usize, from_run: u64, id: u64, msg: Request) -> Answer {
        match msg {
            Request::Offer => self.offered(me, from, from_run, id),
            Request::Migration(m) => Answer::Migration(self.migration_msg(me, m)),
        }
    }

    fn offered(&mut self, me: usize, from: usize, from_run: u64, rpc: u64) -> Answer {
        // An offer is a connection: one that its source gave up on is closed, and a target
        // refuses an offer of a migration it has seen.
        let given_up = self
            .rpcs
            .get(usize::try_from(rpc).unwrap_or(usize::MAX))
            .is_none_or(|r| r.answered);
        if me != TARGET
            || given_up
            || self.target.is_some()
            || from != SOURCE
            || from_run != self.id.source_run
        {
            return Answer::Refused;
        }
        self.target = Some(Target::new(self.id, NodeId(1), self.cfg.timeouts));
        self.stream += 1;
        self.stream_open = true;
        if !self.sees_up[TARGET] {
            self.target_event(TargetEvent::SourceDown);
        }
        Answer::Ready
    }

    fn migration_msg(&mut self, me: usize, msg: MigrationMsg) -> Option<MigrationMsg> {
        let run = self.run[me];
        if me == SOURCE {
            match self.source.as_mut() {
                Some(s) if self.id.source_run == run => {
                    s.handle(SourceEvent::Received(msg));
                    self.source_commands()
                }
                _ => answer_unknown(self.id, run, &msg),
            }
        } else {
            match self.target.as_mut() {
                Some(t) => {
                    t.handle(TargetEvent::Received(msg));
                    self.target_commands()
                }
                None => answer_unknown(self.id, run, &msg),
            }
        }
    }

    fn answered(&mut self, id: u64, msg: Option<Answer>) {
        let Some(rpc) = self.rpcs.get_mut(usize::try_from(id).unwrap_or(usize::MAX)) else {
            return;
        };
        if rpc.answered || !self.up[rpc.from] || self.run[rpc.from] != rpc.from_run {
            return;
        }
        rpc.answered = true;
        let (from, offer) = (rpc.from, rpc.offer);
        self.answer_to(from, offer, msg);
    }

    fn rpc_timeout(&mut self, id: u64) {
        let Some(rpc) = self.rpcs.get_mut(usize::try_from(id).unwrap_or(usize::MAX)) else {
            return;
        };
        if rpc.answered || !self.up[rpc.from] || self.run[rpc.from] != rpc.from_run {
            return;
        }
        rpc.answered = true;
        let (from, offer) = (rpc.from, rpc.offer);
        self.answer_to(from, offer, None);
    }

    fn answer_to(&mut self, from: usize, offer: bool, msg: Option<Answer>) {
        if offer {
            match msg {
                Some(Answer::Ready) if self.stream_open => {
                    self.source_helper = true;
                    self.source_event(SourceEvent::Accepted);
                }
                _ => {
                    // the source gives up: it closes the connection (the data stream to be)
                    self.break_stream();
                    self.source_event(SourceEvent::Refused("no answer to the offer".into()));
                }
            }
            return;
        }
        let answer = match msg {
            Some(Answer::Migration(m)) => m,
            _ => None,
        };
        if from == SOURCE {
            self.source_event(SourceEvent::Answer(answer));
        } else {
            self.target_event(TargetEvent::Answer(answer));
        }
    }

    fn stream_broken(&mut self) {
        // the source helper: before its last image the copy fails (and it resumes the
        // tree); after it, there is no answer
        if self.source_helper {
            if self.source_waiting {
                self.source_event(SourceEvent::NoAnswer("the data stream broke".into()));
            } else if self.source.as_ref().is_some_and(|s| !s.committed()) {
                self.source_helper = false;
                if self.copies[SOURCE] == Copy::Frozen {
                    self.copies[SOURCE] = Copy::Running;
                    self.wake(SOURCE);
                }
                self.source_event(SourceEvent::CopyFailed("the data stream broke".into()));
            }
        }
        // the target helper: a tree not whole yet is killed
        if self.copies[TARGET] == Copy::Partial {
            self.copies[TARGET] = Copy::None;
            self.target_event(TargetEvent::CopyFailed("the data stream broke".into()));
        }
    }

    fn source_step(&mut self, step: Step) {
        match step {
            Step::Round => {
                if !self.stream_open {
                    return;
                }
                self.on_stream(SOURCE, Wire::Image { last: false });
                let bytes = self.rng.random_range(1u64..64) << 20;
                self.source_event(SourceEvent::RoundSent(bytes));
            }
            Step::Frozen => {
                if !self.stream_open {
                    return;
                }
                self.on_stream(SOURCE, Wire::Image { last: true });
                self.source_waiting = true;
                self.source_event(SourceEvent::Frozen);
            }
            Step::Killed => self.source_event(SourceEvent::Killed),
        }
    }

    fn source_event(&mut self, ev: SourceEvent) {
        if let Some(s) = self.source.as_mut() {
            s.handle(ev);
            self.source_commands();
        }
    }

    fn target_event(&mut self, ev: TargetEvent) {
        if let Some(t) = self.target.as_mut() {
            t.handle(ev);
            self.target_commands();
        }
    }

    /// Carries out the source's commands; returns its reply to a message, if it made one.
    fn source_commands(&mut self) -> Option<MigrationMsg> {
        let mut reply = None;
        let mut queue: VecDeque<SourceCmd> = match self.source.as_mut() {
            Some(s) => s.drain().into(),
            None => return None,
        };
        while let Some(cmd) = queue.pop_front() {
            match cmd {
                SourceCmd::Offer => self.request(SOURCE, Request::Offer),
                SourceCmd::Round => {
                    let took = MS(self.rng.random_range(20..80));
                    let run = self.run[SOURCE];
                    self.push(
                        took,
                        Action::SourceStep {
                            run,
                            step: Step::Round,
                        },
                    );
                }
                SourceCmd::Freeze => {
                    if self.copies[SOURCE] == Copy::Running {
                        self.copies[SOURCE] = Copy::Frozen;
                    }
                    let took = MS(self.rng.random_range(5..30));
                    let run = self.run[SOURCE];
                    self.push(
                        took,
                        Action::SourceStep {
                            run,
                            step: Step::Frozen,
                        },
                    );
                }
                SourceCmd::Verdict(v) => self.verdict(v),
                SourceCmd::TakeInput => {
                    self.input_taken = true;
                    let bytes: Vec<u32> = self.queues[SOURCE].drain(..).collect();
                    let input = Handover {
                        bytes: bytes.iter().flat_map(|b| b.to_le_bytes()).collect(),
                        eof: false,
                    };
                    if let Some(s) = self.source.as_mut() {
                        s.handle(SourceEvent::InputTaken(input));
                        queue.extend(s.drain());
                    }
                }
                SourceCmd::Send(msg) => self.request(SOURCE, Request::Migration(msg)),
                SourceCmd::Reply(msg) => reply = Some(msg),
                SourceCmd::Schedule { timer, after } => {
                    let run = self.run[SOURCE];
                    self.push(after, Action::SourceTimer { run, timer });
                }
                SourceCmd::ForwardSignals => {
                    // the followers hear that the process moved once it runs there, its
                    // input in front
                    let run = self.run[SOURCE];
                    let lat = self.latency();
                    self.push(lat, Action::Moved { run });
                    if std::mem::take(&mut self.pending_kill)
                        && self.up[TARGET]
                        && self.copies[TARGET] == Copy::Running
                    {
                        self.copies[TARGET] = Copy::None;
                    }
                }
                SourceCmd::Finish(o) => self.outcome = Some(o),
            }
        }
        reply
    }

    fn verdict(&mut self, v: Verdict) {
        match v {
            Verdict::Commit => {
                // SIGKILL to every process of the frozen copy
                self.copies[SOURCE] = Copy::None;
                self.source_waiting = false;
                let run = self.run[SOURCE];
                self.push(
                    MS(1),
                    Action::SourceStep {
                        run,
                        step: Step::Killed,
                    },
                );
            }
            Verdict::Abort => {
                if self.copies[SOURCE] == Copy::Frozen {
                    self.copies[SOURCE] = Copy::Running;
                    self.wake(SOURCE);
                }
                self.source_waiting = false;
                self.source_helper = false;
                // a helper that stops says so to the target, which drops what it built
                if self.stream_open {
                    self.stream_open = false;
                    let stream = self.stream;
                    let lat = self.latency();
                    self.push(lat, Action::StreamBroken { stream });
                }
            }
        }
    }

    /// Carries out the target's commands; returns its reply to a message, if it made one.
    fn target_commands(&mut self) -> Option<MigrationMsg> {
        let mut reply = None;
        let mut queue: VecDeque<TargetCmd> = match self.target.as_mut() {
            Some(t) => t.drain().into(),
            None => return None,
        };
        while let Some(cmd) = queue.pop_front() {
            let back = match cmd {
                TargetCmd::TakeIn => Some(TargetEvent::TakenIn),
                TargetCmd::Announce => {
                    self.on_stream(TARGET, Wire::Prepared);
                    None
                }
                TargetCmd::Feed(input) => {
                    let bytes: Vec<u32> = input
                        .bytes
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    for b in bytes.into_iter().rev() {
                        self.queues[TARGET].push_front(b);
                    }
                    self.wake(TARGET);
                    None
                }
                TargetCmd::Release => {
                    if self.copies[TARGET] == Copy::Held {
                        self.copies[TARGET] = Copy::Running;
                        self.wake(TARGET);
                        Some(TargetEvent::Released)
                    } else {
                        Some(TargetEvent::ReleaseFailed("nothing held".into()))
                    }
                }
                TargetCmd::Discard(_) => {
                    self.copies[TARGET] = Copy::None;
                    self.queues[TARGET].clear();
                    None
                }
                TargetCmd::Send(msg) => {
                    self.request(TARGET, Request::Migration(msg));
                    None
                }
                TargetCmd::Reply(msg) => {
                    reply = Some(msg);
                    None
                }
                TargetCmd::Schedule { timer, after } => {
                    let run = self.run[TARGET];
                    self.push(after, Action::TargetTimer { run, timer });
                    None
                }
                TargetCmd::Finish(o) => {
                    self.target_outcome = Some(o);
                    None
                }
            };
            if let (Some(ev), Some(t)) = (back, self.target.as_mut()) {
                t.handle(ev);
                queue.extend(t.drain());
            }
        }
        reply
    }
}
