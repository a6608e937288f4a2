//! This daemon's Prometheus metrics, served at `/metrics` by [`crate::http`] when `http_listen`
//! is set.
//!
//! Every node exports what it knows first hand: the processes it hosts, the migrations and
//! checkpoints it ran (as the source), the programs it launched, its gossip traffic. The
//! cluster's node table (states, CPUs, load, memory) is exported as this node sees it, so one
//! scrape of any node gives the whole membership; sum the per-node series over all nodes for
//! cluster totals.
//!
//! Counters and histograms are fed as things happen; the gauges are read from the membership
//! view and the process manager when a scrape comes.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use ssi_core::gossip::TrafficCounts;
use ssi_core::process::{MigrationReport, ProcessView};
use ssi_core::view::{MemberState, NodeView};

/// Label pairs of one series.
type Labels = Vec<(&'static str, String)>;

/// The metrics of one daemon.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Serializes scrapes: the gauges are cleared and filled again for each.
    scrape: Mutex<()>,
    nodes: Family<Labels, Gauge>,
    node_cpus: Family<Labels, Gauge>,
    node_load1: Family<Labels, Gauge<f64, AtomicU64>>,
    node_memory_total: Family<Labels, Gauge>,
    node_memory_available: Family<Labels, Gauge>,
    processes: Family<Labels, Gauge>,
    launches: Counter,
    migrations: Family<Labels, Counter>,
    migration_downtime: Histogram,
    migration_seconds: Histogram,
    migration_bytes: Counter,
    checkpoints: Family<Labels, Counter>,
    checkpoint_seconds: Histogram,
    checkpoint_bytes: Histogram,
    gossip_packets: Family<Labels, Counter>,
    gossip_bytes: Family<Labels, Counter>,
}

fn ok_label(ok: bool) -> Labels {
    vec![("result", if ok { "ok" } else { "failed" }.to_string())]
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric, registered, at zero.
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::with_prefix("ssi"),
            scrape: Mutex::new(()),
            nodes: Family::default(),
            node_cpus: Family::default(),
            node_load1: Family::default(),
            node_memory_total: Family::default(),
            node_memory_available: Family::default(),
            processes: Family::default(),
            launches: Counter::default(),
            migrations: Family::default(),
            // 1 ms .. about 33 s
            migration_downtime: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            migration_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            migration_bytes: Counter::default(),
            checkpoints: Family::default(),
            checkpoint_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            // 64 KiB .. 64 GiB
            checkpoint_bytes: Histogram::new(exponential_buckets(65536.0, 4.0, 11)),
            gossip_packets: Family::default(),
            gossip_bytes: Family::default(),
        };
        m.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "nodes",
            "Nodes of the cluster by membership state, as this node sees them",
            self.nodes.clone(),
        );
        r.register(
            "node_cpus",
            "CPUs a node offers, as it last reported",
            self.node_cpus.clone(),
        );
        r.register(
            "node_load1",
            "1-minute load average of a node, as it last reported",
            self.node_load1.clone(),
        );
        r.register(
            "node_memory_total_bytes",
            "Memory of a node, as it last reported",
            self.node_memory_total.clone(),
        );
        r.register(
            "node_memory_available_bytes",
            "Available memory of a node, as it last reported",
            self.node_memory_available.clone(),
        );
        r.register(
            "processes",
            "Processes this node hosts, by state",
            self.processes.clone(),
        );
        r.register(
            "launches",
            "Programs started on this node (ssi run, mpirun ranks)",
            self.launches.clone(),
        );
        r.register(
            "migrations",
            "Migrations this node ran as the source, by result",
            self.migrations.clone(),
        );
        r.register(
            "migration_downtime_seconds",
            "Time a migrated tree was frozen: from the freeze to running on the target",
            self.migration_downtime.clone(),
        );
        r.register(
            "migration_duration_seconds",
            "Time a migration took, pre-copy rounds included",
            self.migration_seconds.clone(),
        );
        r.register(
            "migration_sent_bytes",
            "Bytes migrations from this node sent, framing included",
            self.migration_bytes.clone(),
        );
        r.register(
            "checkpoints",
            "Checkpoints (ssi checkpoint) this node ran, by result",
            self.checkpoints.clone(),
        );
        r.register(
            "checkpoint_duration_seconds",
            "Time a checkpoint took",
            self.checkpoint_seconds.clone(),
        );
        r.register(
            "checkpoint_memory_bytes",
            "Bytes of memory a checkpoint wrote",
            self.checkpoint_bytes.clone(),
        );
        r.register(
            "gossip_packets",
            "Gossip datagrams, by direction",
            self.gossip_packets.clone(),
        );
        r.register(
            "gossip_bytes",
            "Bytes of gossip datagrams, by direction",
            self.gossip_bytes.clone(),
        );
        self
    }

    /// A program was started here.
    pub fn launched(&self) {
        self.launches.inc();
    }

    /// A migration run by this node ended with `outcome`.
    pub fn migrated(&self, outcome: Result<&MigrationReport, ()>) {
        self.migrations
            .get_or_create(&ok_label(outcome.is_ok()))
            .inc();
        if let Ok(r) = outcome {
            self.migration_downtime
                .observe(Duration::from_micros(r.downtime_micros).as_secs_f64());
            self.migration_seconds
                .observe(Duration::from_micros(r.total_micros).as_secs_f64());
            self.migration_bytes.inc_by(r.bytes_sent);
        }
    }

    /// A checkpoint run by this node took `took` and wrote `page_bytes` (`None`: it failed).
    pub fn checkpointed(&self, took: Duration, page_bytes: Option<u64>) {
        self.checkpoints
            .get_or_create(&ok_label(page_bytes.is_some()))
            .inc();
        if let Some(b) = page_bytes {
            self.checkpoint_seconds.observe(took.as_secs_f64());
            self.checkpoint_bytes.observe(b as f64);
        }
    }

    /// The metrics in the OpenMetrics text format, the gauges taken from `view` (the
    /// membership), `hosted` (this node's processes) and `traffic` (gossip so far).
    pub fn render(
        &self,
        view: &[NodeView],
        hosted: &[ProcessView],
        traffic: TrafficCounts,
    ) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.fill_nodes(view);
        self.processes.clear();
        for p in hosted {
            self.processes
                .get_or_create(&vec![("state", p.state.to_string())])
                .inc();
        }
        for (dir, packets, bytes) in [
            ("sent", traffic.sent_packets, traffic.sent_bytes),
            ("received", traffic.received_packets, traffic.received_bytes),
        ] {
            let l = vec![("direction", dir.to_string())];
            catch_up(&self.gossip_packets.get_or_create(&l), packets);
            catch_up(&self.gossip_bytes.get_or_create(&l), bytes);
        }
        let mut out = String::new();
        // writing into a String cannot fail
        let _ = encode(&mut out, &self.registry);
        out
    }

    fn fill_nodes(&self, view: &[NodeView]) {
        for f in [
            &self.nodes,
            &self.node_cpus,
            &self.node_memory_total,
            &self.node_memory_available,
        ] {
            f.clear();
        }
        self.node_load1.clear();
        for s in [
            MemberState::Alive,
            MemberState::Suspect,
            MemberState::Dead,
            MemberState::Left,
        ] {
            let n = view.iter().filter(|v| v.state == s).count();
            self.nodes
                .get_or_create(&vec![("state", s.to_string())])
                .set(n as i64);
        }
        for v in view.iter().filter(|v| v.state.is_active()) {
            let l = vec![("node", v.id.to_string()), ("name", v.name.clone())];
            let p = &v.probe;
            self.node_cpus.get_or_create(&l).set(i64::from(p.cpus));
            self.node_load1.get_or_create(&l).set(p.load1);
            self.node_memory_total
                .get_or_create(&l)
                .set(i64::try_from(p.mem_total_bytes).unwrap_or(i64::MAX));
            self.node_memory_available
                .get_or_create(&l)
                .set(i64::try_from(p.mem_free_bytes).unwrap_or(i64::MAX));
        }
    }
}

/// Raises `c` to `total` (a count kept elsewhere, which only grows).
fn catch_up(c: &Counter, total: u64) {
    c.inc_by(total.saturating_sub(c.get()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssi_core::probe::ProbeData;
    use ssi_core::process::ProcState;
    use ssi_core::NodeId;

    fn node(id: u16, state: MemberState, load1: f64) -> NodeView {
        NodeView {
            id: NodeId(id),
            name: format!("n{id}"),
            addr: format!("127.0.0.1:{}", 7000 + id),
            state,
            incarnation: 0,
            gen: 1,
            probe: ProbeData {
                cpus: 2,
                mem_total_bytes: 1 << 30,
                mem_free_bytes: 1 << 29,
                load1,
                ..ProbeData::default()
            },
            local: id == 1,
        }
    }

    fn proc(gpid: i32, state: ProcState) -> ProcessView {
        ProcessView {
            gpid,
            ppid: 0,
            node: NodeId(1),
            node_name: "n1".into(),
            state,
            user: "root".into(),
            uid: 0,
            cpu_percent: 0.0,
            rss_bytes: 0,
            start_time: 0,
            threads: 1,
            command: "sleep 100".into(),
            to: None,
            ft: None,
        }
    }

    #[test]
    fn a_scrape_shows_the_view_the_processes_and_what_happened() {
        let m = Metrics::new();
        m.launched();
        m.launched();
        let report = MigrationReport {
            gpid: 4097,
            pids: vec![4097],
            from: NodeId(1),
            to: NodeId(2),
            rounds: vec![1 << 20],
            final_page_bytes: 4096,
            bytes_sent: 2 << 20,
            total_micros: 300_000,
            downtime_micros: 20_000,
            restore_micros: 5_000,
            lost_input_bytes: 0,
            note: None,
        };
        m.migrated(Ok(&report));
        m.migrated(Err(()));
        m.checkpointed(Duration::from_millis(50), Some(1 << 20));
        let view = [
            node(1, MemberState::Alive, 0.5),
            node(2, MemberState::Dead, 9.0),
        ];
        let hosted = [
            proc(4097, ProcState::Sleeping),
            proc(4098, ProcState::Sleeping),
            proc(4099, ProcState::Running),
        ];
        let traffic = TrafficCounts {
            sent_packets: 3,
            sent_bytes: 300,
            received_packets: 2,
            received_bytes: 200,
        };
        let text = m.render(&view, &hosted, traffic);
        for line in [
            "ssi_nodes{state=\"alive\"} 1",
            "ssi_nodes{state=\"dead\"} 1",
            "ssi_nodes{state=\"left\"} 0",
            "ssi_node_load1{node=\"1\",name=\"n1\"} 0.5",
            "ssi_processes{state=\"sleeping\"} 2",
            "ssi_processes{state=\"running\"} 1",
            "ssi_launches_total 2",
            "ssi_migrations_total{result=\"ok\"} 1",
            "ssi_migrations_total{result=\"failed\"} 1",
            "ssi_migration_downtime_seconds_count 1",
            "ssi_migration_downtime_seconds_sum 0.02",
            "ssi_checkpoint_memory_bytes_count 1",
            "ssi_gossip_bytes_total{direction=\"sent\"} 300",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from:\n{text}"
            );
        }
        // a dead node's last figures are not shown as current
        assert!(!text.contains("node=\"2\""), "{text}");
        // the next scrape shows the processes of now, and the gossip counters only grow
        let traffic = TrafficCounts {
            sent_bytes: 500,
            ..traffic
        };
        let text = m.render(&view, &hosted[..1], traffic);
        assert!(
            text.contains("ssi_processes{state=\"sleeping\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("state=\"running\""), "{text}");
        assert!(
            text.contains("ssi_gossip_bytes_total{direction=\"sent\"} 500\n"),
            "{text}"
        );
    }
}
