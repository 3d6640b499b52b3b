//! What the user sees while a command runs: progress bars on a terminal, nothing with
//! `--quiet` or `--json` (scripts read the final JSON line instead).

use indicatif::{ProgressBar, ProgressStyle};

/// How much a command prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Progress bars and a summary.
    Normal,
    /// The summary only.
    Quiet,
    /// One JSON object on stdout at the end, nothing else there.
    Json,
}

impl Output {
    /// A bar of `len` steps, hidden unless the output is `Normal`.
    pub fn bar(self, len: u64, what: &str) -> ProgressBar {
        if self != Output::Normal {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed} elapsed, ETA {eta})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        bar
    }

    /// Prints a line for people (not in `--json` mode, where stdout is the JSON result).
    pub fn say(self, line: &str) {
        match self {
            Output::Normal | Output::Quiet => println!("{line}"),
            Output::Json => eprintln!("{line}"),
        }
    }

    /// A warning: always on stderr.
    pub fn warn(self, line: &str) {
        eprintln!("warning: {line}");
    }
}
