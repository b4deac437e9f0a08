//! `cargo xtask bench`: the fleet lifecycle on a simulator slowed down to
//! vCenter-like speeds.
//!
//! vcsim answers in microseconds; a vCenter takes seconds. The simulator is
//! started with per-method delays scaled down from a real vCenter (clone
//! 1 s, power-on 0.3 s, destroy 0.2 s) and the guest agent reports each
//! VM's address 2 s after power-on. One instance then needs about
//! 1 + 0.3 + 2 + 0.2 = 3.5 s of vCenter time at best; with every lane in
//! parallel, N instances need about as long as one.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use vmw_cloud::{CloudBuilder, KeyPair, LaunchOptions, Settings};
use vmw_govc::GovcExt;
use vmw_govc::requests::About;
use vmw_testbed::{AgentOptions, Vcsim, VcsimOptions};

const CLONE_MS: u32 = 1000;
const POWER_ON_MS: u32 = 300;
const DESTROY_MS: u32 = 200;
const IP_AFTER: Duration = Duration::from_secs(2);

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut count = 20usize;
    let mut sequential = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--count" => {
                count = it
                    .next()
                    .context("--count needs a number")?
                    .parse()
                    .context("--count needs a number")?;
            }
            "--sequential" => sequential = true,
            other => bail!("unknown bench option {other:?}"),
        }
    }
    crate::govmomi_tools(false)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        println!(
            "vcsim delays: clone {CLONE_MS} ms, power-on {POWER_ON_MS} ms, destroy {DESTROY_MS} ms; \
             address reported {} ms after power-on",
            IP_AFTER.as_millis()
        );
        println!(
            "one instance needs at least {:.1} s of vCenter time (launch to IP, then delete)",
            f64::from(CLONE_MS + POWER_ON_MS + DESTROY_MS) / 1000.0 + IP_AFTER.as_secs_f64()
        );
        let parallel = fleet(count, count).await?;
        report(&format!("{count} instances, {count} lanes"), parallel);
        if sequential {
            let one = fleet(count, 1).await?;
            report(&format!("{count} instances, 1 lane (sequential)"), one);
        }
        Ok(())
    })
}

fn report(what: &str, (launch, clean): (Duration, Duration)) {
    println!(
        "{what}: launch_many to IP {:.2} s + clean {:.2} s = {:.2} s",
        launch.as_secs_f64(),
        clean.as_secs_f64(),
        (launch + clean).as_secs_f64()
    );
}

/// Launches `count` instances to IP with `lanes` at a time, then cleans;
/// returns the two durations.
async fn fleet(count: usize, lanes: usize) -> Result<(Duration, Duration)> {
    let sim = Vcsim::start_with(
        VcsimOptions::new()
            .method_delay("CloneVM_Task", CLONE_MS)
            .method_delay("PowerOnVM_Task", POWER_ON_MS)
            .method_delay("Destroy_Task", DESTROY_MS),
    )
    .await?;
    let _agent = sim.guest_agent(AgentOptions {
        delay: IP_AFTER,
        poll: Duration::from_millis(50),
        name_prefix: Some("bench-".into()),
        ..AgentOptions::default()
    });
    let keys = tempfile::tempdir()?;
    let key_dir = camino::Utf8Path::from_path(keys.path()).context("temp dir is not UTF-8")?;
    let cloud = CloudBuilder::new("bench")
        .timestamp(false)
        .config(sim.config())
        .key_pair(KeyPair::generated_in(key_dir, "bench".into())?)
        .settings(Settings {
            concurrency: lanes,
            ip_wait: Duration::from_secs(120),
            ip_poll: Duration::from_millis(100),
            ..Settings::default()
        })
        .build_with(sim.govc())?;
    // Log in once, as a long-running user of the library would have.
    sim.govc().exec(&About).await?;

    let started = Instant::now();
    let fleet = cloud
        .launch_many(
            "TEMPLATE-cloud-init-jammy",
            count,
            &LaunchOptions::wait_for_ip(),
        )
        .await?;
    let launched = started.elapsed();
    if let Some((i, e)) = fleet.failures.first() {
        bail!("launch {i} failed: {e}");
    }
    let started = Instant::now();
    cloud.clean().await?;
    Ok((launched, started.elapsed()))
}
