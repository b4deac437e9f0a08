//! Progress on stderr: indicatif spinners and bars when stderr is a
//! terminal (and neither `--json` nor `-q` was given); plain log lines
//! otherwise. Log lines written while bars are shown go above them.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static MULTI: OnceLock<MultiProgress> = OnceLock::new();

/// Turns progress display on (once, at start-up).
pub(crate) fn enable() {
    let _ = MULTI.set(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
}

/// Runs `f` with the bars hidden, so that what it writes to stderr is not
/// mixed with them.
pub(crate) fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match MULTI.get() {
        Some(m) => m.suspend(f),
        None => f(),
    }
}

/// A spinner for one task (one VM's launch, a snapshot, ...), or a log line
/// per step when progress is off.
#[derive(Clone, Debug)]
pub(crate) struct Task {
    label: String,
    bar: Option<ProgressBar>,
}

impl Task {
    /// A task called `label` (usually a VM name).
    pub(crate) fn new(label: impl Into<String>) -> Self {
        let label = label.into();
        let bar = MULTI.get().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix}: {wide_msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { label, bar }
    }

    /// The task has reached a new step.
    pub(crate) fn step(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_owned()),
            None => tracing::info!("{}: {message}", self.label),
        }
    }

    /// The task is done.
    pub(crate) fn done(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(message.to_owned()),
            None => tracing::info!("{}: {message}", self.label),
        }
    }

    /// The task failed (the error is reported elsewhere).
    pub(crate) fn failed(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.abandon_with_message(format!("failed: {message}")),
            None => tracing::debug!("{}: failed: {message}", self.label),
        }
    }
}

/// The writer of log lines: stderr, with the bars hidden while writing.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LogWriter;

/// One log event's bytes, written at once when dropped.
#[derive(Debug, Default)]
pub(crate) struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        suspend(|| {
            let _ = std::io::stderr().write_all(&bytes);
        });
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine::default()
    }
}
