//! `ssi ps` and `ssi kill`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use ssi_core::control::{ControlRequest, ControlResponse};
use ssi_core::process::ProcessView;

/// `ssi ps`: every process of the cluster.
pub async fn ps(socket: &Path, json: bool) -> Result<String> {
    let list = list(socket).await?;
    if json {
        return Ok(serde_json::to_string_pretty(&list)?);
    }
    Ok(table(&list))
}

/// Every process of the cluster, as the local daemon gathers them.
pub async fn list(socket: &Path) -> Result<Vec<ProcessView>> {
    let ControlResponse::Processes(list) = crate::client::call(socket, ControlRequest::Ps).await?
    else {
        bail!("ssid sent an unexpected answer to a ps request");
    };
    Ok(list)
}

/// `b` bytes as `512K`, `1.5M`, `2.0G`.
pub fn human_bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let b = b as f64;
    if b >= K * K * K {
        format!("{:.1}G", b / K / K / K)
    } else if b >= K * K {
        format!("{:.1}M", b / K / K)
    } else {
        format!("{:.0}K", b / K)
    }
}

fn clock(unix: u64) -> String {
    let secs = unix % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `s` on one line (control characters shown as spaces), cut to `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(3)).collect();
    cut.push_str("...");
    cut
}

/// Where a process is: `ID:NAME`, and `->TARGET` while it migrates.
fn node_column(p: &ProcessView) -> String {
    match p.to {
        Some(to) => format!("{}:{}->{to}", p.node, p.node_name),
        None => format!("{}:{}", p.node, p.node_name),
    }
}

/// The state shown: a fault-tolerant process brought back after its node died is
/// `restarted` while it runs (its checkpoint time is in the CKPT column).
fn state_column(p: &ProcessView) -> &'static str {
    let restarted = p.ft.as_ref().is_some_and(|f| f.restarted_from_ms.is_some());
    match p.state {
        ssi_core::process::ProcState::Running | ssi_core::process::ProcState::Sleeping
            if restarted =>
        {
            "restarted"
        }
        s => s.as_str(),
    }
}

/// The time of a fault-tolerant process's last complete checkpoint (`-` before the first),
/// empty for other processes.
fn checkpoint_column(p: &ProcessView) -> String {
    match &p.ft {
        None => String::new(),
        Some(f) => match f.last_checkpoint_ms.or(f.restarted_from_ms) {
            Some(ms) => clock(ms / 1000),
            None => "-".into(),
        },
    }
}

/// Formats processes as a table.
pub fn table(list: &[ProcessView]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8} {:>8} {:<10} {:<10} {:<8} {:>5} {:>7} {:>8} {:>8}  COMMAND",
        "GPID", "PPID", "NODE", "STATE", "USER", "%CPU", "RSS", "START", "CKPT"
    );
    for p in list {
        let _ = writeln!(
            out,
            "{:>8} {:>8} {:<10} {:<10} {:<8} {:>5.1} {:>7} {:>8} {:>8}  {}",
            p.gpid,
            p.ppid,
            node_column(p),
            state_column(p),
            p.user,
            p.cpu_percent,
            human_bytes(p.rss_bytes),
            clock(p.start_time),
            checkpoint_column(p),
            one_line(&p.command, 80)
        );
    }
    out
}

/// Parses a signal given as a number, `TERM` or `SIGTERM`.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if nix::sys::signal::Signal::try_from(n).is_ok() {
            return Ok(n);
        }
        bail!("unknown signal {s}");
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    match name.parse::<nix::sys::signal::Signal>() {
        Ok(sig) => Ok(sig as i32),
        Err(_) => bail!("unknown signal {s}"),
    }
}

/// `ssi kill`: signals a process wherever it runs.
pub async fn kill(socket: &Path, gpid: i32, sig: i32) -> Result<()> {
    match crate::client::call(socket, ControlRequest::Kill { gpid, sig }).await? {
        ControlResponse::Done => Ok(()),
        other => bail!("ssid sent an unexpected answer to a kill request: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_shown_on_one_line() {
        assert_eq!(one_line("a\nb\tc", 10), "a b c");
        assert_eq!(one_line("abcdefghijkl", 8), "abcde...");
    }

    #[test]
    fn signals_parse_by_number_and_name() {
        assert_eq!(parse_signal("9").expect("9"), 9);
        assert_eq!(parse_signal("TERM").expect("TERM"), libc::SIGTERM);
        assert_eq!(parse_signal("sigusr1").expect("usr1"), libc::SIGUSR1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
