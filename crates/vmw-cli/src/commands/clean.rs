//! `vmw clean`: the VMs vmw made for a tag (or every tag), listed, confirmed,
//! then deleted exactly as listed.

use std::fmt;
use std::io::{IsTerminal, Write};

use serde::Serialize;
use vmw_cloud::VmRecord;

use crate::context::Context;
use crate::error::{CliError, EXIT_FAILED, EXIT_USAGE};
use crate::output::{Report, kind_word, power_word, table};

/// What `clean` lists, and then deletes exactly.
#[derive(Debug, Serialize)]
struct PlannedVm {
    name: String,
    path: String,
    kind: &'static str,
    tag: String,
    power_state: String,
}

impl From<&VmRecord> for PlannedVm {
    fn from(r: &VmRecord) -> Self {
        Self {
            name: r.name.clone(),
            path: r.path.to_string(),
            kind: kind_word(r.kind),
            tag: r.tag.clone(),
            power_state: power_word(&r.power_state),
        }
    }
}

#[derive(Debug, Serialize)]
struct Cleaned {
    /// The VMs listed (and confirmed).
    planned: Vec<PlannedVm>,
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
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                kind_word(r.kind).to_owned(),
                r.tag.clone(),
                power_word(&r.power_state),
            ]
        })
        .collect();
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
                planned: records.iter().map(PlannedVm::from).collect(),
                removed: removed.iter().map(ToString::to_string).collect(),
            })
        }
        Err(e) => {
            task.failed("some VMs remain");
            Err(e.into())
        }
    }
}
