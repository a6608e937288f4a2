//! Probe data (name, CPUs, memory, load) that each member publishes, and how often.
//!
//! Every member keeps every other member's latest probe data, so the cost of spreading it grows
//! with the cluster: each member receives each publication about [`INFO_TRANSMISSIONS`] times
//! (push gossip), that is `n * INFO_TRANSMISSIONS * item_size / period` bytes per second. Two
//! rules keep that bounded whatever the size:
//!
//! * probe-data items only take the room membership updates leave in a datagram, and only
//!   within a byte allowance of `info_budget` per second ([`Allowance`], a token bucket): they
//!   can neither delay failure detection nor exceed the budget;
//! * a member publishes at most once per
//!
//! ```text
//! period = max(info_interval, n * INFO_TRANSMISSIONS * item_size / info_budget)
//! ```
//!
//! so that what the cluster publishes fits what the budgets can carry. The cost is staleness
//! at scale: with the default 4 KiB/s, a publication per second up to about 25 members, one
//! every 4 s at 100, 40 s at 1,000, 6 min at 10,000.

use std::time::Duration;

use crate::probe::ProbeData;

use super::message::{self, InfoBody};

/// How many times each member forwards a publication. Three sends reach all but about
/// e^-3 = 5% of members; those get the next publication, which supersedes it anyway.
pub const INFO_TRANSMISSIONS: u8 = 3;

/// Encodes `name` and `probe` compactly.
pub fn encode(name: &str, probe: &ProbeData) -> Vec<u8> {
    let centi = |x: f64| (x * 100.0).round() as u32;
    let body = InfoBody {
        name,
        cpus: probe.cpus,
        mem_total_kib: probe.mem_total_bytes / 1024,
        mem_free_kib: probe.mem_free_bytes / 1024,
        load_centi: [centi(probe.load1), centi(probe.load5), centi(probe.load15)],
        ssi_procs: probe.ssi_procs,
    };
    // A name is at most 64 bytes (config check) and the figures at most 40: this fits.
    postcard::to_stdvec(&body).unwrap_or_default()
}

/// Decodes a body stored by the table (checked when it was received).
pub fn decode(body: &[u8]) -> Option<(String, ProbeData)> {
    let b = message::check_info_body(body).ok()?;
    let load = |c: u32| f64::from(c) / 100.0;
    Some((
        b.name.to_string(),
        ProbeData {
            cpus: b.cpus,
            mem_total_bytes: b.mem_total_kib.saturating_mul(1024),
            mem_free_bytes: b.mem_free_kib.saturating_mul(1024),
            load1: load(b.load_centi[0]),
            load5: load(b.load_centi[1]),
            load15: load(b.load_centi[2]),
            ssi_procs: b.ssi_procs,
        },
    ))
}

/// This node's own probe data and when it last went out.
#[derive(Debug, Default)]
pub struct OwnInfo {
    /// Latest figures given by the daemon.
    pub probe: Option<ProbeData>,
    /// Publication number within the current generation (0: none yet).
    pub seq: u32,
    /// Encoded body of the last publication.
    pub body: Vec<u8>,
    /// When it went out (core clock).
    pub last: Option<Duration>,
    /// Whether `probe` changed since.
    pub dirty: bool,
}

impl OwnInfo {
    /// Whether a publication is due at `now` given the `period`.
    pub fn due(&self, now: Duration, period: Duration) -> bool {
        self.dirty
            && self.probe.is_some()
            && self.last.is_none_or(|t| now.saturating_sub(t) >= period)
    }

    /// Publishes the latest figures as the next publication; a fresh generation starts at 1.
    pub fn publish(&mut self, name: &str, now: Duration) {
        if let Some(p) = &self.probe {
            self.body = encode(name, p);
            self.seq = self.seq.saturating_add(1);
            self.last = Some(now);
            self.dirty = false;
        }
    }

    /// Forgets the publications of the previous generation (after a renewal).
    pub fn renew(&mut self) {
        self.seq = 0;
        self.last = None;
        self.dirty = self.probe.is_some();
    }
}

/// The bytes of probe data this node may still send: a token bucket filled at `info_budget`
/// bytes per second, holding at most a second's worth (and always room for one datagram).
/// Membership updates never wait for it.
#[derive(Debug, Default)]
pub struct Allowance {
    bytes: f64,
    at: Duration,
}

impl Allowance {
    /// A full allowance for `rate` bytes per second.
    pub fn full(rate: u32) -> Self {
        let mut a = Allowance::default();
        a.refill(Duration::from_secs(1), rate);
        a.at = Duration::ZERO;
        a
    }

    /// Adds what accrued since the last call, at `rate` bytes per second.
    pub fn refill(&mut self, now: Duration, rate: u32) {
        let accrued = f64::from(rate) * now.saturating_sub(self.at).as_secs_f64();
        let cap = f64::from(rate).max(super::MAX_PACKET as f64);
        self.bytes = (self.bytes + accrued).min(cap);
        self.at = self.at.max(now);
    }

    /// Bytes that may be sent now.
    pub fn available(&self) -> usize {
        self.bytes as usize
    }

    /// Records `n` bytes sent.
    pub fn spend(&mut self, n: usize) {
        self.bytes = (self.bytes - n as f64).max(0.0);
    }
}

/// Time between two publications for a cluster of `n` members.
pub fn period(interval: Duration, budget: u32, n: usize, item_size: usize) -> Duration {
    let bytes = n as f64 * f64::from(INFO_TRANSMISSIONS) * item_size as f64;
    interval.max(Duration::from_secs_f64(bytes / f64::from(budget.max(1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_data_round_trips_at_kib_and_hundredth_precision() {
        let p = ProbeData {
            cpus: 64,
            mem_total_bytes: 512 << 30,
            mem_free_bytes: 3 << 30,
            load1: 12.53,
            load5: 0.2,
            load15: 0.0,
            ssi_procs: 17,
        };
        let body = encode("node-7", &p);
        assert!(body.len() < 30, "{} bytes", body.len());
        let (name, q) = decode(&body).expect("decodes");
        assert_eq!(name, "node-7");
        assert_eq!(q, p);
    }

    #[test]
    fn the_period_stretches_with_the_cluster() {
        let s = Duration::from_secs(1);
        assert_eq!(period(s, 4096, 25, 50), s);
        let big = period(s, 4096, 10_000, 50);
        assert!(
            big > Duration::from_secs(300) && big < Duration::from_secs(400),
            "{big:?}"
        );
    }

    #[test]
    fn the_allowance_accrues_at_the_budget_and_is_capped() {
        let mut a = Allowance::full(4096);
        assert_eq!(a.available(), 4096);
        a.spend(4096);
        a.refill(Duration::from_millis(500), 4096);
        assert_eq!(a.available(), 2048);
        a.spend(2000);
        assert_eq!(a.available(), 48);
        a.refill(Duration::from_secs(60), 4096);
        assert_eq!(a.available(), 4096, "a second's worth at most");
        a.refill(Duration::from_secs(61), 100);
        assert_eq!(
            a.available(),
            super::super::MAX_PACKET,
            "always one datagram"
        );
    }

    #[test]
    fn publications_are_paced() {
        let mut own = OwnInfo::default();
        assert!(
            !own.due(Duration::ZERO, Duration::from_secs(1)),
            "nothing to publish"
        );
        own.probe = Some(ProbeData::default());
        own.dirty = true;
        assert!(own.due(Duration::ZERO, Duration::from_secs(1)));
        own.publish("n", Duration::ZERO);
        assert_eq!(own.seq, 1);
        own.dirty = true;
        assert!(!own.due(Duration::from_millis(999), Duration::from_secs(1)));
        assert!(own.due(Duration::from_secs(1), Duration::from_secs(1)));
        own.renew();
        assert_eq!(own.seq, 0);
        assert!(own.due(Duration::ZERO, Duration::from_secs(1)));
    }
}
