//! The lifecycle against real Linux guests: vcsim VMs backed by Debian
//! guests under QEMU ([`vmw_testbed::RealGuests`]) whose real cloud-init
//! reads the guestinfo vmw sets, through its VMware datasource.
//!
//! One simulator and one agent; two lines of work run side by side, so that
//! two guests boot at a time (one per core of a two-core machine):
//! - a guest's whole life: a `#cloud-config` above the gzip threshold with
//!   the user's own key, a `runcmd` marker and `write_files`; ready; its
//!   console log; what cloud-init did; exec, push and pull; restart; snapshot with a clean
//!   guest; a launch from that image; clean;
//! - user data formats, one guest after the other: a shell script (its
//!   guest powered off hard right after it is ready and started again: it
//!   must come back with its SSH host keys intact), a MIME
//!   multipart of two parts, then a cloud-config that fails in the guest,
//!   whose error the wait must report, kept for inspection with its
//!   evidence (console log, cloud-init status and logs, journal).
//!
//! The guests are Debian trixie (cloud-init 25.1.4), but for the shell
//! script's, which is Debian bookworm (cloud-init 22.4), so that the older
//! cloud-init keeps working. Needs both guest images (`cargo xtask
//! guest-image` and `cargo xtask guest-image --release bookworm`, named by
//! `VMW_GUEST_IMAGE` and `VMW_GUEST_IMAGE_BOOKWORM`) and QEMU; `cargo xtask
//! test` provides them. Built only
//! with the `real-guests` feature. The SSH user is the image's (`debian`),
//! set through the settings as a user sets `ssh_user` in the config.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use vmw_cloud::{
    Cloud, CloudBuilder, KeyPair, LaunchOptions, Restart, Settings, Step, StepHook, WaitStage,
};
use vmw_govc::{GovcExt, ProcessGovc, VmRef};
use vmw_ssh::{ReadyTimeouts, SshConfig};
use vmw_testbed::{GuestImage, RealGuestOptions, RealGuests, Vcsim};

/// The template of trixie guests (cloud-init 25.1.4), the image named by
/// `VMW_GUEST_IMAGE`.
const TEMPLATE: &str = "TEMPLATE-cloud-init-trixie";

/// The template of bookworm guests (cloud-init 22.4), the image named by
/// `VMW_GUEST_IMAGE_BOOKWORM`: the older cloud-init keeps working.
const BOOKWORM: &str = "TEMPLATE-cloud-init-bookworm";

/// When each launch reached each step, for the timings the suite prints.
#[derive(Clone, Default)]
struct Timeline(Arc<Mutex<Vec<(String, Step, Instant)>>>);

impl Timeline {
    fn hook(&self) -> StepHook {
        let steps = self.0.clone();
        StepHook::new(move |vm, step| {
            steps
                .lock()
                .unwrap()
                .push((vm.to_owned(), step, Instant::now()));
        })
    }

    /// Power-on to SSH and to ready for `vm`, which became ready at `ready`.
    /// The agent reports a guest's address once its sshd answers, so the
    /// address (the start of the readiness wait) marks SSH.
    fn report(&self, vm: &str, ready: Instant) -> String {
        let steps = self.0.lock().unwrap();
        let at = |wanted: Step| {
            steps
                .iter()
                .rev()
                .find(|(v, s, _)| v.ends_with(vm) && *s == wanted)
                .map(|(_, _, t)| *t)
        };
        match (at(Step::PowerOn), at(Step::WaitReady)) {
            (Some(on), Some(ssh)) => format!(
                "{vm}: power-on -> SSH {:.0} s, -> ready {:.0} s",
                (ssh - on).as_secs_f64(),
                (ready - on).as_secs_f64()
            ),
            _ => format!("{vm}: steps not seen"),
        }
    }
}

struct Bed {
    sim: Vcsim,
    guests: RealGuests,
    _keys: tempfile::TempDir,
    dir: Utf8PathBuf,
    port: u16,
    timeline: Timeline,
}

impl Bed {
    async fn start() -> Self {
        let image = GuestImage::from_env().unwrap();
        let bookworm = GuestImage::from_env_var(vmw_testbed::BOOKWORM_IMAGE_VAR).unwrap();
        let sim = Vcsim::start().await.unwrap();
        sim.add_templates(&[TEMPLATE, BOOKWORM]).await.unwrap();
        let mut options = RealGuestOptions::new(image);
        options.images.insert(BOOKWORM.to_owned(), bookworm);
        let port = options.ssh_port;
        let guests = RealGuests::start(sim.govc(), options).unwrap();
        let keys = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(keys.path()).unwrap().to_owned();
        Self {
            sim,
            guests,
            _keys: keys,
            dir,
            port,
            timeline: Timeline::default(),
        }
    }

    fn cloud(&self, tag: &str) -> Cloud<ProcessGovc> {
        let settings = Settings {
            ip_wait: Duration::from_secs(420),
            ssh: SshConfig {
                user: "debian".to_owned(),
                port: self.port,
                ..SshConfig::default()
            },
            ready: ReadyTimeouts {
                ready: Duration::from_secs(600),
                ..ReadyTimeouts::default()
            },
            known_hosts: Some(vmw_ssh::KnownHosts::new(self.dir.join("known_hosts"))),
            ..Settings::default()
        };
        CloudBuilder::new(tag)
            .timestamp(false)
            .config(self.sim.config())
            .key_pair(KeyPair::generated_in(&self.dir.join("vmw-key"), "vmw".into()).unwrap())
            .settings(settings)
            .build_with(self.sim.govc())
            .unwrap()
    }

    fn options(&self, user_data: Vec<u8>) -> LaunchOptions {
        LaunchOptions {
            user_data: Some(user_data),
            wait: WaitStage::Ready,
            on_step: Some(self.timeline.hook()),
            // The guest's serial output goes to the port's file.
            console_log: Some(true),
            ..LaunchOptions::default()
        }
    }

    async fn userdata_encoding(&self, vm: &VmRef) -> String {
        let mut request = vmw_govc::requests::VmInfo::new(vm.clone());
        request.extra_config = true;
        let info = self.sim.govc().exec(&request).await.unwrap();
        info[0]
            .extra_config
            .get("guestinfo.userdata.encoding")
            .cloned()
            .unwrap_or_default()
    }

    /// The VMs left in the simulator's folder whose name starts with `tag`.
    async fn left(&self, tag: &str) -> Vec<String> {
        let folder = self.sim.config().folder;
        let found = self
            .sim
            .govc()
            .exec(
                &vmw_govc::requests::Find::new(folder.as_str())
                    .kind(vmw_govc::requests::ObjectType::VirtualMachine),
            )
            .await
            .unwrap();
        found
            .into_iter()
            .filter(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with(tag)))
            .collect()
    }

    /// Waits until the agent has no guest for a VM whose name starts with
    /// `tag` (its QEMU stopped and its disk removed).
    /// Waits (a minute at most) until the agent has stopped the guest of
    /// the VM `name`.
    async fn guest_stopped(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let running: Vec<_> = self
                .guests
                .guests()
                .into_iter()
                .filter(|g| g.running && g.vm.rsplit('/').next() == Some(name))
                .collect();
            if running.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "guest still running: {running:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn guests_gone(&self, tag: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mine: Vec<_> = self
                .guests
                .guests()
                .into_iter()
                .filter(|g| g.vm.rsplit('/').next().is_some_and(|n| n.starts_with(tag)))
                .collect();
            if mine.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "guests still there: {mine:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn run(instance: &vmw_cloud::Instance<ProcessGovc>, cmd: &str) -> String {
    let out = instance.execute(cmd).await.unwrap();
    assert_eq!(out.exit_status, Some(0), "{cmd}: {out:?}");
    out.stdout
}

async fn sudo(instance: &vmw_cloud::Instance<ProcessGovc>, cmd: &str) -> String {
    run(instance, &format!("sudo -n sh -c '{cmd}'")).await
}

/// A `#cloud-config` with the user's key, a `runcmd` marker (one line per
/// instance cloud-init runs it for), a file, and padding that takes it past
/// the gzip threshold.
fn life_user_data(user_key: &str) -> Vec<u8> {
    let mut padding = String::new();
    for i in 0..600 {
        padding.push_str(&format!("      line {i} of the padding of the user data\n"));
    }
    format!(
        "#cloud-config\n\
         ssh_authorized_keys:\n  - {user_key}\n\
         runcmd:\n  - echo \"ran for $(cat /var/lib/cloud/data/instance-id)\" >> /var/tmp/vmw-runcmd\n\
         write_files:\n\
         \x20 - path: /etc/vmw-test/hello\n    content: |\n      hello from the user data\n\
         \x20 - path: /etc/vmw-test/padding\n    content: |\n{padding}"
    )
    .into_bytes()
}

async fn whole_life(bed: &Bed) {
    let cloud = bed.cloud("life");
    let user = KeyPair::generated_in(&bed.dir.join("user-key"), "user".into()).unwrap();
    let user_key = std::fs::read_to_string(&user.public_path).unwrap();
    let user_key = user_key.trim();
    let user_data = life_user_data(user_key);
    assert!(user_data.len() > vmw_userdata::GZIP_THRESHOLD_BYTES);

    let started = Instant::now();
    let first = cloud
        .launch(
            &cloud.image(TEMPLATE).unwrap(),
            &bed.options(user_data.clone()),
        )
        .await
        .unwrap();
    eprintln!(
        "{} (trixie)",
        bed.timeline.report(first.name(), Instant::now())
    );
    assert_eq!(bed.userdata_encoding(first.vm()).await, "gzip+base64");

    // The console log: the guest's serial port, written to a file in the
    // VM's own folder.
    let console = first.console_log().await.unwrap();
    assert!(console.contains("Linux version"), "{console}");
    assert!(console.to_lowercase().contains("cloud-init"), "{console}");

    // What cloud-init did with vmw's guestinfo and the user data.
    assert_eq!(run(&first, "cloud-id").await.trim(), "vmware");
    assert_eq!(run(&first, "systemd-detect-virt").await.trim(), "vmware");
    assert_eq!(
        run(&first, "cat /var/lib/cloud/data/instance-id")
            .await
            .trim(),
        first.name()
    );
    assert_eq!(run(&first, "hostname").await.trim(), first.name());
    let status = run(&first, "cloud-init status --long").await;
    assert!(status.contains("status: done"), "{status}");
    // The VMware datasource, reading guestinfo (ds-identify picked it: the
    // image names no datasource).
    assert!(
        status.contains("DataSourceVMware [seed=guestinfo]"),
        "{status}"
    );
    assert_eq!(
        run(&first, "cat /run/cloud-init/cloud.cfg").await.trim(),
        "datasource_list: [ VMware, None ]"
    );
    let authorized = run(&first, "cat ~/.ssh/authorized_keys").await;
    assert!(authorized.contains(user_key), "{authorized}");
    let vmw_key = std::fs::read_to_string(&cloud.key_pair().public_path).unwrap();
    let vmw_key_body = vmw_key.split_whitespace().nth(1).unwrap();
    assert!(authorized.contains(vmw_key_body), "{authorized}");
    assert_eq!(
        run(&first, "cat /var/tmp/vmw-runcmd").await.trim(),
        format!("ran for {}", first.name())
    );
    assert_eq!(
        run(&first, "cat /etc/vmw-test/hello").await.trim(),
        "hello from the user data"
    );
    assert!(
        run(&first, "wc -l < /etc/vmw-test/padding")
            .await
            .trim()
            .starts_with("600")
    );

    // Exec, push and pull of a 1 MiB file.
    let local = bed.dir.join("payload");
    let payload: Vec<u8> = (0..1024 * 1024_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&local, &payload).unwrap();
    first.push_file(&local, "/var/tmp/payload").await.unwrap();
    let remote_sum = run(&first, "sha256sum /var/tmp/payload").await;
    let local_sum = std::process::Command::new("sha256sum")
        .arg(local.as_str())
        .output()
        .unwrap();
    let local_sum = String::from_utf8(local_sum.stdout).unwrap();
    assert_eq!(
        remote_sum.split_whitespace().next(),
        local_sum.split_whitespace().next()
    );
    let back = bed.dir.join("payload.back");
    first.pull_file("/var/tmp/payload", &back).await.unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), payload);

    // Restart: a real reboot.
    let boot_before = first.boot_id().await.unwrap();
    let restarted = Instant::now();
    first
        .restart(Restart::PowerCycle, WaitStage::Ready)
        .await
        .unwrap();
    let boot_after = first.boot_id().await.unwrap();
    assert_ne!(boot_before, boot_after);
    eprintln!(
        "{}: restart -> ready again {:.0} s",
        first.name(),
        restarted.elapsed().as_secs_f64()
    );
    // Same instance: runcmd did not run again.
    assert_eq!(run(&first, "wc -l < /var/tmp/vmw-runcmd").await.trim(), "1");

    // Snapshot with a clean guest, then launch from the image.
    let machine_id = run(&first, "cat /etc/machine-id").await;
    let host_key = run(&first, "cat /etc/ssh/ssh_host_ed25519_key.pub").await;
    let image = cloud.snapshot(&first, true).await.unwrap();
    let second = cloud.launch(&image, &bed.options(user_data)).await.unwrap();
    eprintln!(
        "{} (from the image): launched and ready after {:.0} s",
        second.name(),
        Instant::now().duration_since(started).as_secs_f64()
    );
    eprintln!("{}", bed.timeline.report(second.name(), Instant::now()));
    assert_ne!(second.name(), first.name());
    assert_eq!(
        run(&second, "cat /var/lib/cloud/data/instance-id")
            .await
            .trim(),
        second.name()
    );
    // cloud-init ran again for the new instance, from a clean state: only
    // its own instance directory, a new machine id, new host keys.
    assert_eq!(
        run(&second, "cat /var/tmp/vmw-runcmd").await.trim(),
        format!("ran for {}\nran for {}", first.name(), second.name())
    );
    assert_eq!(
        run(&second, "ls /var/lib/cloud/instances").await.trim(),
        second.name()
    );
    assert_ne!(run(&second, "cat /etc/machine-id").await, machine_id);
    assert_ne!(
        run(&second, "cat /etc/ssh/ssh_host_ed25519_key.pub").await,
        host_key
    );
    // The payload pushed before the snapshot came with the image.
    let sum = run(&second, "sha256sum /var/tmp/payload").await;
    assert_eq!(
        sum.split_whitespace().next(),
        local_sum.split_whitespace().next()
    );

    cloud.clean().await.unwrap();
    assert_eq!(bed.left("life").await, Vec::<String>::new());
    bed.guests_gone("life").await;
}

fn multipart(parts: &[(&str, &str)]) -> Vec<u8> {
    let boundary = "vmw-test-boundary";
    let mut out =
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n");
    for (kind, body) in parts {
        out.push_str(&format!(
            "--{boundary}\nContent-Type: {kind}; charset=\"us-ascii\"\nMIME-Version: 1.0\n\n{body}\n"
        ));
    }
    out.push_str(&format!("--{boundary}--\n"));
    out.into_bytes()
}

async fn user_data_formats(bed: &Bed) {
    let cloud = bed.cloud("formats");
    let script = b"#!/bin/sh\necho \"script ran as $(id -un)\" > /var/tmp/vmw-script\n".to_vec();
    let mime = multipart(&[
        (
            "text/cloud-config",
            "#cloud-config\nwrite_files:\n  - path: /var/tmp/vmw-part-1\n    content: first part\n",
        ),
        (
            "text/x-shellscript",
            "#!/bin/sh\necho second part > /var/tmp/vmw-part-2\n",
        ),
    ]);
    // One guest at a time on this line: with the other line's, two guests
    // share the machine's two cores.
    let a = cloud
        .launch(&cloud.image(BOOKWORM).unwrap(), &bed.options(script))
        .await
        .unwrap();
    eprintln!(
        "{} (bookworm)",
        bed.timeline.report(a.name(), Instant::now())
    );
    // Powered off hard right after it is ready, through a handle of its
    // own as `vmw stop` makes one (no address known yet), then on again:
    // the guest must come back. cloud-init's fresh SSH host keys were
    // written moments before; vmw flushes them to disk before pulling the
    // plug, or sshd never starts again.
    let stopped = Instant::now();
    let handle = cloud.get_instance(a.name()).await.unwrap();
    handle.power_off().await.unwrap();
    assert_eq!(
        handle.power_state().await.unwrap(),
        vmw_cloud::PowerState::Off
    );
    // vSphere's power-off ends the guest before its task ends; the bed's
    // agent notices it at its next look. Powered on before that, the old
    // guest would still answer, then go.
    bed.guest_stopped(a.name()).await;
    handle.power_on().await.unwrap();
    handle.wait().await.unwrap();
    eprintln!(
        "{}: power-off right after ready, power-on -> ready again {:.0} s",
        a.name(),
        stopped.elapsed().as_secs_f64()
    );
    let sizes = sudo(&handle, "stat -c \"%s %n\" /etc/ssh/ssh_host_*_key").await;
    let keys: Vec<(u64, &str)> = sizes
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(size, name)| (size.parse().unwrap(), name))
        .collect();
    assert!(!keys.is_empty(), "no host keys: {sizes}");
    assert!(keys.iter().all(|(size, _)| *size > 0), "{keys:?}");
    assert_eq!(
        run(&a, "cat /var/tmp/vmw-script").await.trim(),
        "script ran as root"
    );
    // vmw's key reached it (vmw logs in with it), though the user data is
    // no cloud-config.
    assert_eq!(
        sudo(&a, "cat /var/lib/cloud/data/instance-id").await.trim(),
        a.name()
    );
    a.delete().await.unwrap();

    let b = cloud
        .launch(&cloud.image(TEMPLATE).unwrap(), &bed.options(mime))
        .await
        .unwrap();
    eprintln!("{} (trixie)", bed.timeline.report(b.name(), Instant::now()));
    assert_eq!(
        run(&b, "cat /var/tmp/vmw-part-1").await.trim(),
        "first part"
    );
    assert_eq!(
        run(&b, "cat /var/tmp/vmw-part-2").await.trim(),
        "second part"
    );
    b.delete().await.unwrap();

    // A cloud-config cloud-init takes but fails on: the wait fails with
    // cloud-init's own error; kept for inspection, with the evidence.
    let broken = b"#cloud-config\nruncmd:\n  - echo vmw-broken-runcmd >&2\n  - exit 7\n".to_vec();
    let kept_in = bed.dir.join("kept");
    let keep = LaunchOptions {
        keep_on_failure: Some(kept_in.clone()),
        ..bed.options(broken)
    };
    let Err(err) = cloud.launch(&cloud.image(TEMPLATE).unwrap(), &keep).await else {
        panic!("a failing cloud-config must fail the wait");
    };
    let vmw_cloud::CloudError::Kept { vm, evidence, .. } = &err else {
        panic!("{err:?}")
    };
    let evidence = evidence.as_ref().unwrap();
    eprintln!("broken cloud-config: {evidence}");
    let read = |name: &str| std::fs::read(evidence.dir.join(name)).unwrap();
    let status = String::from_utf8_lossy(&read("cloud-init-status.txt")).into_owned();
    assert!(status.contains("status: error"), "{status}");
    assert!(
        String::from_utf8_lossy(&read("console.log")).contains("Linux version"),
        "{evidence}"
    );
    assert!(
        String::from_utf8_lossy(&read("journal.txt")).contains("cloud-init"),
        "{evidence}"
    );
    let tarball = read("cloud-init-logs.tar.gz");
    assert_eq!(&tarball[..2], &[0x1f, 0x8b], "a gzip file");
    let kept = cloud
        .get_instance(vm.rsplit('/').next().unwrap())
        .await
        .unwrap();
    let message = format!("{err:#}");
    let chain = error_chain(&err);
    eprintln!("broken cloud-config: {chain}");
    assert!(
        chain.contains("scripts_user") || chain.contains("scripts-user"),
        "{message}\n{chain}"
    );
    kept.delete().await.unwrap();
    assert_eq!(bed.left("formats").await, Vec::<String>::new());
    bed.guests_gone("formats").await;
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_guests_whole_life_and_user_data_formats() {
    let bed = Bed::start().await;
    let started = Instant::now();
    tokio::join!(whole_life(&bed), user_data_formats(&bed));
    eprintln!("real-guest suite: {:.0} s", started.elapsed().as_secs_f64());
    assert!(
        bed.guests.guests().iter().all(|g| !g.running),
        "{:?}",
        bed.guests.guests()
    );
}
