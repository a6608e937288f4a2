//! Failure detection with real daemons on this machine: SIGKILL a node, time until every
//! other node shows it `dead`; restart it, time until every node shows it `alive`. Before the
//! kills, a steady window with no kill counts false deaths (any `node dead` in any log).
//! Each size runs twice: on the machine as it is, then with a CPU hog (two busy threads per
//! CPU in this process, at the daemons' priority) for the whole run.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p testbed --bench detection
//! [-- SIZES TRIALS STEADY_SECS]` (defaults: sizes 3,16, trials 10, 30 s). Reference: the
//! configured lower bound of a verdict, `2 * probe_period + suspect_to_down` (a probe and its
//! retry must fail, one period apart, then the member stays suspect that long), printed with
//! the ratio of each figure to it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ssi_core::config::GossipConfig;
use ssi_core::view::MemberState;
use testbed::Testbed;

/// Nearest-rank percentile; NaN when nothing was measured.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    testbed::stats::percentile(sorted, p)
}

/// Busy threads that keep every CPU of the machine loaded until dropped.
struct Hog {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Hog {
    fn start() -> Hog {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2 * cpus)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Hog { stop, threads }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `node dead` lines in the logs of `tb`'s nodes, past the byte offsets `from`.
fn deaths_logged(tb: &Testbed, from: &[usize]) -> usize {
    (1..=tb.nodes())
        .map(|n| {
            let log = std::fs::read(tb.log(n)).unwrap_or_default();
            let tail = log.get(from[n - 1]..).unwrap_or_default();
            String::from_utf8_lossy(tail).matches("node dead").count()
        })
        .sum()
}

fn log_sizes(tb: &Testbed) -> Vec<usize> {
    (1..=tb.nodes())
        .map(|n| std::fs::metadata(tb.log(n)).map_or(0, |m| m.len() as usize))
        .collect()
}

struct Samples {
    false_deaths: usize,
    first_dead: Vec<f64>,
    all_dead: Vec<f64>,
    each_dead: Vec<f64>,
    all_alive: Vec<f64>,
}

/// Polls every observer until each sees `target` in `state`; returns per-observer times.
fn time_until(
    tb: &Testbed,
    observers: &[usize],
    target: usize,
    state: MemberState,
    t0: Instant,
) -> Vec<f64> {
    let mut seen: Vec<Option<f64>> = vec![None; observers.len()];
    let deadline = t0 + Duration::from_secs(60);
    while seen.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, &o) in observers.iter().enumerate() {
            if seen[i].is_none() && tb.state_seen(o, target) == Some(state) {
                seen[i] = Some(t0.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    seen.into_iter().map(|s| s.unwrap_or(f64::NAN)).collect()
}

fn run(size: usize, trials: usize, steady: Duration) -> anyhow::Result<Samples> {
    let dir = std::env::temp_dir().join(format!("ssi-bench-detect-{}-{size}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut tb = Testbed::up(&dir, size, false)?;
    let before = log_sizes(&tb);
    std::thread::sleep(steady);
    let mut s = Samples {
        false_deaths: deaths_logged(&tb, &before),
        first_dead: vec![],
        all_dead: vec![],
        each_dead: vec![],
        all_alive: vec![],
    };
    for trial in 0..trials {
        let victim = 2 + trial % (size - 1);
        let observers: Vec<usize> = (1..=size).filter(|&n| n != victim).collect();
        let t0 = Instant::now();
        tb.kill(victim)?;
        let times = time_until(&tb, &observers, victim, MemberState::Dead, t0);
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        s.first_dead.push(sorted[0]);
        s.all_dead.push(*sorted.last().unwrap_or(&f64::NAN));
        s.each_dead.extend(times);
        let t1 = Instant::now();
        tb.start(victim)?;
        let all: Vec<usize> = (1..=size).collect();
        let alive = time_until(&tb, &all, victim, MemberState::Alive, t1);
        s.all_alive.push(alive.into_iter().fold(0.0, f64::max));
    }
    tb.down();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(s)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let sizes: Vec<usize> = args
        .first()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![3, 16]);
    let trials: usize = args.get(1).and_then(|t| t.parse().ok()).unwrap_or(10);
    let steady = Duration::from_secs(args.get(2).and_then(|t| t.parse().ok()).unwrap_or(30));
    let g = GossipConfig::default();
    let reference = (2 * g.probe_period + g.suspect_to_down).as_secs_f64();
    println!(
        "failure detection, real ssid daemons on loopback, {trials} trials per size \
         (probe period {:?}, rtt {:?}, suspect timeout {:?}); reference = 2 x period + suspect timeout = {reference:.2} s",
        g.probe_period, g.probe_rtt, g.suspect_to_down
    );
    println!(
        "| nodes | CPU hog | false deaths in {} s | first `dead` | each node | every node | back `alive` everywhere |",
        steady.as_secs()
    );
    println!("|---|---|---|---|---|---|---|");
    for (size, hog) in sizes.iter().flat_map(|&size| [(size, false), (size, true)]) {
        let hogging = hog.then(Hog::start);
        let mut s = run(size, trials, steady)?;
        drop(hogging);
        for v in [
            &mut s.first_dead,
            &mut s.each_dead,
            &mut s.all_dead,
            &mut s.all_alive,
        ] {
            v.sort_by(f64::total_cmp);
        }
        // p50 / p99 (min-max), and the ratio of the p50 to the reference.
        let cell = |v: &[f64], ratio: bool| {
            let r = if ratio {
                format!(", {:.2}x ref", percentile(v, 50.0) / reference)
            } else {
                String::new()
            };
            let (lo, hi) = (v.first().copied(), v.last().copied());
            format!(
                "{:.2} / {:.2} s ({:.2}-{:.2}){r}",
                percentile(v, 50.0),
                percentile(v, 99.0),
                lo.unwrap_or(f64::NAN),
                hi.unwrap_or(f64::NAN)
            )
        };
        let load = if hog {
            "2 busy threads per CPU"
        } else {
            "none"
        };
        println!(
            "| {size} | {load} | {} | {} | {} | {} | {} |",
            s.false_deaths,
            cell(&s.first_dead, true),
            cell(&s.each_dead, true),
            cell(&s.all_dead, true),
            cell(&s.all_alive, false)
        );
    }
    Ok(())
}
