//! `vmw clean`: the VMs vmw made for a tag (or every tag), listed, confirmed,
//! then deleted exactly as listed.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::time::Duration;

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
        confirm(records.len(), "vmw clean --yes")?;
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

/// Asks whether the `count` VMs listed may go; an error when the answer is
/// no, or when standard input is not a terminal (`flag` says how to skip
/// the question).
fn confirm(count: usize, flag: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError {
            message: format!(
                "refusing to delete {count} VM(s) without --yes: standard input is not a terminal, so vmw cannot ask"
            ),
            hint: Some(format!("run `{flag}` to delete them")),
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
    Ok(())
}

/// An unmarked VM as `clean --unmarked` prints it.
#[derive(Debug, Serialize)]
struct Unmarked {
    name: String,
    path: String,
    tag: String,
    created: String,
    power_state: String,
}

/// What `clean --unmarked` listed and deleted.
#[derive(Debug, Serialize)]
struct CleanedUnmarked {
    planned: Vec<Unmarked>,
    removed: Vec<String>,
}

impl fmt::Display for CleanedUnmarked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for path in &self.removed {
            writeln!(f, "{}", path.rsplit('/').next().unwrap_or(path))?;
        }
        Ok(())
    }
}

/// Runs `vmw clean --unmarked`: VMs without vmw's marker, named like
/// vmw's, made within `within`; listed, confirmed, then deleted exactly
/// as listed (each still the object listed, still unmarked).
pub(super) async fn unmarked(
    ctx: &Context,
    all_tags: bool,
    yes: bool,
    within: Duration,
) -> anyhow::Result<Report> {
    let scope = ctx.scope(all_tags)?;
    let cloud = ctx.cloud(None).await?;
    let found = cloud.unmarked(&scope, within).await?;
    let described = super::describe_scope(ctx, all_tags);
    let planned: Vec<Unmarked> = found
        .iter()
        .map(|v| Unmarked {
            name: v.name.clone(),
            path: v.path.to_string(),
            tag: v.tag.clone(),
            created: v.created.clone(),
            power_state: crate::output::power_word(&v.power_state),
        })
        .collect();
    if found.is_empty() {
        tracing::info!(
            "no VMs without vmw's marker named like vmw's for {described}, made within {within:?}"
        );
        return Report::of(&CleanedUnmarked {
            planned,
            removed: Vec::new(),
        });
    }
    let rows: Vec<Vec<String>> = planned
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.tag.clone(),
                v.created.clone(),
                v.power_state.clone(),
            ]
        })
        .collect();
    let listing = table(&["NAME", "TAG", "CREATED", "STATE"], &rows);
    ctx.out.note(&format!(
        "{} VM(s) WITHOUT vmw's marker, named like vmw's for {described}, made within {within:?}; vmw cannot tell whether they are yours:\n{listing}",
        found.len()
    ));
    if !yes {
        confirm(found.len(), "vmw clean --unmarked --yes")?;
    }
    let task = ctx.out.task("clean");
    task.step(&format!("deleting {} VM(s)", found.len()));
    match cloud.delete_unmarked(&found).await {
        Ok(removed) => {
            task.done(&format!("deleted {} VM(s)", removed.len()));
            Report::of(&CleanedUnmarked {
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
