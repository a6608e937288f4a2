//! The index chooses what a scan chooses: every built-in policy, on many seeded random clusters
//! (with ties in every figure), random requests, and updates between decisions.

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use ssi_core::NodeId;

use super::*;
use crate::registry;

const LABELS: [(&str, &str); 4] = [("rack", "a"), ("rack", "b"), ("gpu", "yes"), ("ssd", "yes")];

/// Figures from small sets, so that ties between nodes are common.
fn random_sample(rng: &mut SmallRng, id: u16) -> NodeSample {
    let mut labels = BTreeMap::new();
    for (k, v) in LABELS {
        if rng.random_bool(0.3) {
            labels.insert(k.to_string(), v.to_string());
        }
    }
    NodeSample {
        id: NodeId(id),
        name: format!("n{id}"),
        cpus: [0, 1, 2, 4, 8][rng.random_range(0..5)],
        mem_total_bytes: 16 << 30,
        mem_free_bytes: rng.random_range(0..4u64) << 30,
        load: f64::from(rng.random_range(0..12u32)) / 2.0,
        procs: rng.random_range(0..4),
        labels,
        pending: rng.random_range(0..3),
    }
}

fn random_request(rng: &mut SmallRng) -> Request {
    let mut constraints = Vec::new();
    for _ in 0..rng.random_range(0..3) {
        let (k, v) = LABELS[rng.random_range(0..LABELS.len())];
        constraints.push((k.to_string(), v.to_string()));
    }
    if rng.random_bool(0.05) {
        constraints.push(("nowhere".into(), "x".into()));
    }
    Request {
        cpus: rng.random_bool(0.3).then(|| rng.random_range(1..9)),
        mem_bytes: rng
            .random_bool(0.3)
            .then(|| rng.random_range(0..4u64) << 30),
        constraints,
    }
}

/// A random change to the cluster, applied to both the samples and the index.
fn random_update(rng: &mut SmallRng, nodes: &mut Vec<NodeSample>, index: &mut PlacementIndex) {
    match rng.random_range(0..4) {
        0 if !nodes.is_empty() => {
            let gone = nodes.remove(rng.random_range(0..nodes.len()));
            index.remove(gone.id);
        }
        1 if !nodes.is_empty() => {
            let i = rng.random_range(0..nodes.len());
            let delta = if rng.random_bool(0.5) { 1 } else { -1 };
            index.add_pending(nodes[i].id, delta);
            nodes[i].pending = nodes[i].pending.saturating_add_signed(delta);
        }
        _ => {
            let id = rng.random_range(1..80);
            let s = random_sample(rng, id);
            nodes.retain(|n| n.id != s.id);
            nodes.push(s.clone());
            index.update(s);
        }
    }
}

#[test]
fn the_index_chooses_what_a_scan_chooses() {
    let mut rng = SmallRng::seed_from_u64(16);
    let mut decisions = 0;
    for _cluster in 0..400 {
        let mut index = PlacementIndex::new();
        let mut nodes: Vec<NodeSample> = Vec::new();
        for _ in 0..rng.random_range(0..60) {
            random_update(&mut rng, &mut nodes, &mut index);
        }
        // One scanning and one indexed instance of each policy, kept in step (round-robin
        // remembers its last choice).
        let mut scanned = registry::builtins();
        let mut indexed = registry::builtins();
        for _ in 0..40 {
            let req = random_request(&mut rng);
            for (s, i) in scanned.iter_mut().zip(indexed.iter_mut()) {
                let want = s.place(&nodes, &req);
                let got = i.place_in(&index, &req);
                assert_eq!(got, want, "{} on {nodes:?} for {req:?}", s.name());
                decisions += 1;
            }
            random_update(&mut rng, &mut nodes, &mut index);
        }
        assert_eq!(index.len(), nodes.len());
    }
    assert!(decisions >= 80_000);
}

#[test]
fn labels_groups_follow_updates() {
    let mut index = PlacementIndex::new();
    let mut a = crate::sample::node(1, 4, 0.0);
    a.labels.insert("rack".into(), "a".into());
    index.update(a.clone());
    let req = Request {
        constraints: vec![("rack".into(), "a".into())],
        ..Request::default()
    };
    assert_eq!(index.first(Order::Pressure, &req), Some(NodeId(1)));
    a.labels.clear();
    index.update(a);
    assert_eq!(index.first(Order::Pressure, &req), None);
    assert!(index.labels.is_empty(), "an empty label group is dropped");
    index.remove(NodeId(1));
    assert!(index.is_empty() && index.all.pressure.is_empty());
}
