//! The cluster advertised as one grid node: one resource document summing the nodes, with
//! GLUE 2.0 names where GLUE has one, and matching of a grid's range requirements against it
//! ([`requirement`]).
//!
//! Free cores are the cores not busy by the one-minute load (`cpus - ceil(load1)` per node,
//! at least 0): what a new task can expect without waiting. Only alive nodes count.

pub mod requirement;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use requirement::Requirement;

/// What the daemon knows of one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeResources {
    /// Node id.
    pub id: u16,
    /// Whether the node is alive (suspect counts as alive).
    pub alive: bool,
    /// Logical CPUs.
    pub cpus: u32,
    /// Memory in bytes.
    pub mem_total_bytes: u64,
    /// Available memory in bytes.
    pub mem_free_bytes: u64,
    /// One-minute load average.
    pub load1: f64,
    /// Architecture (`x86_64` ...).
    pub arch: String,
    /// OS family, name and version (`linux`, `debian`, `12`).
    pub os: (String, String, String),
    /// Node labels (queues select nodes by them).
    pub labels: BTreeMap<String, String>,
}

/// One queue as GLUE's ComputingShare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ComputingShare {
    /// The queue's name.
    pub mapping_queue: String,
    /// Logical CPUs of the nodes of the queue.
    pub total_slots: u64,
    /// Free cores of the nodes of the queue.
    pub free_slots: u64,
    /// Alive nodes of the queue.
    pub total_instances: u64,
}

/// GLUE 2.0 ComputingManager attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ComputingManager {
    /// `ssi`.
    pub product_name: String,
    /// Logical CPUs of every alive node.
    #[serde(rename = "TotalLogicalCPUs")]
    pub total_logical_cpus: u64,
    /// Cores a task can be given (one slot per logical CPU).
    pub total_slots: u64,
}

/// GLUE 2.0 ExecutionEnvironment attributes (the nodes, summed; platform of the majority).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecutionEnvironment {
    /// Architecture.
    pub platform: String,
    /// Nodes known.
    pub total_instances: u64,
    /// Nodes not alive.
    pub unavailable_instances: u64,
    /// Logical CPUs of alive nodes.
    #[serde(rename = "LogicalCPUs")]
    pub logical_cpus: u64,
    /// Memory of alive nodes, MB (GLUE's unit).
    pub main_memory_size: u64,
    /// OS family.
    #[serde(rename = "OSFamily")]
    pub os_family: String,
    /// OS name.
    #[serde(rename = "OSName")]
    pub os_name: String,
    /// OS version.
    #[serde(rename = "OSVersion")]
    pub os_version: String,
}

/// The resource document (`ssi resources --json`, and served by the job service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceDoc {
    /// GLUE 2.0 ComputingManager.
    #[serde(rename = "ComputingManager")]
    pub manager: ComputingManager,
    /// GLUE 2.0 ExecutionEnvironment.
    #[serde(rename = "ExecutionEnvironment")]
    pub environment: ExecutionEnvironment,
    /// GLUE 2.0 ComputingShare, one per queue.
    #[serde(rename = "ComputingShare")]
    pub shares: Vec<ComputingShare>,
    /// What GLUE has no name for, and the values requirements are matched against.
    pub ssi: Summary,
}

/// The figures requirements name (see [`requirement`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Alive nodes.
    pub nodes: u64,
    /// Logical CPUs of alive nodes.
    pub cores: u64,
    /// Cores not busy.
    pub free_cores: u64,
    /// Memory, GB (2^30 bytes).
    pub mem_gb: f64,
    /// Available memory, GB.
    pub free_mem_gb: f64,
    /// Summed one-minute load.
    pub load: f64,
    /// Architecture.
    pub arch: String,
    /// OS name.
    pub os: String,
    /// DFS capacity in GB, when the DFS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dfs_gb: Option<f64>,
    /// DFS free space in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dfs_free_gb: Option<f64>,
}

fn free_cores(n: &NodeResources) -> u64 {
    let busy = n.load1.max(0.0).ceil() as u64;
    u64::from(n.cpus).saturating_sub(busy)
}

/// The most common value of `f` among `nodes` (ties: the smallest).
fn majority(nodes: &[&NodeResources], f: impl Fn(&NodeResources) -> String) -> String {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for n in nodes {
        *count.entry(f(n)).or_default() += 1;
    }
    count
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(k, _)| k)
        .unwrap_or_default()
}

/// Where the node figures come from: the daemon's cluster view, or [`LocalHost`].
pub trait ResourceSource: Send + Sync + std::fmt::Debug {
    /// Every known node.
    fn nodes(&self) -> Vec<NodeResources>;
    /// The DFS's (total, free) bytes, when it reports them.
    fn dfs_bytes(&self) -> Option<(u64, u64)> {
        None
    }
}

/// This host alone, read from /proc (a cluster of one node).
#[derive(Debug, Clone, Default)]
pub struct LocalHost {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

impl ResourceSource for LocalHost {
    fn nodes(&self) -> Vec<NodeResources> {
        use procfs::Current;
        let mem = procfs::Meminfo::current().ok();
        let (arch, os) = local_platform();
        vec![NodeResources {
            id: 1,
            alive: true,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            mem_total_bytes: mem.as_ref().map_or(0, |m| m.mem_total),
            mem_free_bytes: mem.as_ref().and_then(|m| m.mem_available).unwrap_or(0),
            load1: procfs::LoadAverage::current().map_or(0.0, |l| f64::from(l.one)),
            arch,
            os,
            labels: self.labels.clone(),
        }]
    }
}

const GB: f64 = (1u64 << 30) as f64;

/// The document of `nodes`, with a share per queue (`queues`: name -> labels a node must
/// have) and the DFS's (total, free) bytes if known.
pub fn advertise(
    nodes: &[NodeResources],
    queues: &BTreeMap<String, BTreeMap<String, String>>,
    dfs: Option<(u64, u64)>,
) -> ResourceDoc {
    let alive: Vec<&NodeResources> = nodes.iter().filter(|n| n.alive).collect();
    let cores: u64 = alive.iter().map(|n| u64::from(n.cpus)).sum();
    let mem: u64 = alive.iter().map(|n| n.mem_total_bytes).sum();
    let free_mem: u64 = alive.iter().map(|n| n.mem_free_bytes).sum();
    let arch = majority(&alive, |n| n.arch.clone());
    let os = (
        majority(&alive, |n| n.os.0.clone()),
        majority(&alive, |n| n.os.1.clone()),
        majority(&alive, |n| n.os.2.clone()),
    );
    let shares = queues
        .iter()
        .map(|(name, labels)| {
            let members: Vec<&&NodeResources> = alive
                .iter()
                .filter(|n| labels.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
                .collect();
            ComputingShare {
                mapping_queue: name.clone(),
                total_slots: members.iter().map(|n| u64::from(n.cpus)).sum(),
                free_slots: members.iter().map(|n| free_cores(n)).sum(),
                total_instances: members.len() as u64,
            }
        })
        .collect();
    ResourceDoc {
        manager: ComputingManager {
            product_name: "ssi".into(),
            total_logical_cpus: cores,
            total_slots: cores,
        },
        environment: ExecutionEnvironment {
            platform: arch.clone(),
            total_instances: nodes.len() as u64,
            unavailable_instances: (nodes.len() - alive.len()) as u64,
            logical_cpus: cores,
            main_memory_size: mem >> 20,
            os_family: os.0,
            os_name: os.1.clone(),
            os_version: os.2,
        },
        shares,
        ssi: Summary {
            nodes: alive.len() as u64,
            cores,
            free_cores: alive.iter().map(|n| free_cores(n)).sum(),
            mem_gb: mem as f64 / GB,
            free_mem_gb: free_mem as f64 / GB,
            load: alive.iter().map(|n| n.load1).sum(),
            arch,
            os: os.1,
            dfs_gb: dfs.map(|(t, _)| t as f64 / GB),
            dfs_free_gb: dfs.map(|(_, f)| f as f64 / GB),
        },
    }
}

/// This host's architecture and OS (family, `ID` and `VERSION_ID` of `/etc/os-release`).
pub fn local_platform() -> (String, (String, String, String)) {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |key: &str| {
        release
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (
        std::env::consts::ARCH.to_string(),
        (
            std::env::consts::OS.to_string(),
            field("ID"),
            field("VERSION_ID"),
        ),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(id: u16, cpus: u32, gb: u64, load1: f64, alive: bool, rack: &str) -> NodeResources {
        NodeResources {
            id,
            alive,
            cpus,
            mem_total_bytes: gb << 30,
            mem_free_bytes: (gb << 30) / 2,
            load1,
            arch: "x86_64".into(),
            os: ("linux".into(), "debian".into(), "12".into()),
            labels: [("rack".to_string(), rack.to_string())].into(),
        }
    }

    #[test]
    fn sums_alive_nodes_and_shares_per_queue() {
        let nodes = [
            node(1, 32, 64, 3.2, true, "a"),
            node(2, 32, 64, 40.0, true, "b"),
            node(3, 64, 128, 0.0, false, "a"),
        ];
        let queues = [
            ("default".to_string(), BTreeMap::new()),
            (
                "rack-a".to_string(),
                [("rack".to_string(), "a".to_string())].into(),
            ),
        ]
        .into();
        let d = advertise(&nodes, &queues, Some((10 << 30, 4 << 30)));
        assert_eq!(d.ssi.cores, 64);
        assert_eq!(
            d.ssi.free_cores, 28,
            "node 1: 32 - 4 busy; node 2 overloaded: 0"
        );
        assert_eq!(d.ssi.mem_gb, 128.0);
        assert_eq!(
            (
                d.environment.total_instances,
                d.environment.unavailable_instances
            ),
            (3, 1)
        );
        assert_eq!(d.environment.main_memory_size, 128 * 1024);
        assert_eq!(
            d.shares[1],
            ComputingShare {
                mapping_queue: "rack-a".into(),
                total_slots: 32,
                free_slots: 28,
                total_instances: 1
            }
        );
        assert_eq!(d.ssi.dfs_free_gb, Some(4.0));
        let j = serde_json::to_value(&d).unwrap();
        assert_eq!(j["ComputingManager"]["TotalLogicalCPUs"], 64);
        assert_eq!(j["ExecutionEnvironment"]["OSName"], "debian");
        assert_eq!(j["ComputingShare"][0]["MappingQueue"], "default");
    }
}
