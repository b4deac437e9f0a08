//! Cancellation and dropped launches: a launch cancelled before it starts,
//! while its path is checked, during the clone (waited for and removed, or
//! left for `clean` when it outlasts the grace) and during power on; a
//! launch dropped mid-clone or during power on has its VM destroyed in the
//! background; a cancelled fleet removes what its lanes made.

use crate::*;

#[tokio::test(start_paused = true)]
async fn a_launch_cancelled_before_it_starts_calls_nothing() {
    let (cloud, _keys) = new_cloud(silent());
    let token = CancellationToken::new();
    token.cancel();
    let o = LaunchOptions::wait_for_ip();
    let err = cloud
        .cancel_on(&token)
        .launch(&image(), &o)
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::Cancelled), "{err:?}");
    let fleet = cloud
        .cancel_on(&token)
        .launch_many(&image(), 3, &o)
        .await
        .unwrap();
    assert!(fleet.instances.is_empty());
    let indices: Vec<usize> = fleet.failures.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, [0, 1, 2]);
    assert!(
        fleet
            .failures
            .iter()
            .all(|(_, e)| matches!(e, CloudError::Cancelled))
    );
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_launch_cancelled_while_its_path_is_checked_clones_nothing() {
    // The cancellation comes while the target's path is looked up: it is
    // seen before the clone, which is never sent.
    let inv = Inventory::default();
    let token = CancellationToken::new();
    let (i, t) = (inv.clone(), token.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.info" => {
            t.cancel();
            i.happy(c)
        }
        _ => panic!("unexpected govc call after a cancellation: {c}"),
    });
    let (cloud, _keys) = new_cloud(mock);
    let o = options("cx-0", WaitStage::Ip);
    let err = cloud
        .cancel_on(&token)
        .launch(&image(), &o)
        .await
        .unwrap_err();
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
    assert_eq!((vm.as_str(), *step), (at("cx-0").as_str(), Step::Clone));
    assert!(
        matches!(source.as_ref(), CloudError::Cancelled),
        "{source:?}"
    );
    assert!(!removed && rollback.is_none(), "{err:?}");
    assert_eq!(calls.all(), [info_argv("cx-0")]);
    assert!(cloud.tracked_instances().is_empty());
    assert!(inv.paths().is_empty());
}

/// How long a slow clone takes on the scripted vCenter.
const CLONE_TIME: Duration = Duration::from_millis(300);

#[tokio::test(start_paused = true)]
async fn a_launch_cancelled_during_the_clone_waits_for_it_and_removes_it() {
    let inv = Inventory::default();
    let token = CancellationToken::new();
    let (i, t) = (inv.clone(), token.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            t.cancel();
            i.clone_vm(c, CLONE_TIME)
        }
        _ => i.happy(c),
    });
    let s = Settings {
        clone_grace: Duration::from_secs(2),
        ..settings(4)
    };
    let govc = Delay::new(mock, &[("vm.clone", CLONE_TIME)]);
    let (cloud, _keys) = cloud_with(govc, config(), s);
    let o = options("cx-1", WaitStage::Ip);
    let started = Instant::now();
    let err = cloud
        .cancel_on(&token)
        .launch(&image(), &o)
        .await
        .unwrap_err();
    assert!(started.elapsed() >= CLONE_TIME, "the clone was awaited");
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
    assert_eq!(vm, &at("cx-1"));
    assert_eq!(*step, Step::Clone);
    assert!(
        matches!(source.as_ref(), CloudError::Cancelled),
        "{source:?}"
    );
    assert!(*removed && rollback.is_none(), "{err:?}");
    assert_eq!(
        calls.all(),
        [
            info_argv("cx-1"),
            clone_argv(IMAGE, "cx-1", &[], false),
            info_argv("cx-1"),
            destroy_argv("cx-1")
        ]
    );
    assert!(inv.paths().is_empty());
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_clone_outlasting_the_grace_after_a_cancellation_may_exist_until_clean() {
    // The clone takes longer than the grace: vmw stops waiting, looks for
    // it for the grace period, and reports that it may still appear.
    let takes = Duration::from_millis(1500);
    let inv = Inventory::default();
    let token = CancellationToken::new();
    let (i, t) = (inv.clone(), token.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            t.cancel();
            i.clone_vm(c, takes)
        }
        _ => i.happy(c),
    });
    let s = Settings {
        clone_grace: Duration::from_millis(200),
        ..settings(4)
    };
    let (cloud, _keys) = cloud_with(Delay::new(mock, &[("vm.clone", takes)]), config(), s);
    let o = options("cx-2", WaitStage::Ip);
    let err = cloud
        .cancel_on(&token)
        .launch(&image(), &o)
        .await
        .unwrap_err();
    let CloudError::Step {
        source,
        removed,
        rollback,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(matches!(source.as_ref(), CloudError::Cancelled));
    // A cancelled launch is cancelled, whatever step it was at.
    assert_eq!(err.category(), vmw_cloud::ErrorCategory::Cancelled);
    assert!(!removed);
    assert!(
        matches!(rollback.as_deref(), Some(CloudError::MayExist { .. })),
        "{rollback:?}"
    );
    assert!(calls.of("vm.destroy").is_empty());
    assert_eq!(cloud.tracked_instances(), refs(&["cx-2"]));

    // Once vCenter has finished it, clean() removes it.
    eventually(Duration::from_secs(3), "the clone finishes", || {
        inv.contains(&at("cx-2"))
    })
    .await;
    cloud.clean().await.unwrap();
    assert_eq!(calls.of("vm.destroy"), [destroy_argv("cx-2")]);
    assert!(inv.paths().is_empty());
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_launch_cancelled_during_power_on_is_rolled_back() {
    let inv = Inventory::default();
    let token = CancellationToken::new();
    let (i, t) = (inv.clone(), token.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.power" => {
            t.cancel();
            i.happy(c)
        }
        _ => i.happy(c),
    });
    let govc = Delay::new(mock, &[("vm.power", Duration::from_secs(5))]);
    let (cloud, _keys) = cloud_with(govc, config(), settings(4));
    let o = options("cx-3", WaitStage::Ip);
    let started = Instant::now();
    let err = cloud
        .cancel_on(&token)
        .launch(&image(), &o)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the power-on was not awaited"
    );
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
    assert_eq!(vm, &at("cx-3"));
    assert_eq!(*step, Step::PowerOn);
    assert!(
        matches!(source.as_ref(), CloudError::Cancelled),
        "{source:?}"
    );
    assert!(*removed && rollback.is_none(), "{err:?}");
    assert_eq!(
        calls.names(),
        [
            "vm.info",
            "vm.clone",
            "vm.change",
            "vm.power",
            "vm.info",
            "vm.destroy"
        ]
    );
    assert_eq!(calls.all()[4..], [info_argv("cx-3"), destroy_argv("cx-3")]);
    assert!(inv.paths().is_empty());
    assert!(cloud.tracked_instances().is_empty());
    assert!(vmw_cloud::render(&err).contains("cancelled"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_dropped_mid_clone_has_its_vm_destroyed_in_the_background() {
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => i.clone_vm(c, CLONE_TIME),
        _ => i.happy(c),
    });
    let s = Settings {
        clone_grace: Duration::from_secs(2),
        ..settings(4)
    };
    let govc = Delay::new(mock, &[("vm.clone", CLONE_TIME)]);
    let (cloud, _keys) = cloud_with(govc, config(), s);
    let dropped = tokio::time::timeout(
        Duration::from_millis(50),
        cloud.launch(&image(), &options("drop-1", WaitStage::Ip)),
    )
    .await;
    assert!(dropped.is_err(), "the launch should still be cloning");
    // Tracked until the background task is done with it.
    assert_eq!(cloud.tracked_instances(), refs(&["drop-1"]));
    eventually(
        Duration::from_secs(4),
        "the dropped launch's VM is removed",
        || !inv.contains(&at("drop-1")) && cloud.tracked_instances().is_empty(),
    )
    .await;
    assert_eq!(calls.of("vm.destroy"), [destroy_argv("drop-1")]);
    assert_eq!(
        calls.all()[..2],
        [info_argv("drop-1"), clone_argv(IMAGE, "drop-1", &[], false)]
    );
    assert!(
        calls.names()[2..]
            .iter()
            .all(|n| n == "vm.info" || n == "vm.destroy"),
        "{:?}",
        calls.names()
    );
    assert!(inv.paths().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_launch_dropped_during_power_on_has_its_vm_destroyed_in_the_background() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let govc = Delay::new(mock, &[("vm.power", Duration::from_secs(5))]);
    let (cloud, _keys) = cloud_with(govc, config(), settings(4));
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        cloud.launch(&image(), &options("drop-2", WaitStage::Ip)),
    )
    .await;
    assert!(dropped.is_err(), "the launch should still be powering on");
    eventually(
        Duration::from_secs(2),
        "the dropped launch's VM is removed",
        || !inv.contains(&at("drop-2")) && cloud.tracked_instances().is_empty(),
    )
    .await;
    assert_eq!(
        calls.names(),
        [
            "vm.info",
            "vm.clone",
            "vm.change",
            "vm.power",
            "vm.info",
            "vm.destroy"
        ]
    );
    assert_eq!(calls.all()[5], destroy_argv("drop-2"));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_fleet_removes_what_its_lanes_made() {
    // Cancelled as the third lane powers on: every lane under way is
    // rolled back, lanes not started never start.
    let inv = Inventory::default();
    let token = CancellationToken::new();
    let powered = Arc::new(AtomicUsize::new(0));
    let (i, t, p) = (inv.clone(), token.clone(), powered.clone());
    let (mock, calls) = scripted(move |c| {
        if c.name() == "vm.power" && p.fetch_add(1, Ordering::SeqCst) == 2 {
            t.cancel();
        }
        i.happy(c)
    });
    let govc = Delay::new(mock, &[("vm.power", Duration::from_millis(50))]);
    let (cloud, _keys) = cloud_with(govc, config(), settings(2));
    let o = LaunchOptions::wait_for_ip();
    let fleet = cloud
        .cancel_on(&token)
        .launch_many(&image(), 6, &o)
        .await
        .unwrap();
    assert_eq!(fleet.instances.len() + fleet.failures.len(), 6);
    assert!(!fleet.failures.is_empty());
    for (_, e) in &fleet.failures {
        match e {
            CloudError::Cancelled => {}
            CloudError::Step {
                source,
                removed: true,
                rollback: None,
                ..
            } => assert!(matches!(source.as_ref(), CloudError::Cancelled), "{e:?}"),
            other => panic!("{other:?}"),
        }
    }
    // What is left is exactly what launched.
    let mut left = inv.paths();
    left.sort();
    let mut launched: Vec<String> = fleet.instances.iter().map(|i| i.vm().to_string()).collect();
    launched.sort();
    assert_eq!(left, launched);
    assert_eq!(
        calls.of("vm.clone").len(),
        6 - fleet
            .failures
            .iter()
            .filter(|(_, e)| matches!(e, CloudError::Cancelled))
            .count()
    );
}
