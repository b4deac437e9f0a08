//! `vmw start`, `vmw stop` and `vmw restart`: power operations on several
//! instances at once, with the library's waits.

use std::net::IpAddr;
use std::time::Duration;

use vmw_cloud::{PowerOff, Restart, StepHook, WaitStage};

use crate::context::Context;
use crate::output::{Report, or_dash};

/// Runs `vmw start NAME...`: powers on, then waits until `wait`.
pub(super) async fn start(
    ctx: &Context,
    names: Vec<String>,
    wait: WaitStage,
) -> anyhow::Result<Report> {
    cycle(ctx, names, wait, None, Cycle::Start).await
}

/// Runs `vmw stop NAME... [--graceful [--timeout DUR]]`.
pub(super) async fn stop(
    ctx: &Context,
    names: Vec<String>,
    graceful: Option<Duration>,
) -> anyhow::Result<Report> {
    let cloud = ctx.cloud(None).await?;
    let results = super::at_most(cloud.settings().concurrency, names.iter(), |name| {
        let cloud = cloud.clone();
        async move {
            let instance = super::instance(&cloud, name).await?;
            let how = match graceful {
                Some(timeout) => instance.shutdown_guest(timeout).await?,
                None => {
                    instance.power_off().await?;
                    PowerOff::Forced
                }
            };
            Ok::<_, anyhow::Error>(how)
        }
    })
    .await;
    super::each(names, results, "power off", |name, how| {
        let result = match (graceful, how) {
            (Some(_), PowerOff::Graceful) => "off (the guest shut down)",
            (Some(_), PowerOff::Forced) => "off (powered off hard)",
            (_, PowerOff::AlreadyOff) => "off (already)",
            (None, _) => "off",
        };
        tracing::info!("{name}: {result}");
        ("off".to_owned(), String::new())
    })
}

/// Runs `vmw restart NAME...`: a power cycle, then the wait asked for.
pub(super) async fn restart(
    ctx: &Context,
    names: Vec<String>,
    wait: WaitStage,
    wait_timeout: Option<Duration>,
    graceful: Option<Duration>,
) -> anyhow::Result<Report> {
    let cycle_kind = match graceful {
        Some(timeout) => Cycle::Reboot(timeout),
        None => Cycle::Restart,
    };
    cycle(ctx, names, wait, wait_timeout, cycle_kind).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cycle {
    Start,
    Restart,
    /// A guest reboot, hard after this long.
    Reboot(Duration),
}

async fn cycle(
    ctx: &Context,
    names: Vec<String>,
    wait: WaitStage,
    wait_timeout: Option<Duration>,
    cycle: Cycle,
) -> anyhow::Result<Report> {
    let cloud = ctx.cloud(wait_timeout).await?;
    let results = super::at_most(cloud.settings().concurrency, names.iter(), |name| {
        let cloud = cloud.clone();
        async move {
            let instance = super::instance(&cloud, name).await?;
            let task = ctx.out.task(name.as_str());
            let hook = {
                let task = task.clone();
                StepHook::new(move |_, step| task.library_step(step))
            };
            let instance = instance.with_progress(hook);
            let done = match cycle {
                Cycle::Start => match instance.power_on().await {
                    Ok(()) => instance.wait_until(wait).await,
                    Err(e) => Err(e),
                },
                Cycle::Restart => instance.restart(Restart::PowerCycle, wait).await,
                Cycle::Reboot(timeout) => {
                    task.step("asking the guest to reboot");
                    instance.restart(Restart::Guest { timeout }, wait).await
                }
            };
            match &done {
                Ok(_) => task.done(match cycle {
                    Cycle::Start => "on",
                    _ => "restarted",
                }),
                Err(_) => task.failed(match cycle {
                    Cycle::Start => "start",
                    _ => "restart",
                }),
            }
            Ok::<Option<IpAddr>, anyhow::Error>(done?)
        }
    })
    .await;
    let (what, word) = match cycle {
        Cycle::Start => ("power on", "on"),
        _ => ("restart", "restarted"),
    };
    super::each(names, results, what, |name, ip| {
        let line = match cycle {
            // `start` prints nothing unless it waited for an address.
            Cycle::Start if wait == WaitStage::None => String::new(),
            _ => format!("{name} {}", or_dash(ip)),
        };
        (word.to_owned(), line)
    })
}
