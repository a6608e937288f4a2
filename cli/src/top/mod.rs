//! `ssi top`: the cluster as one machine, live, like top(1): the nodes with load bars, every
//! process of the cluster sorted by CPU, and keys to signal or migrate the selected one.
//!
//! ```text
//!   every second ──> Nodes + Ps on the control socket ──> Top (model) ──> draw (view)
//!   key press ─────> Top::on_key ──> Action: Kill (waits) | Migrate (runs aside) | Quit
//! ```
//!
//! A migration can take seconds: it runs as a task of its own, and the view goes on refreshing
//! until its outcome shows in the status line.

mod model;
mod view;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use ratatui::DefaultTerminal;
use ssi_core::process::ProcessView;
use ssi_core::view::NodeView;
use tokio::sync::mpsc;

use model::{Action, Top};

/// Time between two refreshes.
const REFRESH: Duration = Duration::from_secs(1);
/// Longest wait for one refresh: a daemon that does not answer must not freeze the keys.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `ssi top` until `q`.
pub async fn top(socket: &Path) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        bail!("ssi top needs a terminal on stdout (use ssi nodes and ssi ps in scripts)");
    }
    let mut top = Top::new();
    // fail with the plain error, before taking the screen, when the daemon is not there
    top.refreshed(Ok(fetch(socket).await?));
    let mut screen = Screen::enter()?;
    run(&mut screen.0, &mut top, socket).await
}

/// The terminal in raw mode on the alternate screen, given back as it was when dropped (also
/// on errors; ratatui's panic hook covers panics).
#[derive(Debug)]
struct Screen(DefaultTerminal);

impl Screen {
    fn enter() -> Result<Screen> {
        Ok(Screen(
            ratatui::try_init().context("cannot set up the terminal")?,
        ))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

async fn run(term: &mut DefaultTerminal, top: &mut Top, socket: &Path) -> Result<()> {
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    loop {
        term.draw(|f| view::draw(f, top)).context("cannot draw")?;
        tokio::select! {
            _ = tick.tick() => top.refreshed(fetch(socket).await),
            Some(outcome) = done_rx.recv() => {
                top.status = outcome;
                top.refreshed(fetch(socket).await);
            }
            event = keys.next() => {
                let key = match event {
                    Some(Ok(Event::Key(key))) if key.kind == KeyEventKind::Press => key,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e).context("cannot read the terminal"),
                    None => return Ok(()),
                };
                match top.on_key(key) {
                    Action::None => {}
                    Action::Quit => return Ok(()),
                    Action::Kill { gpid, sig } => {
                        top.status = match crate::ps::kill(socket, gpid, sig).await {
                            Ok(()) => format!("sent {} to {gpid}", signal_name(sig)),
                            Err(e) => format!("kill {gpid}: {e:#}"),
                        };
                        top.refreshed(fetch(socket).await);
                    }
                    Action::Migrate { gpid, to } => {
                        top.status = format!("migrating {gpid} to node {to}...");
                        tokio::spawn(migrate(socket.to_path_buf(), gpid, to, done_tx.clone()));
                    }
                }
            }
        }
    }
}

/// `SIGTERM` for 15.
fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

/// Migrates and sends back one line saying how it went.
async fn migrate(socket: PathBuf, gpid: i32, to: u16, done: mpsc::UnboundedSender<String>) {
    let line = match crate::migrate::request(&socket, gpid, to, None).await {
        Ok(r) => format!(
            "migrated {gpid} to node {to}: {:.1} ms frozen, {:.3} s in all",
            r.downtime_micros as f64 / 1e3,
            r.total_micros as f64 / 1e6
        ),
        Err(e) => format!("migrate {gpid}: {e:#}"),
    };
    // the view may have quit meanwhile: nobody to tell then
    let _ = done.send(line);
}

/// The nodes and the processes of the cluster, from the local daemon.
async fn fetch(socket: &Path) -> Result<(Vec<NodeView>, Vec<ProcessView>)> {
    let both = async {
        Ok((
            crate::nodes::rows(socket).await?,
            crate::ps::list(socket).await?,
        ))
    };
    tokio::time::timeout(FETCH_TIMEOUT, both)
        .await
        .with_context(|| {
            format!(
                "ssid at {} did not answer within {FETCH_TIMEOUT:?}",
                socket.display()
            )
        })?
}
