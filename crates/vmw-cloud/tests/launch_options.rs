//! What users set at launch, against a real vcsim, read back from what the
//! vCenter got: the console log (a serial port writing to a file in the
//! VM's own folder), the first NIC's network, the first disk's size, the
//! waits of one launch, and a failed launch kept for inspection with its
//! evidence, and power as users expect it (graceful stop and reboot).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::cloud_on;

use std::time::Duration;

use camino::Utf8PathBuf;
use vmw_cloud::{CloudError, LaunchOptions, Restart, Settings, Step, WaitStage};
use vmw_govc::parse::datastore_path;
use vmw_govc::requests::{Find, ObjectCollect, ObjectType, VmInfo};
use vmw_govc::{GovcExt, VmRef};
use vmw_testbed::{AgentOptions, Vcsim};

const IMAGE: &str = "TEMPLATE-cloud-init-jammy";

fn settings() -> Settings {
    Settings {
        ip_wait: Duration::from_secs(20),
        ip_poll: Duration::from_millis(100),
        ..Settings::default()
    }
}

fn no_wait() -> LaunchOptions {
    LaunchOptions {
        wait: WaitStage::None,
        ..LaunchOptions::default()
    }
}

fn with_console() -> LaunchOptions {
    LaunchOptions {
        console_log: Some(true),
        ..no_wait()
    }
}

async fn info(sim: &Vcsim, name: &str) -> vmw_govc::parse::VmInfo {
    let mut v = sim
        .govc()
        .exec(&VmInfo::new(VmRef::resolve("/DC0/vm", name).unwrap()))
        .await
        .unwrap();
    assert_eq!(v.len(), 1, "{name} should exist");
    v.remove(0)
}

async fn vm_count(sim: &Vcsim) -> usize {
    sim.govc()
        .exec(&Find::new("/").kind(ObjectType::VirtualMachine))
        .await
        .unwrap()
        .len()
}

/// Where vcsim keeps a datastore file on this machine.
async fn local_file(sim: &Vcsim, file: &str) -> Utf8PathBuf {
    let (ds, path) = datastore_path(file).unwrap();
    let props = sim
        .govc()
        .exec(&ObjectCollect::new(
            format!("/DC0/datastore/{ds}"),
            ["info.url"],
        ))
        .await
        .unwrap();
    Utf8PathBuf::from(props.str("info.url").unwrap()).join(path)
}

#[tokio::test]
async fn a_launch_gives_its_vm_a_console_log_of_its_own() {
    let sim = Vcsim::start().await.unwrap();
    let (cloud, _keys) = cloud_on(&sim, "con", settings());
    let inst = cloud
        .launch(&common::img(IMAGE), &with_console())
        .await
        .unwrap();
    let vm = info(&sim, inst.name()).await;
    assert_eq!(vm.serial_ports.len(), 1, "{:?}", vm.serial_ports);
    let file = vm.serial_ports[0].file.clone().unwrap();
    assert!(
        file.starts_with(&format!("[LocalDS_0] {}/", inst.name())) && file.ends_with(".log"),
        "{file}"
    );
    // Nothing written yet; then what the guest writes.
    assert_eq!(inst.console_log().await.unwrap(), "");
    let text = "Linux version 6.1.0\r\ncloud-init: modules final\r\n";
    std::fs::write(local_file(&sim, &file).await, text).unwrap();
    assert_eq!(inst.console_log().await.unwrap(), text);
    // A guest that does not answer in time (no address here) is reported
    // with the end of its console.
    let err = inst
        .clone()
        .with_timeouts(Some(Duration::from_secs(1)), None)
        .wait_until(WaitStage::Ip)
        .await
        .unwrap_err();
    let CloudError::NoAnswer {
        step,
        console: Some(console),
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*step, Step::WaitIp);
    assert_eq!(console, "Linux version 6.1.0\ncloud-init: modules final");
    assert!(
        err.to_string().contains("  | cloud-init: modules final"),
        "{err}"
    );

    // An image made from it has the port; an instance of the image reuses
    // it (no second port), connected to a file in its own folder.
    let image = cloud.snapshot(&inst, false).await.unwrap();
    let second = cloud.launch(&image, &with_console()).await.unwrap();
    let vm = info(&sim, second.name()).await;
    assert_eq!(vm.serial_ports.len(), 1, "{:?}", vm.serial_ports);
    let file = vm.serial_ports[0].file.clone().unwrap();
    assert!(
        file.starts_with(&format!("[LocalDS_0] {}/", second.name())),
        "{file}"
    );
    assert_eq!(second.console_log().await.unwrap(), "");

    // Off by default: no port, and no console log.
    let off = cloud.launch(&common::img(IMAGE), &no_wait()).await.unwrap();
    assert!(info(&sim, off.name()).await.serial_ports.is_empty());
    let err = off.console_log().await.unwrap_err();
    assert!(matches!(err, CloudError::NoConsole { .. }), "{err}");
    cloud.clean().await.unwrap();
}

#[tokio::test]
async fn network_and_disk_size_are_what_the_vm_gets() {
    let sim = Vcsim::start().await.unwrap();
    let (cloud, _keys) = cloud_on(&sim, "hw", settings());
    let inst = cloud
        .launch(
            &common::img(IMAGE),
            &LaunchOptions {
                network: Some("VM Network".into()),
                disk_gib: Some(20),
                ..no_wait()
            },
        )
        .await
        .unwrap();
    let vm = info(&sim, inst.name()).await;
    assert_eq!(vm.disks[0].capacity_bytes, 20 << 30, "{:?}", vm.disks);
    let props = sim
        .govc()
        .exec(&ObjectCollect::new(inst.vm().as_str(), ["network"]))
        .await
        .unwrap();
    let networks = props.get("network").unwrap().to_string();
    assert!(networks.contains("\"Network\""), "{networks}");
    assert!(
        !networks.contains("DistributedVirtualPortgroup"),
        "{networks}"
    );

    // A disk would shrink: refused before anything is made.
    let before = vm_count(&sim).await;
    let err = cloud
        .launch(
            &common::img(IMAGE),
            &LaunchOptions {
                disk_gib: Some(1),
                ..no_wait()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CloudError::InvalidOption {
                option: "disk size",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("never shrinks"), "{err}");
    assert_eq!(vm_count(&sim).await, before);
    cloud.clean().await.unwrap();
}

#[tokio::test]
async fn a_launch_waits_as_long_as_it_says_and_can_keep_a_failed_vm() {
    // No guest agent: no address ever comes.
    let sim = Vcsim::start().await.unwrap();
    let (cloud, _keys) = cloud_on(&sim, "keep", settings());
    let one_second = LaunchOptions {
        wait: WaitStage::Ip,
        ip_timeout: Some(Duration::from_secs(1)),
        ..LaunchOptions::default()
    };
    let started = std::time::Instant::now();
    let err = cloud
        .launch(&common::img(IMAGE), &one_second)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15), "{err}");
    let CloudError::Step { step, source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*step, Step::WaitIp);
    // The guest never answered: said so, with its console (none here).
    let CloudError::NoAnswer {
        source, console, ..
    } = source.as_ref()
    else {
        panic!("{err:?}")
    };
    assert!(console.is_none(), "{console:?}");
    assert!(
        matches!(source.as_ref(), CloudError::IpTimeout { waited, .. } if *waited == Duration::from_secs(1)),
        "{err}"
    );
    assert!(err.to_string().contains("was removed"), "{err}");

    // Kept: the VM stays, untracked, with what could be collected.
    let dir = tempfile::tempdir().unwrap();
    let evidence_dir = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    let keep = LaunchOptions {
        keep_on_failure: Some(evidence_dir.clone()),
        ..one_second
    };
    let err = cloud.launch(&common::img(IMAGE), &keep).await.unwrap_err();
    let CloudError::Kept {
        vm, step, evidence, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*step, Step::WaitIp);
    let name = vm.rsplit('/').next().unwrap().to_owned();
    assert!(info(&sim, &name).await.power_state == vmw_govc::parse::PowerState::On);
    assert!(cloud.tracked_instances().is_empty());
    let evidence = evidence.as_ref().unwrap();
    assert_eq!(evidence.dir, evidence_dir.join(&name));
    assert!(evidence.dir.is_dir());
    let missing = evidence.missing.join("\n");
    assert!(missing.contains("console log"), "{missing}");
    assert!(missing.contains("no address"), "{missing}");
    assert!(err.to_string().contains("kept for inspection"), "{err}");

    // A clean leaves it; it is deleted by hand.
    cloud.clean().await.unwrap();
    let kept = cloud.get_instance(&name).await.unwrap();
    kept.delete().await.unwrap();
    let _ = AgentOptions::default();
}

#[tokio::test]
async fn power_as_users_expect_it() {
    let sim = Vcsim::start().await.unwrap();
    let _agent = sim.guest_agent(AgentOptions::default());
    let (cloud, _keys) = cloud_on(&sim, "pwr", settings());
    let inst = cloud
        .launch(&common::img(IMAGE), &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    // vcsim shuts a guest down when asked.
    assert_eq!(
        inst.shutdown_guest(Duration::from_secs(30)).await.unwrap(),
        vmw_cloud::PowerOff::Graceful
    );
    assert_eq!(
        info(&sim, inst.name()).await.power_state,
        vmw_govc::parse::PowerState::Off
    );
    assert_eq!(
        inst.shutdown_guest(Duration::from_secs(30)).await.unwrap(),
        vmw_cloud::PowerOff::AlreadyOff
    );
    // A guest without VMware Tools cannot be asked to reboot: the VM is
    // power-cycled instead, and has its address again.
    inst.power_on().await.unwrap();
    let ip = inst
        .restart(
            Restart::Guest {
                timeout: Duration::from_secs(30),
            },
            WaitStage::Ip,
        )
        .await
        .unwrap();
    assert_eq!(ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(
        info(&sim, inst.name()).await.power_state,
        vmw_govc::parse::PowerState::On
    );
    cloud.clean().await.unwrap();
}

#[tokio::test]
async fn pycloudlib_names_work_as_there() {
    let sim = Vcsim::start().await.unwrap();
    let _agent = sim.guest_agent(AgentOptions::default());
    let (cloud, keys) = cloud_on(&sim, "py", settings());
    // get_image_id_from_name: exact, else the first containing it.
    assert_eq!(
        cloud.image_by_name("jammy").await.unwrap().name(),
        "TEMPLATE-cloud-init-jammy"
    );
    assert!(cloud.image_by_name("no-such").await.is_err());

    let inst = cloud
        .launch(&common::img(IMAGE), &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    inst.power_off().await.unwrap();
    inst.wait_for_stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        {
            inst.power_on().await.unwrap();
            inst.wait_until(WaitStage::Ip).await.unwrap()
        },
        Some("127.0.0.1".parse().unwrap())
    );
    let err = inst
        .wait_for_stop(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::TimedOut { .. }), "{err}");

    let image = cloud.snapshot(&inst, false).await.unwrap();
    assert_eq!(cloud.image_by_name("-image").await.unwrap(), image);

    // use_key: later launches carry the new key.
    let other =
        vmw_cloud::KeyPair::generated_in(&common::utf8(&keys).join("other"), "other".into())
            .unwrap();
    cloud.use_key(other.clone());
    assert_eq!(cloud.key_pair().public_path, other.public_path);
    let next = cloud.launch(&common::img(IMAGE), &no_wait()).await.unwrap();
    let mut request = VmInfo::new(next.vm().clone());
    request.extra_config = true;
    let vm = sim.govc().exec(&request).await.unwrap().remove(0);
    let user_data =
        String::from_utf8(common::guestinfo(&vm, vmw_userdata::Field::UserData)).unwrap();
    let body = other.public_key.to_string();
    let body = body.split_whitespace().nth(1).unwrap();
    assert!(user_data.contains(body), "{user_data}");

    inst.delete().await.unwrap();
    inst.wait_for_delete(Duration::from_secs(5)).await.unwrap();
    cloud.clean().await.unwrap();
}

#[tokio::test]
async fn checkpoints_and_linked_clones_that_share_a_snapshot() {
    let sim = Vcsim::start().await.unwrap();
    let (cloud, _keys) = cloud_on(&sim, "cp", settings());
    let inst = cloud.launch(&common::img(IMAGE), &no_wait()).await.unwrap();
    assert!(inst.checkpoints().await.unwrap().is_empty());
    let clean = inst.checkpoint("clean").await.unwrap();
    assert_eq!(clean.name, "clean");
    assert!(clean.id.starts_with("snapshot-"), "{clean:?}");
    let err = inst.checkpoint("clean").await.unwrap_err();
    assert!(err.to_string().contains("already"), "{err}");
    let later = inst.checkpoint("later").await.unwrap();
    let names: Vec<String> = inst
        .checkpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["clean", "later"]);

    assert_eq!(inst.revert("clean").await.unwrap().id, clean.id);
    let current: Vec<String> = inst
        .checkpoints()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.current)
        .map(|c| c.id)
        .collect();
    assert_eq!(current, std::slice::from_ref(&clean.id));
    let err = inst.revert("nope").await.unwrap_err();
    assert!(
        matches!(&err, CloudError::NoSuchCheckpoint { known, .. } if known.len() == 2),
        "{err}"
    );
    assert_eq!(
        inst.delete_checkpoint(&later.id).await.unwrap(),
        vmw_cloud::Removal::Destroyed
    );
    assert_eq!(
        inst.delete_checkpoint("later").await.unwrap(),
        vmw_cloud::Removal::AlreadyGone
    );

    // A template is not vmw's to checkpoint.
    let template = cloud.get_instance(IMAGE).await.unwrap();
    let err = template.checkpoint("mine").await.unwrap_err();
    assert!(matches!(err, CloudError::TemplateProtected { .. }), "{err}");

    // Linked clones come from one snapshot of the image, taken once.
    let linked = LaunchOptions {
        linked_clone: true,
        ..no_wait()
    };
    let fleet = cloud
        .launch_many(&common::img(IMAGE), 2, &linked)
        .await
        .unwrap();
    assert!(fleet.failures.is_empty(), "{:?}", fleet.failures);
    let image_snapshots: Vec<String> = template
        .checkpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(image_snapshots, [vmw_cloud::LINKED_BASE]);
    cloud.clean().await.unwrap();
}
