//! `vmw checkpoint create|revert|list|delete`: snapshots of an instance's
//! disks (the library checks vmw's marker before each change).

use std::fmt;

use serde::Serialize;
use vmw_cloud::Checkpoint;

use crate::cli::CheckpointCommand;
use crate::context::Context;
use crate::output::{Report, or_dash, table_of};

/// A checkpoint as printed.
#[derive(Debug, Serialize)]
struct Shown {
    instance: String,
    id: String,
    name: String,
    created: Option<String>,
    current: bool,
}

impl Shown {
    fn new(instance: &str, c: Checkpoint) -> Self {
        Self {
            instance: instance.to_owned(),
            id: c.id,
            name: c.name,
            created: c.created,
            current: c.current,
        }
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}", self.name, self.id)
    }
}

/// The checkpoints of an instance, as a table.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Listing(Vec<Shown>);

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&table_of(
            &["NAME", "ID", "CREATED", "CURRENT"],
            &self.0,
            |c| {
                vec![
                    c.name.clone(),
                    c.id.clone(),
                    or_dash(c.created.as_ref()),
                    if c.current { "*" } else { "" }.to_owned(),
                ]
            },
        ))
    }
}

#[derive(Debug, Serialize)]
struct Removed {
    instance: String,
    checkpoint: String,
    result: &'static str,
}

impl fmt::Display for Removed {
    /// Nothing on stdout: the removal is logged.
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// Runs `vmw checkpoint ...`.
pub(super) async fn run(ctx: &Context, command: CheckpointCommand) -> anyhow::Result<Report> {
    let cloud = ctx.cloud(None).await?;
    match command {
        CheckpointCommand::Create { name, checkpoint } => {
            let instance = super::instance(&cloud, &name).await?;
            let c = instance.checkpoint(&checkpoint).await?;
            tracing::info!("{name}: checkpoint {} ({}) taken", c.name, c.id);
            Report::of(&Shown::new(&name, c))
        }
        CheckpointCommand::Revert { name, checkpoint } => {
            let instance = super::instance(&cloud, &name).await?;
            let c = instance.revert(&checkpoint).await?;
            tracing::info!("{name}: back to checkpoint {} ({})", c.name, c.id);
            Report::of(&Shown::new(&name, c))
        }
        CheckpointCommand::List { name } => {
            let instance = super::instance(&cloud, &name).await?;
            let all = instance.checkpoints().await?;
            if all.is_empty() && !ctx.out.json() {
                tracing::info!("{name} has no checkpoints");
            }
            Report::of(&Listing(
                all.into_iter().map(|c| Shown::new(&name, c)).collect(),
            ))
        }
        CheckpointCommand::Delete { name, checkpoint } => {
            let instance = super::instance(&cloud, &name).await?;
            let result =
                super::delete::removal_word(instance.delete_checkpoint(&checkpoint).await?);
            tracing::info!("{name}: checkpoint {checkpoint}: {result}");
            Report::of(&Removed {
                instance: name,
                checkpoint,
                result,
            })
        }
    }
}
