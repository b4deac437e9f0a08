//! The commands, one module each; [`run`] dispatches. Every command returns
//! a [`Report`], which [`crate::output::Output`] prints as text or JSON.

mod checkpoint;
mod clean;
mod completions;
mod config;
mod console;
mod copy;
mod delete;
mod exec;
mod image;
mod ip;
mod launch;
mod list;
mod man;
mod power;
mod snapshot;
mod ssh;

use vmw_cloud::{Cloud, CloudError, Instance, PowerState, ProcessGovc, VmRecord};

use crate::cli::{Command, ConfigCommand, ImageCommand};
use crate::context::Context;
use crate::error::CliError;
use crate::output::{Report, kind_word, power_word};

/// Runs the command of the command line.
pub(crate) async fn run(ctx: &Context, command: Command) -> anyhow::Result<Report> {
    match command {
        Command::Launch(args) => launch::run(ctx, args).await,
        Command::List { all_tags } => list::run(ctx, all_tags).await,
        Command::Ip { name } => ip::run(ctx, &name).await,
        Command::Start { names, wait } => power::start(ctx, names, wait.into()).await,
        Command::Stop {
            names,
            graceful,
            timeout,
        } => power::stop(ctx, names, graceful.then_some(timeout)).await,
        Command::Restart {
            names,
            wait,
            wait_timeout,
            graceful,
            timeout,
        } => {
            power::restart(
                ctx,
                names,
                wait.into(),
                wait_timeout,
                graceful.then_some(timeout),
            )
            .await
        }
        Command::Delete { names, force } => delete::run(ctx, names, force).await,
        Command::Exec {
            name,
            stdin,
            sudo,
            command,
        } => exec::run(ctx, &name, stdin, sudo, command).await,
        Command::Ssh { name, args } => ssh::run(ctx, &name, args).await,
        Command::Console { name, follow } => console::show(ctx, &name, follow).await,
        Command::Logs { name, dir } => console::logs(ctx, &name, &dir).await,
        Command::Push {
            name,
            local,
            remote,
        } => copy::push(ctx, &name, local, &remote).await,
        Command::Pull {
            name,
            remote,
            local,
        } => copy::pull(ctx, &name, &remote, local).await,
        Command::Snapshot { name, no_clean } => snapshot::run(ctx, &name, !no_clean).await,
        Command::Checkpoint(c) => checkpoint::run(ctx, c).await,
        Command::Image(ImageCommand::List { all_tags }) => image::list(ctx, all_tags).await,
        Command::Image(ImageCommand::Delete { name, force }) => {
            image::delete(ctx, &name, force).await
        }
        Command::Image(ImageCommand::Check { names, all }) => image::check(ctx, &names, all).await,
        Command::Image(ImageCommand::Import(args)) => image::import(ctx, args).await,
        Command::Clean {
            all_tags,
            yes,
            unmarked: false,
            ..
        } => clean::run(ctx, all_tags, yes).await,
        Command::Clean {
            all_tags,
            yes,
            unmarked: true,
            within,
        } => clean::unmarked(ctx, all_tags, yes, within).await,
        Command::Config(ConfigCommand::Check) => config::check(ctx).await,
        Command::Completions { shell } => completions::run(shell),
        Command::Man { out } => man::run(&out),
    }
}

/// The instance `name`; a VM that does not exist is an error saying how
/// to find the right name.
async fn instance(cloud: &Cloud<ProcessGovc>, name: &str) -> anyhow::Result<Instance<ProcessGovc>> {
    match cloud.get_instance(name).await {
        Ok(i) => Ok(i),
        Err(CloudError::NoSuchVm { .. }) => Err(CliError::failed(
            format!("no VM named {name:?} in {}", cloud.config().folder),
            Some("`vmw list` shows the VMs vmw made".to_owned()),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Fails early when the VM is off: waiting for its address is pointless.
async fn require_on(instance: &Instance<ProcessGovc>) -> anyhow::Result<()> {
    let state = instance.power_state().await?;
    if state == PowerState::On {
        Ok(())
    } else {
        Err(CliError::failed(
            format!("VM {} is {}", instance.name(), power_word(&state)),
            Some(format!("start it with `vmw start {}`", instance.name())),
        )
        .into())
    }
}

/// A usage error for a VM name or path that cannot be one.
fn bad_name(e: CloudError) -> CliError {
    CliError::usage(e.to_string(), None)
}

/// `f` of every item, at most `limit` at a time, the results in order.
async fn at_most<T, R, Fut>(
    limit: usize,
    items: impl IntoIterator<Item = T>,
    f: impl FnMut(T) -> Fut,
) -> Vec<R>
where
    Fut: std::future::Future<Output = R>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter(items)
        .map(f)
        .buffered(limit.max(1))
        .collect()
        .await
}

/// Which tags `list` and `clean` cover, in words.
fn describe_scope(ctx: &Context, all_tags: bool) -> String {
    if all_tags {
        "any tag".to_owned()
    } else if ctx.global.no_timestamp && ctx.global.tag.is_some() {
        format!("tag {}", ctx.base_tag())
    } else {
        format!("tag {} (and its timestamped forms)", ctx.base_tag())
    }
}

/// A VM vmw made, as `list` and `clean` print it.
#[derive(Debug, serde::Serialize)]
struct Vm {
    name: String,
    path: String,
    kind: &'static str,
    tag: String,
    power_state: String,
    /// A run killed outright left it.
    interrupted: bool,
}

impl From<&VmRecord> for Vm {
    fn from(r: &VmRecord) -> Self {
        Self {
            name: r.name.clone(),
            path: r.path.to_string(),
            kind: kind_word(r.kind),
            tag: r.tag.clone(),
            power_state: power_word(&r.power_state),
            interrupted: r.interrupted,
        }
    }
}

impl Vm {
    /// The cells of a table row: NAME, KIND, TAG, STATE (with
    /// `interrupted` after the state of what a killed run left).
    fn row(&self) -> Vec<String> {
        let state = if self.interrupted {
            format!("{} (interrupted)", self.power_state)
        } else {
            self.power_state.clone()
        };
        vec![
            self.name.clone(),
            self.kind.to_owned(),
            self.tag.clone(),
            state,
        ]
    }
}

/// What happened to one VM of a multi-VM command.
#[derive(Debug, serde::Serialize)]
struct Outcome {
    name: String,
    result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// What the text output shows for it (nothing when empty).
    #[serde(skip)]
    line: String,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line.is_empty() {
            Ok(())
        } else {
            writeln!(f, "{}", self.line)
        }
    }
}

/// The report of a command run on several VMs: one outcome per name (`ok`
/// says what a success was, and the line printed for it), each failure
/// reported, and a failure overall when one failed. `what` names the
/// operation in error messages.
fn each<T, E: Into<anyhow::Error>>(
    names: Vec<String>,
    results: Vec<Result<T, E>>,
    what: &str,
    mut ok: impl FnMut(&str, T) -> (String, String),
) -> anyhow::Result<Report> {
    let mut outcomes = Vec::new();
    let mut errors = Vec::new();
    for (name, r) in names.into_iter().zip(results) {
        match r {
            Ok(v) => {
                let (result, line) = ok(&name, v);
                outcomes.push(Outcome {
                    name,
                    result,
                    error: None,
                    line,
                });
            }
            Err(e) => {
                let e: anyhow::Error = e.into();
                outcomes.push(Outcome {
                    name: name.clone(),
                    result: "failed".to_owned(),
                    error: Some(e.to_string()),
                    line: String::new(),
                });
                errors.push(e.context(format!("{name}: {what} failed")));
            }
        }
    }
    let (failed, total) = (errors.len(), outcomes.len());
    let report = Report::of(&crate::output::Lines(outcomes))?.failures(errors);
    Ok(if failed == 0 {
        report
    } else {
        report.fail(CliError::failed(
            format!("{failed} of {total} failed"),
            None,
        ))
    })
}
