//! Power operations: starting and shutting down accept the state already
//! reached and report a wrong one; other power failures are errors without
//! a state query; a missing VM is an error.

use crate::*;

/// A cloud whose govc expects, in this order, `vm.info` of `/DC0/vm/me-1`,
/// then `vm.power -<op>=true -- /DC0/vm/me-1` failing with `power_stderr`,
/// then (when `state` is given) `object.collect` of the power state
/// answering `state`.
fn power_script(op: &str, power_stderr: &'static str, state: Option<&'static str>) -> MockGovc {
    let mut seq = Default::default();
    let mut mock = MockGovc::new();
    mock.expect_run()
        .withf(|c| c.argv() == info_argv("me-1"))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| out(VM_INFO));
    let power = sv(&["vm.power", &format!("-{op}=true"), "--", "/DC0/vm/me-1"]);
    mock.expect_run()
        .withf(move |c| c.argv() == power)
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |c| fail(c, power_stderr));
    if let Some(state) = state {
        mock.expect_run()
            .withf(|c| {
                c.argv()
                    == sv(&[
                        "object.collect",
                        "-json=true",
                        "--",
                        "/DC0/vm/me-1",
                        "runtime.powerState",
                    ])
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |_| out(&power_state_json(state)));
    }
    mock
}

#[tokio::test]
async fn start_and_shutdown_accept_the_state_already_reached() {
    let (cloud, _keys) = new_cloud(power_script("on", STDERR_INVALID_POWER, Some("poweredOn")));
    let vm = cloud.get_instance("me-1").await.unwrap();
    vm.start().await.unwrap();

    let (cloud, _keys) = new_cloud(power_script(
        "off",
        STDERR_INVALID_POWER,
        Some("poweredOff"),
    ));
    let vm = cloud.get_instance("me-1").await.unwrap();
    vm.shutdown().await.unwrap();
}

#[tokio::test]
async fn start_and_shutdown_report_a_wrong_state() {
    let (cloud, _keys) = new_cloud(power_script("on", STDERR_INVALID_POWER, Some("poweredOff")));
    let vm = cloud.get_instance("me-1").await.unwrap();
    match vm.start().await.unwrap_err() {
        CloudError::PowerState { vm, wanted, found } => {
            assert_eq!(vm, "/DC0/vm/me-1");
            assert_eq!(wanted, "powered on");
            assert_eq!(found, "Off");
        }
        other => panic!("{other:?}"),
    }

    let (cloud, _keys) = new_cloud(power_script("off", STDERR_INVALID_POWER, Some("poweredOn")));
    let vm = cloud.get_instance("me-1").await.unwrap();
    match vm.shutdown().await.unwrap_err() {
        CloudError::PowerState { wanted, found, .. } => {
            assert_eq!(wanted, "powered off");
            assert_eq!(found, "On");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn other_power_failures_are_errors_without_a_state_query() {
    for op in ["on", "off"] {
        let (cloud, _keys) = new_cloud(power_script(op, STDERR_OTHER, None));
        let vm = cloud.get_instance("me-1").await.unwrap();
        let err = if op == "on" {
            vm.start().await.unwrap_err()
        } else {
            vm.shutdown().await.unwrap_err()
        };
        assert_eq!(err.govc().unwrap().kind(), ErrorKind::Other, "{err:?}");
    }
}

#[tokio::test]
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
