//! Parsers and classification against outputs captured from govc v0.56.0
//! and vcsim v0.56.0 (see `tests/fixtures/README.md`).

use std::net::IpAddr;
use std::time::Duration;

use crate::parse::{self, PowerState};
use crate::requests::{self, Request};
use crate::{ErrorKind, GovcError, GovcExt, Hints, MockGovc, Output, classify, govc_message};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        ))
    };
}

#[test]
fn about_json() {
    let a = parse::about(fixture!("about.json")).unwrap();
    assert_eq!(a.name, "VMware vCenter Server");
    assert!(a.full_name.ends_with("(govmomi simulator)"));
    assert_eq!(a.api_type, "VirtualCenter");
    assert!(a.is_vcenter());
    assert_eq!(a.version, "6.5.0");
    assert!(!a.instance_uuid.is_empty());
}

#[test]
fn version_line() {
    assert_eq!(
        crate::parse_version_output(fixture!("version.txt")),
        Some(crate::TESTED_VERSION)
    );
}

#[test]
fn vm_info_json() {
    let vms = parse::vm_info(fixture!("vm_info.json")).unwrap();
    assert_eq!(vms.len(), 1);
    let vm = &vms[0];
    assert_eq!(vm.name, "me-1");
    assert!(vm.moref.starts_with("vm-"));
    assert_eq!(vm.power_state, PowerState::On);
    assert!(!vm.template);
    assert_eq!(vm.annotation, "made by vmw; tag=me");
    assert_eq!((vm.cpus, vm.memory_mb), (2, 2048));
    assert_eq!(vm.guest_id, "ubuntu64Guest");
    assert_eq!(vm.ip_address.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        vm.boot_time.as_deref(),
        Some("2026-11-23T21:29:40.524885309Z")
    );
    assert_eq!(
        vm.extra_config
            .get("guestinfo.userdata.encoding")
            .map(String::as_str),
        Some("base64")
    );
    assert_eq!(
        vm.extra_config
            .get("guestinfo.userdata")
            .map(String::as_str),
        Some("I2Nsb3VkLWNvbmZpZwo=")
    );
}

#[test]
fn vm_info_of_nothing_is_an_empty_list() {
    assert!(
        parse::vm_info(fixture!("vm_info_none.json"))
            .unwrap()
            .is_empty()
    );
    assert!(parse::vm_info("not json").is_err());
}

#[test]
fn object_collect_json() {
    let p = parse::properties(fixture!("object_collect.json")).unwrap();
    assert_eq!(p.power_state(), Some(PowerState::On));
    assert_eq!(p.str("config.annotation"), Some("made by vmw; tag=me"));
    assert_eq!(p.bool("config.template"), Some(false));
    assert_eq!(p.str("guest.ipAddress"), Some("127.0.0.1"));

    let unset = parse::properties(fixture!("object_collect_unset.json")).unwrap();
    assert_eq!(unset.str("guest.ipAddress"), None);
    assert_eq!(unset.power_state(), Some(PowerState::Off));
    assert_eq!(
        unset.names().collect::<Vec<_>>(),
        ["guest.ipAddress", "runtime.powerState"]
    );
}

#[test]
fn import_spec_json_round_trips() {
    let spec = parse::import_options(fixture!("import_spec.json")).unwrap();
    assert_eq!(spec.disk_provisioning.as_deref(), Some("flat"));
    assert_eq!(spec.ip_allocation_policy.as_deref(), Some("dhcpPolicy"));
    assert_eq!(spec.ip_protocol.as_deref(), Some("IPv4"));
    let props = spec.property_mapping.clone().unwrap();
    assert_eq!(
        props.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(),
        ["instance-id", "hostname", "user-data"]
    );
    let nets = spec.network_mapping.clone().unwrap();
    assert_eq!(nets[0].name, "VM Network");
    assert_eq!(spec.name, None);
    assert!(!spec.inject_ovf_env && !spec.power_on && !spec.mark_as_template);

    let written = serde_json::to_string(&spec).unwrap();
    let reread = parse::import_options(&written).unwrap();
    assert_eq!(reread, spec);
    let original: serde_json::Value = serde_json::from_str(fixture!("import_spec.json")).unwrap();
    let rewritten: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(original, rewritten, "nothing is lost or added");
}

#[test]
fn find_lines() {
    assert_eq!(
        parse::lines(fixture!("find_pools.txt")),
        ["/DC0/host/DC0_H0/Resources", "/DC0/host/DC0_C0/Resources"]
    );
}

#[test]
fn vm_ip_output_and_its_silent_timeout() {
    let req = requests::VmIp::new(vm("/DC0/vm/me-1"), Duration::from_secs(5));
    let cmd = req.command();
    let ips = req.parse(&cmd, fixture!("vm_ip.txt")).unwrap();
    assert_eq!(ips, ["127.0.0.1".parse::<IpAddr>().unwrap()]);

    let err = req.parse(&cmd, fixture!("vm_ip_timeout.txt")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(matches!(err, GovcError::NoIp { ref vm, .. } if vm == "/DC0/vm/me-1"));
    assert!(err.to_string().contains("within 5s"), "{err}");
}

#[test]
fn stderr_classification() {
    let cases = [
        (fixture!("stderr_not_found_vm.txt"), ErrorKind::NotFound),
        (fixture!("stderr_not_found_path.txt"), ErrorKind::NotFound),
        (
            fixture!("stderr_invalid_power_state.txt"),
            ErrorKind::InvalidPowerState,
        ),
        (
            fixture!("stderr_login_failure.txt"),
            ErrorKind::Authentication,
        ),
        (
            fixture!("stderr_connection_refused.txt"),
            ErrorKind::Unreachable,
        ),
        (fixture!("stderr_tls.txt"), ErrorKind::Tls),
        (
            fixture!("stderr_duplicate_name.txt"),
            ErrorKind::DuplicateName,
        ),
        (
            fixture!("stderr_ambiguous_pool.txt"),
            ErrorKind::AmbiguousResourcePool,
        ),
        (fixture!("stderr_usage.txt"), ErrorKind::Usage),
        (fixture!("stderr_local_file_missing.txt"), ErrorKind::Other),
    ];
    for (stderr, kind) in cases {
        assert_eq!(classify(stderr), kind, "{stderr}");
    }
}

#[test]
fn vcenter_wordings_classify_like_vcsim_ones() {
    // The stable parts a real vCenter prints: fault names and Go errors.
    let cases = [
        (
            "govc: ServerFaultCode: The attempted operation cannot be performed in the current state (Powered on).",
            ErrorKind::InvalidPowerState,
        ),
        (
            "govc: ServerFaultCode: Cannot complete login due to an incorrect user name or password.",
            ErrorKind::Authentication,
        ),
        (
            "govc: The name 'me-1' already exists.",
            ErrorKind::DuplicateName,
        ),
        (
            "govc: ServerFaultCode: The object 'vim.VirtualMachine:vm-9' has already been deleted or has not been completely created",
            ErrorKind::InventoryChanged,
        ),
        (
            "govc: ServerFaultCode: ManagedObjectNotFound: vm-9",
            ErrorKind::InventoryChanged,
        ),
        (
            "govc: Post \"https://10.0.0.9/sdk\": EOF",
            ErrorKind::ConnectionLost,
        ),
        ("govc: EOF", ErrorKind::ConnectionLost),
        ("govc: *types.FileAlreadyExists", ErrorKind::DuplicateName),
        (
            "govc: read tcp 10.0.0.1:5000->10.0.0.9:443: read: connection reset by peer",
            ErrorKind::ConnectionLost,
        ),
        ("govc: context deadline exceeded", ErrorKind::ConnectionLost),
        (
            "govc: Post \"https://10.0.0.9/sdk\": dial tcp 10.0.0.9:443: connect: connection refused",
            ErrorKind::Unreachable,
        ),
        // Sentences that merely hold "not found" say nothing about a VM.
        ("govc: license not found for feature", ErrorKind::Other),
        (
            "govc: ServerFaultCode: Datastore file not found: x.vmdk",
            ErrorKind::Other,
        ),
        (
            "/usr/local/bin/govc: Post \"https://vc.example.com/sdk\": dial tcp: lookup vc.example.com: no such host",
            ErrorKind::Unreachable,
        ),
        (
            "govc: Post \"https://10.0.0.9/sdk\": dial tcp 10.0.0.9:443: i/o timeout",
            ErrorKind::Unreachable,
        ),
        ("govc: something else entirely", ErrorKind::Other),
    ];
    for (stderr, kind) in cases {
        assert_eq!(classify(stderr), kind, "{stderr}");
    }
}

#[test]
fn not_found_names_the_path_and_only_that_path_counts() {
    let cmd = requests::VmDestroy::new(vm("/DC0/vm/mine/a")).command();
    let e = GovcError::failed(
        cmd.clone(),
        Some(1),
        "govc: vm '/DC0/vm/mine/a' not found\n",
    );
    assert_eq!(
        e.not_found_path(),
        Some(("vm".to_owned(), "/DC0/vm/mine/a".to_owned()))
    );
    assert!(e.is_vm_not_found("/DC0/vm/mine/a"));
    assert!(!e.is_vm_not_found("/DC0/vm/theirs/a"));
    let other = GovcError::failed(
        cmd.clone(),
        Some(1),
        "govc: folder '/DC0/vm/mine' not found",
    );
    assert!(other.is_not_found());
    assert!(!other.is_vm_not_found("/DC0/vm/mine/a"));
    let path = GovcError::failed(cmd.clone(), Some(1), fixture!("stderr_not_found_path.txt"));
    assert_eq!(
        path.not_found_path(),
        Some(("object".to_owned(), "/DC0/vm/nope".to_owned()))
    );
    let gone = GovcError::failed(
        cmd,
        Some(1),
        "govc: ServerFaultCode: The object 'vim.VirtualMachine:vm-9' has already been deleted or has not been completely created",
    );
    assert!(!gone.is_not_found());
    assert!(gone.not_found_path().is_none());
    assert!(!gone.may_have_reached_server());
}

#[test]
fn lost_connections_may_have_reached_the_server_refusals_did_not() {
    let cmd = requests::VmClone::new(vm("/DC0/vm/T"), vm("/DC0/vm/x")).command();
    let lost = GovcError::failed(
        cmd.clone(),
        Some(1),
        "govc: Post \"http://127.0.0.1:1/sdk\": EOF",
    );
    assert!(lost.may_have_reached_server());
    let refused = GovcError::failed(
        cmd.clone(),
        Some(1),
        fixture!("stderr_connection_refused.txt"),
    );
    assert!(!refused.may_have_reached_server());
    let dup = GovcError::failed(cmd, Some(1), fixture!("stderr_duplicate_name.txt"));
    assert!(!dup.may_have_reached_server());
}

#[test]
fn message_strips_the_program_prefix_and_usage() {
    assert_eq!(
        govc_message("/opt/bin/govc: vm 'x' not found\n"),
        "vm 'x' not found"
    );
    assert_eq!(
        govc_message(
            "govc: flag provided but not defined: -x\nUsage: govc vm.clone [OPTIONS]\n  -a\n"
        ),
        "flag provided but not defined: -x"
    );
    assert_eq!(govc_message("plain text"), "plain text");
}

#[test]
fn failed_errors_keep_command_code_and_stderr() {
    let cmd = requests::VmPower::new(vm("/DC0/vm/me-1"), requests::PowerOp::On).command();
    let err = GovcError::failed(
        cmd.clone(),
        Some(1),
        fixture!("stderr_invalid_power_state.txt"),
    );
    assert!(err.is_invalid_power_state());
    assert_eq!(err.command(), Some(&cmd));
    assert_eq!(
        err.stderr(),
        Some(fixture!("stderr_invalid_power_state.txt"))
    );
    assert_eq!(
        err.to_string(),
        "`govc vm.power -on=true -- /DC0/vm/me-1` failed (invalid power state, exit code 1): *types.InvalidPowerState"
    );
}

#[tokio::test]
async fn the_mock_answers_typed_requests() {
    let mut mock = MockGovc::new();
    mock.expect_run()
        .withf(|c| c.argv() == ["find", "-type=p", "--", "/"])
        .times(1)
        .returning(|_| Ok(Output::stdout(fixture!("find_pools.txt"))));
    mock.expect_run()
        .withf(|c| c.name() == "vm.power")
        .times(1)
        .returning(|c| {
            Err(GovcError::failed(
                c.clone(),
                Some(1),
                fixture!("stderr_not_found_vm.txt"),
            ))
        });
    let pools = crate::ops::resource_pools(&mock).await.unwrap();
    assert_eq!(pools.len(), 2);
    let err = mock
        .exec(&requests::VmPower::new(
            vm("/DC0/vm/nope"),
            requests::PowerOp::On,
        ))
        .await
        .unwrap_err();
    assert!(err.is_not_found());
}

#[tokio::test]
async fn ambiguous_pool_errors_list_the_pools() {
    let mut mock = MockGovc::new();
    mock.expect_run()
        .times(1)
        .returning(|_| Ok(Output::stdout(fixture!("find_pools.txt"))));
    let clone = requests::VmClone::new(vm("/DC0/vm/T"), vm("/DC0/vm/x")).command();
    let err = GovcError::failed(clone, Some(1), fixture!("stderr_ambiguous_pool.txt"));
    let err = crate::ops::explain_ambiguous_pool(&mock, err).await;
    let msg = err.to_string();
    assert!(
        msg.contains(
            "resource pools found: /DC0/host/DC0_H0/Resources, /DC0/host/DC0_C0/Resources"
        ),
        "{msg}"
    );
    assert!(
        err.hints()[0].starts_with("set `resource_pool`"),
        "{:?}",
        err.hints()
    );
}

fn vm(path: &str) -> crate::VmRef {
    crate::VmRef::parse(path).unwrap()
}
