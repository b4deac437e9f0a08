//! The whole chain for real: launch on vcsim → address from govc (reported
//! by the guest-agent stand-in as 127.0.0.1) → SSH to a real sshd with the
//! key the user data carried → cloud-init stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{cloud_on, guestinfo, utf8};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmw_cloud::{Cloud, CloudError, LaunchOptions, Restart, Settings, Step, StepHook, WaitStage};
use vmw_govc::requests::VmInfo;
use vmw_govc::{GovcExt, ProcessGovc};
use vmw_ssh::{ReadyTimeouts, SshConfig, SshError, WaitFor};
use vmw_testbed::sshd::{CloudInitMode, Sshd};
use vmw_testbed::{AgentOptions, GuestAgent, SshAgent, Vcsim};
use vmw_userdata::Field;

struct Chain {
    sim: Vcsim,
    agent: Option<GuestAgent>,
    sshd: Sshd,
    _keys: tempfile::TempDir,
    cloud: Cloud<ProcessGovc>,
}

fn settings(sshd: &Sshd, ready: Duration) -> Settings {
    Settings {
        concurrency: 4,
        ip_wait: Duration::from_secs(5),
        ip_poll: Duration::from_millis(100),
        ssh: SshConfig {
            user: sshd.user(),
            port: sshd.port(),
            connect_timeout: Duration::from_secs(5),
            banner_timeout: Duration::from_secs(10),
            ..SshConfig::default()
        },
        ready: ReadyTimeouts {
            ready,
            poll: Duration::from_millis(200),
            ..ReadyTimeouts::default()
        },
        ..Settings::default()
    }
}

async fn chain(agent: bool, ready: Duration) -> Chain {
    let sim = Vcsim::start().await.unwrap();
    let agent = agent.then(|| sim.guest_agent(AgentOptions::default()));
    let sshd = Sshd::start().unwrap();
    let (cloud, keys) = cloud_on(&sim, "ssh", settings(&sshd, ready));
    Chain {
        sim,
        agent,
        sshd,
        _keys: keys,
        cloud,
    }
}

/// The `ssh_authorized_keys` a VM's guestinfo user data carries.
async fn keys_in_guestinfo(sim: &Vcsim, vm: &str) -> Vec<String> {
    let mut r = VmInfo::new(vmw_govc::VmRef::in_folder("/DC0/vm", vm).unwrap());
    r.extra_config = true;
    let info = sim.govc().exec(&r).await.unwrap().remove(0);
    let user_data = guestinfo(&info, Field::UserData);
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&user_data).unwrap();
    yaml["ssh_authorized_keys"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_key_the_user_data_carried_is_the_one_sshd_accepts() {
    let c = chain(true, Duration::from_secs(20)).await;
    let inst = c
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions::wait_for_ip(),
        )
        .await
        .unwrap();
    // The guest side: only the keys the VM was given are authorized.
    let keys = keys_in_guestinfo(&c.sim, inst.name()).await;
    assert_eq!(keys.len(), 1);
    let lines: Vec<&str> = keys.iter().map(String::as_str).collect();
    c.sshd.set_authorized_keys(&lines).unwrap();

    assert_eq!(
        inst.wait().await.unwrap(),
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    let r = inst.execute("cloud-init status --long").await.unwrap();
    assert!(r.ok(), "{r:?}");
    assert!(r.stdout.starts_with("status: done"), "{}", r.stdout);
    let r = inst
        .execute(vec!["printf", "%s", "spaced 'quoted' ü"])
        .await
        .unwrap();
    assert_eq!(r.stdout, "spaced 'quoted' ü");

    let dir = tempfile::tempdir().unwrap();
    let local = camino::Utf8PathBuf::from_path_buf(dir.path().join("f")).unwrap();
    std::fs::write(&local, b"payload").unwrap();
    let remote = format!("{}/pushed", c.sshd.dir());
    inst.push_file(&local, &remote).await.unwrap();
    let back = local.with_file_name("back");
    inst.pull_file(&remote, &back).await.unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"payload");
    assert_eq!(
        inst.boot_id().await.unwrap(),
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap()
            .trim()
    );
    assert!(c.agent.is_some());
}

#[tokio::test]
async fn the_agent_of_ssh_auth_sock_signs_for_a_passphrase_protected_key() {
    let sim = Vcsim::start().await.unwrap();
    let _reporter = sim.guest_agent(AgentOptions::default());
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let private = utf8(&dir).join("id_ed25519");
    vmw_testbed::sshd::keygen_with_passphrase(&private, "locked", "secret").unwrap();
    let public = camino::Utf8PathBuf::from(format!("{private}.pub"));
    let agent = SshAgent::start().unwrap();
    agent.add(&private, "secret").unwrap();
    let key = vmw_cloud::KeyPair::from_files(&public, None, "locked".to_owned()).unwrap();
    let mut settings = settings(&sshd, Duration::from_secs(20));
    settings.known_hosts = Some(vmw_ssh::KnownHosts::new(utf8(&dir).join("known_hosts")));
    let cloud = vmw_cloud::CloudBuilder::new("agent")
        .timestamp(false)
        .config(sim.config())
        .key_pair(key)
        .environment(vmw_config::Environment::from_pairs([(
            vmw_config::env::SSH_AUTH_SOCK,
            agent.socket().as_str(),
        )]))
        .settings(settings)
        .build_with(sim.govc())
        .unwrap();
    let inst = cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions::wait_for_ip(),
        )
        .await
        .unwrap();
    let keys = keys_in_guestinfo(&sim, inst.name()).await;
    let lines: Vec<&str> = keys.iter().map(String::as_str).collect();
    sshd.set_authorized_keys(&lines).unwrap();

    inst.wait().await.unwrap();
    let r = inst.execute("echo signed-by-the-agent").await.unwrap();
    assert_eq!(r.stdout, "signed-by-the-agent");
    inst.delete().await.unwrap();
}

#[tokio::test]
async fn launch_waits_until_ready_by_default() {
    let c = chain(true, Duration::from_secs(20)).await;
    c.sshd
        .authorize(&c.cloud.key_pair().public_key.to_string())
        .unwrap();
    c.sshd
        .set_cloud_init(Duration::from_millis(700), CloudInitMode::Done)
        .unwrap();
    let started = Instant::now();
    let heard: Arc<Mutex<Vec<Step>>> = Arc::default();
    let h = heard.clone();
    let options = LaunchOptions {
        on_step: Some(StepHook::new(move |_, step| h.lock().unwrap().push(step))),
        ..LaunchOptions::default()
    };
    let inst = c
        .cloud
        .launch(&common::img("TEMPLATE-cloud-init-focal"), &options)
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(700));
    // Each stage of the wait is announced as it begins, in order.
    assert_eq!(
        *heard.lock().unwrap(),
        [
            Step::Clone,
            Step::WriteGuestinfo,
            Step::Configure,
            Step::PowerOn,
            Step::WaitIp,
            Step::WaitSsh,
            Step::WaitReady
        ]
    );
    assert!(
        c.sshd
            .cloud_init_calls()
            .iter()
            .any(|l| l.contains("status --wait --long"))
    );
    assert_eq!(inst.cached_ip(), Some("127.0.0.1".parse().unwrap()));
}

/// The error a guest that did not answer in time was reported with
/// ([`CloudError::NoAnswer`] wraps it, with the console when there is one).
fn silence(err: &CloudError) -> &CloudError {
    match err {
        CloudError::NoAnswer { source, .. } => source,
        other => other,
    }
}

#[tokio::test]
async fn wait_times_out_at_each_stage_with_the_right_error() {
    // IP: no guest agent, so no address ever comes.
    let c = chain(false, Duration::from_secs(2)).await;
    let inst = c
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
    let err = inst.wait().await.unwrap_err();
    assert!(
        matches!(
            &err,
            CloudError::NoAnswer {
                step: Step::WaitIp,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        matches!(silence(&err), CloudError::IpTimeout { .. }),
        "{err}"
    );

    // SSH: the server refuses the key.
    let c = chain(true, Duration::from_secs(2)).await;
    let inst = c
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions::wait_for_ip(),
        )
        .await
        .unwrap();
    let err = inst.wait().await.unwrap_err();
    assert!(
        matches!(silence(&err), CloudError::Ssh(e) if e.waiting_for() == Some(WaitFor::Ssh)),
        "{err}"
    );
    // Through launch, the failed step is the SSH wait.
    let err = c
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::WaitSsh), "{err}");

    // cloud-init: it never finishes in time. Through launch, the failed
    // wait also removes the VM. (A budget that leaves SSH time to answer
    // even on a loaded machine.)
    let c = chain(true, Duration::from_secs(8)).await;
    c.sshd
        .authorize(&c.cloud.key_pair().public_key.to_string())
        .unwrap();
    c.sshd
        .set_cloud_init(Duration::from_secs(60), CloudInitMode::Done)
        .unwrap();
    let err = c
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::WaitReady), "{err}");
    let CloudError::Step {
        source, removed, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(*removed);
    assert!(
        matches!(silence(source), CloudError::Ssh(e) if e.waiting_for() == Some(WaitFor::CloudInit)),
        "{err}"
    );

    // cloud-init reports an error.
    c.sshd
        .set_cloud_init(Duration::ZERO, CloudInitMode::Error)
        .unwrap();
    let inst = c
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions::wait_for_ip(),
        )
        .await
        .unwrap();
    let err = inst.wait().await.unwrap_err();
    assert!(
        matches!(&err, CloudError::Ssh(SshError::Failed { what, .. }) if what == "cloud-init"),
        "{err}"
    );
}

#[tokio::test]
async fn new_host_keys_after_a_boot_by_vmw_are_recorded_and_refused_otherwise() {
    let mut c = chain(true, Duration::from_secs(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = vmw_ssh::KnownHosts::new(utf8(&dir).join("known_hosts"));
    let mut settings = settings(&c.sshd, Duration::from_secs(20));
    settings.known_hosts = Some(store.clone());
    let (cloud, _keys) = cloud_on(&c.sim, "rekey", settings);
    c.sshd
        .authorize(&cloud.key_pair().public_key.to_string())
        .unwrap();
    let inst = cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions::default(),
        )
        .await
        .unwrap();
    let recorded = |store: &vmw_ssh::KnownHosts| {
        store
            .get(inst.host_key_identity())
            .unwrap()
            .unwrap()
            .fingerprint()
    };
    let first = recorded(&store);

    // The guest makes new host keys while it is off (as cloud-init does on
    // the first boot after `cloud-init clean`); vmw powers it on: the new
    // key is recorded, and the guest is ready.
    inst.power_off().await.unwrap();
    c.sshd.restart_with_new_host_key().unwrap();
    inst.power_on().await.unwrap();
    inst.wait().await.unwrap();
    assert!(inst.execute("true").await.unwrap().ok());
    let second = recorded(&store);
    assert_ne!(first, second);

    // A key that changes with no boot by vmw is refused, and the store
    // keeps the key of the last boot.
    c.sshd.restart_with_new_host_key().unwrap();
    vmw_ssh::Guest::disconnect(inst.guest().await.unwrap().as_ref()).await;
    let err = inst.execute("true").await.unwrap_err();
    assert!(
        matches!(&err, CloudError::Ssh(e) if e.stage() == Some(vmw_ssh::Stage::HostKey)),
        "{err}"
    );
    assert_eq!(recorded(&store), second);
}

#[tokio::test]
async fn a_restart_whose_boot_id_never_changes_times_out() {
    let c = chain(true, Duration::from_secs(3)).await;
    c.sshd
        .authorize(&c.cloud.key_pair().public_key.to_string())
        .unwrap();
    let inst = c
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions::default(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let err = inst
        .restart(Restart::PowerCycle, WaitStage::Ready)
        .await
        .unwrap_err();
    // The VM was power-cycled on vcsim, but the "guest" (this machine)
    // keeps its boot id: vmw must not take the old guest for a new boot.
    assert!(
        matches!(&err, CloudError::NoAnswer { source, .. }
            if matches!(source.as_ref(), CloudError::Ssh(e) if e.waiting_for() == Some(WaitFor::Reboot))),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(
        inst.power_state().await.unwrap(),
        vmw_govc::parse::PowerState::On
    );
}

#[tokio::test]
async fn snapshot_with_clean_cleans_the_guest_then_clones() {
    let c = chain(true, Duration::from_secs(20)).await;
    c.sshd
        .authorize(&c.cloud.key_pair().public_key.to_string())
        .unwrap();
    let inst = c
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions::default(),
        )
        .await
        .unwrap();
    assert!(c.sshd.syslog_exists());
    let image = c.cloud.snapshot(&inst, true).await.unwrap();
    assert_eq!(c.sshd.machine_id(), "");
    assert!(!c.sshd.syslog_exists());
    assert!(
        c.sshd
            .cloud_init_calls()
            .iter()
            .any(|l| l.contains("clean --logs"))
    );
    assert_eq!(c.cloud.tracked_images(), std::slice::from_ref(image.path()));
    c.cloud.clean().await.unwrap();
}

#[tokio::test]
async fn a_failed_cloud_init_kept_for_inspection_leaves_its_evidence() {
    let c = chain(true, Duration::from_secs(20)).await;
    c.sshd
        .authorize(&c.cloud.key_pair().public_key.to_string())
        .unwrap();
    c.sshd
        .set_cloud_init(Duration::ZERO, CloudInitMode::Error)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let evidence_dir = camino::Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    let err = c
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-jammy"),
            &LaunchOptions {
                keep_on_failure: Some(evidence_dir.clone()),
                ..LaunchOptions::default()
            },
        )
        .await
        .unwrap_err();
    let CloudError::Kept {
        vm, step, evidence, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*step, Step::WaitReady, "{err}");
    let name = vm.rsplit('/').next().unwrap();
    let evidence = evidence.as_ref().unwrap();
    assert_eq!(evidence.dir, evidence_dir.join(name));
    // cloud-init's own account of the failure, from the guest.
    let status = std::fs::read_to_string(evidence.dir.join("cloud-init-status.txt")).unwrap();
    assert!(status.contains("$ cloud-init status --long"), "{status}");
    assert!(status.contains("error"), "{status}");
    assert!(
        evidence
            .files
            .contains(&evidence.dir.join("cloud-init-status.txt"))
    );
    // The VM stays, no longer tracked; the error says so.
    assert!(c.cloud.tracked_instances().is_empty());
    assert!(err.to_string().contains("kept for inspection"), "{err}");
    let kept = c.cloud.get_instance(name).await.unwrap();
    assert_eq!(
        kept.collect_evidence(&evidence_dir.join("again"))
            .await
            .unwrap()
            .dir,
        evidence_dir.join("again")
    );
    kept.delete().await.unwrap();
}
