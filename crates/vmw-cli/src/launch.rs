//! `vmw launch`: one lane per instance (clone and power on, then the waits
//! asked for), with progress, and a rollback of everything half made when
//! Ctrl-C comes.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};
use vmw_cloud::{Cloud, CloudError, Instance, LaunchOptions, Step, StepHook, WaitStage};
use vmw_govc::ProcessGovc;

use crate::cli::LaunchArgs;
use crate::context::Context;
use crate::error::{CliError, EXIT_INTERRUPTED};
use crate::output;
use crate::progress::{Counter, Task};

/// How long an interrupted launch waits for clones that vCenter may still
/// finish after govc was stopped, to remove them too.
const INTERRUPTED_CLONE_GRACE: Duration = Duration::from_secs(20);

/// One launched instance, as printed.
#[derive(Debug, Serialize)]
struct Launched {
    name: String,
    ip: Option<IpAddr>,
    image: String,
    tag: String,
}

/// Names of the VMs whose clone call is under way.
type InFlight = Arc<Mutex<BTreeSet<String>>>;

fn in_flight(set: &InFlight) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
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

/// Runs `vmw launch`.
pub(crate) async fn run(ctx: &Context, args: LaunchArgs) -> anyhow::Result<ExitCode> {
    let wait = args.wait_stage();
    let user_data = read_user_data(args.user_data.as_deref())?;
    let options = LaunchOptions {
        user_data,
        wait: WaitStage::None,
        cpus: args.cpus,
        memory_mb: args.memory,
        extra_config: args.extra_config.clone(),
        linked_clone: args.linked,
        ..LaunchOptions::default()
    };
    // Bad options are usage errors, found before anything is touched.
    options.hardware()?;
    options.check_extra_config()?;

    let cloud = ctx.cloud(args.wait_timeout).await?;
    let image = match (&args.release, &args.image) {
        (Some(release), _) => cloud.released_image(release).await?.name,
        (None, Some(image)) => image.clone(),
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
    let count = args.count as usize;
    let names: Vec<String> = (1..=count)
        .map(|n| format!("{}-{n}", cloud.tag()))
        .collect();
    let concurrency = vmw_cloud::Settings::default().concurrency;
    let flight: InFlight = Arc::default();
    let counter = Counter::new("launching", count as u64);
    tracing::info!(
        "launching {count} instance(s) of {image} with tag {}",
        cloud.tag()
    );

    // Listen before anything is made, so no Ctrl-C is missed.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let lanes = names.iter().map(|name| {
        let options = LaunchOptions {
            name: Some(name.clone()),
            ..options.clone()
        };
        lane(
            cloud.clone(),
            image.clone(),
            options,
            wait,
            flight.clone(),
            counter.clone(),
        )
    });
    let mut all = Box::pin(
        futures_util::stream::iter(lanes)
            .buffered(concurrency)
            .collect::<Vec<_>>(),
    );
    let results = tokio::select! {
        results = &mut all => results,
        _ = interrupt.recv() => {
            // Dropping the lanes kills their govc processes.
            drop(all);
            return interrupted(&cloud, &flight, &mut interrupt).await;
        }
    };
    counter.finish();

    let mut launched = Vec::new();
    let mut failures = Vec::new();
    for (name, result) in names.iter().zip(results) {
        match result {
            Ok(l) => launched.push(l),
            Err(e) => failures.push((name.clone(), e)),
        }
    }
    if ctx.global.json {
        output::json(&launched)?;
    } else {
        let mut text = String::new();
        for l in &launched {
            let ip = l.ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
            text.push_str(&format!("{} {ip}\n", l.name));
        }
        output::print(&text)?;
    }
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // Every lane failed the same way before touching a VM: one error.
    if launched.is_empty() && failures.iter().all(|(_, e)| e.step().is_none()) {
        if let Some((_, e)) = failures.into_iter().next() {
            return Err(e.into());
        }
        return Ok(ExitCode::FAILURE);
    }
    let total = failures.len();
    for (name, e) in failures {
        crate::error::report(&anyhow::Error::new(e).context(format!("launching {name} failed")));
    }
    Err(CliError::failed(
        format!("{total} of {count} instance(s) failed to launch"),
        (!launched.is_empty()).then(|| {
            "the instances printed above are running; `vmw delete NAME` or `vmw clean` removes them"
                .to_owned()
        }),
    )
    .into())
}

/// One instance: clone, configure and power on (rolled back by the library
/// on failure), then the waits, rolled back here on failure.
async fn lane(
    cloud: Cloud<ProcessGovc>,
    image: String,
    options: LaunchOptions,
    wait: WaitStage,
    flight: InFlight,
    counter: Counter,
) -> Result<Launched, CloudError> {
    let name = options.name.clone().unwrap_or_default();
    let task = Task::new(&name);
    let started = Instant::now();
    let result = async {
        let hook_task = task.clone();
        let source = image.clone();
        let options = LaunchOptions {
            on_step: Some(StepHook::new(move |_, step| {
                hook_task.step(&match step {
                    Step::Clone => format!("cloning {source}"),
                    Step::WriteGuestinfo | Step::Configure => {
                        "setting guestinfo and extraConfig".to_owned()
                    }
                    Step::PowerOn => "powering on".to_owned(),
                    other => other.to_string(),
                });
            })),
            ..options
        };
        in_flight(&flight).insert(name.clone());
        let launched = cloud.launch(&image, &options).await;
        in_flight(&flight).remove(&name);
        let instance = launched?;
        let mut ip = None;
        if wait >= WaitStage::Ip {
            task.step("waiting for an IP address");
            ip = Some(guarded(&instance, Step::WaitIp, instance.ip()).await?);
        }
        if wait >= WaitStage::Ssh {
            task.step(&format!(
                "waiting for SSH at {}",
                ip.map(|i| i.to_string()).unwrap_or_default()
            ));
            guarded(&instance, Step::WaitSsh, instance.wait_for(WaitStage::Ssh)).await?;
        }
        if wait >= WaitStage::Ready {
            task.step("waiting for cloud-init to finish");
            guarded(
                &instance,
                Step::WaitReady,
                instance.wait_for(WaitStage::Ready),
            )
            .await?;
        }
        Ok::<_, CloudError>(Launched {
            name: name.clone(),
            ip,
            image: image.clone(),
            tag: cloud.tag().to_string(),
        })
    }
    .await;
    counter.inc();
    match &result {
        Ok(l) => {
            let at = l.ip.map(|ip| format!(" at {ip}")).unwrap_or_default();
            let what = match wait {
                WaitStage::None => "powered on",
                WaitStage::Ip => "has an address",
                WaitStage::Ssh => "answers over SSH",
                WaitStage::Ready => "ready",
            };
            task.done(&format!("{what}{at} ({:.1?})", started.elapsed()));
        }
        Err(e) => task.failed(
            &e.step()
                .map_or_else(|| "not launched".to_owned(), |s| format!("at step \"{s}\"")),
        ),
    }
    result
}

/// Runs a wait of a launched instance; when it fails, the instance is
/// deleted and the error names the step, as the library does for the
/// steps before.
async fn guarded<T>(
    instance: &Instance<ProcessGovc>,
    step: Step,
    wait: impl Future<Output = Result<T, CloudError>>,
) -> Result<T, CloudError> {
    match wait.await {
        Ok(v) => Ok(v),
        Err(source) => {
            let rollback = instance.delete().await.err().map(Box::new);
            Err(CloudError::Step {
                vm: instance.name().to_owned(),
                step,
                source: Box::new(source),
                removed: rollback.is_none(),
                rollback,
            })
        }
    }
}

/// After Ctrl-C: removes every VM the launch made, waits a little for
/// clones vCenter may still finish, and exits 130. A second Ctrl-C stops
/// the cleanup.
async fn interrupted(
    cloud: &Cloud<ProcessGovc>,
    flight: &InFlight,
    interrupt: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<ExitCode> {
    let tracked: BTreeSet<String> = cloud.tracked_instances().into_iter().collect();
    let pending: BTreeSet<String> = in_flight(flight)
        .iter()
        .filter(|n| !tracked.contains(*n))
        .cloned()
        .collect();
    crate::progress::suspend(|| {
        eprintln!(
            "interrupted: removing what this launch made ({} instance(s){}); Ctrl-C again to stop",
            tracked.len(),
            if pending.is_empty() {
                String::new()
            } else {
                format!(", and {} clone(s) under way", pending.len())
            }
        );
    });
    let cleanup = async {
        let mut problems = Vec::new();
        if let Err(e) = cloud.clean().await {
            problems.push(e.to_string());
        }
        let leftover = remove_pending_clones(cloud, pending).await;
        (problems, leftover)
    };
    let (problems, leftover) = tokio::select! {
        r = cleanup => r,
        _ = interrupt.recv() => {
            return Err(CliError {
                message: "interrupted twice: the cleanup was stopped".to_owned(),
                hint: Some(format!("`vmw clean --tag {}` removes what is left", cloud.tag())),
                code: EXIT_INTERRUPTED,
            }.into());
        }
    };
    let mut message = "interrupted; the launch was rolled back".to_owned();
    let mut hint = None;
    if !problems.is_empty() || !leftover.is_empty() {
        message = "interrupted; the launch was not fully rolled back".to_owned();
        for p in &problems {
            message.push('\n');
            message.push_str(p);
        }
        if !leftover.is_empty() {
            message.push_str(&format!(
                "\nclone(s) may still finish on the vCenter: {}",
                leftover.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        hint = Some(format!(
            "`vmw clean --tag {} --no-timestamp` removes what is left (the VMs carry vmw's annotation)",
            cloud.tag()
        ));
    }
    Err(CliError {
        message,
        hint,
        code: EXIT_INTERRUPTED,
    }
    .into())
}

/// Clones whose govc call was stopped may still be completed by vCenter:
/// waits for them to appear (for a while) and removes them. Returns those
/// that never appeared.
async fn remove_pending_clones(
    cloud: &Cloud<ProcessGovc>,
    mut pending: BTreeSet<String>,
) -> BTreeSet<String> {
    let started = Instant::now();
    while !pending.is_empty() && started.elapsed() < INTERRUPTED_CLONE_GRACE {
        let mut removed = Vec::new();
        for name in &pending {
            match cloud.get_instance(name).await {
                Ok(instance) => match instance.delete().await {
                    Ok(()) => {
                        tracing::info!("{name}: removed (its clone finished after the interrupt)");
                        removed.push(name.clone());
                    }
                    Err(e) => tracing::debug!("{name}: not removable yet: {e}"),
                },
                Err(CloudError::NoSuchVm { .. }) => {}
                Err(e) => tracing::debug!("{name}: {e}"),
            }
        }
        for name in removed {
            pending.remove(&name);
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    pending
}
