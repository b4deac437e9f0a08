//! Clones of unknown outcome: a clone killed at its deadline or cut by a
//! lost connection is looked for and removed when it appears (and stays
//! tracked when it may exist), a VM of another launch at its target is left
//! alone, an unmarked VM left by a lost or failed clone is claimed after it
//! settles and destroyed, a refused clone is not looked for, and an
//! ambiguous resource pool is explained with the pools found.

use crate::*;

#[tokio::test(start_paused = true)]
async fn a_clone_killed_by_the_deadline_is_rolled_back() {
    // vCenter finished the clone although govc was stopped: the VM carrying
    // this launch's marker is removed.
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.clone_vm(c, Duration::ZERO).unwrap();
            killed(c)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(&image(), &options("slow-1", WaitStage::Ip))
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::Clone));
    assert!(
        matches!(
            &err,
            CloudError::Step {
                rollback: None,
                removed: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(err.govc(), Some(GovcError::Timeout { .. })));
    assert_eq!(
        calls.all(),
        [
            info_argv("slow-1"),
            clone_argv(IMAGE, "slow-1", &[], false),
            info_argv("slow-1"),
            info_argv("slow-1"),
            destroy_argv("slow-1")
        ]
    );
    assert!(cloud.tracked_instances().is_empty());
    assert!(inv.paths().is_empty());

    // The rollback failing too is reported (after retries within the grace
    // period).
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.clone_vm(c, Duration::ZERO).unwrap();
            killed(c)
        }
        "vm.destroy" => fail(c, STDERR_OTHER),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(&image(), &options("slow-2", WaitStage::Ip))
        .await
        .unwrap_err();
    let CloudError::Step {
        rollback, removed, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(!removed);
    assert_eq!(
        rollback.as_deref().unwrap().govc().unwrap().kind(),
        ErrorKind::Other
    );
    let names = calls.names();
    assert_eq!(names[..2], sv(&["vm.info", "vm.clone"]));
    assert!(names.len() >= 5, "{names:?}");
    for argv in &calls.all()[2..] {
        assert!(
            argv == &info_argv("slow-2") || argv == &destroy_argv("slow-2"),
            "{argv:?}"
        );
    }
    assert_eq!(cloud.tracked_instances(), refs(&["slow-2"]));
}

#[tokio::test(start_paused = true)]
async fn a_killed_clone_whose_rollback_failed_stays_tracked_for_clean() {
    let refuse = Arc::new(Mutex::new(true));
    let refusing = refuse.clone();
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.clone_vm(c, Duration::ZERO).unwrap();
            killed(c)
        }
        // The rollback fails; a later clean() succeeds.
        "vm.destroy" if *refusing.lock().unwrap() => fail(c, STDERR_OTHER),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(&image(), &options("slow-3", WaitStage::Ip))
        .await
        .unwrap_err();
    assert!(matches!(
        &err,
        CloudError::Step {
            rollback: Some(_),
            ..
        }
    ));
    // As after a failed rollback of any later step.
    assert_eq!(cloud.tracked_instances(), refs(&["slow-3"]));
    *refuse.lock().unwrap() = false;
    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(
        calls.since(n),
        [
            info_argv("slow-3"),
            info_argv("slow-3"),
            destroy_argv("slow-3")
        ]
    );
    assert!(cloud.tracked_instances().is_empty());
    assert!(inv.paths().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_clone_of_unknown_outcome_is_looked_for_and_removed_when_it_appears() {
    // The connection broke, or govc was stopped: the clone may still
    // finish. Here it appears after a while, with this launch's marker, and
    // is removed. (A failure govc reported is settled at once: see
    // `an_answered_clone_failure_*`.)
    for lost in [true, false] {
        let inv = Inventory::default();
        let i = inv.clone();
        let (mock, calls) = scripted(move |c| match c.name() {
            "vm.clone" => {
                i.clone_vm(c, Duration::from_millis(100)).unwrap();
                if lost {
                    fail(c, STDERR_CONNECTION_LOST)
                } else {
                    killed(c)
                }
            }
            _ => i.happy(c),
        });
        let s = Settings {
            clone_grace: Duration::from_secs(2),
            ..settings(4)
        };
        let (cloud, _keys) = cloud_with(mock, config(), s);
        let err = cloud
            .launch(&image(), &options("lost-1", WaitStage::Ip))
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
        assert_eq!((vm.as_str(), *step), (at("lost-1").as_str(), Step::Clone));
        assert!(*removed && rollback.is_none(), "{err:?}");
        let kind = if lost {
            ErrorKind::ConnectionLost
        } else {
            ErrorKind::Timeout
        };
        assert_eq!(err.govc().unwrap().kind(), kind);
        let all = calls.all();
        assert_eq!(
            all[..2],
            [info_argv("lost-1"), clone_argv(IMAGE, "lost-1", &[], false)]
        );
        assert_eq!(all.last().unwrap(), &destroy_argv("lost-1"));
        // Looked for until it appeared, then looked up and destroyed.
        assert!(
            all[2..all.len() - 1]
                .iter()
                .all(|a| a == &info_argv("lost-1")),
            "{all:#?}"
        );
        assert!(all.len() >= 6, "{all:#?}");
        assert!(calls.of("vm.change").is_empty(), "{all:#?}");
        assert!(cloud.tracked_instances().is_empty());
        assert!(inv.paths().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_clone_of_unknown_outcome_that_never_appears_may_exist_and_stays_tracked() {
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => fail(c, STDERR_CONNECTION_LOST),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let started = Instant::now();
    let err = cloud
        .launch(&image(), &options("lost-2", WaitStage::Ip))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300), "the grace");
    let CloudError::Step {
        removed, rollback, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(!removed);
    let Some(CloudError::MayExist { vm, waited }) = rollback.as_deref() else {
        panic!("{rollback:?}")
    };
    assert_eq!(vm, &at("lost-2"));
    assert_eq!(*waited, Duration::from_millis(300));
    assert!(err.to_string().contains("may still finish"), "{err}");
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::ConnectionLost);
    let all = calls.all();
    assert_eq!(
        all[..2],
        [info_argv("lost-2"), clone_argv(IMAGE, "lost-2", &[], false)]
    );
    assert!(
        all[2..].iter().all(|a| a == &info_argv("lost-2")),
        "{all:#?}"
    );
    assert!(all.len() >= 4, "looked for more than once: {all:#?}");
    assert!(calls.of("vm.destroy").is_empty());
    // Still tracked: clean() looks again.
    assert_eq!(cloud.tracked_instances(), refs(&["lost-2"]));

    // vCenter finishes it after all: clean() removes it.
    let launch = calls.launch_ids()[0].clone();
    inv.add(&at("lost-2"), &marker("instance", &launch));
    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(
        calls.since(n),
        [
            info_argv("lost-2"),
            info_argv("lost-2"),
            destroy_argv("lost-2")
        ]
    );
    assert!(cloud.tracked_instances().is_empty());
    assert!(inv.paths().is_empty());

    // A clean() while it has still not appeared: one look, and it stays
    // tracked (a clone that finishes later is still vmw's to remove).
    let err = cloud
        .launch(&image(), &options("lost-4", WaitStage::Ip))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CloudError::Step {
                removed: false,
                rollback: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(cloud.tracked_instances(), refs(&["lost-4"]));
    let n = calls.len();
    let err = cloud.clean().await.unwrap_err();
    assert!(
        matches!(err.errors.as_slice(), [CloudError::MayExist { .. }]),
        "{err:?}"
    );
    assert_eq!(calls.since(n), [info_argv("lost-4")]);
    assert_eq!(cloud.tracked_instances(), refs(&["lost-4"]));
}

#[tokio::test(start_paused = true)]
async fn a_vm_of_another_launch_at_the_target_of_an_unknown_clone_is_left_alone() {
    // The connection broke; what is at the target is another run's VM.
    let inv = Inventory::default();
    let other = marker("instance", "00000000deadbeef");
    let (i, o) = (inv.clone(), other.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.add(&at("lost-3"), &o);
            fail(c, STDERR_CONNECTION_LOST)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(&image(), &options("lost-3", WaitStage::Ip))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CloudError::Step {
                removed: false,
                rollback: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        calls.all(),
        [
            info_argv("lost-3"),
            clone_argv(IMAGE, "lost-3", &[], false),
            info_argv("lost-3")
        ]
    );
    assert!(calls.of("vm.change").is_empty());
    assert_eq!(inv.annotation(&at("lost-3")).unwrap(), other);
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_pool_is_explained_with_the_pools_found() {
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => fail(c, STDERR_AMBIGUOUS_POOL),
        "find" | "vm.info" => i.happy(c),
        _ => panic!("unexpected govc call: {c}"),
    });
    let cfg = VmwareConfig {
        resource_pool: None,
        ..config()
    };
    let (cloud, _keys) = cloud_with(mock, cfg, settings(4));
    let err = cloud
        .launch(&image(), &options("pool-1", WaitStage::Ip))
        .await
        .unwrap_err();
    // Refused before anything was made: the pools are looked up to
    // explain it, the target is not looked for after the clone.
    assert_eq!(
        calls.all(),
        [
            info_argv("pool-1"),
            sv(&[
                "vm.clone",
                "-vm=/DC0/vm/TEMPLATE-cloud-init-jammy",
                "-on=false",
                "-ds=LocalDS_0",
                "-folder=/DC0/vm",
                ANNOTATION_INSTANCE,
                "-link=false",
                "--",
                "pool-1",
            ]),
            sv(&["find", "-type=p", "--", "/"]),
        ]
    );
    assert_eq!(err.step(), Some(Step::Clone));
    let Some(GovcError::Failed(failure)) = err.govc() else {
        panic!("{err:?}")
    };
    assert_eq!(failure.kind, ErrorKind::AmbiguousResourcePool);
    assert_eq!(
        failure.resource_pools,
        ["/DC0/host/DC0_H0/Resources", "/DC0/host/DC0_C0/Resources"]
    );
    let text = vmw_cloud::render(&err);
    assert!(
        text.contains("/DC0/host/DC0_H0/Resources, /DC0/host/DC0_C0/Resources"),
        "{text}"
    );
    assert!(
        err.hints().iter().any(|h| h.contains("resource_pool")),
        "{:?}",
        err.hints()
    );
    assert!(cloud.tracked_instances().is_empty());
}

/// The `vm.change` with which vmw writes `marker` on the VM `name` before
/// it removes it (exact argv, launch id not masked).
fn claim_argv(name: &str, marker: &str) -> Vec<String> {
    sv(&[
        "vm.change",
        &format!("-vm={}", at(name)),
        &format!("-annotation={marker}"),
    ])
}

#[tokio::test(start_paused = true)]
async fn an_unmarked_vm_left_by_a_lost_clone_is_claimed_after_it_settles_and_destroyed() {
    // The connection broke after vCenter had made the VM but before govc
    // wrote the annotation: the VM is there without any marker. The path
    // was free right before the clone, so it is this clone's; once it has
    // stayed unmarked for the settle time (3 s), vmw writes this launch's
    // marker on it and destroys it. (Waits the 3 s settle time.)
    let inv = Inventory::default();
    let times: Arc<Mutex<BTreeMap<&'static str, Instant>>> = Arc::default();
    let (i, t) = (inv.clone(), times.clone());
    let (mock, calls) = scripted(move |c| {
        match c.name() {
            "vm.clone" => {
                t.lock().unwrap().insert("clone", Instant::now());
                i.add(&at("unm-1"), "");
                return fail(c, STDERR_CONNECTION_LOST);
            }
            "vm.change" => {
                t.lock().unwrap().insert("claim", Instant::now());
            }
            _ => {}
        }
        i.happy(c)
    });
    // A grace shorter than the settle time: a pending claim is waited for
    // all the same.
    let (cloud, _keys) = new_cloud(mock);
    let started = Instant::now();
    let err = cloud
        .launch(&image(), &options("unm-1", WaitStage::Ip))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    let CloudError::Step {
        vm,
        step,
        source,
        removed,
        rollback,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((vm.as_str(), *step), (at("unm-1").as_str(), Step::Clone));
    assert!(*removed && rollback.is_none(), "{err:?}");
    assert!(
        matches!(source.as_ref(), CloudError::Govc(e) if e.kind() == ErrorKind::ConnectionLost),
        "{source:?}"
    );
    assert!(err.to_string().contains("was removed"), "{err}");

    let raw = calls.raw();
    let launch = launch_in(&raw[1]);
    let all = calls.all();
    assert_eq!(
        all[..2],
        [info_argv("unm-1"), clone_argv(IMAGE, "unm-1", &[], false)]
    );
    // Looked at while it settled, then claimed with this launch's marker,
    // looked at again (now ours), looked up and destroyed.
    let claim = raw
        .iter()
        .position(|a| a[0] == "vm.change")
        .unwrap_or_else(|| panic!("never claimed: {all:#?}"));
    assert!(
        all[2..claim].iter().all(|a| a == &info_argv("unm-1")),
        "{all:#?}"
    );
    assert!(claim >= 4, "looked at more than once first: {all:#?}");
    assert_eq!(
        raw[claim],
        claim_argv("unm-1", &marker("instance", &launch))
    );
    assert_eq!(
        all[claim + 1..],
        [
            info_argv("unm-1"),
            info_argv("unm-1"),
            destroy_argv("unm-1")
        ]
    );
    assert_eq!(calls.of("vm.change").len(), 1);

    let times = times.lock().unwrap().clone();
    let unmarked_for = times["claim"] - times["clone"];
    assert!(
        unmarked_for >= Duration::from_secs(3),
        "claimed after only {unmarked_for:?}"
    );
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    assert!(inv.paths().is_empty());
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unmarked_vm_that_gets_another_launchs_marker_while_it_settles_is_left_alone() {
    // The connection broke; the unmarked VM at the target was another
    // vmw's, whose govc writes its marker a moment later: it is not
    // claimed, changed or destroyed.
    let inv = Inventory::default();
    let other = marker("instance", "00000000deadbeef");
    let looked = Arc::new(AtomicUsize::new(0));
    let (i, o, l) = (inv.clone(), other.clone(), looked.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.add(&at("unm-2"), "");
            fail(c, STDERR_CONNECTION_LOST)
        }
        // The lookups after the clone: the second one sees the marker.
        "vm.info" if i.contains(&at("unm-2")) => {
            if l.fetch_add(1, Ordering::SeqCst) == 1 {
                i.set_annotation(&at("unm-2"), &o);
            }
            i.happy(c)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let started = Instant::now();
    let err = cloud
        .launch(&image(), &options("unm-2", WaitStage::Ip))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "not waited out: {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            &err,
            CloudError::Step {
                removed: false,
                rollback: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::ConnectionLost);
    assert_eq!(
        calls.all(),
        [
            info_argv("unm-2"),
            clone_argv(IMAGE, "unm-2", &[], false),
            info_argv("unm-2"),
            info_argv("unm-2"),
        ]
    );
    assert_eq!(inv.annotation(&at("unm-2")).unwrap(), other);
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_answered_clone_failure_claims_and_destroys_the_unmarked_vm_after_the_settle_time() {
    // vCenter made the VM, then the reconfigure with which govc writes the
    // annotation failed, and govc reported it: the VM is there, unmarked,
    // now. One lookup, no settle time: claimed, then destroyed.
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.add(&at("ans-1"), "");
            fail(c, STDERR_OTHER)
        }
        _ => i.happy(c),
    });
    let s = Settings {
        clone_grace: Duration::from_secs(10),
        ..settings(4)
    };
    let (cloud, _keys) = cloud_with(mock, config(), s);
    let started = Instant::now();
    let err = cloud
        .launch(&image(), &options("ans-1", WaitStage::Ip))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    // The unmarked VM is given the settle time (another vmw's govc may be
    // about to mark it), not the whole grace.
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(6),
        "waited {elapsed:?} (grace 10 s, settle 3 s)"
    );
    let CloudError::Step {
        step,
        source,
        removed,
        rollback,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*step, Step::Clone);
    assert!(*removed && rollback.is_none(), "{err:?}");
    let CloudError::Govc(e) = source.as_ref() else {
        panic!("{source:?}")
    };
    assert_eq!(e.kind(), ErrorKind::Other);
    assert_eq!(e.stderr(), Some(STDERR_OTHER));
    let launch = launch_in(&calls.raw()[1]);
    assert_eq!(
        calls.all()[..3],
        [
            info_argv("ans-1"),
            clone_argv(IMAGE, "ans-1", &[], false),
            info_argv("ans-1"),
        ]
    );
    // Looked at again while it settles, then claimed, then destroyed.
    let raw = calls.raw();
    let claim = claim_argv("ans-1", &marker("instance", &launch));
    let at_claim = raw.iter().position(|c| *c == claim).unwrap();
    assert!(at_claim >= 3, "{raw:#?}");
    assert!(
        calls.all()[3..at_claim]
            .iter()
            .all(|c| *c == info_argv("ans-1")),
        "{raw:#?}"
    );
    assert_eq!(
        calls.all()[at_claim + 1..],
        [
            info_argv("ans-1"),
            info_argv("ans-1"),
            destroy_argv("ans-1")
        ]
    );
    assert!(inv.paths().is_empty());
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_answered_clone_failure_that_made_nothing_returns_at_once() {
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => fail(c, STDERR_OTHER),
        _ => i.happy(c),
    });
    let s = Settings {
        clone_grace: Duration::from_secs(10),
        ..settings(4)
    };
    let (cloud, _keys) = cloud_with(mock, config(), s);
    let started = Instant::now();
    let err = cloud
        .launch(&image(), &options("ans-2", WaitStage::Ip))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "waited {elapsed:?}");
    assert!(
        matches!(
            &err,
            CloudError::Step {
                step: Step::Clone,
                removed: false,
                rollback: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::Other);
    assert!(err.to_string().contains("nothing to remove"), "{err}");
    // One lookup after the clone, nothing claimed or destroyed.
    assert_eq!(
        calls.all(),
        [
            info_argv("ans-2"),
            clone_argv(IMAGE, "ans-2", &[], false),
            info_argv("ans-2"),
        ]
    );
    assert!(cloud.tracked_instances().is_empty());
    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(calls.len(), n, "nothing left for clean()");
}

#[tokio::test(start_paused = true)]
async fn a_refused_clone_is_not_looked_for() {
    // Refused before anything was made (an ambiguous pool, a command line
    // govc rejects): the target is not looked for after the clone.
    for (stderr, kind) in [
        (STDERR_AMBIGUOUS_POOL, ErrorKind::AmbiguousResourcePool),
        (
            "govc: flag provided but not defined: -bogus\n",
            ErrorKind::Usage,
        ),
    ] {
        let inv = Inventory::default();
        let i = inv.clone();
        let (mock, calls) = scripted(move |c| match c.name() {
            "vm.clone" => fail(c, stderr),
            "find" | "vm.info" => i.happy(c),
            _ => panic!("unexpected govc call: {c}"),
        });
        let cfg = VmwareConfig {
            resource_pool: None,
            ..config()
        };
        let s = Settings {
            clone_grace: Duration::from_secs(10),
            ..settings(4)
        };
        let (cloud, _keys) = cloud_with(mock, cfg, s);
        let started = Instant::now();
        let err = cloud
            .launch(&image(), &options("ref-1", WaitStage::Ip))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "{kind:?}");
        assert!(
            matches!(
                &err,
                CloudError::Step {
                    step: Step::Clone,
                    removed: false,
                    rollback: None,
                    ..
                }
            ),
            "{kind:?}: {err:?}"
        );
        assert_eq!(err.govc().unwrap().kind(), kind);
        let all = calls.all();
        assert_eq!(all[0], info_argv("ref-1"), "{kind:?}");
        assert_eq!(all[1][0], "vm.clone", "{kind:?}");
        // Only the pools, to explain an ambiguous one.
        let after: Vec<&str> = all[2..].iter().map(|a| a[0].as_str()).collect();
        let expected: &[&str] = match kind {
            ErrorKind::AmbiguousResourcePool => &["find"],
            _ => &[],
        };
        assert_eq!(after, expected, "{kind:?}: {all:#?}");
        assert!(cloud.tracked_instances().is_empty());
    }
}
