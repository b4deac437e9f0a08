//! Progress on stderr: indicatif spinners when stderr is a terminal (and
//! neither `--json` nor `-q` was given); plain log lines otherwise. Log
//! lines written while bars are shown go above them. The bars belong to
//! the run's [`crate::output::Output`].

use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use vmw_cloud::Step;

/// A spinner for one task (one VM's launch, a snapshot, ...), or a log line
/// per step when progress is off.
#[derive(Clone, Debug)]
pub(crate) struct Task {
    label: String,
    bar: Option<ProgressBar>,
}

impl Task {
    /// A task called `label` (usually a VM name), drawn in `bars` if any.
    pub(crate) fn new(label: String, bars: Option<&MultiProgress>) -> Self {
        let bar = bars.map(|m| {
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

    /// The task has reached one of the library's steps.
    pub(crate) fn library_step(&self, step: Step) {
        self.step(&step_words(step));
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

/// A library step as progress text.
pub(crate) fn step_words(step: Step) -> String {
    match step {
        Step::Clone => "cloning".to_owned(),
        Step::WriteGuestinfo => "preparing guestinfo".to_owned(),
        Step::Configure => "setting guestinfo and extraConfig".to_owned(),
        Step::PowerOff => "powering off".to_owned(),
        Step::PowerOn => "powering on".to_owned(),
        Step::WaitIp => "waiting for an IP address".to_owned(),
        Step::WaitSsh => "waiting for SSH".to_owned(),
        Step::WaitReady => "waiting for cloud-init to finish".to_owned(),
        other => other.to_string(),
    }
}

/// The writer of log lines: stderr, with the bars hidden while writing.
#[derive(Clone, Debug)]
pub(crate) struct LogWriter(Option<MultiProgress>);

impl LogWriter {
    /// A writer hiding `bars`, if any, while it writes.
    pub(crate) fn new(bars: Option<MultiProgress>) -> Self {
        Self(bars)
    }
}

/// One log event's bytes, written at once when dropped.
#[derive(Debug)]
pub(crate) struct LogLine {
    bytes: Vec<u8>,
    bars: Option<MultiProgress>,
}

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        let write = || {
            let _ = std::io::stderr().write_all(&bytes);
        };
        match &self.bars {
            Some(m) => m.suspend(write),
            None => write(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine {
            bytes: Vec::new(),
            bars: self.0.clone(),
        }
    }
}
