//! `vmw`: launch, use, snapshot and delete virtual machines on VMware
//! vSphere from the command line, by driving VMware's `govc`.
//!
//! It reads pycloudlib's `pycloudlib.toml` (section `[vmware]`, with govc's
//! `GOVC_*` variables filling what is missing) and builds on the vmw
//! libraries: `vmw-config` for the configuration, `vmw-govc` for govc,
//! `vmw-cloud` for the instance lifecycle and `vmw-ssh` for guest access.
//!
//! Conventions:
//! - data alone on stdout (one JSON document with `--json`); logs, progress
//!   and errors on stderr; `NO_COLOR` is respected;
//! - progress spinners only when stderr is a terminal, and not with
//!   `--json` or `-q`;
//! - exit status 0 on success, 1 when the operation failed, 2 for usage and
//!   configuration errors, 130 after Ctrl-C (a launch first removes what it
//!   had made); `vmw exec` exits with the remote command's status;
//! - errors end with a `hint:` line where vmw knows what would fix them.

mod check;
mod cli;
mod commands;
mod context;
mod error;
mod image;
mod launch;
mod output;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vmw_config::env;

use crate::cli::{Cli, Global};
use crate::context::Context;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version exit 0; usage errors exit 2.
        Err(e) => e.exit(),
    };
    init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return error::report(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let ctx = Context::new(cli.global);
    let result = runtime.block_on(commands::run(&ctx, cli.command));
    match result {
        Ok(code) => code,
        Err(e) => error::report(&e),
    }
}

/// Logs on stderr: warnings and vmw's own steps by default, more with
/// `-v`, errors only with `-q`; `RUST_LOG` overrides. Progress bars when
/// stderr is a terminal and neither `--json` nor `-q` is given.
fn init_logging(global: &Global) {
    const CRATES: [&str; 5] = ["vmw", "vmw_cloud", "vmw_govc", "vmw_ssh", "vmw_config"];
    let directives = if global.quiet {
        "error".to_owned()
    } else {
        let level = match global.verbose {
            0 => None,
            1 => Some("info"),
            2 => Some("debug"),
            _ => Some("trace"),
        };
        match level {
            // vmw's own steps; the libraries only warn.
            None => {
                "warn,vmw=info,vmw_cloud=warn,vmw_govc=warn,vmw_ssh=warn,vmw_config=warn".to_owned()
            }
            Some(level) => {
                let mut d = "warn".to_owned();
                for c in CRATES {
                    d.push_str(&format!(",{c}={level}"));
                }
                d
            }
        }
    };
    let filter = match env::var(env::RUST_LOG) {
        Some(v) if !v.is_empty() => {
            EnvFilter::try_new(v).unwrap_or_else(|_| EnvFilter::new(&directives))
        }
        _ => EnvFilter::new(&directives),
    };
    let stderr = std::io::stderr();
    if !global.json
        && !global.quiet
        && stderr.is_terminal()
        && env::var(env::TERM).is_none_or(|t| t != "dumb")
    {
        progress::enable();
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::LogWriter)
        .with_ansi(error::stderr_color())
        .with_target(false)
        .without_time()
        .try_init();
}
