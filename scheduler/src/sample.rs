//! What policies see of the cluster: one [`NodeSample`] per alive node, from the gossiped probe
//! data (the type lives in `ssi_core::sched`, since it also shows in `ssi sched show`), and what
//! a new process asks for.

use serde::{Deserialize, Serialize};
pub use ssi_core::sched::NodeSample;

/// What a new process needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// CPUs.
    pub cpus: Option<u32>,
    /// Memory, bytes.
    pub mem_bytes: Option<u64>,
    /// Labels the node must carry (`key`, `value`).
    pub constraints: Vec<(String, String)>,
}

impl Request {
    /// Whether `n` has what the request needs.
    pub fn fits(&self, n: &NodeSample) -> bool {
        self.cpus.is_none_or(|c| n.cpus >= c)
            && self.mem_bytes.is_none_or(|m| n.mem_free_bytes >= m)
            && self
                .constraints
                .iter()
                .all(|(k, v)| n.labels.get(k) == Some(v))
    }
}

#[cfg(test)]
pub(crate) fn node(id: u16, cpus: u32, load: f64) -> NodeSample {
    use ssi_core::NodeId;
    use std::collections::BTreeMap;
    NodeSample {
        id: NodeId(id),
        name: format!("n{id}"),
        cpus,
        mem_total_bytes: 8 << 30,
        mem_free_bytes: 4 << 30,
        load,
        procs: 0,
        labels: BTreeMap::new(),
        pending: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_filter_on_cpus_memory_and_labels() {
        let mut n = node(1, 4, 0.0);
        n.labels.insert("rack".into(), "a".into());
        let mut r = Request::default();
        assert!(r.fits(&n));
        r.constraints.push(("rack".into(), "a".into()));
        assert!(r.fits(&n));
        r.constraints.push(("gpu".into(), "yes".into()));
        assert!(!r.fits(&n));
        let big = Request {
            cpus: Some(8),
            ..Request::default()
        };
        assert!(!big.fits(&n));
        let mem = Request {
            mem_bytes: Some(5 << 30),
            ..Request::default()
        };
        assert!(!mem.fits(&n));
    }
}
