//! `cargo xtask vcsim [--real-guests [--release R]...]`: a local vSphere to
//! use by hand, until Ctrl-C.
//!
//! A seeded simulator ([`vmw_testbed::Vcsim`]); its `GOVC_*` variables
//! are printed for a shell, and a `pycloudlib.toml` naming it is written
//! to `target/vcsim/`. With `--real-guests`, each VM that powers on with
//! guestinfo boots a real Debian guest under QEMU
//! ([`vmw_testbed::RealGuests`]), whose cloud-init reads that guestinfo
//! through its VMware datasource: `TEMPLATE-cloud-init-<release>` for each
//! `--release` (trixie by default), the seeded templates (`focal`,
//! `jammy`) and `noble` booting the first one. The guests' SSH is on port
//! 2222 of their own loopback address, as the user `debian`; the
//! variables printed say so to vmw.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use camino::Utf8Path;
use vmw_testbed::{GuestImage, RealGuestOptions, RealGuests, Vcsim};

use crate::guest::Release;

/// A simulator whose VMs boot real guests.
pub(crate) struct Bed {
    pub(crate) sim: Vcsim,
    pub(crate) guests: RealGuests,
    pub(crate) ssh_port: u16,
}

/// The templates of a bed: `TEMPLATE-cloud-init-<release>` for each
/// release, and `noble` (pycloudlib's newest LTS).
fn template_names(releases: &[Release]) -> Vec<String> {
    let mut names: Vec<String> = releases
        .iter()
        .map(|r| format!("TEMPLATE-cloud-init-{r}"))
        .collect();
    names.push("TEMPLATE-cloud-init-noble".to_owned());
    names
}

/// A simulator with a template for each image given, named as pycloudlib
/// names them (`TEMPLATE-cloud-init-<release>`), whose VMs (and their
/// clones) boot that image; the simulator's other templates, and `noble`,
/// boot the first image.
pub(crate) async fn bed(images: &[(Release, &Utf8Path)]) -> Result<Bed> {
    let Some((_, first)) = images.first() else {
        bail!("a real-guest bed needs an image");
    };
    let sim = Vcsim::start().await?;
    let releases: Vec<Release> = images.iter().map(|(r, _)| *r).collect();
    let names = template_names(&releases);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    sim.add_templates(&names).await?;
    let mut options = RealGuestOptions::new(GuestImage::from_dir(first)?);
    for (release, dir) in images {
        options.images.insert(
            format!("TEMPLATE-cloud-init-{release}"),
            GuestImage::from_dir(dir)?,
        );
    }
    let ssh_port = options.ssh_port;
    let guests = RealGuests::start(sim.govc(), options)?;
    Ok(Bed {
        sim,
        guests,
        ssh_port,
    })
}

/// `cargo xtask vcsim [--real-guests [--release R]...]`.
pub(crate) fn task(args: &[String]) -> Result<()> {
    let mut real = false;
    let mut releases = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--real-guests" => real = true,
            "--release" => releases.push(
                it.next()
                    .context("--release needs bookworm or trixie")?
                    .parse::<Release>()?,
            ),
            other => bail!(
                "unknown vcsim option {other:?}\nusage: cargo xtask vcsim [--real-guests [--release R]...]"
            ),
        }
    }
    if !releases.is_empty() && !real {
        bail!("--release chooses the images of --real-guests");
    }
    if releases.is_empty() {
        releases.push(Release::default());
    }
    releases.dedup();
    crate::govmomi_tools(false)?;
    let images = if real {
        releases
            .iter()
            .map(|r| Ok((*r, crate::guest::for_real_guests(*r)?)))
            .collect::<Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    let out = crate::root().join("target").join("vcsim");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {out}"))?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (sim, bed) = if real {
            let dirs: Vec<(Release, &Utf8Path)> =
                images.iter().map(|(r, i)| (*r, i.dir())).collect();
            let bed = bed(&dirs).await?;
            (None, Some(bed))
        } else {
            (Some(Vcsim::start().await?), None)
        };
        let Some(sim) = sim.as_ref().or(bed.as_ref().map(|b| &b.sim)) else {
            bail!("no simulator started");
        };
        let config = sim.config();
        let config_file = sim.write_config(&out)?;
        println!("# vCenter simulator ready; paste into a shell, Ctrl-C here to stop:");
        let target =
            vmw_govc::GovcTarget::new(&config, Some(sim.session_dir()), &Default::default());
        for (k, v) in target.vars() {
            println!("export {k}='{v}'");
        }
        println!(
            "export {}='{}'",
            vmw_config::env::GOVC_PASSWORD,
            config.login().password.expose()
        );
        println!("export VMW_GOVC='{}'", sim.govc_path());
        println!("export PYCLOUDLIB_CONFIG='{config_file}'");
        if let Some(bed) = &bed {
            println!("export VMW_SSH_USER=debian VMW_SSH_PORT={}", bed.ssh_port);
            let names = template_names(&releases);
            println!(
                "# templates with real guests: {} (and the seeded focal and jammy, which boot {})",
                names.join(", "),
                releases[0]
            );
            println!(
                "# e.g. vmw launch --release {} --user-data FILE",
                releases[0]
            );
        }
        let watch = async {
            let mut shown = std::collections::BTreeMap::new();
            loop {
                if let Some(bed) = &bed {
                    for g in bed.guests.guests().into_iter().filter(|g| g.boots > 0) {
                        let now = (g.running, g.reported, g.boots);
                        if shown.get(&g.vm) != Some(&now) {
                            eprintln!(
                                "# {}: guest {} (boot {}){}; console {}",
                                g.vm,
                                if g.running { "running" } else { "stopped" },
                                g.boots,
                                if g.reported {
                                    format!(", SSH at {}:{}", g.address, bed.ssh_port)
                                } else {
                                    String::new()
                                },
                                g.console
                            );
                            shown.insert(g.vm.clone(), now);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            () = watch => {}
        }
        drop(bed);
        Ok(())
    })
}
