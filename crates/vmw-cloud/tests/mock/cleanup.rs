//! `clean()`, `list()` and `sweep()`: instances then images are deleted,
//! everything is tried and what could not be deleted is kept, what is not
//! this cloud's is dropped; listing finds vmw's VMs by marker, sweeping
//! deletes exactly those, and a VM that changed since it was listed is
//! refused.

use crate::*;

#[tokio::test(start_paused = true)]
async fn clean_deletes_instances_then_images_and_then_has_nothing_left() {
    let inv = Inventory::default();
    // Not this cloud's: never touched by clean().
    inv.add(&at("theirs"), "");
    inv.add(&at("c-9"), &marker("instance", "0123456789abcdef"));
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let mut made = Vec::new();
    for name in ["c-1", "c-2", "c-3"] {
        made.push(
            cloud
                .launch(&image(), &options(name, WaitStage::None))
                .await
                .unwrap(),
        );
    }
    cloud.snapshot(&made[0], false).await.unwrap();
    cloud.snapshot(&made[1], false).await.unwrap();

    let n = calls.len();
    let removed = cloud.clean().await.unwrap();
    assert_eq!(removed.len(), 5, "{removed:?}");
    let since = calls.since(n);
    // The instances looked up together (one collect of their folder),
    // then destroyed; then the images, the same way.
    let names: Vec<&str> = since.iter().map(|a| a[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "object.collect",
            "vm.destroy",
            "vm.destroy",
            "vm.destroy",
            "object.collect",
            "vm.destroy",
            "vm.destroy"
        ],
        "{since:#?}"
    );
    assert_eq!(
        since[0][..5],
        sv(&["object.collect", "-json=true", "-type=m", "--", "/DC0/vm"])
    );
    let order: Vec<&str> = since
        .iter()
        .filter(|a| a[0] == "vm.destroy")
        .map(|a| a[2].as_str())
        .collect();
    assert_eq!(order.len(), 5, "{order:?}");
    let first: BTreeSet<&str> = order[..3].iter().copied().collect();
    let then: BTreeSet<&str> = order[3..].iter().copied().collect();
    assert_eq!(
        first,
        BTreeSet::from(["/DC0/vm/c-1", "/DC0/vm/c-2", "/DC0/vm/c-3"])
    );
    assert_eq!(
        then,
        BTreeSet::from(["/DC0/vm/c-1-image", "/DC0/vm/c-2-image"])
    );
    assert!(cloud.tracked_instances().is_empty());
    assert!(cloud.tracked_images().is_empty());
    assert_eq!(inv.paths(), [at("c-9"), at("theirs")]);

    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(calls.len(), n, "a second clean() calls govc");
}

#[tokio::test(start_paused = true)]
async fn clean_tries_everything_and_keeps_what_it_could_not_delete() {
    let refuse = Arc::new(Mutex::new(true));
    let refusing = refuse.clone();
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.destroy" if c.positional() == [at("k-2")] && *refusing.lock().unwrap() => {
            fail(c, STDERR_OTHER)
        }
        // Gone between the lookup and the destroy.
        "vm.destroy" if c.positional() == [at("k-3")] => {
            i.remove(&at("k-3"));
            vm_not_found(c)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let mut made = Vec::new();
    for name in ["k-1", "k-2", "k-3"] {
        made.push(
            cloud
                .launch(&image(), &options(name, WaitStage::None))
                .await
                .unwrap(),
        );
    }
    cloud.snapshot(&made[0], false).await.unwrap();

    let n = calls.len();
    let err = cloud.clean().await.unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    let e = err.errors[0].govc().unwrap();
    assert_eq!(e.kind(), ErrorKind::Other);
    assert_eq!(e.command().unwrap().argv(), destroy_argv("k-2"));
    assert!(err.to_string().contains("k-2"), "{err}");
    let destroyed: BTreeSet<String> = calls
        .since(n)
        .into_iter()
        .filter(|a| a[0] == "vm.destroy")
        .map(|a| a[2].clone())
        .collect();
    assert_eq!(
        destroyed,
        ["k-1", "k-2", "k-3", "k-1-image"]
            .into_iter()
            .map(at)
            .collect()
    );
    assert_eq!(cloud.tracked_instances(), refs(&["k-2"]));
    assert!(cloud.tracked_images().is_empty());

    // Once the VM can be removed, the next clean() removes only it.
    *refuse.lock().unwrap() = false;
    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(calls.since(n), [info_argv("k-2"), destroy_argv("k-2")]);
    assert!(cloud.tracked_instances().is_empty());
    assert!(inv.paths().is_empty());
}

#[tokio::test(start_paused = true)]
async fn clean_stops_tracking_what_turned_out_not_to_be_this_clouds() {
    // While tracked, the VMs at the paths of an instance and of an image
    // this cloud made were replaced: by another launch's instance, and by
    // a vSphere template. clean() refuses both (reported, never destroyed)
    // and stops tracking them: the next clean() leaves them alone.
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let base = cloud
        .launch(&image(), &options("u-1", WaitStage::None))
        .await
        .unwrap();
    cloud.snapshot(&base, false).await.unwrap();
    assert_eq!(cloud.tracked_instances(), refs(&["u-1"]));
    assert_eq!(cloud.tracked_images(), refs(&["u-1-image"]));
    let other = marker("instance", "00000000deadbeef");
    inv.remove(&at("u-1"));
    inv.add(&at("u-1"), &other);
    inv.remove(&at("u-1-image"));
    inv.add_template(&at("u-1-image"), "");

    let n = calls.len();
    let err = cloud.clean().await.unwrap_err();
    assert_eq!(err.errors.len(), 2, "{err}");
    let CloudError::NotOurs { vm, reason } = &err.errors[0] else {
        panic!("{err:?}")
    };
    assert_eq!(vm, &at("u-1"));
    assert!(reason.contains("00000000deadbeef"), "{reason}");
    assert!(
        matches!(&err.errors[1], CloudError::TemplateProtected { name } if *name == at("u-1-image")),
        "{err:?}"
    );
    assert_eq!(calls.since(n), [info_argv("u-1"), info_argv("u-1-image")]);
    assert!(cloud.tracked_instances().is_empty());
    assert!(cloud.tracked_images().is_empty());
    assert_eq!(inv.annotation(&at("u-1")).unwrap(), other);
    assert!(inv.contains(&at("u-1-image")));

    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(calls.len(), n, "a second clean() calls govc");
    assert_eq!(inv.paths(), [at("u-1"), at("u-1-image")]);
}

/// The `find` of [`Cloud::list`] for this annotation glob.
fn list_argv(glob: &str) -> Vec<String> {
    sv(&[
        "find",
        "-type=m",
        "-maxdepth=1",
        "--",
        FOLDER,
        "-config.annotation",
        glob,
    ])
}

#[tokio::test(start_paused = true)]
async fn list_finds_vmw_vms_by_marker_and_sweep_deletes_exactly_those() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let base = cloud
        .launch(&image(), &options("me-1", WaitStage::None))
        .await
        .unwrap();
    cloud.snapshot(&base, false).await.unwrap();
    // A crashed run of the same tag.
    let moref_crashed = inv.add(&at("me-7"), &marker("instance", "0123456789abcdef"));
    // Not in scope: someone else's VM, another tag, a subfolder, a
    // template, a source VM.
    inv.add(&at("theirs"), "made by hand");
    let you = "made by vmw (tag: you, kind: instance, launch: 0123456789abcdef)";
    inv.add(&at("you-1"), you);
    inv.add("/DC0/vm/sub/me-9", &marker("instance", "0123456789abcdef"));
    inv.add_template(&at("me-golden"), &marker("instance", "0123456789abcdef"));
    inv.add(&at(IMAGE), &marker("instance", "0123456789abcdef"));

    let n = calls.len();
    let records = cloud.list(&Scope::ThisTag).await.unwrap();
    let all = calls.since(n);
    assert_eq!(all[0], list_argv("made by vmw (tag: me, kind: *"));
    assert_eq!(
        all[1][..5],
        sv(&["object.collect", "-json=true", "-type=m", "--", "/DC0/vm"])
    );
    assert_eq!(all.len(), 2, "two calls however many VMs: {all:#?}");
    let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["me-1", "me-1-image", "me-7"]);
    let r = &records[2];
    assert_eq!(r.path, vm_ref("me-7"));
    assert_eq!(r.moref, moref_crashed);
    assert_eq!(r.tag, "me");
    assert_eq!(r.kind, Kind::Instance);
    assert_eq!(r.launch.as_deref(), Some("0123456789abcdef"));
    assert_eq!(records[1].kind, Kind::Image);
    assert_eq!(records[0].launch.as_deref(), base.launch_id());

    let n = calls.len();
    let all_tags = cloud.list(&Scope::AllTags).await.unwrap();
    assert_eq!(calls.since(n)[0], list_argv("made by vmw (tag: *"));
    let names: Vec<&str> = all_tags.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["me-1", "me-1-image", "me-7", "you-1"]);

    // sweep: instances first, then images, each looked up right before.
    let n = calls.len();
    let removed = cloud.sweep(&Scope::ThisTag).await.unwrap();
    let since = calls.since(n);
    assert_eq!(since[0], list_argv("made by vmw (tag: me, kind: *"));
    let destroyed: Vec<&str> = since
        .iter()
        .filter(|a| a[0] == "vm.destroy")
        .map(|a| a[2].as_str())
        .collect();
    assert_eq!(destroyed.len(), 3);
    assert_eq!(destroyed[2], at("me-1-image"));
    let mut removed_paths: Vec<String> = removed.iter().map(ToString::to_string).collect();
    removed_paths.sort();
    assert_eq!(removed_paths, [at("me-1"), at("me-1-image"), at("me-7")]);
    assert!(cloud.tracked_instances().is_empty());
    assert!(cloud.tracked_images().is_empty());
    assert_eq!(
        inv.paths(),
        [
            "/DC0/vm/TEMPLATE-cloud-init-jammy",
            "/DC0/vm/me-golden",
            "/DC0/vm/sub/me-9",
            "/DC0/vm/theirs",
            "/DC0/vm/you-1",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn delete_listed_refuses_a_vm_that_changed_since_it_was_listed() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let mine = marker("instance", "0123456789abcdef");
    inv.add(&at("me-5"), &mine);
    inv.add(&at("me-6"), &mine);
    inv.add(&at("me-8"), &mine);
    let records = cloud.list(&Scope::ThisTag).await.unwrap();
    assert_eq!(records.len(), 3);

    // me-5 was replaced by another object carrying the same marker; me-6
    // now carries another tag's marker; me-8 is gone.
    inv.remove(&at("me-5"));
    inv.add(&at("me-5"), &mine);
    inv.set_annotation(
        &at("me-6"),
        "made by vmw (tag: you, kind: instance, launch: 0123456789abcdef)",
    );
    inv.remove(&at("me-8"));

    let n = calls.len();
    let err = cloud.delete_listed(&records).await.unwrap_err();
    assert_eq!(err.errors.len(), 2, "{err}");
    let reasons: Vec<String> = err
        .errors
        .iter()
        .map(|e| match e {
            CloudError::NotOurs { vm, reason } => format!("{vm}: {reason}"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        reasons[0].starts_with("/DC0/vm/me-5: ") && reasons[0].contains("another object"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("/DC0/vm/me-6: ") && reasons[1].contains("you"),
        "{reasons:?}"
    );
    // Looked up (together), nothing destroyed.
    assert!(
        calls
            .since(n)
            .iter()
            .all(|a| a[0] == "vm.info" || a[0] == "object.collect")
    );
    assert_eq!(inv.paths(), [at("me-5"), at("me-6")]);

    // Listed afresh, they go (me-6 now belongs to the tag `you`).
    let again = cloud.list(&Scope::ThisTag).await.unwrap();
    assert_eq!(cloud.delete_listed(&again).await.unwrap(), refs(&["me-5"]));
    assert_eq!(inv.paths(), [at("me-6")]);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_clean_starts_no_deletion_and_keeps_what_it_did_not_try() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    for name in ["k-1", "k-2"] {
        cloud
            .launch(&image(), &options(name, WaitStage::None))
            .await
            .unwrap();
    }
    let token = CancellationToken::new();
    token.cancel();
    let n = calls.len();
    let err = cloud.cancel_on(&token).clean().await.unwrap_err();
    assert!(err.removed.is_empty() && err.errors.is_empty(), "{err:?}");
    assert_eq!(err.skipped, refs(&["k-1", "k-2"]));
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert_eq!(calls.len(), n, "nothing was asked of vCenter");
    // Still tracked: a clean without the token removes them.
    assert_eq!(cloud.tracked_instances(), refs(&["k-1", "k-2"]));
    let removed = cloud.clean().await.unwrap();
    assert_eq!(removed, refs(&["k-1", "k-2"]));
    assert!(inv.paths().is_empty());
    // A sweep cancelled before it starts lists, then removes nothing.
    inv.add(&at("k-3"), &marker("instance", "0123456789abcdef"));
    let err = cloud
        .cancel_on(&token)
        .sweep(&Scope::ThisTag)
        .await
        .unwrap_err();
    assert_eq!(err.skipped, refs(&["k-3"]));
    assert_eq!(inv.paths(), [at("k-3")]);
}
