//! Placement as the daemon decides it, at 100, 1,000 and 10,000 nodes: the node list asked
//! from the gossip task (a real one, holding that many members with their probe data, learnt
//! through feed datagrams as a joining node learns them) taken into the placement index (as the
//! daemon does every 200 ms, untimed), then `Sched::place` (filters, pending
//! placements, the policy, the decision logged through `tracing` to a file and kept for `ssi
//! sched show`), on a tokio worker as `ssi run` does it. References, timed in the same run on
//! the same nodes: each built-in policy's `Policy::place` alone on the node samples, and the
//! node list alone.
//!
//! Timed with criterion (20 samples per figure); the table at the end gives, per figure, the
//! median and the range (min-max) of criterion's samples, per decision, and the ratio of the
//! medians to the policy alone.
//!
//! Run: `cargo bench -p ssi-node --bench placement` (`PLACEMENT_SIZES=100,1000` to choose
//! sizes; criterion's own options, e.g. `-- --warm-up-time 2`, pass through).

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use scheduler::{registry, NodeSample, Request};
use ssi_core::auth::ClusterKey;
use ssi_core::config::{GossipConfig, SchedConfig};
use ssi_core::gossip::{self, GossipHandle};
use ssi_core::membership::message::{Header, InfoBody, InfoItem, Kind, Writer};
use ssi_core::membership::Membership;
use ssi_core::probe::ProbeData;
use ssi_core::{NodeId, NodeIdentity};
use ssi_node::sched::Sched;
use testbed::stats::Spread;

const SAMPLES: usize = 20;

fn identity(id: usize) -> NodeIdentity {
    // Members of a simulated cluster: nothing is ever sent to them (probing is off).
    let [_, _, hi, lo] = u32::try_from(id).unwrap_or(0).to_be_bytes();
    NodeIdentity {
        id: NodeId(u16::try_from(id).unwrap_or(u16::MAX)),
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 77, hi, lo)), 7700),
        gen: 1,
    }
}

/// Feed datagrams from member 2 carrying the probe data of members 2..=n, as a seed sends a
/// joining node; random but plausible figures.
fn feed(n: usize, rng: &mut StdRng) -> Vec<Vec<u8>> {
    let header = Header {
        from: identity(2),
        incarnation: 0,
        kind: Kind::Feed,
    };
    let mut out = Vec::new();
    let mut w = Writer::new(&header);
    for id in 2..=n {
        let name = format!("node-{id}");
        let mem_total_kib = 64u64 << 20;
        let body = postcard::to_stdvec(&InfoBody {
            name: &name,
            cpus: rng.random_range(1..=64),
            mem_total_kib,
            mem_free_kib: rng.random_range(0..mem_total_kib),
            load_centi: [rng.random_range(0..6400); 3],
            ssi_procs: rng.random_range(0..500),
            runnable_centi: rng.random_range(0..6400),
            labels: "",
        })
        .expect("encode probe data");
        let me = identity(id);
        let item = InfoItem {
            id: me.id,
            addr: me.addr,
            gen: me.gen,
            seq: 1,
            body: &body,
        };
        if !w.push_info(&item) {
            out.push(std::mem::replace(&mut w, Writer::new(&header)).finish());
            assert!(w.push_info(&item), "one probe-data item fits a datagram");
        }
    }
    out.push(w.finish());
    out
}

/// A running gossip task that knows `n` nodes (itself included) with their probe data.
async fn cluster(n: usize) -> GossipHandle {
    let mut rng = StdRng::seed_from_u64(7);
    let quiet = GossipConfig {
        // No probes, no gossip rounds: the members are simulated and never answer.
        probe_period: Duration::from_secs(3600),
        probe_rtt: Duration::from_secs(1800),
        gossip_interval: Duration::from_secs(3600),
        expected_size: u32::try_from(n).unwrap_or(u32::MAX),
        ..GossipConfig::default()
    };
    let mut core = Membership::new(
        identity(1),
        "node-1".into(),
        &quiet,
        StdRng::seed_from_u64(8),
    );
    core.publish(ProbeData {
        cpus: 2,
        mem_total_bytes: 24 << 30,
        mem_free_bytes: 20 << 30,
        ..ProbeData::default()
    })
    .expect("publish");
    for d in feed(n, &mut rng) {
        core.handle_packet(&d).expect("feed datagram");
    }
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let key = ClusterKey::from_bytes(&[7u8; 32]).expect("key");
    let handle = gossip::spawn(core, socket, key).expect("gossip task");
    let view = handle.view().await.expect("view");
    let named = view.iter().filter(|v| v.probe.cpus > 0).count();
    assert_eq!(
        named, n,
        "the gossip task knows {named} nodes with probe data, not {n}"
    );
    handle
}

/// The default scheduler with one load filter, as a node configured for bursty loads runs.
fn sched_config() -> SchedConfig {
    SchedConfig {
        filters: vec!["ewma:5".into()],
        ..SchedConfig::default()
    }
}

/// Per-decision seconds of criterion's samples, recorded as `iter_custom` hands them back.
#[derive(Default)]
struct Recorder(RefCell<Vec<f64>>);

impl Recorder {
    fn note(&self, iters: u64, took: Duration) -> Duration {
        self.0
            .borrow_mut()
            .push(took.as_secs_f64() / iters.max(1) as f64);
        took
    }

    /// The spread of the last `SAMPLES` (criterion's measurement; earlier calls warmed up).
    fn spread(&self) -> Option<Spread> {
        let v = self.0.borrow();
        (v.len() >= SAMPLES).then(|| Spread::of(&v[v.len() - SAMPLES..]))?
    }
}

/// `iters` times on a tokio worker, as `ssi run` is served: the node list alone, or
/// (`whole`) the daemon's decision. Each decision runs on a fresh scheduler (so that its
/// pending placements stay as few as a daemon's), after one untimed decision that gives the
/// filters their state.
fn on_worker(
    rt: &tokio::runtime::Runtime,
    gossip: &GossipHandle,
    iters: u64,
    whole: bool,
) -> Duration {
    let gossip = gossip.clone();
    let task = rt.spawn(async move {
        let req = Request::default();
        let mut took = Duration::ZERO;
        for _ in 0..iters {
            let sched = Sched::new(NodeId(1), &sched_config()).expect("sched");
            if whole {
                // The daemon's placement index takes in the view every 200 ms (`follow`), not
                // per decision: a decision is `Sched::place` alone.
                let view = gossip.view().await.expect("view");
                sched.sync(&view);
                sched.place(&req, "/bin/true");
                let t = Instant::now();
                std::hint::black_box(sched.place(&req, "/bin/true"));
                took += t.elapsed();
            } else {
                let t = Instant::now();
                let view = gossip.view().await.expect("view");
                took += t.elapsed();
                std::hint::black_box(view);
            }
        }
        took
    });
    rt.block_on(task).expect("decision task")
}

type Rows = Vec<(usize, String, Rc<Recorder>)>;

fn bench_size(c: &mut Criterion, rt: &tokio::runtime::Runtime, n: usize, rows: &mut Rows) {
    let gossip = rt.block_on(cluster(n));
    let view = rt.block_on(gossip.view()).expect("view");
    let samples = NodeSample::from_view(&view);
    let req = Request::default();
    let mut g = c.benchmark_group(format!("placement/{n}"));
    g.sample_size(SAMPLES);
    let mut add = |name: &str| {
        let r = Rc::new(Recorder::default());
        rows.push((n, name.to_string(), r.clone()));
        r
    };
    for mut p in registry::builtins() {
        let r = add(&format!("`{}` Policy::place alone", p.name()));
        g.bench_function(p.name().to_string(), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(p.place(&samples, &req));
                }
                r.note(iters, t.elapsed())
            })
        });
    }
    let r = add("node list alone (gossip task's view)");
    g.bench_function("view", |b| {
        b.iter_custom(|iters| r.note(iters, on_worker(rt, &gossip, iters, false)))
    });
    let r = add("**daemon's whole decision** (least-loaded, ewma filter, logged)");
    g.bench_function("decision", |b| {
        b.iter_custom(|iters| r.note(iters, on_worker(rt, &gossip, iters, true)))
    });
    g.finish();
}

fn print(rows: &Rows) {
    println!("\nplacement, per decision: median (min-max) of {SAMPLES} criterion samples");
    println!("| nodes | what | µs per decision | vs least-loaded alone |");
    println!("|---|---|---|---|");
    for (n, name, r) in rows {
        let reference = rows
            .iter()
            .find(|(m, what, _)| m == n && what.starts_with("`least-loaded`"))
            .and_then(|(_, _, r)| r.spread());
        if let (Some(s), Some(base)) = (r.spread(), reference) {
            println!(
                "| {n} | {name} | {} | {:.2}x |",
                s.scaled(1e6).show(1),
                s.ratio_to(&base)
            );
        }
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("PLACEMENT_SIZES")
        .unwrap_or_else(|_| "100,1000,10000".into())
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    // The daemon logs every decision; here to a file, as ssid's stderr goes to its log.
    let log = tempfile::NamedTempFile::new().expect("log file");
    let writer = log.reopen().expect("log file");
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(writer))
        .with_ansi(false)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut rows = Rows::new();
    for n in sizes {
        bench_size(&mut c, &rt, n, &mut rows);
    }
    c.final_summary();
    print(&rows);
}
