//! Manual pages: one per command and subcommand (`ssi.1`, `ssi-nodes.1`, `ssi-sched-set.1`,
//! `ssid.8` ...), rendered by clap_mangen from the clap definitions, with an EXAMPLES section
//! of our own: clap_mangen would put the examples in a filled paragraph, running the command
//! lines together, while a manual shows each on a line of its own.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Command;
use clap_mangen::Man;
use roff::{roman, Roff};

use crate::examples::AfterHelp;

/// Writes the pages of `cmd` and of its visible subcommands into `dir`; returns their paths.
pub fn write_all(
    cmd: Command,
    section: &str,
    others: &[String],
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    // building gives every subcommand its display name ("ssi-sched-set"), used as page name
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let page = Page {
        section,
        source: format!("ssi {}", cmd.get_version().unwrap_or_default()),
        dir,
    };
    let mut written = Vec::new();
    write_tree(&cmd, &page, others, &mut written)?;
    Ok(written)
}

/// What every page of one program shares.
#[derive(Debug)]
struct Page<'a> {
    /// Manual section ("1", "8").
    section: &'a str,
    /// The footer's source: the program's package and version (subcommands have none).
    source: String,
    /// Where the pages go.
    dir: &'a Path,
}

fn write_tree(
    cmd: &Command,
    page: &Page,
    see_also: &[String],
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let name = page_name(cmd);
    let section = page.section;
    let path = page.dir.join(format!("{name}.{section}"));
    let mut file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    render(cmd, page, see_also, &mut file)
        .and_then(|()| file.flush())
        .with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    // a subcommand's page points back to its parent's
    let parent = [format!("{name}({section})")];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub, page, &parent, written)?;
    }
    Ok(())
}

/// The page's name: the command's display name once built (`ssi-nodes`), else its name.
fn page_name(cmd: &Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string()
}

/// Renders the page of `cmd` (built) into `w`.
fn render(
    cmd: &Command,
    page: &Page,
    see_also: &[String],
    w: &mut dyn Write,
) -> std::io::Result<()> {
    let man = Man::new(cmd.clone())
        .section(page.section)
        .manual("ssi manual")
        .source(page.source.as_str());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(w)?;
    }
    let mut roff = Roff::new();
    examples_section(&AfterHelp::of(cmd), &mut roff);
    if !see_also.is_empty() {
        roff.control("SH", ["SEE ALSO"]);
        roff.text([roman(see_also.join(", "))]);
    }
    roff.to_writer(w)?;
    if cmd.get_version().is_some() {
        man.render_version_section(w)?;
    }
    Ok(())
}

/// The EXAMPLES section: one command line per output line (no filling), then the notes.
fn examples_section(after: &AfterHelp, roff: &mut Roff) {
    if after.examples.is_empty() && after.rest.is_empty() {
        return;
    }
    roff.control("SH", ["EXAMPLES"]);
    if !after.examples.is_empty() {
        roff.control("nf", []);
        roff.control("RS", ["4"]);
        for line in &after.examples {
            roff.text([roman(line.as_str())]);
        }
        roff.control("RE", []);
        roff.control("fi", []);
    }
    for para in &after.rest {
        roff.control("PP", []);
        roff.text([roman(para.as_str())]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_every_visible_command_and_show_examples_line_by_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pages = write_all(
            <ssi_cli::args::Args as clap::CommandFactory>::command(),
            "1",
            &[],
            dir.path(),
        )
        .expect("write pages");
        let names: Vec<String> = pages
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        for want in [
            "ssi.1",
            "ssi-nodes.1",
            "ssi-sched.1",
            "ssi-sched-set.1",
            "ssi-dump.1",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        assert!(
            !names.iter().any(|n| n.contains("mpirun-agent")),
            "hidden command has a page"
        );
        let kill = std::fs::read_to_string(dir.path().join("ssi-kill.1")).expect("read");
        let block = kill
            .split(".SH EXAMPLES")
            .nth(1)
            .and_then(|s| s.split(".fi").next())
            .expect("EXAMPLES section in no-fill mode");
        assert!(block.contains(".nf"), "{block}");
        assert!(block.contains("\nssi kill \\-s KILL 4097"), "{block}");
    }
}
