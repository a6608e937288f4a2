//! Filters: what a node's reported load goes through before policies see it.
//!
//! A filter spec is `NAME` or `NAME:PARAM`:
//!
//! | spec | effect |
//! |---|---|
//! | `ewma:H` | exponential moving average with a half-life of H seconds (smooths bursts) |
//! | `threshold:T` | values below T count as 0 (ignores noise from short-lived tasks) |
//! | `clamp:M` | values above M count as M |
//!
//! Filters run in order, per node, each keeping its own state.

use std::collections::HashMap;

use ssi_core::NodeId;

use crate::{Error, Result};

/// One filter, with its state for one node.
pub trait Filter: Send + std::fmt::Debug {
    /// Its spec.
    fn spec(&self) -> String;
    /// Filters `value`, observed `dt_s` seconds after the previous one.
    fn apply(&mut self, value: f64, dt_s: f64) -> f64;
}

/// See the module table.
#[derive(Debug, Clone)]
pub struct Ewma {
    half_life_s: f64,
    state: Option<f64>,
}

impl Filter for Ewma {
    fn spec(&self) -> String {
        format!("ewma:{}", self.half_life_s)
    }
    fn apply(&mut self, value: f64, dt_s: f64) -> f64 {
        let next = match self.state {
            None => value,
            Some(prev) => {
                let keep = 0.5f64.powf(dt_s.max(0.0) / self.half_life_s);
                prev * keep + value * (1.0 - keep)
            }
        };
        self.state = Some(next);
        next
    }
}

/// See the module table.
#[derive(Debug, Clone)]
pub struct Threshold {
    min: f64,
}

impl Filter for Threshold {
    fn spec(&self) -> String {
        format!("threshold:{}", self.min)
    }
    fn apply(&mut self, value: f64, _dt_s: f64) -> f64 {
        if value < self.min {
            0.0
        } else {
            value
        }
    }
}

/// See the module table.
#[derive(Debug, Clone)]
pub struct Clamp {
    max: f64,
}

impl Filter for Clamp {
    fn spec(&self) -> String {
        format!("clamp:{}", self.max)
    }
    fn apply(&mut self, value: f64, _dt_s: f64) -> f64 {
        value.min(self.max)
    }
}

/// Builds a filter from its spec.
pub fn parse(spec: &str) -> Result<Box<dyn Filter>> {
    let (name, param) = spec.split_once(':').unwrap_or((spec, ""));
    let num = || {
        param
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| Error::Config(format!("filter {spec:?}: needs a number >= 0 after ':'")))
    };
    Ok(match name {
        "ewma" => {
            let h = num()?;
            if h == 0.0 {
                return Err(Error::Config(format!(
                    "filter {spec:?}: half-life must be above 0"
                )));
            }
            Box::new(Ewma {
                half_life_s: h,
                state: None,
            })
        }
        "threshold" => Box::new(Threshold { min: num()? }),
        "clamp" => Box::new(Clamp { max: num()? }),
        other => {
            return Err(Error::Config(format!(
                "unknown filter {other:?} (known: ewma:H, threshold:T, clamp:M)"
            )))
        }
    })
}

/// The same chain of filters, applied to each node's series separately.
#[derive(Debug, Default)]
pub struct FilterChain {
    specs: Vec<String>,
    per_node: HashMap<NodeId, (Vec<Box<dyn Filter>>, f64)>,
}

impl FilterChain {
    /// A chain from specs (checked now).
    pub fn new(specs: &[String]) -> Result<FilterChain> {
        for s in specs {
            parse(s)?;
        }
        Ok(FilterChain {
            specs: specs.to_vec(),
            per_node: HashMap::new(),
        })
    }

    /// The specs, in order.
    pub fn specs(&self) -> &[String] {
        &self.specs
    }

    /// Filters node `id`'s `value` observed at time `now_s` (seconds, any origin).
    pub fn apply(&mut self, id: NodeId, value: f64, now_s: f64) -> f64 {
        let specs = &self.specs;
        let (chain, last) = self.per_node.entry(id).or_insert_with(|| {
            let chain = specs.iter().filter_map(|s| parse(s).ok()).collect();
            (chain, now_s)
        });
        let dt = (now_s - *last).max(0.0);
        *last = now_s;
        chain.iter_mut().fold(value, |v, f| f.apply(v, dt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_halves_the_gap_each_half_life() {
        let mut f = parse("ewma:2").expect("spec");
        assert_eq!(f.apply(0.0, 0.0), 0.0);
        assert!((f.apply(4.0, 2.0) - 2.0).abs() < 1e-9);
        assert!((f.apply(4.0, 2.0) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn threshold_and_clamp() {
        let mut t = parse("threshold:0.5").expect("spec");
        assert_eq!(t.apply(0.3, 1.0), 0.0);
        assert_eq!(t.apply(0.7, 1.0), 0.7);
        let mut c = parse("clamp:2").expect("spec");
        assert_eq!(c.apply(5.0, 1.0), 2.0);
    }

    #[test]
    fn bad_specs_are_refused_with_the_spec() {
        for s in ["ewma", "ewma:0", "threshold:x", "nope:1", "clamp:-1"] {
            let e = parse(s).expect_err(s).to_string();
            assert!(e.contains(s.split(':').next().unwrap_or(s)), "{e}");
        }
    }

    #[test]
    fn chains_keep_state_per_node() {
        let mut c = FilterChain::new(&["ewma:1".into(), "threshold:0.1".into()]).expect("chain");
        c.apply(NodeId(1), 4.0, 0.0);
        c.apply(NodeId(2), 0.0, 0.0);
        let a = c.apply(NodeId(1), 0.0, 1.0);
        let b = c.apply(NodeId(2), 0.0, 1.0);
        assert!((a - 2.0).abs() < 1e-9);
        assert_eq!(b, 0.0);
    }
}
