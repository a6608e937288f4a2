//! Drawing `ssi top`: a summary line, the nodes with load bars, the processes of the whole
//! cluster, and a line of keys (or the migration prompt).
//!
//! ```text
//! ssi top  3/3 nodes alive  6 CPUs  load 1.02  memory 60.1G free of 69.0G  2 processes
//! ┌Nodes───────────────────────────────────────────────────────────────────┐
//! │ ID NAME   STATE  LOAD                          MEM FREE/TOTAL   PROCS  │
//! │  1 n1     alive  [||||||||||          ] 1.02/2 20.1G/23.0G         2   │
//! └────────────────────────────────────────────────────────────────────────┘
//! ┌Processes by CPU────────────────────────────────────────────────────────┐
//! │    GPID NODE   STATE    USER  %CPU   RSS THR COMMAND                   │
//! │>   4097 1:n1   running  root  99.0  1.2M   1 burn                      │
//! └────────────────────────────────────────────────────────────────────────┘
//!  k TERM  K KILL  m migrate  P/M/N sort  ↑↓ select  q quit
//! ```

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState};
use ratatui::Frame;
use ssi_core::view::{ClusterInfo, MemberState, NodeView};

use super::model::Top;
use crate::ps::{human_bytes, one_line};

/// Width of a load bar between its brackets.
const BAR: usize = 20;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, top: &Top) {
    // the nodes panel takes what its rows need, up to half the screen
    let node_rows = u16::try_from(top.nodes.len()).unwrap_or(u16::MAX);
    let nodes_height = node_rows
        .saturating_add(3)
        .min(frame.area().height / 2)
        .max(3);
    let [summary, nodes, procs, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(nodes_height),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(summary_line(top), summary);
    frame.render_widget(nodes_table(&top.nodes), nodes);
    draw_procs(frame, top, procs);
    frame.render_widget(keys_line(top), keys);
}

/// The cluster as one machine, or why the figures are old.
fn summary_line(top: &Top) -> Paragraph<'static> {
    let sum = ClusterInfo::sum(&top.nodes);
    let known = top.nodes.len();
    let mut spans = vec![
        Span::styled("ssi top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {}/{known} nodes alive  {} CPUs  load {:.2}  memory {} free of {}  {} process{}",
            sum.nodes_alive,
            sum.total.cpus,
            sum.total.load1,
            human_bytes(sum.total.mem_free_bytes),
            human_bytes(sum.total.mem_total_bytes),
            top.procs.len(),
            if top.procs.len() == 1 { "" } else { "es" },
        )),
    ];
    if let Some(why) = &top.stale {
        spans.push(Span::styled(
            format!("  (not refreshed: {why})"),
            Style::new().fg(Color::Red),
        ));
    }
    Paragraph::new(Line::from(spans))
}

/// `[|||||     ]` filled to `ratio` (clamped to 0..=1).
fn bar(ratio: f64) -> String {
    let filled = (ratio.clamp(0.0, 1.0) * BAR as f64).round() as usize;
    format!("[{}{}]", "|".repeat(filled), " ".repeat(BAR - filled))
}

/// Green while the load leaves CPUs idle, yellow near full, red when processes wait.
fn load_color(ratio: f64) -> Color {
    if ratio < 0.7 {
        Color::Green
    } else if ratio <= 1.0 {
        Color::Yellow
    } else {
        Color::Red
    }
}

fn nodes_table(nodes: &[NodeView]) -> Table<'static> {
    let rows = nodes.iter().map(|n| {
        let p = &n.probe;
        let active = n.state.is_active();
        let ratio = if p.cpus > 0 {
            p.load1 / f64::from(p.cpus)
        } else {
            0.0
        };
        let load = if active {
            Line::from(vec![
                Span::styled(bar(ratio), Style::new().fg(load_color(ratio))),
                Span::raw(format!(" {:.2}/{}", p.load1, p.cpus)),
            ])
        } else {
            Line::from("")
        };
        let style = if active {
            Style::new()
        } else {
            Style::new().fg(Color::DarkGray)
        };
        let state_style = match n.state {
            MemberState::Suspect => Style::new().fg(Color::Yellow),
            MemberState::Dead => Style::new().fg(Color::Red),
            _ => Style::new(),
        };
        Row::new(vec![
            Line::from(format!("{:>5}{}", n.id.0, if n.local { "*" } else { " " })),
            Line::from(one_line(&n.name, 12)),
            Line::from(Span::styled(n.state.as_str(), state_style)),
            load,
            Line::from(format!(
                "{}/{}",
                human_bytes(p.mem_free_bytes),
                human_bytes(p.mem_total_bytes)
            )),
            Line::from(format!("{:>5}", p.ssi_procs)),
        ])
        .style(style)
    });
    let header = Row::new([
        "   ID",
        "NAME",
        "STATE",
        "LOAD (1 min) / CPUS",
        "MEM FREE/TOTAL",
        "PROCS",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Length(12),
            Constraint::Length(7),
            Constraint::Length(BAR as u16 + 12),
            Constraint::Length(15),
            Constraint::Length(5),
        ],
    )
    .header(header)
    .block(Block::bordered().title("Nodes (* this node)"))
}

fn draw_procs(frame: &mut Frame, top: &Top, area: Rect) {
    let rows = top.procs.iter().map(|p| {
        let state = p.state.as_str();
        Row::new(vec![
            format!("{:>8}", p.gpid),
            one_line(&format!("{}:{}", p.node.0, p.node_name), 10),
            state.to_string(),
            one_line(&p.user, 8),
            format!("{:>5.1}", p.cpu_percent),
            format!("{:>6}", human_bytes(p.rss_bytes)),
            format!("{:>3}", p.threads),
            one_line(&p.command, 200),
        ])
    });
    let header = Row::new([
        "    GPID", "NODE", "STATE", "USER", " %CPU", "   RSS", "THR", "COMMAND",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    // %CPU is CPU time over the time since the process started, as ps computes it: the
    // process list carries no recent rate yet
    let title = format!(
        "Processes by {} (%CPU: average since start)",
        top.sort.label()
    );
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(6),
            Constraint::Length(3),
            Constraint::Fill(1),
        ],
    )
    .header(header)
    .block(Block::bordered().title(title))
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .highlight_symbol(">");
    let mut state = TableState::new().with_selected(top.selected_row());
    frame.render_stateful_widget(table, area, &mut state);
}

/// The keys of the help line and what they do.
const KEYS: [(&str, &str); 6] = [
    ("k", "TERM"),
    ("K", "KILL"),
    ("m", "migrate"),
    ("P/M/N", "sort"),
    ("↑↓", "select"),
    ("q", "quit"),
];

/// The keys, or the migration prompt, and the last thing done.
fn keys_line(top: &Top) -> Paragraph<'static> {
    let mut spans = match (&top.prompt, top.selected()) {
        (Some(typed), Some(p)) => vec![
            Span::raw(format!("migrate {} to node: {typed}", p.gpid)),
            Span::styled("_", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            Span::raw("  (Enter: go, Esc: cancel)"),
        ],
        _ => KEYS
            .iter()
            .flat_map(|(key, what)| {
                [
                    Span::styled(*key, Style::new().add_modifier(Modifier::REVERSED)),
                    Span::raw(format!(" {what} ")),
                ]
            })
            .collect(),
    };
    if !top.status.is_empty() {
        spans.push(Span::raw(format!(" {}", top.status)));
    }
    Paragraph::new(Line::from(spans))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use ssi_core::probe::ProbeData;
    use ssi_core::process::{ProcState, ProcessView};
    use ssi_core::NodeId;

    fn node(id: u16, state: MemberState, load1: f64) -> NodeView {
        NodeView {
            id: NodeId(id),
            name: format!("n{id}"),
            addr: format!("127.0.0.{id}:7700"),
            state,
            incarnation: 0,
            gen: 1,
            probe: ProbeData {
                cpus: 2,
                mem_total_bytes: 4 << 30,
                mem_free_bytes: 3 << 30,
                load1,
                ..Default::default()
            },
            local: id == 1,
        }
    }

    /// The screen as text, one string per line.
    fn screen(top: &Top, w: u16, h: u16) -> Vec<String> {
        let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
        term.draw(|f| draw(f, top)).expect("draw");
        let buf = term.backend().buffer();
        (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect::<String>())
            .collect()
    }

    #[test]
    fn bars_fill_with_the_load_per_cpu() {
        assert_eq!(bar(0.0), format!("[{}]", " ".repeat(BAR)));
        assert_eq!(
            bar(0.5),
            format!("[{}{}]", "|".repeat(BAR / 2), " ".repeat(BAR / 2))
        );
        assert_eq!(bar(3.0), format!("[{}]", "|".repeat(BAR)));
        assert_eq!(load_color(0.2), Color::Green);
        assert_eq!(load_color(1.5), Color::Red);
    }

    #[test]
    fn shows_nodes_with_bars_and_the_selected_process() {
        let mut top = Top::new();
        let proc = ProcessView {
            gpid: 8193,
            ppid: 0,
            node: NodeId(2),
            node_name: "n2".into(),
            state: ProcState::Running,
            user: "root".into(),
            uid: 0,
            cpu_percent: 97.5,
            rss_bytes: 3 << 20,
            start_time: 0,
            threads: 1,
            command: "burn 60".into(),
            to: None,
            ft: None,
        };
        top.refreshed(Ok((
            vec![
                node(2, MemberState::Alive, 1.0),
                node(1, MemberState::Alive, 0.0),
                node(3, MemberState::Dead, 0.0),
            ],
            vec![proc],
        )));
        let s = screen(&top, 100, 14);
        let text = s.join("\n");
        assert!(
            s[0].contains("2/3 nodes alive  4 CPUs  load 1.00"),
            "{text}"
        );
        // nodes sorted by id, the loaded one with a half-full bar
        let n1 = s.iter().position(|l| l.contains(" n1 ")).expect("n1 row");
        let n2 = s.iter().position(|l| l.contains(" n2 ")).expect("n2 row");
        assert!(n1 < n2, "{text}");
        assert!(
            s[n2].contains(&format!("[{}{}] 1.00/2", "|".repeat(10), " ".repeat(10))),
            "{text}"
        );
        assert!(s.iter().any(|l| l.contains("dead")), "{text}");
        let row = s.iter().find(|l| l.contains("8193")).expect("process row");
        assert!(
            row.contains(">")
                && row.contains("2:n2")
                && row.contains("97.5")
                && row.contains("burn 60"),
            "{text}"
        );
        assert!(s[13].contains("m migrate"), "{text}");
        top.on_key(crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::Char('m'),
        ));
        top.on_key(crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::Char('3'),
        ));
        let s = screen(&top, 100, 14);
        assert!(
            s[13].contains("migrate 8193 to node: 3_"),
            "{}",
            s.join("\n")
        );
    }
}
