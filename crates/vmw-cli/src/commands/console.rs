//! `vmw console` and `vmw logs`: what a guest says about itself. The
//! console log is the file the VM's serial port writes to (vmw connects one
//! at a launch with `--console` or `--keep-on-failure`); `logs` collects it and, over SSH, cloud-init's status and
//! logs and the journal.

use std::fmt;
use std::time::Duration;

use camino::Utf8Path;
use serde::Serialize;
use vmw_cloud::Evidence;

use crate::context::Context;
use crate::output::{Report, print};
use crate::signals::Stops;

/// How often `--follow` looks for more.
const FOLLOW_POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize)]
struct Console {
    name: String,
    console: String,
}

impl fmt::Display for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.console)
    }
}

/// Runs `vmw console NAME [--follow]`.
pub(super) async fn show(ctx: &Context, name: &str, follow: bool) -> anyhow::Result<Report> {
    let cloud = ctx.cloud(None).await?;
    let instance = super::instance(&cloud, name).await?;
    let log = instance.console_log().await?;
    if !follow || ctx.out.json() {
        return Report::of(&Console {
            name: name.to_owned(),
            console: log,
        });
    }
    // Printed as it grows, until a signal.
    print(&log)?;
    let mut shown = log.len();
    let mut stops = Stops::listen()?;
    loop {
        tokio::select! {
            _ = stops.next() => return Ok(Report::exit(0)),
            () = tokio::time::sleep(FOLLOW_POLL) => {}
        }
        let log = instance.console_log().await?;
        // A log that shrank was started again (a new file).
        if log.len() < shown {
            shown = 0;
        }
        if let Some(new) = log.get(shown..)
            && !new.is_empty()
        {
            print(new)?;
            shown = log.len();
        }
    }
}

#[derive(Debug, Serialize)]
struct Collected {
    name: String,
    dir: String,
    files: Vec<String>,
    missing: Vec<String>,
}

impl From<(&str, Evidence)> for Collected {
    fn from((name, e): (&str, Evidence)) -> Self {
        Self {
            name: name.to_owned(),
            dir: e.dir.to_string(),
            files: e.files.iter().map(ToString::to_string).collect(),
            missing: e.missing,
        }
    }
}

impl fmt::Display for Collected {
    /// The files written, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            writeln!(f, "{file}")?;
        }
        Ok(())
    }
}

/// Runs `vmw logs NAME [--dir DIR]`.
pub(super) async fn logs(ctx: &Context, name: &str, dir: &Utf8Path) -> anyhow::Result<Report> {
    let cloud = ctx.cloud(None).await?;
    let instance = super::instance(&cloud, name).await?;
    let task = ctx.out.task(name);
    task.step("collecting the console log, cloud-init's status and logs, the journal");
    let evidence = instance.collect_evidence(&dir.join(name)).await?;
    task.done(&format!(
        "{} file(s) in {}",
        evidence.files.len(),
        evidence.dir
    ));
    for m in &evidence.missing {
        tracing::warn!("{name}: not collected: {m}");
    }
    Report::of(&Collected::from((name, evidence)))
}
