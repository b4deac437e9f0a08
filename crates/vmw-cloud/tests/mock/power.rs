//! Power operations: starting and shutting down accept the state already
//! reached and report a wrong one; other power failures are errors without
//! a state query; a missing VM is an error.

use crate::*;

fn state_argv() -> Vec<String> {
    sv(&[
        "object.collect",
        "-json=true",
        "--",
        "/DC0/vm/me-1",
        "runtime.powerState",
    ])
}

/// A cloud whose govc expects, in this order, `vm.info` of `/DC0/vm/me-1`;
/// for a power-off, the power state (on) and the address (none: the guest
/// cannot be asked to sync); then `vm.power -<op>=true -- /DC0/vm/me-1`
/// failing with `power_stderr`, then (when `state` is given)
/// `object.collect` of the power state answering `state`.
fn power_script(op: &str, power_stderr: &'static str, state: Option<&'static str>) -> MockGovc {
    let mut seq = Default::default();
    let mut mock = MockGovc::new();
    mock.expect_run()
        .withf(|c| c.argv() == info_argv("me-1"))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| out(VM_INFO));
    if op == "off" {
        mock.expect_run()
            .withf(|c| c.argv() == state_argv())
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| out(&power_state_json("poweredOn")));
        mock.expect_run()
            .withf(|c| c.name() == "vm.ip")
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| out(""));
    }
    let power = sv(&["vm.power", &format!("-{op}=true"), "--", "/DC0/vm/me-1"]);
    mock.expect_run()
        .withf(move |c| c.argv() == power)
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |c| fail(c, power_stderr));
    if let Some(state) = state {
        mock.expect_run()
            .withf(|c| c.argv() == state_argv())
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |_| out(&power_state_json(state)));
    }
    mock
}

#[tokio::test(start_paused = true)]
async fn start_and_shutdown_accept_the_state_already_reached() {
    let (cloud, _keys) = new_cloud(power_script("on", STDERR_INVALID_POWER, Some("poweredOn")));
    let vm = cloud.get_instance("me-1").await.unwrap();
    vm.power_on().await.unwrap();

    let (cloud, _keys) = new_cloud(power_script(
        "off",
        STDERR_INVALID_POWER,
        Some("poweredOff"),
    ));
    let vm = cloud.get_instance("me-1").await.unwrap();
    vm.power_off().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_power_off_of_a_vm_that_is_off_makes_no_power_call() {
    let mut seq = Default::default();
    let mut mock = MockGovc::new();
    mock.expect_run()
        .withf(|c| c.argv() == info_argv("me-1"))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| out(VM_INFO));
    mock.expect_run()
        .withf(|c| c.argv() == state_argv())
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| out(&power_state_json("poweredOff")));
    let (cloud, _keys) = new_cloud(mock);
    let vm = cloud.get_instance("me-1").await.unwrap();
    vm.power_off().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn start_and_shutdown_report_a_wrong_state() {
    let (cloud, _keys) = new_cloud(power_script("on", STDERR_INVALID_POWER, Some("poweredOff")));
    let vm = cloud.get_instance("me-1").await.unwrap();
    match vm.power_on().await.unwrap_err() {
        CloudError::PowerState { vm, wanted, found } => {
            assert_eq!(vm, "/DC0/vm/me-1");
            assert_eq!(wanted, "powered on");
            assert_eq!(found, "Off");
        }
        other => panic!("{other:?}"),
    }

    let (cloud, _keys) = new_cloud(power_script("off", STDERR_INVALID_POWER, Some("poweredOn")));
    let vm = cloud.get_instance("me-1").await.unwrap();
    match vm.power_off().await.unwrap_err() {
        CloudError::PowerState { wanted, found, .. } => {
            assert_eq!(wanted, "powered off");
            assert_eq!(found, "On");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn other_power_failures_are_errors_without_a_state_query() {
    for op in ["on", "off"] {
        let (cloud, _keys) = new_cloud(power_script(op, STDERR_OTHER, None));
        let vm = cloud.get_instance("me-1").await.unwrap();
        let err = if op == "on" {
            vm.power_on().await.unwrap_err()
        } else {
            vm.power_off().await.unwrap_err()
        };
        assert_eq!(err.govc().unwrap().kind(), ErrorKind::Other, "{err:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn get_instance_of_a_missing_vm_is_an_error() {
    let (mock, calls) = scripted(|c| match c.name() {
        "vm.info" => out(VM_INFO_NONE),
        _ => panic!("unexpected govc call: {c}"),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud.get_instance("nope").await.unwrap_err();
    assert!(
        matches!(&err, CloudError::NoSuchVm { name } if name == "/DC0/vm/nope"),
        "{err:?}"
    );
    // An absolute path is looked up as it is, never searched for.
    cloud.get_instance("/DC0/vm/other/nope").await.unwrap_err();
    assert_eq!(
        calls.all(),
        [
            info_argv("nope"),
            sv(&[
                "vm.info",
                "-json=true",
                "-e=false",
                "--",
                "/DC0/vm/other/nope"
            ])
        ]
    );
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_graceful_stop_powers_off_hard_when_the_guest_does_not_stop_in_time() {
    let inv = Inventory::default();
    inv.add(&at("g-1"), &marker("instance", "0123456789abcdef"));
    let i = inv.clone();
    // The guest is asked, and never stops.
    let (mock, calls) = scripted(move |c| match (c.name(), c.flag_value("s")) {
        ("vm.power", Some("true")) => out(""),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let g = cloud.get_instance("g-1").await.unwrap();
    inv.set_power(&at("g-1"), "poweredOn");
    calls.clear();
    let how = g.shutdown_guest(Duration::from_millis(300)).await.unwrap();
    assert_eq!(how, vmw_cloud::PowerOff::Forced);
    let names = calls.names();
    assert_eq!(names.first().map(String::as_str), Some("vm.power"));
    assert!(names.iter().any(|n| n == "object.collect"), "{names:?}");
    assert_eq!(
        calls.all().last().unwrap(),
        &sv(&["vm.power", "-off=true", "--", &at("g-1")])
    );
    assert_eq!(g.power_state().await.unwrap(), vmw_cloud::PowerState::Off);

    // A guest that stops when asked: graceful, no hard power-off.
    let inv = Inventory::default();
    inv.add(&at("g-2"), &marker("instance", "0123456789abcdef"));
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let g = cloud.get_instance("g-2").await.unwrap();
    calls.clear();
    assert_eq!(
        g.shutdown_guest(Duration::from_secs(5)).await.unwrap(),
        vmw_cloud::PowerOff::Graceful
    );
    assert_eq!(
        calls.all()[0],
        sv(&["vm.power", "-s=true", "--", &at("g-2")])
    );
    assert!(!calls.all().iter().any(|a| a[1] == "-off=true"));
}
