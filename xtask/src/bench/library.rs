//! The library measured in a process of its own (`cargo xtask
//! bench-library`): a [`vmw_cloud::Cloud`] built from the config file
//! launches N instances to an address with `launch_many`, then `clean`
//! removes them. Prints the two durations as JSON.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use camino::Utf8Path;
use vmw_cloud::{CloudBuilder, KeyPair, LaunchOptions, Scope, Settings};

/// `args`: `CONFIG GOVC IMAGE COUNT LANES [K=V]` (an extraConfig entry
/// for every launch).
pub(crate) fn run(args: &[String]) -> Result<()> {
    let (config, govc, image, count, lanes, extra) = match args {
        [c, g, i, n, l] => (c, g, i, n, l, None),
        [c, g, i, n, l, e] => (c, g, i, n, l, Some(e)),
        _ => bail!("usage: xtask bench-library CONFIG GOVC IMAGE COUNT LANES [K=V]"),
    };
    let extra_config: Vec<(String, String)> = extra
        .and_then(|e| e.split_once('='))
        .map(|(k, v)| vec![(k.to_owned(), v.to_owned())])
        .unwrap_or_default();
    let count: usize = count.parse().context("COUNT")?;
    let lanes: usize = lanes.parse().context("LANES")?;
    let config = vmw_config::Loader::new()
        .file(Utf8Path::new(config))
        .load()?
        .config;
    let keys = tempfile::tempdir()?;
    let key_dir = Utf8Path::from_path(keys.path()).context("temp dir is not UTF-8")?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // Tagged as by default: timestamped now.
        let cloud = CloudBuilder::new(format!("{}lib", super::agent::PREFIX))
            .config(config)
            .govc_path(govc)
            .key_pair(KeyPair::generated_in(key_dir, "bench".into())?)
            .settings(Settings {
                concurrency: lanes,
                ..Settings::default()
            })
            .build()
            .await?;
        // A user of the library has logged in before: so has this one.
        cloud.list(&Scope::ThisTag).await?;
        let image = cloud.image(image)?;
        let started = Instant::now();
        let fleet = cloud
            .launch_many(
                &image,
                count,
                &LaunchOptions {
                    extra_config,
                    ..LaunchOptions::wait_for_ip()
                },
            )
            .await?;
        let launched = started.elapsed();
        if let Some((i, e)) = fleet.failures.first() {
            bail!("launch {i} failed: {e}");
        }
        let started = Instant::now();
        cloud.clean().await?;
        let cleaned = started.elapsed();
        println!(
            "{}",
            serde_json::json!({
                "launch": launched.as_secs_f64(),
                "delete": cleaned.as_secs_f64(),
            })
        );
        Ok(())
    })
}
