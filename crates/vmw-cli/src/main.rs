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

mod cli;
mod commands;
mod context;
mod error;
mod output;
mod progress;
mod signals;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vmw_config::env;

use crate::cli::{Cli, Global};
use crate::context::Context;
use crate::output::Output;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version exit 0; usage errors exit 2.
        Err(e) => e.exit(),
    };
    let out = output(&cli.global);
    init_logging(&cli.global, &out);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = anyhow::anyhow!("cannot start the async runtime: {e}");
            return error::report(&out, &e, None);
        }
    };
    let ctx = Context::new(cli.global, out);
    match runtime.block_on(commands::run(&ctx, cli.command)) {
        Ok(report) => ctx.out.emit(report, ctx.target()),
        Err(e) => error::report(&ctx.out, &e, ctx.target()),
    }
}

/// Where results go: JSON with `--json`; progress bars when stderr is a
/// terminal and neither `--json` nor `-q` is given.
fn output(global: &Global) -> Output {
    let progress = !global.json
        && !global.quiet
        && std::io::stderr().is_terminal()
        && env::var(env::TERM).is_none_or(|t| t != "dumb");
    Output::new(global.json, error::stderr_color(), progress)
}

/// Logs on stderr: warnings and vmw's own steps by default, more with
/// `-v`, errors only with `-q`; `RUST_LOG` overrides. Log lines go above
/// the progress bars of `out`.
fn init_logging(global: &Global, out: &Output) {
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(out.log_writer())
        .with_ansi(out.color())
        .with_target(false)
        .without_time()
        .try_init();
}
