//! `ssi sched show | set | balance`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use ssi_core::control::{ControlRequest, ControlResponse};
use ssi_core::sched::{Decision, SchedAnswer, SchedStatus};

/// Sends a scheduler request; returns each node's answer, the local node's first.
pub(super) async fn ask(socket: &Path, req: ControlRequest) -> Result<Vec<SchedAnswer>> {
    match crate::client::call(socket, req).await? {
        ControlResponse::Sched(answers) => Ok(answers),
        other => bail!("ssid sent an unexpected answer to a scheduler request: {other:?}"),
    }
}

/// The answers as `--json` shows them: each node's status, or `{"node", "error"}`.
fn to_json(answers: &[SchedAnswer]) -> Result<String> {
    let docs = answers
        .iter()
        .map(|a| match a {
            SchedAnswer::Status(s) => serde_json::to_value(s),
            SchedAnswer::Failed { node, error } => {
                Ok(serde_json::json!({ "node": node, "error": error }))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(serde_json::to_string_pretty(&docs)?)
}

/// This node's policy, filters, balancing and view, for people.
fn status_text(out: &mut String, me: &SchedStatus) {
    let _ = writeln!(out, "policy:    {}", me.policy);
    if !me.params.is_empty() {
        let list: Vec<String> = me.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "params:    {}", list.join(" "));
    }
    if let Some(r) = &me.policy_report {
        let _ = writeln!(out, "report:    {r}");
    }
    let filters = if me.filters.is_empty() {
        "none".to_string()
    } else {
        me.filters.join(", ")
    };
    let _ = writeln!(out, "filters:   {filters}");
    let b = &me.balance;
    let _ = writeln!(
        out,
        "balancing: {} (every {} s, threshold {}, residence {} s, cooldown {} s)",
        if b.enabled { "on" } else { "off" },
        b.interval_s,
        b.threshold,
        b.min_residence_s,
        b.cooldown_s
    );
    let _ = writeln!(
        out,
        "\n{:>5}  {:<10} {:>4}  {:>6}  {:>8}  {:>5}",
        "NODE", "NAME", "CPUS", "LOAD", "PRESSURE", "PROCS"
    );
    for n in &me.view {
        let _ = writeln!(
            out,
            "{:>5}  {:<10} {:>4}  {:>6.2}  {:>8.2}  {:>5}",
            n.id.to_string(),
            n.name,
            n.cpus,
            n.load,
            n.load / f64::from(n.cpus.max(1)),
            n.procs
        );
    }
}

/// Formats each node's scheduler state for people: the local node's status, then the recent
/// decisions of all nodes, then the nodes that failed.
fn text(answers: &[SchedAnswer]) -> String {
    let mut out = String::new();
    if let Some(SchedAnswer::Status(me)) = answers.first() {
        status_text(&mut out, me);
    }
    let mut decisions: Vec<&Decision> = answers
        .iter()
        .filter_map(|a| match a {
            SchedAnswer::Status(s) => Some(&s.decisions),
            SchedAnswer::Failed { .. } => None,
        })
        .flatten()
        .collect();
    decisions.sort_by_key(|d| d.at_ms);
    let _ = writeln!(out, "\nrecent decisions (all nodes):");
    if decisions.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for d in decisions.iter().rev().take(20).rev() {
        let secs = d.at_ms / 1000 % 86_400;
        let _ = writeln!(
            out,
            "  {:02}:{:02}:{:02} node {} {}: {}",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60,
            d.node,
            d.kind,
            d.reason
        );
    }
    for a in answers {
        if let SchedAnswer::Failed { node, error } = a {
            let _ = writeln!(out, "node {node}: {error}");
        }
    }
    out
}

/// `ssi sched show [--json]`.
pub async fn show(socket: &Path, json: bool) -> Result<String> {
    let answers = ask(socket, ControlRequest::SchedShow).await?;
    if json {
        return to_json(&answers);
    }
    Ok(text(&answers))
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
    let answers = ask(socket, ControlRequest::SchedSet { policy, params }).await?;
    let failed: Vec<String> = answers
        .iter()
        .filter_map(|a| match a {
            SchedAnswer::Failed { node, error } => Some(format!("node {node}: {error}")),
            SchedAnswer::Status(_) => None,
        })
        .collect();
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    let policy = match answers.first() {
        Some(SchedAnswer::Status(s)) => s.policy.as_str(),
        _ => "?",
    };
    Ok(format!(
        "policy {policy} set on {} node(s)\n",
        answers.len()
    ))
}

/// `ssi sched balance --now`.
pub async fn balance(socket: &Path) -> Result<String> {
    Ok(text(&ask(socket, ControlRequest::SchedBalance).await?))
}
