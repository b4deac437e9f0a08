//! The lifecycle against real Linux guests: vcsim VMs backed by Debian
//! guests under QEMU ([`vmw_testbed::RealGuests`]) whose real cloud-init
//! reads the guestinfo vmw sets, through its VMware datasource.
//!
//! Needs the guest image (`cargo xtask guest-image`, named by
//! `VMW_GUEST_IMAGE`) and QEMU; `cargo xtask test` provides both. Built only
//! with the `real-guests` feature.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use vmw_cloud::{CloudBuilder, LaunchOptions, Settings, WaitStage};
use vmw_ssh::{ReadyTimeouts, SshConfig};
use vmw_testbed::{GuestImage, RealGuestOptions, RealGuests, Vcsim};

fn settings(keys: &camino::Utf8Path, port: u16) -> Settings {
    Settings {
        ip_wait: Duration::from_secs(300),
        ssh: SshConfig {
            user: "debian".to_owned(),
            port,
            ..SshConfig::default()
        },
        ready: ReadyTimeouts {
            ready: Duration::from_secs(600),
            ..ReadyTimeouts::default()
        },
        known_hosts: Some(vmw_ssh::KnownHosts::new(keys.join("known_hosts"))),
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_guest_boots_with_our_guestinfo_and_is_ready() {
    let image = GuestImage::from_env().unwrap();
    let sim = Vcsim::start().await.unwrap();
    let options = RealGuestOptions::new(image);
    let port = options.ssh_port;
    let _guests = RealGuests::start(sim.govc(), options).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let dir = camino::Utf8Path::from_path(keys.path()).unwrap();
    let cloud = CloudBuilder::new("real")
        .timestamp(false)
        .config(sim.config())
        .key_pair(vmw_cloud::KeyPair::generated_in(&dir.join("ssh"), "real".into()).unwrap())
        .settings(settings(dir, port))
        .build_with(sim.govc())
        .unwrap();
    let started = Instant::now();
    let instance = cloud
        .launch(
            "TEMPLATE-cloud-init-jammy",
            &LaunchOptions {
                wait: WaitStage::Ready,
                ..LaunchOptions::default()
            },
        )
        .await
        .unwrap();
    eprintln!("launch to ready: {:?}", started.elapsed());
    let cloud_id = instance.execute("cloud-id").await.unwrap();
    assert_eq!(cloud_id.stdout.trim(), "vmware", "{cloud_id:?}");
    let virt = instance.execute("systemd-detect-virt").await.unwrap();
    assert_eq!(virt.stdout.trim(), "vmware", "{virt:?}");
    let id = instance
        .execute("cat /var/lib/cloud/data/instance-id")
        .await
        .unwrap();
    assert_eq!(id.stdout.trim(), instance.name(), "{id:?}");
    instance.delete().await.unwrap();
}
