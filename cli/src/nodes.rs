//! `ssi nodes` and `ssi info`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use ssi_core::control::{ControlRequest, ControlResponse};
use ssi_core::view::{ClusterInfo, NodeView};

const GIB: f64 = (1u64 << 30) as f64;

fn gib(bytes: u64) -> f64 {
    bytes as f64 / GIB
}

/// `ssi nodes`: one row per node.
pub async fn nodes(socket: &Path, json: bool) -> Result<String> {
    let rows = rows(socket).await?;
    if json {
        let flat = rows
            .iter()
            .map(|r| flat_json(r, "probe"))
            .collect::<Result<Vec<_>>>()?;
        return Ok(serde_json::to_string_pretty(&flat)?);
    }
    Ok(nodes_table(&rows))
}

/// Every node the local daemon knows.
pub async fn rows(socket: &Path) -> Result<Vec<NodeView>> {
    let ControlResponse::Nodes(rows) = crate::client::call(socket, ControlRequest::Nodes).await?
    else {
        bail!("ssid sent an unexpected answer to a nodes request");
    };
    Ok(rows)
}

/// `value` as a JSON object with the fields of its member `inner` lifted to the top level, so
/// that scripts read `.cpus` rather than `.probe.cpus`.
fn flat_json(value: &impl Serialize, inner: &str) -> Result<Map<String, Value>> {
    let Value::Object(mut top) = serde_json::to_value(value)? else {
        bail!("a node row is not a JSON object");
    };
    if let Some(Value::Object(fields)) = top.remove(inner) {
        top.extend(fields);
    }
    Ok(top)
}

/// Formats node rows as a table.
pub fn nodes_table(rows: &[NodeView]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5}  {:<12} {:<21} {:<8} {:>4}  {:>15}  {:>5}  {:>5}",
        "ID", "NAME", "ADDR", "STATE", "CPUS", "MEM FREE/TOTAL", "LOAD1", "PROCS"
    );
    for r in rows {
        let mem = format!(
            "{:.1}/{:.1} GiB",
            gib(r.probe.mem_free_bytes),
            gib(r.probe.mem_total_bytes)
        );
        let me = if r.local { "*" } else { "" };
        let _ = writeln!(
            out,
            "{:>5}  {:<12} {:<21} {:<8} {:>4}  {:>15}  {:>5.2}  {:>5}",
            format!("{}{me}", r.id),
            r.name,
            r.addr,
            r.state.as_str(),
            r.probe.cpus,
            mem,
            r.probe.load1,
            r.probe.ssi_procs
        );
    }
    out
}

/// `ssi info`: the cluster as one machine.
pub async fn info(socket: &Path, json: bool) -> Result<String> {
    let ControlResponse::Info(info) = crate::client::call(socket, ControlRequest::Info).await?
    else {
        bail!("ssid sent an unexpected answer to an info request");
    };
    if json {
        let mut flat = flat_json(&info, "total")?;
        flat.remove("labels");
        return Ok(serde_json::to_string_pretty(&flat)?);
    }
    Ok(info_text(&info))
}

/// Formats the cluster summary.
pub fn info_text(c: &ClusterInfo) -> String {
    format!(
        "nodes:     {} alive ({} suspect), {} dead, {} left\n\
         cpus:      {}\n\
         memory:    {:.1} GiB free of {:.1} GiB\n\
         load:      {:.2} {:.2} {:.2}\n\
         processes: {}\n",
        c.nodes_alive,
        c.nodes_suspect,
        c.nodes_dead,
        c.nodes_left,
        c.total.cpus,
        gib(c.total.mem_free_bytes),
        gib(c.total.mem_total_bytes),
        c.total.load1,
        c.total.load5,
        c.total.load15,
        c.total.ssi_procs
    )
}
