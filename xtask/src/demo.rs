//! `cargo xtask demo`: the main job of vmw, run with the real `vmw` binary
//! on a local vCenter simulator.
//!
//! Like `cargo xtask test`, it first makes sure of the tools it needs, as
//! `cargo xtask tools` installs them: govc and vcsim, and OpenSSH's server
//! for the SSH test peer (installed with apt-get when missing). Then it
//! builds `vmw`, starts a seeded vcsim, the guest-agent stand-in and a
//! local sshd with a cloud-init stand-in that plays the guests; writes a
//! `pycloudlib.toml` in a temporary directory (which is also HOME); then
//! runs `vmw config check`, a launch of 3 instances with a user-data file,
//! `list`, `exec cloud-init status --long`, `snapshot`, a launch from the
//! image, and `clean`. Each command and its output is printed, and a
//! summary of timings at the end. Any failed step fails the demo;
//! everything started is stopped on the way out.
//!
//! Only where the SSH test peer cannot be had does the demo go without it,
//! saying why: without root (sshd runs in a private mount namespace, and a
//! missing sshd cannot be installed either), or when apt-get fails to
//! install it. Launches then wait for the IP only and the `exec` step is
//! skipped.
//!
//! With `--real-guests`, real Debian guests under QEMU stand behind the VMs
//! ([`vmw_testbed::RealGuests`], the image of `cargo xtask guest-image`):
//! two instances are launched, `vmw exec NAME -- cloud-id` and
//! `vmw exec NAME -- systemd-detect-virt` must both print `vmware`, and the
//! SSH user is the image's (`debian`, through `VMW_SSH_USER`).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use vmw_testbed::{
    AgentOptions, CloudInitMode, GuestImage, RealGuestOptions, RealGuests, Sshd, Vcsim,
};

/// One step of the demo, as timed.
struct Timing {
    label: String,
    took: Duration,
}

/// What the `vmw` runs share: the binary, the directory and environment.
struct Runner {
    vmw: Utf8PathBuf,
    dir: Utf8PathBuf,
    env: Vec<(String, String)>,
    timings: Vec<Timing>,
}

impl Runner {
    /// Runs `vmw ARGS` in the demo directory, printing the command and its
    /// output; fails when it fails.
    async fn vmw(&mut self, label: &str, args: &[&str]) -> Result<String> {
        println!("\n$ vmw {}", args.join(" "));
        let started = Instant::now();
        let output = tokio::process::Command::new(&self.vmw)
            .args(args)
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("could not run {}", self.vmw))?;
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in stderr.lines() {
            println!("  | {line}");
        }
        print!("{stdout}");
        println!("  ({:.1?}, {})", took, output.status);
        self.timings.push(Timing {
            label: label.to_owned(),
            took,
        });
        if !output.status.success() {
            bail!(
                "step \"{label}\" failed: `vmw {}` exited with {}",
                args.join(" "),
                output.status
            );
        }
        Ok(stdout)
    }

    fn summary(&self, total: Duration) {
        println!("\nTimings:");
        let width = self
            .timings
            .iter()
            .map(|t| t.label.len())
            .max()
            .unwrap_or(0);
        for t in &self.timings {
            println!("  {:width$}  {:>8.2?}", t.label, t.took);
        }
        println!("  {:width$}  {:>8.2?}", "total (with set-up)", total);
    }
}

/// The first name of `launch` output (`NAME IP` lines).
fn first_name(launch_output: &str) -> Result<String> {
    launch_output
        .lines()
        .find_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .context("`vmw launch` printed no instance")
}

/// Makes the SSH test peer available, installing OpenSSH's server when it
/// is missing (as `cargo xtask tools` does); else why it cannot be.
fn ensure_ssh_peer() -> std::result::Result<(), String> {
    if !crate::is_root() {
        return Err(
            "it runs sshd in a private mount namespace, which needs root; run the demo as root"
                .to_owned(),
        );
    }
    crate::install_missing("the demo's SSH step", &[(SSHD, "openssh-server")])
        .map_err(|e| format!("installing OpenSSH's server failed: {e:#}"))?;
    eprintln!("xtask: sshd is installed");
    Ok(())
}

/// The OpenSSH server the SSH test peer runs.
const SSHD: &str = "/usr/sbin/sshd";

/// What plays the guests.
enum Guests {
    /// The address stand-in and, where possible, a local sshd.
    StandIn(Option<Sshd>),
    /// Real Debian guests under QEMU.
    Real(RealGuests),
}

/// The user data of the demo's launches. Real guests have no network, so
/// they get no package to install.
fn user_data(real: bool) -> &'static str {
    if real {
        "#cloud-config\nruncmd:\n  - echo 'launched by vmw' > /run/vmw-demo\n"
    } else {
        "#cloud-config\npackages: [hello]\nruncmd:\n  - echo 'launched by vmw' > /run/vmw-demo\n"
    }
}

/// Runs the demo, on real guests with `real_guests`.
pub(crate) fn run(real_guests: bool) -> Result<()> {
    let started = Instant::now();
    let tools = crate::govmomi_tools(false)?;
    let (image, ssh_peer) = if real_guests {
        let image = GuestImage::from_dir(
            crate::guest::for_real_guests(crate::guest::Release::default())?.dir(),
        )?;
        (Some(image), Ok(()))
    } else {
        (None, ensure_ssh_peer())
    };
    crate::run(crate::cargo().args(["build", "--quiet", "-p", "vmw-cli"]))?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|_| crate::root().join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        crate::root().join(target)
    };
    let vmw = target.join("debug").join("vmw");
    if !vmw.is_file() {
        bail!("`cargo build -p vmw-cli` left no binary at {vmw}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(demo(vmw, &tools.govc, image, ssh_peer, started))
}

/// The demo proper; `ssh_peer` says whether the SSH test peer can play the
/// guests (ignored with real guests), or why not.
async fn demo(
    vmw: Utf8PathBuf,
    govc: &Utf8Path,
    image: Option<GuestImage>,
    ssh_peer: std::result::Result<(), String>,
    started: Instant,
) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("vmw-demo-").tempdir()?;
    let dir = Utf8Path::from_path(tmp.path())
        .context("the temporary directory is not UTF-8")?
        .to_owned();
    let home = dir.join("home");
    std::fs::create_dir_all(&home)?;

    println!("Starting a vCenter simulator (vcsim), seeded with the templates...");
    let sim = Vcsim::start().await?;
    let (guests, _agent) = match image {
        Some(image) => {
            let options = RealGuestOptions::new(image);
            println!(
                "Guests: Debian under QEMU (software emulation), one per powered-on VM, \
                 their real cloud-init reading vmw's guestinfo; SSH on port {} of 127.0.0.N.",
                options.ssh_port
            );
            (Guests::Real(RealGuests::start(sim.govc(), options)?), None)
        }
        None => {
            let agent = sim.guest_agent(AgentOptions::default());
            if let Err(why) = &ssh_peer {
                println!(
                    "Guests: VMware Tools stand-in reports 127.0.0.1. Note: no SSH test peer here \
                     ({why}), so launches wait for the IP only and the `exec` step is skipped."
                );
                (Guests::StandIn(None), Some(agent))
            } else {
                let sshd = Sshd::start()?;
                // Guests take a moment to finish cloud-init, as real ones do.
                sshd.set_cloud_init(Duration::from_secs(1), CloudInitMode::Done)?;
                println!(
                    "Guests: VMware Tools stand-in reports 127.0.0.1; sshd on port {} plays their SSH, with a cloud-init stand-in.",
                    sshd.port()
                );
                (Guests::StandIn(Some(sshd)), Some(agent))
            }
        }
    };

    let config_file = sim.write_config(&dir)?;
    std::fs::write(
        dir.join("user-data.yaml"),
        user_data(matches!(guests, Guests::Real(_))),
    )?;
    println!("Working in {dir} (HOME too); config: {config_file}");

    let mut env = vec![
        ("HOME".to_owned(), home.to_string()),
        ("USER".to_owned(), "demo".to_owned()),
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
        ("PYCLOUDLIB_CONFIG".to_owned(), config_file.to_string()),
        ("VMW_GOVC".to_owned(), govc.to_string()),
    ];
    match &guests {
        Guests::StandIn(Some(sshd)) => {
            env.push(("VMW_SSH_USER".to_owned(), sshd.user()));
            env.push(("VMW_SSH_PORT".to_owned(), sshd.port().to_string()));
        }
        Guests::Real(_) => {
            env.push(("VMW_SSH_USER".to_owned(), "debian".to_owned()));
            env.push((
                "VMW_SSH_PORT".to_owned(),
                RealGuestOptions::DEFAULT_SSH_PORT.to_string(),
            ));
        }
        Guests::StandIn(None) => {}
    }
    let mut runner = Runner {
        vmw,
        dir: dir.clone(),
        env,
        timings: Vec::new(),
    };

    let result = steps(&mut runner, &guests, &home).await;
    if result.is_err() {
        // Leave nothing behind in the simulator either (it dies with us).
        let _ = runner.vmw("clean after failure", &["clean", "--yes"]).await;
    }
    drop(guests);
    drop(sim);
    result?;
    runner.summary(started.elapsed());
    println!("\nThe demo passed; vcsim and the guests are stopped.");
    Ok(())
}

async fn steps(runner: &mut Runner, guests: &Guests, home: &Utf8Path) -> Result<()> {
    runner.vmw("config check", &["config", "check"]).await?;
    let (wait, ssh) = match guests {
        Guests::StandIn(Some(sshd)) => {
            let key = std::fs::read_to_string(home.join(".cache/vmw/ssh/id_ed25519.pub"))
                .context("`vmw config check` made no SSH key")?;
            sshd.authorize(&key)?;
            ("ready", true)
        }
        Guests::Real(_) => ("ready", true),
        Guests::StandIn(None) => ("ip", false),
    };
    let real = matches!(guests, Guests::Real(_));
    let count = if real { "2" } else { "3" };
    let launched = runner
        .vmw(
            &format!("launch {count} instances"),
            &[
                "launch",
                "--release",
                "jammy",
                "--count",
                count,
                "--user-data",
                "user-data.yaml",
                "--wait",
                wait,
            ],
        )
        .await?;
    let first = first_name(&launched)?;
    runner.vmw("list", &["list"]).await?;
    if real {
        for (label, command) in [
            ("exec cloud-id", "cloud-id"),
            ("exec systemd-detect-virt", "systemd-detect-virt"),
        ] {
            let out = runner.vmw(label, &["exec", &first, "--", command]).await?;
            if out.trim() != "vmware" {
                bail!("`vmw exec {first} -- {command}` printed {out:?}, not \"vmware\"");
            }
        }
    }
    if ssh {
        runner
            .vmw(
                "exec cloud-init status",
                &["exec", &first, "--", "cloud-init status --long"],
            )
            .await?;
    } else {
        println!(
            "\n(skipped: `vmw exec {first} -- cloud-init status --long` needs the SSH test peer; \
             see the note above for why there is none)"
        );
    }
    let mut snapshot = vec!["snapshot", first.as_str()];
    if !ssh {
        snapshot.push("--no-clean");
    }
    let image = runner.vmw("snapshot", &snapshot).await?;
    let image = image.trim().to_owned();
    runner
        .vmw(
            "launch from the image",
            &["launch", "--image", &image, "--wait", wait],
        )
        .await?;
    runner.vmw("list", &["list"]).await?;
    runner.vmw("clean", &["clean", "--yes"]).await?;
    let left = runner
        .vmw("list (nothing left)", &["list", "--json"])
        .await?;
    if left.trim() != "[]" {
        bail!("`vmw clean` left VMs behind: {left}");
    }
    if let Guests::Real(real) = guests {
        // The guests of the deleted VMs are stopped.
        let deadline = Instant::now() + Duration::from_secs(30);
        while real.guests().iter().any(|g| g.running) {
            if Instant::now() > deadline {
                bail!(
                    "guests still running after `vmw clean`: {:?}",
                    real.guests()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("\nEvery guest is stopped.");
    }
    Ok(())
}
