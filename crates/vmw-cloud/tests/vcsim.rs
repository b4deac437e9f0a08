//! The instance lifecycle against a real vcsim, with the guest-agent
//! stand-in reporting addresses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{cloud_in, cloud_on, cloud_with, guestinfo, utf8};

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use vmw_cloud::{
    Cloud, CloudBuilder, CloudError, Hints, Kind, LaunchOptions, Scope, Settings, Step, Tag,
    WaitStage,
};
use vmw_govc::parse::PowerState;
use vmw_govc::requests::{Find, ObjectType, VmInfo};
use vmw_govc::{GovcExt, ProcessGovc};
use vmw_testbed::{AgentOptions, GuestAgent, Vcsim, VcsimOptions};
use vmw_userdata::Field;

/// A simulator, its guest agent, a key pair and a cloud on them.
struct Bed {
    sim: Vcsim,
    _agent: Option<GuestAgent>,
    _keys: tempfile::TempDir,
    cloud: Cloud<ProcessGovc>,
    seeded: BTreeSet<String>,
}

fn fast_settings() -> Settings {
    Settings {
        concurrency: 10,
        ip_wait: Duration::from_secs(20),
        ip_poll: Duration::from_millis(100),
        ..Settings::default()
    }
}

async fn all_vms(sim: &Vcsim) -> BTreeSet<String> {
    sim.govc()
        .exec(&Find::new("/").kind(ObjectType::VirtualMachine))
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn bed_with(agent: Option<AgentOptions>, settings: Settings) -> Bed {
    let sim = Vcsim::start().await.unwrap();
    let seeded = all_vms(&sim).await;
    let agent = agent.map(|a| sim.guest_agent(a));
    let (cloud, keys) = cloud_on(&sim, "it", settings);
    Bed {
        sim,
        _agent: agent,
        _keys: keys,
        cloud,
        seeded,
    }
}

async fn bed() -> Bed {
    bed_with(Some(AgentOptions::default()), fast_settings()).await
}

async fn info(sim: &Vcsim, name: &str) -> vmw_govc::parse::VmInfo {
    let mut r = VmInfo::new(vmw_govc::VmRef::resolve("/DC0/vm", name).unwrap());
    r.extra_config = true;
    let mut v = sim.govc().exec(&r).await.unwrap();
    assert_eq!(v.len(), 1, "{name} should exist");
    v.remove(0)
}

async fn exists(sim: &Vcsim, name: &str) -> bool {
    !sim.govc()
        .exec(&VmInfo::new(
            vmw_govc::VmRef::resolve("/DC0/vm", name).unwrap(),
        ))
        .await
        .unwrap()
        .is_empty()
}

fn ip_wait() -> LaunchOptions {
    LaunchOptions::wait_for_ip()
}

#[tokio::test]
async fn launch_without_user_data_injects_the_key_and_unique_metadata() {
    let bed = bed().await;
    let image = bed.cloud.released_image("jammy").await.unwrap();
    let a = bed.cloud.launch(&image, &ip_wait()).await.unwrap();
    let b = bed.cloud.launch(&image, &ip_wait()).await.unwrap();
    assert_ne!(a.name(), b.name());
    assert!(a.name().starts_with("it-"));
    assert_eq!(
        a.ip().await.unwrap(),
        "127.0.0.1".parse::<IpAddr>().unwrap()
    );

    for inst in [&a, &b] {
        let vm = info(&bed.sim, inst.name()).await;
        let marker = vmw_cloud::parse_marker(&vm.annotation).unwrap();
        assert_eq!(marker.tag, "it");
        assert_eq!(marker.launch.as_deref(), inst.launch_id());
        assert_eq!(vm.power_state, PowerState::On);
        let metadata = String::from_utf8(guestinfo(&vm, Field::Metadata)).unwrap();
        let md: serde_yaml_ng::Value = serde_yaml_ng::from_str(&metadata).unwrap();
        assert_eq!(md["instance-id"].as_str(), Some(inst.name()));
        assert_eq!(md["local-hostname"].as_str(), Some(inst.name()));
        let user_data = String::from_utf8(guestinfo(&vm, Field::UserData)).unwrap();
        assert!(user_data.starts_with("#cloud-config"), "{user_data}");
        let ud: serde_yaml_ng::Value = serde_yaml_ng::from_str(&user_data).unwrap();
        let keys = ud["ssh_authorized_keys"].as_sequence().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys[0].as_str().unwrap(),
            bed.cloud.key_pair().public_key.to_string()
        );
    }
}

#[tokio::test]
async fn user_data_survives_with_the_key_added_and_scripts_are_wrapped() {
    let bed = bed().await;
    let cloud_config = "#cloud-config\n# keep this comment\nruncmd:\n  - [echo, hi]\nssh_authorized_keys:\n  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBvRNLZQfZdf1PhLV9m5MVDkCZvPx8hRwBbq1bHr7kX user@host\n";
    let inst = bed
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-focal"),
            &LaunchOptions {
                user_data: Some(cloud_config.as_bytes().to_vec()),
                ..ip_wait()
            },
        )
        .await
        .unwrap();
    let vm = info(&bed.sim, inst.name()).await;
    let ud = String::from_utf8(guestinfo(&vm, Field::UserData)).unwrap();
    assert!(
        ud.starts_with(cloud_config),
        "the user's text is kept byte for byte:\n{ud}"
    );
    assert!(ud.contains(&bed.cloud.key_pair().public_key.to_string()));
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&ud).unwrap();
    assert_eq!(
        parsed["ssh_authorized_keys"].as_sequence().unwrap().len(),
        2
    );

    let script = "#!/bin/sh\necho 'first boot' > /etc/motd\n";
    let inst = bed
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-focal"),
            &LaunchOptions {
                user_data: Some(script.as_bytes().to_vec()),
                wait: WaitStage::None,
                ..LaunchOptions::default()
            },
        )
        .await
        .unwrap();
    let vm = info(&bed.sim, inst.name()).await;
    let ud = String::from_utf8(guestinfo(&vm, Field::UserData)).unwrap();
    assert!(ud.contains("multipart/mixed"), "{ud}");
    assert!(ud.contains(script));
    assert!(ud.contains(&bed.cloud.key_pair().public_key.to_string()));
}

#[tokio::test]
async fn large_user_data_goes_gzip_base64() {
    let bed = bed().await;
    let mut text = String::from("#cloud-config\nwrite_files:\n");
    for i in 0..2000 {
        text.push_str(&format!(
            "  - path: /etc/vmw/file-{i}\n    content: \"same line {i}\"\n"
        ));
    }
    assert!(text.len() > 64 * 1024);
    let inst = bed
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions {
                user_data: Some(text.clone().into_bytes()),
                wait: WaitStage::None,
                ..LaunchOptions::default()
            },
        )
        .await
        .unwrap();
    let vm = info(&bed.sim, inst.name()).await;
    assert_eq!(
        vm.extra_config["guestinfo.userdata.encoding"],
        "gzip+base64"
    );
    let ud = String::from_utf8(guestinfo(&vm, Field::UserData)).unwrap();
    assert!(ud.starts_with(&text));
}

#[tokio::test]
async fn cpus_memory_instance_type_and_extra_config_are_applied() {
    let bed = bed().await;
    let a = bed
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions {
                cpus: Some(3),
                memory_mb: Some(1536),
                extra_config: vec![("disk.EnableUUID".into(), "TRUE".into())],
                wait: WaitStage::None,
                ..LaunchOptions::default()
            },
        )
        .await
        .unwrap();
    let vm = info(&bed.sim, a.name()).await;
    assert_eq!((vm.cpus, vm.memory_mb), (3, 1536));
    assert_eq!(vm.extra_config["disk.EnableUUID"], "TRUE");

    let b = bed
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions {
                instance_type: Some("2c4g".parse().unwrap()),
                linked_clone: true,
                wait: WaitStage::None,
                ..LaunchOptions::default()
            },
        )
        .await
        .unwrap();
    let vm = info(&bed.sim, b.name()).await;
    assert_eq!((vm.cpus, vm.memory_mb), (2, 4096));
}

#[tokio::test]
async fn launch_many_of_ten_then_clean_leaves_only_the_seeded_vms() {
    let bed = bed().await;
    let fleet = bed
        .cloud
        .launch_many(&common::img("TEMPLATE-cloud-init-jammy"), 10, &ip_wait())
        .await
        .unwrap();
    assert!(fleet.failures.is_empty(), "{:?}", fleet.failures);
    assert_eq!(fleet.instances.len(), 10);
    let names: BTreeSet<_> = fleet
        .instances
        .iter()
        .map(|i| i.name().to_owned())
        .collect();
    assert_eq!(names.len(), 10);
    for i in &fleet.instances {
        assert_eq!(i.cached_ip(), Some("127.0.0.1".parse().unwrap()));
    }
    assert_eq!(all_vms(&bed.sim).await.len(), bed.seeded.len() + 10);
    assert_eq!(bed.cloud.tracked_instances().len(), 10);

    bed.cloud.clean().await.unwrap();
    assert_eq!(all_vms(&bed.sim).await, bed.seeded);
    assert!(bed.cloud.tracked_instances().is_empty());
    // A second clean has nothing to do.
    bed.cloud.clean().await.unwrap();
}

#[tokio::test]
async fn get_instance_finds_existing_vms_only() {
    let bed = bed().await;
    let launched = bed
        .cloud
        .launch(&common::img("TEMPLATE-cloud-init-jammy"), &ip_wait())
        .await
        .unwrap();
    let found = bed.cloud.get_instance(launched.name()).await.unwrap();
    assert_eq!(found.name(), launched.name());
    assert_eq!(
        found.ip().await.unwrap(),
        "127.0.0.1".parse::<IpAddr>().unwrap()
    );
    let err = bed.cloud.get_instance("no-such-vm").await.unwrap_err();
    assert!(matches!(err, CloudError::NoSuchVm { .. }), "{err}");
}

#[tokio::test]
async fn start_and_shutdown_twice_are_idempotent() {
    let bed = bed().await;
    let inst = bed
        .cloud
        .launch(&common::img("TEMPLATE-cloud-init-jammy"), &ip_wait())
        .await
        .unwrap();
    inst.power_on().await.unwrap();
    inst.power_on().await.unwrap();
    assert_eq!(inst.power_state().await.unwrap(), PowerState::On);
    inst.power_off().await.unwrap();
    inst.power_off().await.unwrap();
    assert_eq!(inst.power_state().await.unwrap(), PowerState::Off);
    assert_eq!(inst.cached_ip(), None, "shutdown forgets the address");
    inst.power_on().await.unwrap();
    assert_eq!(
        inst.wait_until(WaitStage::Ip).await.unwrap(),
        Some("127.0.0.1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(inst.power_state().await.unwrap(), PowerState::On);
}

#[tokio::test]
async fn delete_a_running_an_off_and_a_gone_vm() {
    let bed = bed().await;
    let fleet = bed
        .cloud
        .launch_many(&common::img("TEMPLATE-cloud-init-jammy"), 2, &ip_wait())
        .await
        .unwrap();
    let (running, off) = (&fleet.instances[0], &fleet.instances[1]);
    off.power_off().await.unwrap();

    running.delete().await.unwrap();
    off.delete().await.unwrap();
    assert!(!exists(&bed.sim, running.name()).await);
    assert!(!exists(&bed.sim, off.name()).await);
    // Gone already: still success.
    running.delete().await.unwrap();
    assert!(bed.cloud.tracked_instances().is_empty());
    assert_eq!(all_vms(&bed.sim).await, bed.seeded);
}

#[tokio::test]
async fn snapshot_to_image_then_launch_from_it() {
    let bed = bed().await;
    let inst = bed
        .cloud
        .launch(&common::img("TEMPLATE-cloud-init-jammy"), &ip_wait())
        .await
        .unwrap();
    let image = bed.cloud.snapshot(&inst, false).await.unwrap();
    assert_eq!(image.name(), format!("{}-image", inst.name()));
    let vm = info(&bed.sim, image.name()).await;
    let marker = vmw_cloud::parse_marker(&vm.annotation).unwrap();
    assert_eq!(
        (marker.tag.as_str(), marker.kind),
        ("it", vmw_cloud::Kind::Image)
    );
    assert!(marker.launch.is_some(), "{}", vm.annotation);
    assert_eq!(vm.power_state, PowerState::Off);
    assert_eq!(
        bed.cloud.tracked_images(),
        std::slice::from_ref(image.path())
    );

    let child = bed.cloud.launch(&image, &ip_wait()).await.unwrap();
    assert_eq!(
        child.ip().await.unwrap(),
        "127.0.0.1".parse::<IpAddr>().unwrap()
    );

    bed.cloud.delete_image(&image).await.unwrap();
    assert!(!exists(&bed.sim, image.name()).await);
    bed.cloud.delete_image(&image).await.unwrap();
    assert!(bed.cloud.tracked_images().is_empty());
}

#[tokio::test]
async fn an_image_carries_the_tag_of_the_instance_it_is_made_from() {
    let bed = bed().await;
    let inst = bed
        .cloud
        .launch(&common::img("TEMPLATE-cloud-init-jammy"), &ip_wait())
        .await
        .unwrap();
    // Another cloud (tag "other") snapshots the instance of tag "it".
    let (other, _keys) = cloud_on(&bed.sim, "other", fast_settings());
    let found = other.get_instance(inst.name()).await.unwrap();
    assert_eq!(found.tag().map(|t| t.as_str()), Some("it"));
    let image = other.snapshot(&found, false).await.unwrap();
    let vm = info(&bed.sim, image.name()).await;
    let marker = vmw_cloud::parse_marker(&vm.annotation).unwrap();
    assert_eq!(
        (marker.tag.as_str(), marker.kind),
        ("it", vmw_cloud::Kind::Image)
    );
    // A VM without vmw's marker: the image gets the snapshotting cloud's tag.
    let plain = other.get_instance("DC0_H0_VM0").await.unwrap();
    assert_eq!(plain.tag(), None);
    let image = other.snapshot(&plain, false).await.unwrap();
    let vm = info(&bed.sim, image.name()).await;
    assert_eq!(
        vmw_cloud::parse_marker(&vm.annotation).unwrap().tag,
        "other"
    );
    other.clean().await.unwrap();
    bed.cloud.clean().await.unwrap();
    assert_eq!(all_vms(&bed.sim).await, bed.seeded);
}

#[tokio::test]
async fn delete_image_refuses_templates() {
    let bed = bed().await;
    for t in [
        "TEMPLATE-cloud-init-jammy",
        "/DC0/vm/TEMPLATE-cloud-init-focal",
    ] {
        // Not even forced.
        let err = bed.cloud.delete_vm_forced(t).await.unwrap_err();
        assert!(matches!(err, CloudError::TemplateProtected { .. }), "{err}");
    }
    assert!(exists(&bed.sim, "TEMPLATE-cloud-init-jammy").await);
    assert!(exists(&bed.sim, "TEMPLATE-cloud-init-focal").await);
}

#[tokio::test]
async fn released_images_are_discovered_and_unknown_ones_listed() {
    let bed = bed().await;
    assert_eq!(bed.cloud.releases().await.unwrap(), ["focal", "jammy"]);
    assert_eq!(
        bed.cloud.daily_image("focal").await.unwrap().name(),
        "TEMPLATE-cloud-init-focal"
    );
    let err = bed.cloud.released_image("noble").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("noble") && msg.contains("focal, jammy"),
        "{msg}"
    );
    assert!(bed.cloud.image_serial("x").is_err());
}

#[tokio::test]
async fn a_launch_that_fails_after_the_clone_removes_its_vm() {
    // No guest agent: no address ever comes.
    let bed = bed_with(
        None,
        Settings {
            ip_wait: Duration::from_secs(2),
            ..fast_settings()
        },
    )
    .await;
    let err = bed
        .cloud
        .launch(&common::img("TEMPLATE-cloud-init-jammy"), &ip_wait())
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::WaitIp), "{err}");
    let CloudError::Step { vm, rollback, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(rollback.is_none(), "{err}");
    assert!(
        !exists(&bed.sim, vm).await,
        "the half-made VM was destroyed"
    );
    assert!(bed.cloud.tracked_instances().is_empty());
    assert_eq!(all_vms(&bed.sim).await, bed.seeded);
}

#[tokio::test]
async fn clean_after_partial_failures_leaves_only_the_seeded_vms() {
    let bed = bed_with(
        Some(AgentOptions {
            name_prefix: Some("it-".into()),
            ..AgentOptions::default()
        }),
        Settings {
            ip_wait: Duration::from_secs(3),
            ..fast_settings()
        },
    )
    .await;
    // One good instance, and its snapshot.
    let good = bed
        .cloud
        .launch(&common::img("TEMPLATE-cloud-init-jammy"), &ip_wait())
        .await
        .unwrap();
    bed.cloud.snapshot(&good, false).await.unwrap();
    // One that never gets an address (the agent ignores its name).
    let err = bed
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions {
                name: Some("unserved".into()),
                ..ip_wait()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::WaitIp));
    // One whose name is taken: the clone fails, and the VM there is not
    // ours to remove.
    let err = bed
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions {
                name: Some(good.name().to_owned()),
                ..ip_wait()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::Clone), "{err}");
    assert!(
        exists(&bed.sim, good.name()).await,
        "the existing VM is untouched"
    );
    // Some left on purpose in various states.
    let off = bed
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions {
                wait: WaitStage::None,
                ..LaunchOptions::default()
            },
        )
        .await
        .unwrap();
    off.power_off().await.unwrap();

    bed.cloud.clean().await.unwrap();
    assert_eq!(all_vms(&bed.sim).await, bed.seeded);
    assert!(bed.cloud.tracked_instances().is_empty());
    assert!(bed.cloud.tracked_images().is_empty());
}

#[tokio::test]
async fn list_and_sweep_find_what_a_crashed_run_left() {
    let bed = bed().await;
    // A run that "crashes": launches, snapshots, never cleans.
    {
        let crashed = cloud_in(
            bed.sim.govc(),
            bed.sim.config(),
            "it",
            fast_settings(),
            utf8(&bed._keys),
        );
        let inst = crashed
            .launch(&common::img("TEMPLATE-cloud-init-jammy"), &ip_wait())
            .await
            .unwrap();
        crashed.snapshot(&inst, false).await.unwrap();
    }
    // Another tag's VM must survive a sweep of ours.
    let other = cloud_in(
        bed.sim.govc(),
        bed.sim.config(),
        "other",
        fast_settings(),
        utf8(&bed._keys),
    );
    let theirs = other
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions {
                wait: WaitStage::None,
                ..LaunchOptions::default()
            },
        )
        .await
        .unwrap();

    let mine = bed.cloud.list(&Scope::ThisTag).await.unwrap();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert_eq!(
        mine.iter().map(|r| r.kind).collect::<BTreeSet<_>>(),
        [Kind::Instance, Kind::Image].into_iter().collect()
    );
    let instance = mine.iter().find(|r| r.kind == Kind::Instance).unwrap();
    assert_eq!(instance.power_state, PowerState::On);
    assert_eq!(instance.ip.as_deref(), Some("127.0.0.1"));
    assert!(mine.iter().all(|r| r.tag == "it"));
    assert_eq!(bed.cloud.list(&Scope::AllTags).await.unwrap().len(), 3);
    let tagged = bed
        .cloud
        .list(&Scope::Tag(Tag::parse("other").unwrap()))
        .await
        .unwrap();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].name, theirs.name());

    let removed = bed.cloud.sweep(&Scope::ThisTag).await.unwrap();
    assert_eq!(removed.len(), 2);
    assert!(bed.cloud.list(&Scope::ThisTag).await.unwrap().is_empty());
    assert!(exists(&bed.sim, theirs.name()).await);
    assert_eq!(all_vms(&bed.sim).await.len(), bed.seeded.len() + 1);
}

#[tokio::test]
async fn link_local_addresses_are_never_returned() {
    let bed = bed_with(
        Some(AgentOptions {
            link_local_first: Some(Duration::from_millis(1500)),
            ..AgentOptions::default()
        }),
        fast_settings(),
    )
    .await;
    let started = std::time::Instant::now();
    let inst = bed
        .cloud
        .launch(&common::img("TEMPLATE-cloud-init-jammy"), &ip_wait())
        .await
        .unwrap();
    assert_eq!(
        inst.cached_ip(),
        Some("127.0.0.1".parse::<IpAddr>().unwrap())
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the launch waited past the link-local address"
    );
}

#[tokio::test]
async fn an_ambiguous_pool_fails_the_clone_with_the_pools_listed() {
    let sim = Vcsim::start_with(VcsimOptions::new()).await.unwrap();
    let seeded = all_vms(&sim).await;
    let mut config = sim.config();
    config.resource_pool = None;
    let (cloud, _keys) = cloud_with(sim.govc_for(&config), config, "it", Settings::default());
    let err = cloud
        .launch(&common::img("TEMPLATE-cloud-init-jammy"), &ip_wait())
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::Clone));
    let msg = vmw_cloud::render(&err);
    assert!(
        msg.contains(vmw_testbed::CLUSTER_POOL) && msg.contains(vmw_testbed::HOST_POOL),
        "{msg}"
    );
    assert!(
        err.hints().iter().any(|h| h.contains("resource_pool")),
        "{:?}",
        err.hints()
    );
    assert_eq!(all_vms(&sim).await, seeded);
}

#[tokio::test]
async fn build_finds_and_checks_govc_or_says_what_is_wrong() {
    let sim = Vcsim::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let home_dir = camino::Utf8Path::from_path(home.path()).unwrap();
    let env = vmw_config::Environment::from_pairs([
        ("HOME", home_dir.as_str()),
        ("VMW_GOVC", sim.govc_path().as_str()),
    ]);
    // No key configured and none in ~/.ssh: one is generated in the cache.
    let cloud = CloudBuilder::new("it")
        .config(sim.config())
        .environment(env)
        .build()
        .await
        .unwrap();
    assert!(cloud.key_pair().generated);
    assert!(cloud.key_pair().private_path.starts_with(home_dir));
    let tag = cloud.tag().as_str();
    assert!(
        tag.starts_with("it-") && tag.len() == "it-MMDD-HHMMSS".len(),
        "{tag}"
    );
    assert_eq!(
        cloud.released_image("jammy").await.unwrap().name(),
        "TEMPLATE-cloud-init-jammy"
    );

    let missing = vmw_config::Environment::from_pairs([
        ("HOME", home_dir.as_str()),
        ("VMW_GOVC", "/nonexistent/govc"),
    ]);
    let err = CloudBuilder::new("it")
        .config(sim.config())
        .environment(missing)
        .build()
        .await
        .unwrap_err();
    assert_eq!(
        err.govc().map(vmw_govc::GovcError::kind),
        Some(vmw_govc::ErrorKind::GovcMissing),
        "{err}"
    );
    assert!(err.to_string().contains("/nonexistent/govc"), "{err}");

    let err = CloudBuilder::new("Not A Tag")
        .config(sim.config())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::InvalidTag { .. }), "{err}");
}

#[tokio::test]
async fn a_passphrase_protected_key_is_read_only_when_ssh_is_used() {
    let sim = Vcsim::start().await.unwrap();
    let _agent = sim.guest_agent(AgentOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let private = utf8(&dir).join("id_ed25519");
    vmw_testbed::sshd::keygen_with_passphrase(&private, "locked", "secret").unwrap();
    let public = camino::Utf8PathBuf::from(format!("{private}.pub"));
    let key = vmw_cloud::KeyPair::from_files(&public, None, "locked".to_owned()).unwrap();
    // Building, listing and launching never read the private key.
    let cloud = CloudBuilder::new("locked")
        .timestamp(false)
        .config(sim.config())
        .key_pair(key)
        .environment(vmw_config::Environment::default())
        .settings(Settings {
            known_hosts: Some(vmw_ssh::KnownHosts::new(utf8(&dir).join("known_hosts"))),
            ..fast_settings()
        })
        .build_with(sim.govc())
        .unwrap();
    assert!(cloud.list(&Scope::ThisTag).await.unwrap().is_empty());
    let inst = cloud
        .launch(&common::img("TEMPLATE-cloud-init-jammy"), &ip_wait())
        .await
        .unwrap();
    assert_eq!(cloud.list(&Scope::ThisTag).await.unwrap().len(), 1);

    // SSH needs it, and says which file cannot be used and why.
    let err = inst.execute("true").await.unwrap_err();
    assert!(
        matches!(&err, CloudError::Ssh(vmw_ssh::SshError::Key { path, .. }) if *path == private),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("private key {private}: ")),
        "{text}"
    );
    assert!(text.contains("passphrase"), "{text}");
    let hints = err.hints().join("\n");
    assert!(
        hints.contains("without a passphrase") && hints.contains("SSH agent"),
        "{hints}"
    );
    // Readiness ends on it at once.
    let err = inst.wait_until(WaitStage::Ssh).await.unwrap_err();
    assert!(
        matches!(&err, CloudError::Ssh(vmw_ssh::SshError::Key { .. })),
        "{err:?}"
    );
    inst.delete().await.unwrap();
}

/// A bed whose clones take `clone_ms` (vcsim's method delay).
async fn slow_clone_bed(clone_ms: u32) -> Bed {
    let sim = Vcsim::start_with(VcsimOptions::new().method_delay("CloneVM_Task", clone_ms))
        .await
        .unwrap();
    let seeded = all_vms(&sim).await;
    let agent = sim.guest_agent(AgentOptions::default());
    let (cloud, keys) = cloud_on(&sim, "it", fast_settings());
    Bed {
        sim,
        _agent: Some(agent),
        _keys: keys,
        cloud,
        seeded,
    }
}

#[tokio::test]
async fn cancelling_a_fleet_mid_clone_awaits_the_clones_and_removes_them() {
    let bed = slow_clone_bed(2000).await;
    let token = tokio_util::sync::CancellationToken::new();
    let options = ip_wait();
    let cloud = bed.cloud.cancel_on(&token);
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        token.cancel();
    };
    let image = common::img("TEMPLATE-cloud-init-jammy");
    let (fleet, ()) = tokio::join!(cloud.launch_many(&image, 3, &options), canceller);
    let fleet = fleet.unwrap();
    assert!(fleet.instances.is_empty());
    assert_eq!(fleet.failures.len(), 3);
    for (_, e) in &fleet.failures {
        let CloudError::Step {
            step,
            source,
            removed,
            rollback,
            ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*step, Step::Clone, "{e}");
        assert!(matches!(**source, CloudError::Cancelled), "{e}");
        assert!(*removed && rollback.is_none(), "{e}");
    }
    assert!(bed.cloud.tracked_instances().is_empty());
    // The clones vCenter finished were removed; none appears later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(all_vms(&bed.sim).await, bed.seeded);
}

#[tokio::test]
async fn cancelling_after_the_clone_rolls_back_and_a_cancelled_launch_never_starts() {
    let bed = bed().await;
    let token = tokio_util::sync::CancellationToken::new();
    let options = LaunchOptions {
        wait: WaitStage::Ssh,
        ..LaunchOptions::default()
    };
    let cloud = bed.cloud.cancel_on(&token);
    let image = common::img("TEMPLATE-cloud-init-jammy");
    let canceller = async {
        // Long enough for clone and power-on; the SSH wait never succeeds.
        tokio::time::sleep(Duration::from_secs(3)).await;
        token.cancel();
    };
    let (result, ()) = tokio::join!(cloud.launch(&image, &options), canceller);
    let err = result.unwrap_err();
    let CloudError::Step {
        source, removed, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(matches!(**source, CloudError::Cancelled), "{err}");
    assert!(*removed, "{err}");
    assert_eq!(all_vms(&bed.sim).await, bed.seeded);

    // Already cancelled: nothing is even looked up.
    let err = cloud.launch(&image, &options).await.unwrap_err();
    assert!(matches!(err, CloudError::Cancelled), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_dropped_mid_clone_removes_its_vm_in_the_background() {
    let bed = slow_clone_bed(1500).await;
    let options = ip_wait();
    let image = common::img("TEMPLATE-cloud-init-jammy");
    let launch = bed.cloud.launch(&image, &options);
    // Dropped while the clone is under way (as a caller's timeout or a
    // select! would).
    let dropped = tokio::time::timeout(Duration::from_millis(600), launch).await;
    assert!(dropped.is_err(), "the launch should still be cloning");
    assert_eq!(bed.cloud.tracked_instances().len(), 1);
    // vCenter finishes the clone; the background removal finds and
    // destroys it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline
        && (!bed.cloud.tracked_instances().is_empty() || all_vms(&bed.sim).await != bed.seeded)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(bed.cloud.tracked_instances().is_empty());
    assert_eq!(all_vms(&bed.sim).await, bed.seeded);
}

/// The connection to vCenter breaks right after the clone request was sent
/// (a proxy forwards the request, then closes the client's side): vCenter
/// still makes the VM. The launch finds it by its path and removes it, as
/// it carries this launch's marker; nothing is left.
#[tokio::test]
async fn a_connection_lost_after_the_clone_request_leaves_nothing_behind() {
    use vmw_testbed::{ClientClose, FaultProxy, FaultRule};
    for close in [ClientClose::Eof, ClientClose::Reset] {
        let sim = Vcsim::start_with(VcsimOptions::new().plain_http())
            .await
            .unwrap();
        let seeded = all_vms(&sim).await;
        let proxy = FaultProxy::start(
            sim.socket_addr(),
            FaultRule::drop_after("CloneVM_Task").close(close),
        )
        .await
        .unwrap();
        let (cloud, _keys) = cloud_with(
            sim.govc_via(proxy.address()),
            sim.config_via(proxy.address()),
            "lost",
            Settings {
                clone_grace: Duration::from_secs(30),
                ..fast_settings()
            },
        );
        let err = cloud
            .launch(&common::img("TEMPLATE-cloud-init-jammy"), &ip_wait())
            .await
            .unwrap_err();
        assert_eq!(proxy.fired(), 1);
        let CloudError::Step {
            step,
            removed,
            rollback,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*step, Step::Clone, "{err}");
        assert_eq!(
            err.govc().map(vmw_govc::GovcError::kind),
            Some(vmw_govc::ErrorKind::ConnectionLost),
            "{err}"
        );
        assert!(*removed && rollback.is_none(), "{close:?}: {err}");
        assert!(cloud.tracked_instances().is_empty());
        assert_eq!(all_vms(&sim).await, seeded, "{close:?}: no VM left");
    }
}
