//! `vmw exec`: a command in the guest over SSH; the exit status is the
//! command's. Text output is streamed as the command writes it; `--json`
//! collects it into one document.

use std::fmt;
use std::io::Read;

use serde::Serialize;
use vmw_cloud::{Cmd, ExecOptions};

use crate::context::Context;
use crate::error::CliError;
use crate::output::Report;

#[derive(Debug, Serialize)]
struct ExecOutput {
    name: String,
    exit_status: Option<u32>,
    signal: Option<String>,
    stdout: String,
    stderr: String,
}

impl fmt::Display for ExecOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.stdout)
    }
}

/// Runs `vmw exec NAME -- CMD...`.
pub(super) async fn run(
    ctx: &Context,
    name: &str,
    forward_stdin: bool,
    sudo: bool,
    command: Vec<String>,
) -> anyhow::Result<Report> {
    let cmd = match command.as_slice() {
        [line] => Cmd::from(line.clone()),
        _ => Cmd::from(command),
    };
    let stdin = if forward_stdin {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .map_err(|e| CliError::failed(format!("reading standard input: {e}"), None))?;
        Some(data)
    } else {
        None
    };
    let cloud = ctx.cloud(None).await?;
    let instance = super::instance(&cloud, name).await?;
    tracing::debug!("{name}: running {cmd}");
    let options = ExecOptions { sudo, stdin };
    if ctx.out.json() {
        let result = instance.execute_with(cmd, &options).await?;
        let code = exit_code(name, result.exit_status, result.signal.as_deref());
        return Ok(Report::of(&ExecOutput {
            name: name.to_owned(),
            exit_status: result.exit_status,
            signal: result.signal,
            stdout: result.stdout,
            stderr: result.stderr,
        })?
        .code(code));
    }
    // Output is streamed as the command writes it.
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    let (status, signal) = instance
        .execute_streaming(cmd, &options, &mut out, &mut err)
        .await?;
    Ok(Report::exit(exit_code(name, status, signal.as_deref())))
}

/// The remote command's exit status as vmw's, 255 when a signal killed it.
fn exit_code(name: &str, status: Option<u32>, signal: Option<&str>) -> u8 {
    match (status, signal) {
        (Some(c), _) => u8::try_from(c).unwrap_or(u8::MAX),
        (None, Some(sig)) => {
            tracing::warn!("{name}: the command was killed by signal {sig}");
            u8::MAX
        }
        (None, None) => u8::MAX,
    }
}
