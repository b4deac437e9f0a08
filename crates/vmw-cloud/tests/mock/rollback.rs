//! Rollback of a failed launch: a failure injected at each step after the
//! clone destroys the VM and names the step; a rollback that fails keeps
//! the VM tracked, one that finds the VM gone counts as done, one that
//! meets another launch's VM refuses; a clone that failed is not rolled
//! back.

use crate::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailAt {
    Configure,
    PowerOn,
    PowerOnWrongState,
    IpEmpty,
    IpLinkLocalOnly,
    IpKilled,
}

/// Launches `vm` with govc failing at `at`, and the rollback's `vm.destroy`
/// failing too when `destroy_fails`.
async fn launch_failing(
    vm: &'static str,
    at: FailAt,
    destroy_fails: bool,
) -> (CloudError, Calls, Vec<VmRef>, Inventory) {
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match (at, c.name()) {
        (FailAt::Configure, "vm.change") => fail(
            c,
            "govc: ServerFaultCode: A specified parameter was not correct: spec.extraConfig",
        ),
        (FailAt::PowerOn, "vm.power") => {
            fail(c, "govc: ServerFaultCode: InsufficientResourcesFault")
        }
        (FailAt::PowerOnWrongState, "vm.power") => fail(c, STDERR_INVALID_POWER),
        (FailAt::PowerOnWrongState, "object.collect") => out(&power_state_json("suspended")),
        (FailAt::IpEmpty, "vm.ip") => out(""),
        (FailAt::IpLinkLocalOnly, "vm.ip") => out("fe80::250:56ff:fe8a:1\n"),
        (FailAt::IpKilled, "vm.ip") => killed(c),
        (_, "vm.destroy") if destroy_fails => fail(c, STDERR_OTHER),
        _ => i.happy(c),
    });
    let s = Settings {
        concurrency: 1,
        ip_wait: Duration::from_millis(300),
        ..settings(1)
    };
    let (cloud, _keys) = cloud_with(mock, config(), s);
    let err = cloud
        .launch(&image(), &options(vm, WaitStage::Ip))
        .await
        .unwrap_err();
    (err, calls, cloud.tracked_instances(), inv)
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_clone_destroys_the_vm_and_names_the_step() {
    let cases = [
        (FailAt::Configure, Step::Configure),
        (FailAt::PowerOn, Step::PowerOn),
        (FailAt::PowerOnWrongState, Step::PowerOn),
        (FailAt::IpEmpty, Step::WaitIp),
        (FailAt::IpLinkLocalOnly, Step::WaitIp),
        (FailAt::IpKilled, Step::WaitIp),
    ];
    let path = at("half-1");
    for (fail_at, step) in cases {
        let (err, calls, tracked, inv) = launch_failing("half-1", fail_at, false).await;
        let CloudError::Step {
            vm,
            step: got,
            source,
            removed,
            rollback,
        } = &err
        else {
            panic!("{fail_at:?}: {err:?}")
        };
        assert_eq!(vm, &path, "{fail_at:?}");
        assert_eq!(*got, step, "{fail_at:?}");
        assert!(rollback.is_none(), "{fail_at:?}: {rollback:?}");
        assert!(*removed, "{fail_at:?}: the half-made VM was removed");
        assert!(
            err.to_string().contains("was removed"),
            "{fail_at:?}: {err}"
        );
        assert!(
            tracked.is_empty(),
            "{fail_at:?}: still tracked: {tracked:?}"
        );
        assert!(!inv.contains(&path), "{fail_at:?}: still in the inventory");

        let all = calls.all();
        assert_eq!(
            all[..2],
            [info_argv("half-1"), clone_argv(IMAGE, "half-1", &[], false)],
            "{fail_at:?}"
        );
        assert_eq!(all[2][0], "vm.change", "{fail_at:?}");
        // The rollback: the exact path looked up, then destroyed.
        assert_eq!(
            all[all.len() - 2..],
            [info_argv("half-1"), destroy_argv("half-1")],
            "{fail_at:?}"
        );
        let names = calls.names();
        assert_eq!(
            names.iter().filter(|n| *n == "vm.destroy").count(),
            1,
            "{fail_at:?}: {names:?}"
        );
        let expected_before_rollback: &[&str] = match fail_at {
            FailAt::Configure => &["vm.info", "vm.clone", "vm.change"],
            FailAt::PowerOn => &["vm.info", "vm.clone", "vm.change", "vm.power"],
            FailAt::PowerOnWrongState => &[
                "vm.info",
                "vm.clone",
                "vm.change",
                "vm.power",
                "object.collect",
            ],
            FailAt::IpEmpty | FailAt::IpKilled => {
                &["vm.info", "vm.clone", "vm.change", "vm.power", "vm.ip"]
            }
            FailAt::IpLinkLocalOnly => {
                // Polled until the wait ended, then gave up.
                let polls = names.iter().filter(|n| *n == "vm.ip").count();
                assert!(polls >= 2, "{polls} vm.ip calls");
                &[]
            }
        };
        if !expected_before_rollback.is_empty() {
            assert_eq!(
                names[..names.len() - 2],
                sv(expected_before_rollback),
                "{fail_at:?}"
            );
        }

        // A guest that never answered is reported with its console (it
        // has none here).
        let source = match source.as_ref() {
            CloudError::NoAnswer {
                source,
                console: None,
                ..
            } => source,
            other => other,
        };
        match (fail_at, source) {
            (FailAt::Configure | FailAt::PowerOn, CloudError::Govc(e)) => {
                assert_eq!(e.kind(), ErrorKind::Other, "{fail_at:?}");
                assert_eq!(e.command().unwrap().name(), all[names.len() - 3][0]);
            }
            (FailAt::PowerOnWrongState, CloudError::PowerState { vm, wanted, found }) => {
                assert_eq!(vm, &path);
                assert_eq!(*wanted, "powered on");
                assert!(found.contains("Suspended"), "{found}");
            }
            (FailAt::IpEmpty, CloudError::IpTimeout { vm, seen, .. }) => {
                assert_eq!(vm, &path);
                assert!(seen.is_empty(), "{seen:?}");
            }
            (FailAt::IpLinkLocalOnly, CloudError::IpTimeout { seen, waited, .. }) => {
                assert_eq!(seen, &["fe80::250:56ff:fe8a:1"]);
                assert_eq!(*waited, Duration::from_millis(300));
                assert!(
                    vmw_cloud::render(&err).contains("fe80::250:56ff:fe8a:1"),
                    "{err}"
                );
            }
            (FailAt::IpKilled, CloudError::Govc(e)) => {
                assert!(matches!(e, GovcError::Timeout { .. }), "{e:?}");
            }
            (_, other) => panic!("{fail_at:?}: unexpected source {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("half-1") && text.contains(&step.to_string()),
            "{text}"
        );
        assert!(text.contains("was removed"), "{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_rollback_is_reported_and_the_vm_stays_tracked() {
    for fail_at in [FailAt::Configure, FailAt::PowerOn, FailAt::IpEmpty] {
        let (err, calls, tracked, inv) = launch_failing("half-2", fail_at, true).await;
        let CloudError::Step {
            rollback, removed, ..
        } = &err
        else {
            panic!("{fail_at:?}: {err:?}")
        };
        assert!(!removed);
        let rollback = rollback.as_deref().unwrap_or_else(|| panic!("{fail_at:?}"));
        let e = rollback.govc().unwrap();
        assert_eq!(e.kind(), ErrorKind::Other);
        assert_eq!(e.command().unwrap().argv(), destroy_argv("half-2"));
        assert_eq!(
            calls.all()[calls.len() - 2..],
            [info_argv("half-2"), destroy_argv("half-2")]
        );
        // Still there, so a later clean() tries again.
        assert_eq!(tracked, refs(&["half-2"]), "{fail_at:?}");
        assert!(inv.contains(&at("half-2")));
        let text = err.to_string();
        assert!(text.contains("failed too"), "{text}");
        assert!(text.contains("Permission to perform"), "{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_rollback_finding_the_vm_gone_counts_as_done() {
    // Gone before the rollback: the lookup finds nothing, nothing is
    // destroyed.
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.power" => {
            i.remove(&at("gone-1"));
            fail(c, STDERR_OTHER)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(&image(), &options("gone-1", WaitStage::Ip))
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::PowerOn));
    assert!(matches!(&err, CloudError::Step { rollback: None, .. }));
    assert!(cloud.tracked_instances().is_empty());
    assert_eq!(
        calls.names(),
        ["vm.info", "vm.clone", "vm.change", "vm.power", "vm.info"]
    );

    // Gone between the lookup and the destroy: govc names our path, and a
    // second lookup confirms it.
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.power" => fail(c, STDERR_OTHER),
        "vm.destroy" => {
            i.remove(&at("gone-2"));
            vm_not_found(c)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(&image(), &options("gone-2", WaitStage::Ip))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CloudError::Step { rollback: None, .. }),
        "{err:?}"
    );
    assert!(cloud.tracked_instances().is_empty());
    assert_eq!(
        calls.all()[4..],
        [
            info_argv("gone-2"),
            destroy_argv("gone-2"),
            info_argv("gone-2")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_refuses_a_vm_with_another_launch_id() {
    // While the launch ran, the VM at its path was replaced by another
    // launch's VM of the same name.
    let other = marker("instance", "00000000deadbeef");
    let inv = Inventory::default();
    let (i, o) = (inv.clone(), other.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.power" => {
            i.remove(&at("swap-1"));
            i.add(&at("swap-1"), &o);
            fail(c, STDERR_OTHER)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(&image(), &options("swap-1", WaitStage::Ip))
        .await
        .unwrap_err();
    let CloudError::Step {
        step,
        removed,
        rollback,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*step, Step::PowerOn);
    assert!(!removed);
    let Some(CloudError::NotOurs { vm, reason }) = rollback.as_deref() else {
        panic!("{rollback:?}")
    };
    assert_eq!(vm, &at("swap-1"));
    assert!(reason.contains("00000000deadbeef"), "{reason}");
    assert!(calls.of("vm.destroy").is_empty(), "{:?}", calls.all());
    assert_eq!(calls.all().last().unwrap(), &info_argv("swap-1"));
    assert_eq!(inv.annotation(&at("swap-1")).unwrap(), other);

    // clean() refuses it too: nothing of another launch is destroyed. It
    // is no longer this cloud's to track: the next clean() leaves it.
    let err = cloud.clean().await.unwrap_err();
    assert!(
        matches!(err.errors.as_slice(), [CloudError::NotOurs { .. }]),
        "{err}"
    );
    assert!(calls.of("vm.destroy").is_empty());
    assert!(inv.contains(&at("swap-1")));
    assert!(cloud.tracked_instances().is_empty());
    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(calls.len(), n);
}

#[tokio::test(start_paused = true)]
async fn a_clone_that_fails_is_not_rolled_back() {
    // A duplicate name (taken after vmw checked the path free): the VM
    // there is not ours; it is not looked at after the clone. A missing
    // image: govc answered and nothing was made; the path is looked up
    // once. Neither is waited for or destroyed.
    for (stderr, kind) in [
        (None, ErrorKind::DuplicateName),
        (
            Some("govc: vm '/DC0/vm/TEMPLATE-cloud-init-jammy' not found\n"),
            ErrorKind::NotFound,
        ),
    ] {
        let inv = Inventory::default();
        let i = inv.clone();
        let (mock, calls) = scripted(move |c| match (c.name(), stderr) {
            ("vm.clone", Some(stderr)) => fail(c, stderr),
            ("vm.clone", None) => {
                i.add(&at("me-1"), "");
                i.happy(c)
            }
            ("vm.info", _) => i.happy(c),
            _ => panic!("unexpected govc call after a failed clone: {c}"),
        });
        let (cloud, _keys) = new_cloud(mock);
        let err = cloud
            .launch(&image(), &options("me-1", WaitStage::Ip))
            .await
            .unwrap_err();
        let CloudError::Step {
            vm,
            step,
            removed,
            rollback,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(vm, &at("me-1"));
        assert_eq!(*step, Step::Clone);
        assert!(rollback.is_none() && !removed);
        assert_eq!(err.govc().unwrap().kind(), kind);
        let mut expected = vec![info_argv("me-1"), clone_argv(IMAGE, "me-1", &[], false)];
        if kind == ErrorKind::NotFound {
            expected.push(info_argv("me-1"));
        }
        assert_eq!(calls.all(), expected, "{kind:?}");
        assert!(cloud.tracked_instances().is_empty());
        let left: &[String] = if kind == ErrorKind::DuplicateName {
            &[at("me-1")]
        } else {
            &[]
        };
        assert_eq!(inv.paths(), left, "{kind:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_clone_does_not_claim_a_vm_was_removed() {
    let inv = Inventory::default();
    inv.add(&at("me-1"), "");
    let (mock, _calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(&image(), &options("me-1", WaitStage::Ip))
        .await
        .unwrap_err();
    let text = err.to_string();
    // The VM named me-1 exists and belongs to someone else: vmw did not
    // touch it, and the message must not say it removed it.
    assert!(!text.contains("was removed"), "{text}");
    assert!(text.contains("nothing to remove"), "{text}");
}
