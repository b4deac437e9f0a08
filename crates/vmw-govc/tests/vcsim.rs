//! Every request run through the real process backend against a real vcsim,
//! and every error class provoked for real.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use vmw_govc::parse::PowerState;
use vmw_govc::requests::{
    About, Find, GovcVersion, Import, ImportSpec, MarkAsTemplate, MarkAsVm, ObjectCollect,
    ObjectType, PowerOp, VmChange, VmClone, VmDestroy, VmInfo, VmIp, VmPower,
};
use vmw_govc::{Command, ErrorKind, Govc, GovcError, GovcExt, ProcessGovc, Request, VmRef, ops};
use vmw_testbed::{CLUSTER_POOL, HOST_POOL, TEMPLATES, VM_FOLDER, Vcsim, VcsimOptions};

const FOCAL: &str = "TEMPLATE-cloud-init-focal";

fn template_path(name: &str) -> String {
    format!("{VM_FOLDER}/{name}")
}

/// The VM `name` in the test folder.
fn at(name: &str) -> VmRef {
    VmRef::in_folder(VM_FOLDER, name).unwrap()
}

async fn clone(govc: &ProcessGovc, name: &str) {
    let mut r = VmClone::new(at(FOCAL), at(name));
    r.pool = Some(CLUSTER_POOL.to_owned());
    govc.exec(&r).await.unwrap();
}

async fn info(govc: &ProcessGovc, name: &str) -> vmw_govc::parse::VmInfo {
    let mut r = VmInfo::new(at(name));
    r.extra_config = true;
    let mut vms = govc.exec(&r).await.unwrap();
    assert_eq!(vms.len(), 1, "{name}");
    vms.remove(0)
}

async fn power_state(govc: &ProcessGovc, name: &str) -> Option<PowerState> {
    govc.exec(&ObjectCollect::new(
        format!("{VM_FOLDER}/{name}"),
        ["runtime.powerState"],
    ))
    .await
    .unwrap()
    .power_state()
}

#[tokio::test]
async fn about_version_and_session_reuse() {
    let sim = Vcsim::start().await.unwrap();
    let govc = sim.govc();
    let about = govc.exec(&About).await.unwrap();
    assert!(about.is_vcenter(), "{about:?}");
    assert!(about.full_name.contains("govmomi simulator"));
    assert_eq!(
        govc.exec(&GovcVersion).await.unwrap(),
        vmw_govc::TESTED_VERSION
    );
    assert_eq!(
        govc.check_version().await.unwrap(),
        vmw_govc::TESTED_VERSION
    );
    // govc kept its login in the session directory of this server, user
    // and password, under the test bed's session root.
    let home = govc.target().session_dir().unwrap();
    assert_eq!(home.parent(), Some(sim.session_dir().as_path()));
    let sessions = home.join("sessions");
    let count = std::fs::read_dir(&sessions).unwrap().count();
    assert!(count >= 1, "no session file in {sessions}");
}

#[tokio::test]
async fn find_sees_the_seeded_templates_and_both_pools() {
    let sim = Vcsim::start().await.unwrap();
    let govc = sim.govc();
    let mut templates = govc
        .exec(
            &Find::new(VM_FOLDER)
                .kind(ObjectType::VirtualMachine)
                .name("TEMPLATE-cloud-init-*"),
        )
        .await
        .unwrap();
    templates.sort();
    assert_eq!(templates, TEMPLATES.map(template_path));

    // Seeded as standard, powered-off VMs on VM Network.
    for t in TEMPLATES {
        let vm = info(&govc, t).await;
        assert!(!vm.template);
        assert_eq!(vm.power_state, PowerState::Off);
    }
    let nets = govc
        .exec(&ObjectCollect::new(template_path(FOCAL), ["network"]))
        .await
        .unwrap();
    let refs = nets.get("network").and_then(|v| v.as_array()).unwrap();
    assert_eq!(refs.len(), 1, "one NIC: {refs:?}");
    assert_eq!(refs[0]["type"], "Network");

    let mut pools = ops::resource_pools(&govc).await.unwrap();
    pools.sort();
    assert_eq!(pools, [CLUSTER_POOL, HOST_POOL]);

    let none = govc
        .exec(&Find::new(VM_FOLDER).name("no-such-*"))
        .await
        .unwrap();
    assert!(none.is_empty());
    let only_templates = govc
        .exec(
            &Find::new(VM_FOLDER)
                .kind(ObjectType::VirtualMachine)
                .property("config.template", "true"),
        )
        .await
        .unwrap();
    assert!(only_templates.is_empty());
    let standard = govc
        .exec(
            &Find::new(VM_FOLDER)
                .kind(ObjectType::VirtualMachine)
                .name("TEMPLATE-*")
                .property("config.template", "false"),
        )
        .await
        .unwrap();
    assert_eq!(standard.len(), 2);
}

#[tokio::test]
async fn clone_with_every_option_then_info_shows_them() {
    let sim = Vcsim::start().await.unwrap();
    let govc = sim.govc();
    let mut r = VmClone::new(at(FOCAL), at("me-1"));
    r.datastore = Some(vmw_testbed::DATASTORE.to_owned());
    r.pool = Some(CLUSTER_POOL.to_owned());
    r.network = Some(vmw_testbed::NETWORK.to_owned());
    r.annotation = Some("made by vmw\ntag: me-1122-000000".to_owned());
    r.cpus = Some(4);
    r.memory_mb = Some(3072);
    govc.exec(&r).await.unwrap();

    let vm = info(&govc, "me-1").await;
    assert_eq!(vm.name, "me-1");
    assert_eq!((vm.cpus, vm.memory_mb), (4, 3072));
    assert_eq!(vm.annotation, "made by vmw\ntag: me-1122-000000");
    assert_eq!(vm.power_state, PowerState::Off);
    assert!(!vm.template);

    // Linked clone from the same source, powered on at once.
    let mut linked = VmClone::new(at(FOCAL), at("me-2"));
    linked.linked = true;
    linked.power_on = true;
    govc.exec(&linked).await.unwrap();
    assert_eq!(power_state(&govc, "me-2").await, Some(PowerState::On));
}

#[tokio::test]
async fn names_and_values_that_look_like_flags_or_need_quoting_pass_safely() {
    let sim = Vcsim::start().await.unwrap();
    let govc = sim.govc();
    let odd = "-on=true 'quoted' \"double\" ünïcødé";
    clone(&govc, odd).await;
    let found = govc
        .exec(
            &Find::new(VM_FOLDER)
                .kind(ObjectType::VirtualMachine)
                .name(odd),
        )
        .await
        .unwrap();
    assert_eq!(found, [format!("{VM_FOLDER}/{odd}")]);
    // Powered off still: "-on=true" was a name, not a flag.
    assert_eq!(info(&govc, odd).await.power_state, PowerState::Off);

    let dir = tempfile::tempdir().unwrap();
    let file = Utf8PathBuf::from_path_buf(dir.path().join("value with space")).unwrap();
    let bytes = "line one\n-dash 'q' \"dq\" ü €\nno newline at end";
    std::fs::write(&file, bytes).unwrap();
    govc.exec(
        &VmChange::new(at(odd))
            .extra("guestinfo.flag", "-e=x y")
            .extra("guestinfo.unicode", "ünï €")
            .extra_file("guestinfo.file", file.clone()),
    )
    .await
    .unwrap();
    let vm = info(&govc, odd).await;
    assert_eq!(vm.extra_config["guestinfo.flag"], "-e=x y");
    assert_eq!(vm.extra_config["guestinfo.unicode"], "ünï €");
    assert_eq!(vm.extra_config["guestinfo.file"], bytes);

    govc.exec(&VmDestroy::new(at(odd))).await.unwrap();
    assert!(govc.exec(&VmInfo::new(at(odd))).await.unwrap().is_empty());
}

#[tokio::test]
async fn change_sets_extra_config_cpus_memory_and_annotation() {
    let sim = Vcsim::start().await.unwrap();
    let govc = sim.govc();
    clone(&govc, "me-1").await;
    let dir = tempfile::tempdir().unwrap();
    let file = Utf8PathBuf::from_path_buf(dir.path().join("ud")).unwrap();
    std::fs::write(&file, "with trailing newline\n").unwrap();
    let mut change = VmChange::new(at("me-1"))
        .extra("guestinfo.userdata.encoding", "base64")
        .extra_file("guestinfo.userdata", file);
    change.cpus = Some(2);
    change.memory_mb = Some(1024);
    change.annotation = Some("changed".to_owned());
    govc.exec(&change).await.unwrap();
    let vm = info(&govc, "me-1").await;
    assert_eq!(vm.extra_config["guestinfo.userdata.encoding"], "base64");
    assert_eq!(
        vm.extra_config["guestinfo.userdata"], "with trailing newline\n",
        "govc stores the file's bytes verbatim"
    );
    assert_eq!((vm.cpus, vm.memory_mb), (2, 1024));
    assert_eq!(vm.annotation, "changed");
}

#[tokio::test]
async fn power_on_off_and_redundant_operations() {
    let sim = Vcsim::start().await.unwrap();
    let govc = sim.govc();
    clone(&govc, "me-1").await;
    govc.exec(&VmPower::new(at("me-1"), PowerOp::On))
        .await
        .unwrap();
    assert_eq!(power_state(&govc, "me-1").await, Some(PowerState::On));

    let again = govc
        .exec(&VmPower::new(at("me-1"), PowerOp::On))
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::InvalidPowerState, "{again}");
    assert_eq!(
        again.command().map(Command::argv),
        Some(vec![
            "vm.power".to_owned(),
            "-on=true".to_owned(),
            "--".to_owned(),
            "/DC0/vm/me-1".to_owned()
        ])
    );
    assert_eq!(
        again
            .stderr()
            .map(str::trim_end)
            .map(|s| s.ends_with("*types.InvalidPowerState")),
        Some(true)
    );

    govc.exec(&VmPower::new(at("me-1"), PowerOp::Reset))
        .await
        .unwrap();
    govc.exec(&VmPower::new(at("me-1"), PowerOp::Off))
        .await
        .unwrap();
    assert_eq!(power_state(&govc, "me-1").await, Some(PowerState::Off));
    let off_again = govc
        .exec(&VmPower::new(at("me-1"), PowerOp::Off))
        .await
        .unwrap_err();
    assert!(off_again.is_invalid_power_state(), "{off_again}");

    let missing = govc
        .exec(&VmPower::new(at("nope"), PowerOp::On))
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(missing.is_vm_not_found("/DC0/vm/nope"), "{missing}");
}

#[tokio::test]
async fn vm_ip_reports_the_address_or_times_out() {
    let sim = Vcsim::start().await.unwrap();
    let govc = sim.govc();
    clone(&govc, "me-1").await;
    govc.exec(&VmPower::new(at("me-1"), PowerOp::On))
        .await
        .unwrap();

    let started = Instant::now();
    let err = govc
        .exec(&VmIp::new(at("me-1"), Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(matches!(err, GovcError::NoIp { .. }));
    assert!(started.elapsed() >= Duration::from_secs(1));

    // Play VMware Tools: report a guest address.
    govc.exec(&VmChange::new(at("me-1")).extra("SET.guest.ipAddress", "127.0.0.1"))
        .await
        .unwrap();
    let ips = govc
        .exec(&VmIp::new(at("me-1"), Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(ips, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
    let mut v4 = VmIp::new(at("me-1"), Duration::from_secs(10));
    v4.v4 = true;
    assert_eq!(govc.exec(&v4).await.unwrap().len(), 1);
    assert_eq!(
        info(&govc, "me-1").await.ip_address.as_deref(),
        Some("127.0.0.1")
    );
}

#[tokio::test]
async fn destroy_a_running_vm_then_it_is_gone() {
    let sim = Vcsim::start().await.unwrap();
    let govc = sim.govc();
    clone(&govc, "me-1").await;
    govc.exec(&VmPower::new(at("me-1"), PowerOp::On))
        .await
        .unwrap();
    govc.exec(&VmDestroy::new(at("me-1"))).await.unwrap();
    assert!(
        govc.exec(&VmInfo::new(at("me-1")))
            .await
            .unwrap()
            .is_empty()
    );
    let again = govc.exec(&VmDestroy::new(at("me-1"))).await.unwrap_err();
    assert!(again.is_not_found(), "{again}");

    let collect = govc
        .exec(&ObjectCollect::new(
            format!("{VM_FOLDER}/me-1"),
            ["runtime.powerState"],
        ))
        .await
        .unwrap_err();
    assert!(collect.is_not_found(), "{collect}");
}

#[tokio::test]
async fn rename_a_vm() {
    let sim = Vcsim::start().await.unwrap();
    let govc = sim.govc();
    clone(&govc, "me-1").await;
    govc.exec(&vmw_govc::requests::VmRename {
        vm: vmw_govc::VmRef::parse(&format!("{VM_FOLDER}/me-1")).unwrap(),
        name: "me renamed".to_owned(),
    })
    .await
    .unwrap();
    assert!(
        govc.exec(&VmInfo::new(at("me-1")))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(info(&govc, "me renamed").await.name, "me renamed");
}

#[tokio::test]
async fn mark_as_template_and_back() {
    let sim = Vcsim::start().await.unwrap();
    let govc = sim.govc();
    clone(&govc, "me-1").await;
    govc.exec(&MarkAsTemplate { vm: at("me-1") }).await.unwrap();
    assert!(info(&govc, "me-1").await.template);
    govc.exec(&MarkAsVm {
        vm: at("me-1"),
        pool: Some(CLUSTER_POOL.to_owned()),
        host: None,
    })
    .await
    .unwrap();
    assert!(!info(&govc, "me-1").await.template);
}

/// A small OVF: one VM, one network, the cloud-init OVF properties.
fn write_ovf(dir: &std::path::Path) -> Utf8PathBuf {
    let ovf = r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References/>
  <NetworkSection>
    <Info>Networks</Info>
    <Network ovf:name="VM Network"><Description>guest network</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="vmw-test">
    <Info>a test appliance</Info>
    <Name>vmw-test</Name>
    <OperatingSystemSection ovf:id="94" vmw:osType="ubuntu64Guest"><Info>guest OS</Info></OperatingSystemSection>
    <ProductSection ovf:required="false">
      <Info>cloud-init</Info>
      <Property ovf:key="instance-id" ovf:type="string" ovf:userConfigurable="true" ovf:value="id-ovf"/>
      <Property ovf:key="hostname" ovf:type="string" ovf:userConfigurable="true" ovf:value="ubuntuguest"/>
      <Property ovf:key="seedfrom" ovf:type="string" ovf:userConfigurable="true"/>
      <Property ovf:key="public-keys" ovf:type="string" ovf:userConfigurable="true" ovf:value=""/>
      <Property ovf:key="user-data" ovf:type="string" ovf:userConfigurable="true" ovf:value=""/>
      <Property ovf:key="password" ovf:type="string" ovf:userConfigurable="true"/>
    </ProductSection>
    <VirtualHardwareSection>
      <Info>hardware</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType></System>
      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:ElementName>1 CPU</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>512 MB</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity></Item>
      <Item><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>VM Network</rasd:Connection><rasd:ElementName>eth0</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#;
    let path = Utf8PathBuf::from_path_buf(dir.join("appliance.ovf")).unwrap();
    std::fs::write(&path, ovf).unwrap();
    path
}

#[tokio::test]
async fn import_spec_then_import_with_edited_options() {
    let sim = Vcsim::start().await.unwrap();
    let govc = sim.govc();
    let dir = tempfile::tempdir().unwrap();
    let ovf = write_ovf(dir.path());

    let mut spec = govc.exec(&ImportSpec { file: ovf.clone() }).await.unwrap();
    let keys: Vec<_> = spec
        .property_mapping
        .iter()
        .flatten()
        .map(|p| p.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "instance-id",
            "hostname",
            "seedfrom",
            "public-keys",
            "user-data",
            "password"
        ]
    );
    assert_eq!(spec.network_mapping.as_ref().unwrap()[0].name, "VM Network");

    spec.name = Some("TEMPLATE-cloud-init-noble".to_owned());
    spec.disk_provisioning = Some("thin".to_owned());
    for p in spec.property_mapping.iter_mut().flatten() {
        p.value.clear();
    }
    for n in spec.network_mapping.iter_mut().flatten() {
        n.network = vmw_testbed::NETWORK.to_owned();
    }
    let options = Utf8PathBuf::from_path_buf(dir.path().join("options.json")).unwrap();
    std::fs::write(&options, serde_json::to_vec(&spec).unwrap()).unwrap();

    let mut import = Import::new(ovf);
    import.options = Some(options);
    import.pool = Some(CLUSTER_POOL.to_owned());
    import.folder = Some(VM_FOLDER.to_owned());
    import.datastore = Some(vmw_testbed::DATASTORE.to_owned());
    assert_eq!(import.command().name(), "import.ovf");
    govc.exec(&import).await.unwrap();

    let vm = info(&govc, "TEMPLATE-cloud-init-noble").await;
    assert_eq!(vm.power_state, PowerState::Off);
    assert!(!vm.template);
    assert_eq!(vm.memory_mb, 512);

    let missing = govc
        .exec(&ImportSpec {
            file: "/nonexistent/x.ova".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        missing.kind(),
        ErrorKind::Other,
        "a missing local file is not a missing VM: {missing}"
    );
}

#[tokio::test]
async fn duplicate_names_are_classified() {
    let sim = Vcsim::start().await.unwrap();
    let govc = sim.govc();
    clone(&govc, "me-1").await;
    let mut again = VmClone::new(at(FOCAL), at("me-1"));
    again.pool = Some(CLUSTER_POOL.to_owned());
    let err = govc.exec(&again).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DuplicateName, "{err}");
}

#[tokio::test]
async fn ambiguous_resource_pool_is_explained_with_the_pools_found() {
    let sim = Vcsim::start().await.unwrap();
    let mut config = sim.config();
    config.resource_pool = None;
    let govc = sim.govc_for(&config);
    let err = govc
        .exec(&VmClone::new(at(FOCAL), at("me-1")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AmbiguousResourcePool, "{err}");
    let err = ops::explain_ambiguous_pool(&govc, err).await;
    let msg = err.to_string();
    assert!(
        msg.contains(CLUSTER_POOL) && msg.contains(HOST_POOL),
        "{msg}"
    );

    // With the pool in the config (GOVC_RESOURCE_POOL), no -pool is needed.
    sim.govc()
        .exec(&VmClone::new(at(FOCAL), at("me-1")))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_single_pool_model_needs_no_pool() {
    let sim = Vcsim::start_with(VcsimOptions::new().standalone_hosts(0))
        .await
        .unwrap();
    let mut config = sim.config();
    config.resource_pool = None;
    let govc = sim.govc_for(&config);
    assert_eq!(ops::resource_pools(&govc).await.unwrap(), [CLUSTER_POOL]);
    govc.exec(&VmClone::new(at(FOCAL), at("me-1")))
        .await
        .unwrap();
}

#[tokio::test]
async fn wrong_password_is_an_authentication_error_without_the_password() {
    let sim = Vcsim::start_with(
        VcsimOptions::new()
            .credentials("alice", "right-password")
            .without_templates(),
    )
    .await
    .unwrap();
    let mut config = sim.config();
    config.password = vmw_config::Secret::new("wrong-password-42");
    let err = sim.govc_for(&config).exec(&About).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("wrong-password-42"), "{shown}");

    assert!(sim.govc().exec(&About).await.is_ok());
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sim = Vcsim::start_with(VcsimOptions::new().without_templates())
        .await
        .unwrap();
    let mut config = sim.config();
    config.server = format!("127.0.0.1:{port}");
    let err = sim.govc_for(&config).exec(&About).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let sim = Vcsim::start_with(VcsimOptions::new().without_templates())
        .await
        .unwrap();
    let mut config = sim.config();
    config.insecure_transport = false;
    let err = sim.govc_for(&config).exec(&About).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
}

#[tokio::test]
async fn a_deadline_shorter_than_the_method_kills_govc() {
    let sim = Vcsim::start_with(VcsimOptions::new().method_delay("PowerOnVM_Task", 5000))
        .await
        .unwrap();
    let govc = sim.govc();
    clone(&govc, "me-1").await;
    let cmd = VmPower::new(at("me-1"), PowerOp::On)
        .command()
        .timeout(Duration::from_millis(700));
    let started = Instant::now();
    let err = govc.run(&cmd).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(matches!(err, GovcError::Timeout { after, .. } if after == Duration::from_millis(700)));
    assert!(
        took < Duration::from_secs(3),
        "killed at the deadline, took {took:?}"
    );
    assert_eq!(govc_zombies(), 0, "the killed govc was reaped");
}

/// govc children of this test process that exited and were not reaped.
fn govc_zombies() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid ...
            let Some((comm, rest)) = stat.split_once(") ") else {
                return false;
            };
            let mut fields = rest.split(' ');
            let state = fields.next();
            let ppid = fields.next();
            comm.ends_with("(govc") && state == Some("Z") && ppid == Some(me.as_str())
        })
        .count()
}

#[tokio::test]
async fn usage_errors_are_classified() {
    let sim = Vcsim::start_with(VcsimOptions::new().without_templates())
        .await
        .unwrap();
    let err = sim
        .govc()
        .run(&Command::new("vm.clone").flag("no-such-flag", 1).arg("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage, "{err}");
}

#[tokio::test]
async fn missing_or_old_govc_is_reported() {
    let sim = Vcsim::start_with(VcsimOptions::new().without_templates())
        .await
        .unwrap();
    let env = vmw_govc::GovcTarget::new(&sim.config(), None, &Default::default());
    let missing = ProcessGovc::new("/nonexistent/govc", env.clone());
    let err = missing.exec(&About).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::GovcMissing, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let old = Utf8PathBuf::from_path_buf(dir.path().join("govc")).unwrap();
    std::fs::write(&old, "#!/bin/sh\necho 'govc 0.30.0'\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = ProcessGovc::new(old.clone(), env.clone())
        .check_version()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion, "{err}");
    assert!(err.to_string().contains("0.30.0"), "{err}");

    // discover() finds the real one through VMW_GOVC and accepts it.
    let caller = vmw_config::Environment::from_pairs([("VMW_GOVC", sim.govc_path().as_str())]);
    let found = ProcessGovc::discover(&sim.config(), None, &caller)
        .await
        .unwrap();
    assert_eq!(found.program(), sim.govc_path());
}

#[tokio::test]
async fn discover_checks_a_binarys_version_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    let log = root.join("calls");
    let govc = root.join("govc");
    let write = |version: &str, note: &str| {
        std::fs::write(
            &govc,
            format!("#!/bin/sh\n# {note}\necho \"$1\" >> {log}\necho 'govc {version}'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&govc, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let calls = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let caller = vmw_config::Environment::from_pairs([("HOME", root.join("home").as_str())]);
    let config = vmw_config::VmwareConfig {
        server: "127.0.0.1:1".into(),
        ..vmw_config::VmwareConfig::default()
    };
    write("0.56.0", "first");
    for _ in 0..3 {
        ProcessGovc::discover(&config, Some(&govc), &caller)
            .await
            .unwrap();
    }
    assert_eq!(calls(), 1, "the version is checked once");
    // Another binary at that path: checked again, and an old one refused.
    write("0.30.0", "replaced by an older one");
    let err = ProcessGovc::discover(&config, Some(&govc), &caller)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion, "{err}");
    let err = ProcessGovc::discover(&config, Some(&govc), &caller)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion, "{err}");
    assert_eq!(calls(), 3);
}
