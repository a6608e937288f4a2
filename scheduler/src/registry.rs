//! Policies by name, as the node config and `ssi sched set` give them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::external::External;
use crate::policy::{LeastLoaded, MemoryAware, Pack, Policy, RoundRobin, Spread};
use crate::{Error, Result};

/// Names of the policies.
pub const NAMES: [&str; 6] = [
    "least-loaded",
    "round-robin",
    "memory-aware",
    "pack",
    "spread",
    "external",
];

/// Default time an external policy has to answer.
pub const EXTERNAL_TIMEOUT: Duration = Duration::from_millis(200);

/// One of each built-in policy.
pub fn builtins() -> Vec<Box<dyn Policy>> {
    vec![
        Box::new(LeastLoaded),
        Box::new(RoundRobin::default()),
        Box::new(MemoryAware),
        Box::new(Pack),
        Box::new(Spread),
    ]
}

/// The policy `name` with `params`. Only `external` takes parameters: `program` (required),
/// `args` (space-separated) and `timeout_ms`.
pub fn policy(name: &str, params: &BTreeMap<String, String>) -> Result<Box<dyn Policy>> {
    let known = |allowed: &[&str]| -> Result<()> {
        match params.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(Error::Config(format!(
                "policy {name} has no parameter {k:?}"
            ))),
            None => Ok(()),
        }
    };
    if name == "external" {
        known(&["program", "args", "timeout_ms"])?;
        let program = params
            .get("program")
            .ok_or_else(|| Error::Config("policy external needs --param program=PATH".into()))?;
        let args = params
            .get("args")
            .map(|a| a.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let timeout = match params.get("timeout_ms") {
            Some(t) => Duration::from_millis(t.parse().map_err(|_| {
                Error::Config(format!("policy external: timeout_ms {t:?} is not a number"))
            })?),
            None => EXTERNAL_TIMEOUT,
        };
        return Ok(Box::new(External::new(program.clone(), args, timeout)));
    }
    known(&[])?;
    builtins()
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| {
            Error::Config(format!(
                "unknown policy {name:?} (known: {})",
                NAMES.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_builds() {
        for n in NAMES.iter().filter(|n| **n != "external") {
            assert_eq!(policy(n, &BTreeMap::new()).expect(n).name(), *n);
        }
        let mut p = BTreeMap::new();
        p.insert("program".to_string(), "/bin/cat".to_string());
        assert_eq!(policy("external", &p).expect("external").name(), "external");
    }

    #[test]
    fn unknown_names_and_params_are_refused() {
        assert!(policy("fastest", &BTreeMap::new()).is_err());
        assert!(policy("external", &BTreeMap::new()).is_err());
        let mut p = BTreeMap::new();
        p.insert("speed".to_string(), "1".to_string());
        let e = policy("pack", &p).expect_err("param").to_string();
        assert!(e.contains("speed"), "{e}");
    }
}
