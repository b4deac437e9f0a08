//! `vmw launch`: the library's fleet launch (one lane per instance: clone,
//! configure, power on, the waits asked for, and a rollback of whatever
//! fails), with progress, and signals mapped to the library's
//! cancellation.
//!
//! SIGINT, SIGTERM and SIGHUP cancel the launch: every lane removes what it
//! made, and clones under way are awaited (for `--clone-grace`) and removed
//! too. A second signal stops waiting: what is left is listed, with the
//! command that removes it.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use vmw_cloud::ProcessGovc;
use vmw_cloud::{Cloud, CloudError, LaunchOptions, StepHook, WaitStage};

use crate::cli::LaunchArgs;
use crate::context::Context;
use crate::error::CliError;
use crate::output::{Lines, Output, Report, or_dash};
use crate::progress::Task;
use crate::signals::Stops;

/// One launched instance, as printed.
#[derive(Debug, Serialize)]
struct Launched {
    name: String,
    path: String,
    ip: Option<IpAddr>,
    /// The image's name.
    image: String,
    /// The image's inventory path.
    image_path: String,
    tag: String,
}

impl fmt::Display for Launched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}", self.name, or_dash(self.ip))
    }
}

/// Reads a file given for `what`.
fn read_file(path: &camino::Utf8Path, what: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| {
        CliError::usage(
            format!("cannot read the {what} file {path}: {e}"),
            Some("give a readable file".to_owned()),
        )
    })
}

/// Reads the user data: a file, or standard input for `-`.
fn read_user_data(arg: Option<&str>) -> Result<Option<Vec<u8>>, CliError> {
    let Some(arg) = arg else { return Ok(None) };
    if arg == "-" {
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data).map_err(|e| {
            CliError::usage(
                format!("cannot read user data from standard input: {e}"),
                None,
            )
        })?;
        return Ok(Some(data));
    }
    std::fs::read(arg).map(Some).map_err(|e| {
        CliError::usage(
            format!("cannot read the user data file {arg}: {e}"),
            Some("give a readable file, or - for standard input".to_owned()),
        )
    })
}

/// Progress spinners by VM name, made as the library names the VMs.
#[derive(Clone)]
struct Tasks {
    out: Output,
    tasks: Arc<Mutex<HashMap<String, Arc<Task>>>>,
}

impl Tasks {
    fn new(out: &Output) -> Self {
        Self {
            out: out.clone(),
            tasks: Arc::default(),
        }
    }

    fn get(&self, name: &str) -> Arc<Task> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(self.out.task(name)))
            .clone()
    }

    fn take(&self, name: &str) -> Option<Arc<Task>> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    fn rest(&self) -> Vec<Arc<Task>> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, t)| t)
            .collect()
    }
}

/// Runs `vmw launch`.
pub(super) async fn run(ctx: &Context, args: LaunchArgs) -> anyhow::Result<Report> {
    let wait = args.wait_stage();
    let user_data = read_user_data(args.user_data.as_deref())?;
    let vendor_data = match &args.vendor_data {
        Some(path) => Some(read_file(path, "vendor data")?),
        None => None,
    };
    let metadata = match &args.metadata {
        Some(path) => {
            let text = String::from_utf8(read_file(path, "metadata")?).map_err(|_| {
                CliError::usage(format!("the metadata file {path} is not UTF-8 text"), None)
            })?;
            Some(LaunchOptions::metadata_from_yaml(&text, path.as_str())?)
        }
        None => None,
    };
    let cancel = CancellationToken::new();
    let tasks = Tasks::new(&ctx.out);
    let count = args.count as usize;
    let hook_tasks = tasks.clone();
    let options = LaunchOptions {
        user_data,
        vendor_data,
        metadata,
        wait,
        name: args.name.clone(),
        instance_type: args.instance_type.as_deref().map(str::parse).transpose()?,
        cpus: args.cpus,
        memory_mb: args.memory,
        network: args.network.clone(),
        disk_gib: args.disk_size,
        console_log: match (args.console, args.no_console) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        ip_timeout: args.ip_timeout,
        ready_timeout: args.ready_timeout,
        keep_on_failure: args.keep_on_failure.clone(),
        concurrency: ctx.global.concurrency.map(|n| n as usize),
        extra_config: args.extra_config.clone(),
        linked_clone: args.linked,
        on_step: Some(StepHook::new(move |name, step| {
            hook_tasks.get(name).library_step(step);
        })),
    };
    // Bad options are usage errors, found before anything is touched.
    options.hardware()?;
    options.check_extra_config()?;
    options.check_values()?;

    // Listen before anything is made, so no signal is missed.
    let mut stops = Stops::listen()?;
    let mut settings = ctx.settings(args.wait_timeout);
    if let Some(grace) = args.clone_grace {
        settings.clone_grace = grace;
    }
    let cloud = ctx.cloud_with(settings).await?;
    let image = match (&args.release, &args.image) {
        (Some(release), _) => cloud.released_image(release).await?,
        (None, Some(image)) => cloud.image(image).map_err(super::bad_name)?,
        (None, None) => {
            return Err(CliError::usage(
                "give --release or --image",
                Some(format!(
                    "releases with a template: {}",
                    cloud.releases().await?.join(", ")
                )),
            )
            .into());
        }
    };
    tracing::info!(
        "launching {count} instance(s) of {image} with tag {}",
        cloud.tag()
    );

    let cancellable = cloud.cancel_on(&cancel);
    let launch = cancellable.launch_many(&image, count, &options);
    tokio::pin!(launch);
    let mut signalled = None;
    let fleet = loop {
        tokio::select! {
            fleet = &mut launch => break fleet?,
            (code, name) = stops.next() => {
                if signalled.is_some() {
                    // A second signal: stop waiting for the rollback.
                    return Err(left_behind(&cloud, code, name).into());
                }
                ctx.out.note(&format!(
                    "{name}: removing what this launch made (clones under way are awaited first); send it again to stop waiting\n"
                ));
                cancel.cancel();
                signalled = Some((code, name));
            }
        }
    };

    let mut launched = Vec::new();
    for instance in &fleet.instances {
        if let Some(task) = tasks.take(instance.name()) {
            let what = match wait {
                WaitStage::None => "powered on",
                WaitStage::Ip => "has an address",
                WaitStage::Ssh => "answers over SSH",
                WaitStage::Ready => "ready",
            };
            let at = instance
                .cached_ip()
                .map(|ip| format!(" at {ip}"))
                .unwrap_or_default();
            task.done(&format!("{what}{at}"));
        }
        launched.push(Launched {
            name: instance.name().to_owned(),
            path: instance.vm().to_string(),
            ip: instance.cached_ip(),
            image: image.name().to_owned(),
            image_path: image.path().to_string(),
            tag: cloud.tag().to_string(),
        });
    }
    for (_, e) in &fleet.failures {
        if let CloudError::Step { vm, step, .. } | CloudError::Kept { vm, step, .. } = e {
            let name = vm.rsplit('/').next().unwrap_or(vm);
            if let Some(task) = tasks.take(name) {
                task.failed(&format!("at step \"{step}\""));
            }
        }
    }
    for task in tasks.rest() {
        task.failed("name taken meanwhile; moved on to the next number");
    }

    let printed = launched.len();
    let report = Report::of(&Lines(launched))?;
    if let Some((code, name)) = signalled {
        return Ok(report.fail(interrupted(&cloud, &fleet.failures, code, name)));
    }
    if fleet.failures.is_empty() {
        return Ok(report);
    }
    // Every lane failed the same way before touching a VM: one error.
    let failures = fleet.failures;
    if printed == 0 && failures.iter().all(|(_, e)| e.step().is_none()) {
        if let Some((_, e)) = failures.into_iter().next() {
            return Ok(report.fail(e));
        }
        return Ok(report.fail(CliError::silent(crate::error::EXIT_FAILED)));
    }
    let total = failures.len();
    let errors = failures
        .into_iter()
        .map(|(i, e)| anyhow::Error::new(e).context(format!("launching instance {} failed", i + 1)))
        .collect();
    Ok(report.failures(errors).fail(CliError::failed(
        format!("{total} of {count} instance(s) failed to launch"),
        (printed > 0).then(|| {
            "the instances printed above are running; `vmw delete NAME` or `vmw clean` removes them"
                .to_owned()
        }),
    )))
}

/// After a signal, once the library's rollback finished: the launch was
/// rolled back, or what could not be removed is named.
fn interrupted(
    cloud: &Cloud<ProcessGovc>,
    failures: &[(usize, CloudError)],
    code: u8,
    signal: &str,
) -> CliError {
    let mut problems: Vec<String> = failures
        .iter()
        .filter_map(|(_, e)| match e {
            CloudError::Step {
                rollback: Some(r),
                vm,
                ..
            } => Some(format!("{vm}: {r}")),
            _ => None,
        })
        .collect();
    let left = may_be_left(cloud);
    if problems.is_empty() && left.is_empty() {
        return CliError {
            message: format!("interrupted ({signal}): the launch was stopped and rolled back"),
            hint: None,
            code,
        };
    }
    problems.extend(left.iter().map(|vm| format!("{vm} may be left")));
    CliError {
        message: format!(
            "interrupted ({signal}): the launch was stopped but not fully rolled back:\n{}",
            problems.join("\n")
        ),
        hint: Some(clean_hint(cloud)),
        code,
    }
}

/// After a second signal: the rollback was not waited for; names what may
/// be left.
fn left_behind(cloud: &Cloud<ProcessGovc>, code: u8, signal: &str) -> CliError {
    let left = may_be_left(cloud);
    CliError {
        message: format!(
            "interrupted ({signal} again): stopped waiting for the rollback; {}",
            if left.is_empty() {
                "nothing of this launch is known to be left".to_owned()
            } else {
                format!("these may be left:\n{}", left.join("\n"))
            }
        ),
        hint: Some(clean_hint(cloud)),
        code,
    }
}

/// The VMs of this launch still tracked: they may be left on the vCenter.
fn may_be_left(cloud: &Cloud<ProcessGovc>) -> Vec<String> {
    cloud
        .tracked_instances()
        .iter()
        .chain(cloud.tracked_images().iter())
        .map(ToString::to_string)
        .collect()
}

/// How to remove what a stopped launch left.
fn clean_hint(cloud: &Cloud<ProcessGovc>) -> String {
    format!(
        "`vmw clean --tag {} --no-timestamp --yes` removes what is left (the VMs carry vmw's marker)",
        cloud.tag()
    )
}
