//! Policy decisions per second with the default policies and with 1,000 more; reference: the
//! same requests against an empty policy set, which costs building the request's entities and
//! running Cedar's authorizer with nothing to evaluate (what any decision must pay).
//!
//! Each figure is the median of 7 runs of ~300 ms, with the spread (min..max).
//! Run: `cargo bench -p grid-node --bench policy`.

use std::time::{Duration, Instant};

use grid_node::policy::{Action, PolicyEngine, Principal, Resource};

fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Median and spread of 7 runs.
fn runs(mut f: impl FnMut()) -> (f64, f64, f64) {
    let mut v: Vec<f64> = (0..7)
        .map(|_| rate(Duration::from_millis(300), &mut f))
        .collect();
    v.sort_by(f64::total_cmp);
    (v[3], v[0], v[6])
}

fn principal(subject: &str, fqans: &[&str]) -> Principal {
    let fqans: Vec<_> = fqans.iter().filter_map(|f| f.parse().ok()).collect();
    Principal {
        subject: subject.into(),
        vo: "atlas".into(),
        fqans,
        cluster_admin: false,
    }
}

fn main() {
    let engine = PolicyEngine::new().expect("default policies");
    let alice = principal("/O=Grid/CN=alice", &["/atlas", "/atlas/prod/Role=pilot"]);
    let admin = principal("/O=Grid/CN=boss", &["/atlas", "/atlas/Role=admin"]);
    let queue = Resource::Queue {
        name: "default".into(),
        vos: vec!["atlas".into()],
    };
    let task = Resource::Task {
        id: "t".into(),
        owner: "/O=Grid/CN=carol".into(),
        vo: "atlas".into(),
        queue: "default".into(),
    };
    let cases: [(&str, &Principal, Action, &Resource); 3] = [
        ("submit (allow)", &alice, Action::Submit, &queue),
        ("cancel other's (deny)", &alice, Action::Cancel, &task),
        ("cancel as vo admin", &admin, Action::Cancel, &task),
    ];
    let mut extra = engine.text().expect("text");
    for i in 0..1000 {
        extra.push_str(&format!(
            "permit(principal in Ssi::Group::\"/atlas/g{i}\", action == Ssi::Action::\"submit\", resource is Ssi::Queue);\n"
        ));
    }
    let sets = [
        ("default (8)", engine.text().expect("text")),
        ("default + 1000", extra),
    ];
    println!("policy decisions per second (median of 7 runs, min..max), vs empty policy set");
    println!(
        "{:<16} {:<24} {:>12} {:>22} {:>9}",
        "policy set", "request", "decisions/s", "spread", "vs empty"
    );
    for (name, text) in &sets {
        for (label, p, a, r) in &cases {
            engine.set("").expect("empty set");
            let (reference, _, _) = runs(|| {
                std::hint::black_box(engine.decide(p, *a, r).map(|d| d.allowed).ok());
            });
            engine.set(text).expect("policies");
            let (med, lo, hi) = runs(|| {
                std::hint::black_box(engine.decide(p, *a, r).map(|d| d.allowed).ok());
            });
            println!(
                "{name:<16} {label:<24} {med:>12.0} {:>22} {:>8.2}x",
                format!("{lo:.0}..{hi:.0}"),
                med / reference
            );
        }
    }
}
