//! `ssi-manuals DIR`: writes the manual pages and shell completions of `ssi`, `ssid` and
//! `ssi-testbed`, generated from their clap definitions, into
//!
//! ```text
//! DIR/man/man1/ssi.1 ssi-nodes.1 ... ssi-testbed.1 ...   DIR/man/man8/ssid.8
//! DIR/completions/bash/ssi  DIR/completions/zsh/_ssi  DIR/completions/fish/ssi.fish ...
//! ```
//!
//! `scripts/package.sh` runs it before building the Debian package, which installs them.

mod completions;
mod examples;
mod man;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};

/// Write the manual pages and shell completions of ssi, ssid and ssi-testbed.
#[derive(Debug, Parser)]
#[command(name = "ssi-manuals")]
struct Args {
    /// Output directory (created).
    dir: PathBuf,
}

/// A program of the package and the manual section its pages go to.
#[derive(Debug)]
struct Program {
    command: clap::Command,
    section: &'static str,
}

/// The programs with manuals: the CLI and the testbed in section 1 (user commands), the
/// daemon in section 8 (system administration).
fn programs() -> Vec<Program> {
    vec![
        Program {
            command: ssi_cli::args::Args::command(),
            section: "1",
        },
        Program {
            command: ssi_node::args::Args::command(),
            section: "8",
        },
        Program {
            command: testbed::args::Args::command(),
            section: "1",
        },
    ]
}

fn main() -> ExitCode {
    match write(&Args::parse().dir) {
        Ok(n) => {
            println!("wrote {n} files");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ssi-manuals: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes everything under `dir`; returns the number of files written.
fn write(dir: &std::path::Path) -> Result<usize> {
    let programs = programs();
    let pages: Vec<String> = programs
        .iter()
        .map(|p| format!("{}({})", p.command.get_name(), p.section))
        .collect();
    let mut n = 0;
    for p in &programs {
        let man_dir = dir.join("man").join(format!("man{}", p.section));
        std::fs::create_dir_all(&man_dir)
            .with_context(|| format!("cannot create {}", man_dir.display()))?;
        let own = format!("{}({})", p.command.get_name(), p.section);
        let others: Vec<String> = pages.iter().filter(|o| **o != own).cloned().collect();
        n += man::write_all(p.command.clone(), p.section, &others, &man_dir)?.len();
        n += completions::write_all(&p.command, &dir.join("completions"))?.len();
    }
    Ok(n)
}
