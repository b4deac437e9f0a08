//! Where a command's results go: [`Output`] owns the choice between text and
//! JSON and the progress display; a command returns a [`Report`] (data that
//! is both serialisable and displayable, failures of single items, and how
//! the command ends), and [`Output::emit`] prints it.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use indicatif::{MultiProgress, ProgressDrawTarget};
use serde::Serialize;
use vmw_cloud::Kind;
use vmw_cloud::PowerState;

use crate::error::Target;
use crate::progress::Task;

/// The output of one run: text or JSON on stdout, progress bars on stderr
/// when it is a terminal (and neither `--json` nor `-q` was given).
#[derive(Clone, Debug)]
pub(crate) struct Output {
    json: bool,
    color: bool,
    progress: Option<MultiProgress>,
}

impl Output {
    /// An output printing JSON when `json`, colouring stderr when `color`,
    /// with progress bars when `progress`.
    pub(crate) fn new(json: bool, color: bool, progress: bool) -> Self {
        Self {
            json,
            color,
            progress: progress
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// Whether stdout gets one JSON document.
    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// Whether stderr gets colours.
    pub(crate) fn color(&self) -> bool {
        self.color
    }

    /// A spinner for one task (a VM's launch, a snapshot, ...), or a log
    /// line per step when progress is off.
    pub(crate) fn task(&self, label: impl Into<String>) -> Task {
        Task::new(label.into(), self.progress.as_ref())
    }

    /// Runs `f` with the bars hidden, so that what it writes to stderr is
    /// not mixed with them.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.progress {
            Some(m) => m.suspend(f),
            None => f(),
        }
    }

    /// Writes `text` to stderr, above the bars.
    pub(crate) fn note(&self, text: &str) {
        self.suspend(|| {
            let _ = std::io::stderr().write_all(text.as_bytes());
        });
    }

    /// The writer of log lines.
    pub(crate) fn log_writer(&self) -> crate::progress::LogWriter {
        crate::progress::LogWriter::new(self.progress.clone())
    }

    /// Prints a command's report: its data (text or JSON) on stdout, then
    /// each failure, then how it ended; gives the exit status.
    pub(crate) fn emit(&self, report: Report, target: Option<&Target>) -> ExitCode {
        if let Some(data) = &report.data {
            let printed = if self.json {
                serde_json::to_string_pretty(&data.json)
                    .map_err(anyhow::Error::from)
                    .and_then(|t| print(&format!("{t}\n")))
            } else {
                print(&data.text)
            };
            if let Err(e) = printed {
                return crate::error::report(self, &e, target);
            }
        }
        for e in &report.failures {
            crate::error::report(self, e, target);
        }
        match report.end {
            Ok(code) => ExitCode::from(code),
            Err(e) => crate::error::report(self, &e, target),
        }
    }
}

/// A command's data in both forms.
#[derive(Debug)]
struct Data {
    json: serde_json::Value,
    text: String,
}

/// What a command returns: its data, the failures of single items (each
/// reported on stderr after the data), and how it ends.
#[derive(Debug)]
pub(crate) struct Report {
    data: Option<Data>,
    failures: Vec<anyhow::Error>,
    end: anyhow::Result<u8>,
}

impl Report {
    /// `value` as the command's data: JSON with `--json`, its `Display`
    /// text otherwise. Exit status 0.
    pub(crate) fn of<T: Serialize + fmt::Display>(value: &T) -> anyhow::Result<Self> {
        Ok(Self {
            data: Some(Data {
                json: serde_json::to_value(value)?,
                text: value.to_string(),
            }),
            failures: Vec::new(),
            end: Ok(0),
        })
    }

    /// No data (the command wrote its own, or there is none); exit `code`.
    pub(crate) fn exit(code: u8) -> Self {
        Self {
            data: None,
            failures: Vec::new(),
            end: Ok(code),
        }
    }

    /// Ends with exit status `code` instead.
    #[must_use]
    pub(crate) fn code(mut self, code: u8) -> Self {
        self.end = Ok(code);
        self
    }

    /// Reports `failures` after the data.
    #[must_use]
    pub(crate) fn failures(mut self, failures: Vec<anyhow::Error>) -> Self {
        self.failures = failures;
        self
    }

    /// Ends with `error` (after the data and the failures).
    #[must_use]
    pub(crate) fn fail(mut self, error: impl Into<anyhow::Error>) -> Self {
        self.end = Err(error.into());
        self
    }
}

/// A list of items printed one after another (`Display` of each).
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub(crate) struct Lines<T>(pub(crate) Vec<T>);

impl<T: fmt::Display> fmt::Display for Lines<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.0 {
            item.fmt(f)?;
        }
        Ok(())
    }
}

/// Writes `text` to stdout; a closed pipe (`vmw list | head`) is not an
/// error.
pub(crate) fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::anyhow!("writing to standard output: {e}")),
    }
}

/// Rows as aligned columns, with a header.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let render = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                s.push_str(cell);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = render(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&render(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// `items` as a table with `header`, a row each; nothing when there are
/// none.
pub(crate) fn table_of<T>(header: &[&str], items: &[T], row: impl Fn(&T) -> Vec<String>) -> String {
    if items.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    table(header, &rows)
}

/// `value`, or `-` when there is none.
pub(crate) fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A power state as a word: `on`, `off`, `suspended`, or vSphere's own.
pub(crate) fn power_word(state: &PowerState) -> String {
    match state {
        PowerState::On => "on".to_owned(),
        PowerState::Off => "off".to_owned(),
        PowerState::Suspended => "suspended".to_owned(),
        PowerState::Other(s) => s.clone(),
    }
}

/// `instance`, `image` or `template`.
pub(crate) fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Instance => "instance",
        Kind::Image => "image",
        Kind::Template => "template",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["NAME", "IP"],
            &[
                vec!["a".into(), "1.2.3.4".into()],
                vec!["longer".into(), "-".into()],
            ],
        );
        assert_eq!(t, "NAME    IP\na       1.2.3.4\nlonger  -\n");
    }

    #[derive(Serialize)]
    struct Pair {
        name: &'static str,
    }

    impl fmt::Display for Pair {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            writeln!(f, "{}", self.name)
        }
    }

    #[test]
    fn a_report_holds_both_forms() {
        let r = Report::of(&Lines(vec![Pair { name: "a" }, Pair { name: "b" }])).unwrap();
        let data = r.data.unwrap();
        assert_eq!(data.text, "a\nb\n");
        assert_eq!(data.json, serde_json::json!([{"name": "a"}, {"name": "b"}]));
    }
}
