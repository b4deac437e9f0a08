//! vmw's logs in Python's `logging`: every event of the engine goes to the
//! logger `vmw` (its Rust module in the record's name, `vmw.vmw_cloud...`),
//! at the matching level, so a test suite's log configuration shows them
//! like its own.

use std::fmt::Write as _;

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// The message and the fields of an event, as one line.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

/// Python's level number for `level`.
fn python_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        _ => 10,
    }
}

/// The layer that hands events to `logging`.
struct ToPython;

impl<S: Subscriber> Layer<S> for ToPython {
    /// vmw's own events, and the warnings and errors of the rest (russh's
    /// debug lines are many, and each costs the GIL).
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        metadata.target().starts_with("vmw") || *metadata.level() <= Level::WARN
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Line::default();
        event.record(&mut line);
        let text = format!("{}{}", line.message, line.fields);
        let name = format!("vmw.{}", meta.target().replace("::", "."));
        let level = python_level(meta.level());
        // Not while the interpreter shuts down: the line is dropped then.
        let _ = Python::try_attach(|py| {
            let logged = py
                .import("logging")
                .and_then(|logging| logging.call_method1("getLogger", (name,)))
                .and_then(|logger| logger.call_method1("log", (level, text)));
            // A log line that cannot be written is not worth an error.
            drop(logged);
        });
    }
}

/// Sends the engine's events to Python's `logging` from now on (once per
/// process; a second call keeps the first).
pub(crate) fn install() {
    let subscriber = tracing_subscriber::registry().with(ToPython);
    let _ = tracing::subscriber::set_global_default(subscriber);
}
