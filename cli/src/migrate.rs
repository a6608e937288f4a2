//! `ssi migrate`, `ssi checkpoint` and `ssi restart` at cluster level.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ssi_core::control::{ControlRequest, ControlResponse};
use ssi_core::process::MigrationReport;
use ssi_core::NodeId;

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// Formats what a migration did.
pub fn describe(r: &MigrationReport) -> String {
    let rounds: Vec<String> = r.rounds.iter().map(|b| format!("{:.1}", mib(*b))).collect();
    format!(
        "migrated {} ({} process{}) from node {} to node {}\n\
         pre-copy rounds: {} (MiB: {})\n\
         last image:      {:.1} MiB while frozen\n\
         sent:            {:.1} MiB\n\
         total time:      {:.3} s\n\
         downtime:        {:.1} ms (restore {:.1} ms)\n{}{}",
        r.gpid,
        r.pids.len(),
        if r.pids.len() == 1 { "" } else { "es" },
        r.from,
        r.to,
        r.rounds.len(),
        rounds.join(" "),
        mib(r.final_page_bytes),
        mib(r.bytes_sent),
        r.total_micros as f64 / 1e6,
        r.downtime_micros as f64 / 1e3,
        r.restore_micros as f64 / 1e3,
        if r.lost_input_bytes > 0 {
            format!(
                "lost input:      {} bytes of input the process had not read yet stayed behind\n",
                r.lost_input_bytes
            )
        } else {
            String::new()
        },
        r.note
            .as_ref()
            .map_or_else(String::new, |n| format!("note:            {n}\n")),
    )
}

/// `ssi migrate GPID --to NODE`.
pub async fn migrate(
    socket: &Path,
    gpid: i32,
    to: u16,
    rounds: Option<u32>,
    json: bool,
) -> Result<String> {
    let r = request(socket, gpid, to, rounds).await?;
    if json {
        return Ok(serde_json::to_string_pretty(&r)?);
    }
    Ok(describe(&r))
}

/// Asks the daemon to migrate `gpid` to node `to` and waits for the report.
pub async fn request(
    socket: &Path,
    gpid: i32,
    to: u16,
    rounds: Option<u32>,
) -> Result<MigrationReport> {
    let req = ControlRequest::Migrate {
        gpid,
        to: NodeId(to),
        rounds,
    };
    match crate::client::call(socket, req).await? {
        ControlResponse::Migrated(r) => Ok(r),
        other => bail!("ssid sent an unexpected answer to a migrate request: {other:?}"),
    }
}

fn absolute(dir: &Path) -> Result<String> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the working directory")?
            .join(dir)
    };
    abs.to_str()
        .map(str::to_string)
        .with_context(|| format!("{}: not a UTF-8 path", abs.display()))
}

/// `ssi checkpoint GPID [--dir DIR] [--leave-running]`.
pub async fn checkpoint(
    socket: &Path,
    gpid: i32,
    dir: Option<PathBuf>,
    leave_running: bool,
) -> Result<String> {
    let req = ControlRequest::Checkpoint {
        gpid,
        dir: dir.as_deref().map(absolute).transpose()?,
        leave_running,
    };
    match crate::client::call(socket, req).await? {
        ControlResponse::Checkpointed {
            dir,
            pids,
            page_bytes,
        } => Ok(format!(
            "checkpointed {} process{} ({:.1} MiB of memory) to {}{}\n",
            pids.len(),
            if pids.len() == 1 { "" } else { "es" },
            mib(page_bytes),
            dir,
            if leave_running {
                "; still running"
            } else {
                "; stopped"
            }
        )),
        other => bail!("ssid sent an unexpected answer to a checkpoint request: {other:?}"),
    }
}

/// The request for `ssi restart --dir DIR [--node ID] [--detach]`.
pub fn restart_request(dir: &Path, node: Option<u16>, detach: bool) -> Result<ControlRequest> {
    Ok(ControlRequest::Restart {
        dir: absolute(dir)?,
        node: node.map(NodeId),
        detach,
    })
}
