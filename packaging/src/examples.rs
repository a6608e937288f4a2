//! The examples of a command's help text.
//!
//! Every command of `ssi`, `ssid` and `ssi-testbed` ends its `--help` with a block like
//!
//! ```text
//! Examples:
//!   ssi kill 4097                   # SIGTERM
//!   ssi kill -s KILL 4097           # SIGKILL
//!
//! Free text after a blank line.
//! ```
//!
//! The manual pages show the block as their EXAMPLES section, and the tests below check that
//! each line is a command line its program accepts, for the command it is shown under.

use clap::Command;

/// The heading that opens the examples block of an `after_help` text.
const HEADING: &str = "Examples:";

/// A command's `after_help`, split into its example lines and the text that follows them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AfterHelp {
    /// The example lines as written (indentation removed), with their `# comments`.
    pub examples: Vec<String>,
    /// Paragraphs after the examples.
    pub rest: Vec<String>,
}

impl AfterHelp {
    /// Splits the `after_help` of `cmd` (empty when it has none).
    pub fn of(cmd: &Command) -> AfterHelp {
        let text = cmd
            .get_after_long_help()
            .or_else(|| cmd.get_after_help())
            .map(|s| s.to_string())
            .unwrap_or_default();
        Self::parse(&text)
    }

    fn parse(text: &str) -> AfterHelp {
        let mut out = AfterHelp::default();
        let mut lines = text.lines().peekable();
        if lines.peek().map(|l| l.trim()) == Some(HEADING) {
            lines.next();
            while let Some(l) = lines.next_if(|l| l.starts_with("  ")) {
                out.examples.push(l.trim().to_string());
            }
        }
        let rest: Vec<&str> = lines.collect();
        out.rest = rest
            .split(|l| l.trim().is_empty())
            .filter(|p| !p.is_empty())
            .map(|p| p.join(" "))
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line of an example line: the words before its `#` comment.
    fn words(example: &str) -> Vec<&str> {
        let line = example.split_once(" #").map_or(example, |(cmd, _)| cmd);
        line.split_whitespace().collect()
    }

    #[test]
    fn splits_examples_from_the_text_after_them() {
        let a = AfterHelp::parse(
            "Examples:\n  ssi kill 1    # term\n  ssi kill -s KILL 1\n\nA note\non two lines.\n\nMore.",
        );
        assert_eq!(a.examples, ["ssi kill 1    # term", "ssi kill -s KILL 1"]);
        assert_eq!(a.rest, ["A note on two lines.", "More."]);
        assert_eq!(words(&a.examples[0]), ["ssi", "kill", "1"]);
        assert_eq!(
            AfterHelp::parse("Just text."),
            AfterHelp {
                examples: vec![],
                rest: vec!["Just text.".into()],
            }
        );
    }

    /// The names of the subcommands `matches` selected, outermost first.
    fn matched_path(matches: &clap::ArgMatches) -> Vec<String> {
        let mut path = Vec::new();
        let mut m = matches;
        while let Some((name, sub)) = m.subcommand() {
            path.push(name.to_string());
            m = sub;
        }
        path
    }

    /// Checks the examples of `cmd` (reached through `path` from `root`) and of its
    /// subcommands; returns the number of examples checked.
    fn check(root: &Command, cmd: &Command, path: &[String]) -> usize {
        let shown = format!("{} {}", root.get_name(), path.join(" "));
        let examples = AfterHelp::of(cmd).examples;
        assert!(
            !examples.is_empty(),
            "`{shown}` has no examples in its help"
        );
        for ex in &examples {
            let words = words(ex);
            assert!(
                !words.concat().contains(['\'', '"', '\\', '$', '`']),
                "example `{ex}` of `{shown}`: no quoting, so that the test splits it as a shell would"
            );
            assert_eq!(
                words.first(),
                Some(&root.get_name()),
                "example `{ex}` of `{shown}`"
            );
            let matches = root
                .clone()
                .try_get_matches_from(&words)
                .unwrap_or_else(|e| panic!("example `{ex}` of `{shown}` is refused: {e}"));
            let got = matched_path(&matches);
            assert!(
                got.starts_with(path),
                "example `{ex}` is shown under `{shown}` but runs `{}`",
                got.join(" ")
            );
        }
        let subs = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help");
        examples.len()
            + subs
                .map(|s| {
                    let mut p = path.to_vec();
                    p.push(s.get_name().to_string());
                    check(root, s, &p)
                })
                .sum::<usize>()
    }

    #[test]
    fn every_command_has_examples_its_program_accepts() {
        for program in crate::programs() {
            let mut root = program.command;
            root.build();
            let n = check(&root, &root, &[]);
            assert!(n >= 1, "{}", root.get_name());
        }
    }
}
