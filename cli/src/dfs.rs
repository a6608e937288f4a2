//! `ssi dfs status | scrub | df`: the shared file system's health, repair and space.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use serde_json::Value;
use ssi_cli::args::DfsCommand;
use ssi_core::control::{ControlRequest, ControlResponse};

async fn ask(socket: &Path, req: ControlRequest) -> Result<Value> {
    match crate::client::call(socket, req).await? {
        ControlResponse::Dfs(doc) => Ok(serde_json::from_str(&doc)?),
        other => bail!("ssid sent an unexpected answer to a dfs request: {other:?}"),
    }
}

/// Runs one `ssi dfs` command; gives what to print.
pub async fn run(socket: &Path, cmd: DfsCommand) -> Result<String> {
    Ok(match cmd {
        DfsCommand::Status { json } => {
            let s = ask(socket, ControlRequest::DfsStatus).await?;
            if json {
                format!("{s}\n")
            } else {
                status_text(&s)
            }
        }
        DfsCommand::Scrub { json } => {
            let r = ask(socket, ControlRequest::DfsScrub).await?;
            if json {
                format!("{r}\n")
            } else {
                format!(
                    "checked {} replicas: {} damaged, {} missing, {} repaired, {} chunks lost\n",
                    r["checked"], r["damaged"], r["missing"], r["repaired"], r["lost"]
                )
            }
        }
        DfsCommand::Df { json } => {
            let s = ask(socket, ControlRequest::DfsStatus).await?;
            df(&s, json)
        }
    })
}

fn ids(v: &Value) -> String {
    let list: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(|x| x.to_string()).collect())
        .unwrap_or_default();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

fn gib(v: &Value) -> String {
    format!("{:.1}G", v.as_f64().unwrap_or(0.0) / f64::from(1u32 << 30))
}

fn status_text(s: &Value) -> String {
    let mut out = String::new();
    let leader = s["leader"]
        .as_u64()
        .map_or("none".into(), |l| l.to_string());
    let _ = writeln!(
        out,
        "mount:            {}",
        s["mount"].as_str().unwrap_or("?")
    );
    if let Some(why) = s["unavailable"].as_str() {
        let _ = writeln!(
            out,
            "UNAVAILABLE:      {why}; file system requests fail with EIO"
        );
    }
    let _ = writeln!(out, "leader:           {leader}");
    let _ = writeln!(out, "voters:           {}", ids(&s["voters"]));
    let _ = writeln!(out, "learners:         {}", ids(&s["learners"]));
    let _ = writeln!(
        out,
        "files:            {} inodes, {} bytes",
        s["inodes"], s["bytes"]
    );
    let _ = writeln!(
        out,
        "chunks:           {} ({} replicas each), {} under-replicated",
        s["chunks"], s["replicas"], s["under_replicated"]
    );
    if s["changing_voters"] == true {
        let _ = writeln!(out, "voter change:     under way");
    }
    let _ = writeln!(
        out,
        "re-replicated:    {} chunks, {} bytes",
        s["rereplicated"], s["rereplicated_bytes"]
    );
    let _ = writeln!(
        out,
        "{:>5} {:<10} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "NODE", "ROLE", "SIZE", "FREE", "USED", "CHUNKS", "APPLIED"
    );
    for n in s["nodes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:>5} {:<10} {:>9} {:>9} {:>9} {:>8} {:>8}",
            n["node"].to_string(),
            n["role"].as_str().unwrap_or("?"),
            gib(&n["capacity_bytes"]),
            gib(&n["free_bytes"]),
            gib(&n["used_bytes"]),
            n["chunk_files"].to_string(),
            n["applied"].to_string()
        );
    }
    out
}

fn df(s: &Value, json: bool) -> String {
    let nodes: Vec<&Value> = s["nodes"].as_array().into_iter().flatten().collect();
    let sum = |k: &str| {
        nodes
            .iter()
            .map(|n| n[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let replicas = s["replicas"].as_u64().unwrap_or(1).max(1);
    // Every byte of data takes `replicas` bytes of disk: what users can still write is the
    // free space shared by that many copies.
    let (size, free, used) = (
        sum("capacity_bytes"),
        sum("free_bytes"),
        s["bytes"].as_u64().unwrap_or(0),
    );
    let avail = free / replicas;
    if json {
        return format!(
            "{}\n",
            serde_json::json!({
                "mount": s["mount"], "size_bytes": size / replicas, "used_bytes": used,
                "avail_bytes": avail, "replicas": replicas, "nodes": nodes,
            })
        );
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>9} {:>9} {:>9}",
        "MOUNT", "SIZE", "USED", "AVAIL"
    );
    let _ = writeln!(
        out,
        "{:<12} {:>9} {:>9} {:>9}",
        s["mount"].as_str().unwrap_or("?"),
        gib(&Value::from(size / replicas)),
        gib(&Value::from(used)),
        gib(&Value::from(avail))
    );
    out
}
