//! `vmw clean`: the VMs vmw made for a tag (or every tag), listed, confirmed,
//! then deleted exactly as listed.

use std::fmt;
use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::context::Context;
use crate::error::{CliError, EXIT_FAILED, EXIT_USAGE};
use crate::output::{Report, table};

#[derive(Debug, Serialize)]
struct Cleaned {
    /// The VMs listed (and confirmed): exactly these are deleted.
    planned: Vec<super::Vm>,
    /// The paths deleted.
    removed: Vec<String>,
}

impl fmt::Display for Cleaned {
    /// The names deleted, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for path in &self.removed {
            writeln!(f, "{}", path.rsplit('/').next().unwrap_or(path))?;
        }
        Ok(())
    }
}

/// Runs `vmw clean`.
pub(super) async fn run(ctx: &Context, all_tags: bool, yes: bool) -> anyhow::Result<Report> {
    let scope = ctx.scope(all_tags)?;
    let cloud = ctx.cloud(None).await?;
    let records = cloud.list(&scope).await?;
    let described = super::describe_scope(ctx, all_tags);
    if records.is_empty() {
        tracing::info!("nothing to clean: no VMs made by vmw for {described}");
        return Report::of(&Cleaned {
            planned: Vec::new(),
            removed: Vec::new(),
        });
    }
    let planned: Vec<super::Vm> = records.iter().map(super::Vm::from).collect();
    let rows: Vec<Vec<String>> = planned.iter().map(super::Vm::row).collect();
    let listing = table(&["NAME", "KIND", "TAG", "STATE"], &rows);
    ctx.out.note(&format!(
        "{} VM(s) made by vmw for {described}:\n{listing}",
        records.len()
    ));
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError {
                message: format!(
                    "refusing to delete {} VM(s) without --yes: standard input is not a terminal, so vmw cannot ask",
                    records.len()
                ),
                hint: Some("run `vmw clean --yes` to delete them".to_owned()),
                code: EXIT_USAGE,
            }
            .into());
        }
        eprint!("delete them? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES") {
            eprintln!("nothing deleted");
            return Err(CliError::silent(EXIT_FAILED).into());
        }
    }
    let task = ctx.out.task("clean");
    task.step(&format!("deleting {} VM(s)", records.len()));
    // Exactly what was listed (and confirmed): each VM is checked to be the
    // object listed, still with vmw's marker of the tag listed.
    match cloud.delete_listed(&records).await {
        Ok(removed) => {
            task.done(&format!("deleted {} VM(s)", removed.len()));
            Report::of(&Cleaned {
                planned,
                removed: removed.iter().map(ToString::to_string).collect(),
            })
        }
        Err(e) => {
            task.failed("some VMs remain");
            Err(e.into())
        }
    }
}
