//! `ssi sched show | set | balance`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use ssi_core::control::{ControlRequest, ControlResponse};

/// Sends a scheduler request; returns each node's JSON document.
pub(super) async fn ask(socket: &Path, req: ControlRequest) -> Result<Vec<serde_json::Value>> {
    match crate::client::call(socket, req).await? {
        ControlResponse::Sched(docs) => docs.iter().map(|d| Ok(serde_json::from_str(d)?)).collect(),
        other => bail!("ssid sent an unexpected answer to a scheduler request: {other:?}"),
    }
}

/// Formats each node's scheduler state for people.
fn text(docs: &[serde_json::Value]) -> String {
    let mut out = String::new();
    if let Some(me) = docs.first() {
        let _ = writeln!(out, "policy:    {}", me["policy"].as_str().unwrap_or("?"));
        if let Some(p) = me["params"].as_object().filter(|p| !p.is_empty()) {
            let list: Vec<String> = p
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            let _ = writeln!(out, "params:    {}", list.join(" "));
        }
        if let Some(r) = me["policy_report"].as_str() {
            let _ = writeln!(out, "report:    {r}");
        }
        let filters: Vec<&str> = me["filters"]
            .as_array()
            .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "filters:   {}",
            if filters.is_empty() {
                "none".into()
            } else {
                filters.join(", ")
            }
        );
        let b = &me["balance"];
        let _ = writeln!(
            out,
            "balancing: {} (every {} s, threshold {}, residence {} s, cooldown {} s)",
            if b["enabled"].as_bool() == Some(true) {
                "on"
            } else {
                "off"
            },
            b["interval_s"],
            b["threshold"],
            b["min_residence_s"],
            b["cooldown_s"]
        );
        let _ = writeln!(
            out,
            "\n{:>5}  {:<10} {:>4}  {:>6}  {:>8}  {:>5}",
            "NODE", "NAME", "CPUS", "LOAD", "PRESSURE", "PROCS"
        );
        for n in me["view"].as_array().into_iter().flatten() {
            let load = n["load"].as_f64().unwrap_or(0.0);
            let cpus = n["cpus"].as_f64().unwrap_or(1.0).max(1.0);
            let _ = writeln!(
                out,
                "{:>5}  {:<10} {:>4}  {:>6.2}  {:>8.2}  {:>5}",
                n["id"].to_string(),
                n["name"].as_str().unwrap_or("?"),
                n["cpus"].to_string(),
                load,
                load / cpus,
                n["procs"].to_string()
            );
        }
    }
    let mut decisions: Vec<&serde_json::Value> = docs
        .iter()
        .flat_map(|d| d["decisions"].as_array().into_iter().flatten())
        .collect();
    decisions.sort_by_key(|d| d["at_ms"].as_u64().unwrap_or(0));
    let _ = writeln!(out, "\nrecent decisions (all nodes):");
    if decisions.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for d in decisions.iter().rev().take(20).rev() {
        let secs = d["at_ms"].as_u64().unwrap_or(0) / 1000 % 86_400;
        let _ = writeln!(
            out,
            "  {:02}:{:02}:{:02} node {} {}: {}",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60,
            d["node"],
            d["kind"].as_str().unwrap_or("?"),
            d["reason"].as_str().unwrap_or("")
        );
    }
    for d in docs.iter().filter(|d| d.get("error").is_some()) {
        let _ = writeln!(
            out,
            "node {}: {}",
            d["node"],
            d["error"].as_str().unwrap_or("?")
        );
    }
    out
}

/// `ssi sched show [--json]`.
pub async fn show(socket: &Path, json: bool) -> Result<String> {
    let docs = ask(socket, ControlRequest::SchedShow).await?;
    if json {
        return Ok(serde_json::to_string_pretty(&docs)?);
    }
    Ok(text(&docs))
}

/// `ssi sched set POLICY [--param K=V]...`.
pub async fn set(socket: &Path, policy: String, params: Vec<String>) -> Result<String> {
    let params = params
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--param {kv:?}: expected KEY=VALUE"),
        })
        .collect::<Result<Vec<_>>>()?;
    let docs = ask(socket, ControlRequest::SchedSet { policy, params }).await?;
    let failed: Vec<String> = docs
        .iter()
        .filter_map(|d| {
            d.get("error")
                .map(|e| format!("node {}: {}", d["node"], e.as_str().unwrap_or("?")))
        })
        .collect();
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(format!(
        "policy {} set on {} node(s)\n",
        docs[0]["policy"].as_str().unwrap_or("?"),
        docs.len()
    ))
}

/// `ssi sched balance --now`.
pub async fn balance(socket: &Path) -> Result<String> {
    Ok(text(&ask(socket, ControlRequest::SchedBalance).await?))
}
