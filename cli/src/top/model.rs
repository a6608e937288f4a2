//! What `ssi top` shows and how keys change it: no terminal and no socket here, so that the
//! behaviour is tested with plain values.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ssi_core::process::ProcessView;
use ssi_core::view::NodeView;

/// What the processes are sorted by (most first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// CPU share (`P`, the default, as in top).
    Cpu,
    /// Resident memory (`M`).
    Memory,
    /// Global pid, lowest first (`N`).
    Gpid,
}

impl SortKey {
    /// How the process panel's title names it.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Cpu => "CPU",
            SortKey::Memory => "memory",
            SortKey::Gpid => "global pid",
        }
    }
}

/// What the loop must do after a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing outside the view.
    None,
    /// Leave `ssi top`.
    Quit,
    /// Send signal `sig` to `gpid`.
    Kill {
        /// Global pid.
        gpid: i32,
        /// Signal number.
        sig: i32,
    },
    /// Migrate `gpid` to node `to`.
    Migrate {
        /// Global pid.
        gpid: i32,
        /// Target node.
        to: u16,
    },
}

/// The state of the view.
#[derive(Debug)]
pub struct Top {
    /// Nodes as the local daemon last reported them.
    pub nodes: Vec<NodeView>,
    /// Processes of the cluster, sorted by `sort`.
    pub procs: Vec<ProcessView>,
    /// Current sort order.
    pub sort: SortKey,
    /// The selected process, followed by its global pid across refreshes and re-sorts.
    selected: Option<i32>,
    /// Digits typed after `m`: the target node being asked for.
    pub prompt: Option<String>,
    /// The last thing done, or why it failed (one line).
    pub status: String,
    /// Why the last refresh failed, when it did (the figures shown are then older).
    pub stale: Option<String>,
}

/// Rows moved by PageUp/PageDown.
const PAGE: usize = 10;

impl Top {
    /// An empty view sorted by CPU.
    pub fn new() -> Top {
        Top {
            nodes: Vec::new(),
            procs: Vec::new(),
            sort: SortKey::Cpu,
            selected: None,
            prompt: None,
            status: String::new(),
            stale: None,
        }
    }

    /// Takes fresh figures, or notes why there are none; keeps the selection on the same
    /// process while it exists, else on the row where it was.
    pub fn refreshed(&mut self, fresh: anyhow::Result<(Vec<NodeView>, Vec<ProcessView>)>) {
        let (nodes, procs) = match fresh {
            Ok(f) => f,
            Err(e) => {
                self.stale = Some(format!("{e:#}"));
                return;
            }
        };
        self.stale = None;
        let old_row = self.selected_row();
        self.nodes = nodes;
        self.nodes.sort_by_key(|n| n.id);
        self.procs = procs;
        self.sort_procs();
        if self.selected_row().is_none() {
            let row = old_row.unwrap_or(0).min(self.procs.len().saturating_sub(1));
            self.selected = self.procs.get(row).map(|p| p.gpid);
        }
    }

    fn sort_procs(&mut self) {
        match self.sort {
            SortKey::Cpu => self.procs.sort_by(|a, b| {
                b.cpu_percent
                    .total_cmp(&a.cpu_percent)
                    .then(a.gpid.cmp(&b.gpid))
            }),
            SortKey::Memory => self
                .procs
                .sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.gpid.cmp(&b.gpid))),
            SortKey::Gpid => self.procs.sort_by_key(|p| p.gpid),
        }
    }

    /// Row of the selected process, if it is still listed.
    pub fn selected_row(&self) -> Option<usize> {
        let gpid = self.selected?;
        self.procs.iter().position(|p| p.gpid == gpid)
    }

    /// The selected process.
    pub fn selected(&self) -> Option<&ProcessView> {
        self.selected_row().map(|r| &self.procs[r])
    }

    fn select_row(&mut self, row: usize) {
        let row = row.min(self.procs.len().saturating_sub(1));
        self.selected = self.procs.get(row).map(|p| p.gpid);
    }

    /// Handles one key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if self.prompt.is_some() {
            return self.on_prompt_key(key.code);
        }
        let row = self.selected_row().unwrap_or(0);
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Up => self.select_row(row.saturating_sub(1)),
            KeyCode::Down => self.select_row(row + 1),
            KeyCode::PageUp => self.select_row(row.saturating_sub(PAGE)),
            KeyCode::PageDown => self.select_row(row + PAGE),
            KeyCode::Home => self.select_row(0),
            KeyCode::End => self.select_row(usize::MAX),
            KeyCode::Char('P') => self.resort(SortKey::Cpu),
            KeyCode::Char('M') => self.resort(SortKey::Memory),
            KeyCode::Char('N') => self.resort(SortKey::Gpid),
            KeyCode::Char('k') => return self.kill(libc::SIGTERM),
            KeyCode::Char('K') => return self.kill(libc::SIGKILL),
            KeyCode::Char('m') => match self.selected() {
                Some(_) => self.prompt = Some(String::new()),
                None => self.status = "no process selected".into(),
            },
            _ => {}
        }
        Action::None
    }

    fn resort(&mut self, key: SortKey) {
        self.sort = key;
        self.sort_procs();
    }

    fn kill(&mut self, sig: i32) -> Action {
        match self.selected() {
            Some(p) => Action::Kill { gpid: p.gpid, sig },
            None => {
                self.status = "no process selected".into();
                Action::None
            }
        }
    }

    /// Keys while the target node of a migration is being typed.
    fn on_prompt_key(&mut self, code: KeyCode) -> Action {
        let Some(typed) = self.prompt.as_mut() else {
            return Action::None;
        };
        match code {
            KeyCode::Char(c) if c.is_ascii_digit() && typed.len() < 5 => typed.push(c),
            KeyCode::Backspace => {
                typed.pop();
            }
            KeyCode::Esc => self.prompt = None,
            KeyCode::Enter => {
                let typed = self.prompt.take().unwrap_or_default();
                let gpid = self.selected().map(|p| p.gpid);
                return match (gpid, typed.parse::<u16>()) {
                    (Some(gpid), Ok(to)) if to > 0 => Action::Migrate { gpid, to },
                    (None, _) => {
                        self.status = "the selected process is gone".into();
                        Action::None
                    }
                    _ => {
                        self.status = format!("{typed:?} is not a node id (1..=65535)");
                        Action::None
                    }
                };
            }
            _ => {}
        }
        Action::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssi_core::process::ProcState;
    use ssi_core::NodeId;

    fn proc(gpid: i32, cpu: f64, rss: u64) -> ProcessView {
        ProcessView {
            gpid,
            ppid: 0,
            node: NodeId(1),
            node_name: "n1".into(),
            state: ProcState::Running,
            user: "root".into(),
            uid: 0,
            cpu_percent: cpu,
            rss_bytes: rss,
            start_time: 0,
            threads: 1,
            command: format!("prog{gpid}"),
            to: None,
            ft: None,
        }
    }

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn loaded(procs: Vec<ProcessView>) -> Top {
        let mut t = Top::new();
        t.refreshed(Ok((Vec::new(), procs)));
        t
    }

    #[test]
    fn sorts_by_cpu_then_memory_then_gpid() {
        let mut t = loaded(vec![
            proc(5, 1.0, 300),
            proc(6, 50.0, 100),
            proc(7, 20.0, 200),
        ]);
        let order = |t: &Top| t.procs.iter().map(|p| p.gpid).collect::<Vec<_>>();
        assert_eq!(order(&t), [6, 7, 5]);
        t.on_key(key(KeyCode::Char('M')));
        assert_eq!(order(&t), [5, 7, 6]);
        t.on_key(key(KeyCode::Char('N')));
        assert_eq!(order(&t), [5, 6, 7]);
    }

    #[test]
    fn selection_follows_the_process_and_falls_back_to_its_row() {
        let mut t = loaded(vec![proc(5, 1.0, 0), proc(6, 50.0, 0), proc(7, 20.0, 0)]);
        assert_eq!(t.selected().map(|p| p.gpid), Some(6));
        t.on_key(key(KeyCode::Down));
        assert_eq!(t.selected().map(|p| p.gpid), Some(7));
        // 7 now uses more CPU than 6: the selection moves with it to the top row
        t.refreshed(Ok((
            Vec::new(),
            vec![proc(5, 1.0, 0), proc(6, 5.0, 0), proc(7, 90.0, 0)],
        )));
        assert_eq!(t.selected_row(), Some(0));
        assert_eq!(t.selected().map(|p| p.gpid), Some(7));
        // 7 ended: the row where it was is selected
        t.refreshed(Ok((Vec::new(), vec![proc(5, 1.0, 0), proc(6, 5.0, 0)])));
        assert_eq!(t.selected().map(|p| p.gpid), Some(6));
        t.on_key(key(KeyCode::End));
        assert_eq!(t.selected().map(|p| p.gpid), Some(5));
    }

    #[test]
    fn a_failed_refresh_keeps_the_figures_and_says_why() {
        let mut t = loaded(vec![proc(5, 1.0, 0)]);
        t.refreshed(Err(anyhow::anyhow!("cannot reach ssid")));
        assert_eq!(t.procs.len(), 1);
        assert_eq!(t.stale.as_deref(), Some("cannot reach ssid"));
        t.refreshed(Ok((Vec::new(), Vec::new())));
        assert_eq!(t.stale, None);
        assert_eq!(t.selected(), None);
    }

    #[test]
    fn k_kills_the_selected_process_and_q_quits() {
        let mut t = loaded(vec![proc(5, 1.0, 0), proc(6, 50.0, 0)]);
        t.on_key(key(KeyCode::Down));
        assert_eq!(
            t.on_key(key(KeyCode::Char('k'))),
            Action::Kill {
                gpid: 5,
                sig: libc::SIGTERM
            }
        );
        assert_eq!(
            t.on_key(key(KeyCode::Char('K'))),
            Action::Kill {
                gpid: 5,
                sig: libc::SIGKILL
            }
        );
        assert_eq!(t.on_key(key(KeyCode::Char('q'))), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(t.on_key(ctrl_c), Action::Quit);
        let mut empty = loaded(Vec::new());
        assert_eq!(empty.on_key(key(KeyCode::Char('k'))), Action::None);
        assert_eq!(empty.status, "no process selected");
    }

    #[test]
    fn m_asks_for_a_node_and_enter_migrates() {
        let mut t = loaded(vec![proc(5, 1.0, 0)]);
        t.on_key(key(KeyCode::Char('m')));
        for c in ['1', 'x', '2'] {
            assert_eq!(t.on_key(key(KeyCode::Char(c))), Action::None);
        }
        // 'q' while typing is not a quit
        assert_eq!(t.on_key(key(KeyCode::Char('q'))), Action::None);
        assert_eq!(t.prompt.as_deref(), Some("12"));
        t.on_key(key(KeyCode::Backspace));
        assert_eq!(
            t.on_key(key(KeyCode::Enter)),
            Action::Migrate { gpid: 5, to: 1 }
        );
        assert_eq!(t.prompt, None);
        t.on_key(key(KeyCode::Char('m')));
        assert_eq!(t.on_key(key(KeyCode::Enter)), Action::None);
        assert_eq!(t.status, "\"\" is not a node id (1..=65535)");
        t.on_key(key(KeyCode::Char('m')));
        t.on_key(key(KeyCode::Esc));
        assert_eq!(t.prompt, None);
    }
}
