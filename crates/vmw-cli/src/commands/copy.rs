//! `vmw push` and `vmw pull`: files to and from an instance over SFTP.

use std::fmt;

use camino::Utf8PathBuf;
use serde::Serialize;

use crate::context::Context;
use crate::error::CliError;
use crate::output::Report;

#[derive(Debug, Serialize)]
struct Copied {
    name: String,
    local: Utf8PathBuf,
    remote: String,
}

impl fmt::Display for Copied {
    /// Nothing on stdout: the copy is logged.
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// Runs `vmw push NAME LOCAL REMOTE`.
pub(super) async fn push(
    ctx: &Context,
    name: &str,
    local: Utf8PathBuf,
    remote: &str,
) -> anyhow::Result<Report> {
    if !local.is_file() {
        return Err(CliError::usage(format!("{local} is not a file"), None).into());
    }
    let cloud = ctx.cloud(None).await?;
    let instance = super::instance(&cloud, name).await?;
    instance.push_file(&local, remote).await?;
    tracing::info!("{name}: copied {local} to {remote}");
    Report::of(&Copied {
        name: name.to_owned(),
        local,
        remote: remote.to_owned(),
    })
}

/// Runs `vmw pull NAME REMOTE LOCAL`.
pub(super) async fn pull(
    ctx: &Context,
    name: &str,
    remote: &str,
    local: Utf8PathBuf,
) -> anyhow::Result<Report> {
    let cloud = ctx.cloud(None).await?;
    let instance = super::instance(&cloud, name).await?;
    instance.pull_file(remote, &local).await?;
    tracing::info!("{name}: copied {remote} to {local}");
    Report::of(&Copied {
        name: name.to_owned(),
        local,
        remote: remote.to_owned(),
    })
}
