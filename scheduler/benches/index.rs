//! The daemon's whole placement decision at 100, 1,000 and 10,000 alive nodes, with the
//! placement index against the scan it replaced (the reference, in the same run).
//!
//! * **index**: what `Sched::place` in the daemon does: take the scheduler's lock, then
//!   [`Placer::place`] (expire pending placements, the policy's walk of the index, the chosen
//!   node counted as pending), its one-line reason, the time of day, and the decision kept in a
//!   bounded log. Left out: the daemon's log line per decision (`tracing` at info level, which
//!   costs what the log's destination costs). Time advances 1 ms per decision, so pending
//!   placements expire as they would at 1,000 placements/s.
//! * **scan (reference)**: what a decision did before: samples built from the cluster view
//!   (filters applied to every node's load, pending placements counted), the policy's scan, and
//!   the reason listing every node's load per CPU. It leaves out building the view itself
//!   (the membership task decoded every node's probe data for each decision), so the real
//!   gap was larger.
//! * **sync**: the index taking in a whole view (what the daemon does every 200 ms), for the
//!   cost of keeping it up to date.
//!
//! Requests: none (any node) and one label carried by a quarter of the nodes. Policy:
//! `least-loaded` (the default), filter `ewma:2` (the default).
//!
//! Run: `cargo bench -p scheduler --bench index`; after criterion's own report, a table of
//! medians and the ratio index/scan.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use scheduler::filter::FilterChain;
use scheduler::{registry, NodeSample, Placer, Request};
use ssi_core::probe::ProbeData;
use ssi_core::view::{MemberState, NodeView};
use ssi_core::NodeId;

const SIZES: [usize; 3] = [100, 1_000, 10_000];
const KEEP: usize = 50;

fn view(n: usize, rng: &mut SmallRng) -> Vec<NodeView> {
    (0..n)
        .map(|i| {
            let id = u16::try_from(i + 1).unwrap_or(u16::MAX);
            let mut labels = BTreeMap::new();
            labels.insert("rack".to_string(), ["a", "b", "c", "d"][i % 4].to_string());
            NodeView {
                id: NodeId(id),
                name: format!("n{id}"),
                addr: format!("10.77.0.1:{id}"),
                state: MemberState::Alive,
                incarnation: 0,
                gen: 1,
                probe: ProbeData {
                    cpus: rng.random_range(1..=64),
                    mem_total_bytes: 64 << 30,
                    mem_free_bytes: rng.random_range(0..64u64 << 30),
                    load1: 0.0,
                    load5: 0.0,
                    load15: 0.0,
                    ssi_procs: rng.random_range(0..500),
                    runnable: f64::from(rng.random_range(0..6400u32)) / 100.0,
                    labels,
                },
                local: i == 0,
            }
        })
        .collect()
}

fn requests() -> [(&'static str, Request); 2] {
    [
        ("any", Request::default()),
        (
            "label",
            Request {
                constraints: vec![("rack".into(), "c".into())],
                ..Request::default()
            },
        ),
    ]
}

fn placer() -> Placer {
    let policy = registry::policy("least-loaded", &BTreeMap::new()).expect("built-in");
    let filters = FilterChain::new(&["ewma:2".to_string()]).expect("filter");
    Placer::new(NodeId(1), BTreeMap::new(), policy, filters)
}

/// Unix time in ms, as the daemon stamps each decision.
fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The decision as it was: samples from the view, a scan, every node in the reason.
fn scan_decision(
    view: &[NodeView],
    filters: &mut FilterChain,
    req: &Request,
    now: f64,
    log: &mut VecDeque<String>,
) {
    let mut nodes = NodeSample::from_view(view);
    for n in &mut nodes {
        n.load = filters.apply(n.id, n.load, now);
    }
    let mut policy = registry::policy("least-loaded", &BTreeMap::new()).expect("built-in");
    let choice = policy.place(&nodes, req);
    let seen: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}:{:.2}", n.id, n.pressure()))
        .collect();
    let reason = format!("least-loaded chose {choice:?} ({})", seen.join(" "));
    log.push_back(reason);
    if log.len() > KEEP {
        log.pop_front();
    }
}

fn bench(c: &mut Criterion) {
    let mut rng = SmallRng::seed_from_u64(5);
    for n in SIZES {
        let v = view(n, &mut rng);
        let mut g = c.benchmark_group(format!("decision-{n}"));
        for (name, req) in requests() {
            let mut p = placer();
            p.sync(&v, 0.0);
            let state = Mutex::new((p, VecDeque::new()));
            let mut now = 0.0;
            g.bench_function(BenchmarkId::new("index", name), |b| {
                b.iter(|| {
                    now += 0.001;
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    let (p, log) = &mut *st;
                    let placed = p.place(&req, now);
                    let reason = placed.reason("least-loaded", "a", &req).to_string();
                    log.push_back((unix_ms(), placed.node, reason));
                    if log.len() > KEEP {
                        log.pop_front();
                    }
                    std::hint::black_box(placed.node)
                })
            });
            let mut log = VecDeque::new();
            let mut filters = FilterChain::new(&["ewma:2".to_string()]).expect("filter");
            let mut now = 0.0;
            g.bench_function(BenchmarkId::new("scan", name), |b| {
                b.iter(|| {
                    now += 0.001;
                    scan_decision(&v, &mut filters, &req, now, &mut log);
                })
            });
        }
        let mut p = placer();
        let mut now = 0.0;
        g.bench_function(BenchmarkId::new("sync", "view"), |b| {
            b.iter(|| {
                now += 0.2;
                p.sync(&v, now);
            })
        });
        g.finish();
    }
}

/// Criterion's median estimate (ns) and its confidence interval for one benchmark.
fn estimate(dir: &Path, group: &str, id: &str) -> Option<(f64, f64, f64)> {
    let path = dir.join(group).join(id).join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let m = v.get("median")?;
    let ci = m.get("confidence_interval")?;
    Some((
        m.get("point_estimate")?.as_f64()?,
        ci.get("lower_bound")?.as_f64()?,
        ci.get("upper_bound")?.as_f64()?,
    ))
}

fn table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    println!("\n| nodes | request | scan (reference) | index | decisions/s | index vs scan | sync of a full view |");
    println!("|---|---|---|---|---|---|---|");
    let us = |ns: f64| format!("{:.2} us", ns / 1e3);
    for n in SIZES {
        let group = format!("decision-{n}");
        let sync = estimate(&dir, &group, "sync/view").map_or("?".into(), |s| us(s.0));
        for (name, _) in requests() {
            let (Some(i), Some(s)) = (
                estimate(&dir, &group, &format!("index/{name}")),
                estimate(&dir, &group, &format!("scan/{name}")),
            ) else {
                continue;
            };
            println!(
                "| {n} | {name} | {} ({}-{}) | {} ({}-{}) | {:.0} k/s | {:.4}x ({:.0}x faster) | {sync} |",
                us(s.0),
                us(s.1),
                us(s.2),
                us(i.0),
                us(i.1),
                us(i.2),
                1e6 / i.0,
                i.0 / s.0,
                s.0 / i.0
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
    table();
}
