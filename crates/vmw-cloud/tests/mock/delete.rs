//! Deletion and ownership: the VM is looked up right before its one
//! destroy, vmw's marker is demanded unless forced, templates are never
//! deleted, a missing VM is already gone (but not-found naming another path
//! or a changing inventory is an error), and images are deleted the same
//! way.

use crate::*;

#[tokio::test(start_paused = true)]
async fn delete_is_one_destroy_and_tolerates_a_missing_vm() {
    let inv = Inventory::default();
    let refuse = Arc::new(Mutex::new(false));
    let (i, refusing) = (inv.clone(), refuse.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.destroy" if *refusing.lock().unwrap() => fail(c, STDERR_OTHER),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let a = cloud
        .launch(&image(), &options("del-1", WaitStage::Ip))
        .await
        .unwrap();
    let b = cloud
        .launch(&image(), &options("del-2", WaitStage::None))
        .await
        .unwrap();
    let c = cloud
        .launch(&image(), &options("del-3", WaitStage::None))
        .await
        .unwrap();
    assert_eq!(
        cloud.tracked_instances(),
        refs(&["del-1", "del-2", "del-3"])
    );

    // A running instance: looked up, then one vm.destroy; no power-off.
    let n = calls.len();
    assert_eq!(a.delete().await.unwrap(), Removal::Destroyed);
    assert_eq!(calls.since(n), [info_argv("del-1"), destroy_argv("del-1")]);
    assert_eq!(a.cached_ip(), None);
    assert_eq!(cloud.tracked_instances(), refs(&["del-2", "del-3"]));
    assert!(!inv.contains(&at("del-1")));
    // Deleting it again: already gone, nothing destroyed.
    let n = calls.len();
    assert_eq!(a.delete().await.unwrap(), Removal::AlreadyGone);
    assert_eq!(calls.since(n), [info_argv("del-1")]);

    // Gone behind vmw's back: success, no vm.destroy.
    inv.remove(&at("del-2"));
    let n = calls.len();
    assert_eq!(b.delete().await.unwrap(), Removal::AlreadyGone);
    assert_eq!(calls.since(n), [info_argv("del-2")]);
    assert_eq!(cloud.tracked_instances(), refs(&["del-3"]));

    // Any other failure is an error, and the instance stays tracked.
    *refuse.lock().unwrap() = true;
    let n = calls.len();
    let err = c.delete().await.unwrap_err();
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::Other);
    assert_eq!(calls.since(n), [info_argv("del-3"), destroy_argv("del-3")]);
    assert_eq!(cloud.tracked_instances(), refs(&["del-3"]));
    *refuse.lock().unwrap() = false;
    assert_eq!(c.delete().await.unwrap(), Removal::Destroyed);
    assert!(cloud.tracked_instances().is_empty());
    assert!(inv.paths().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_vm_without_the_marker_is_deleted_only_when_forced() {
    let inv = Inventory::default();
    inv.add(&at("theirs"), "owned by the database team");
    inv.add(&at("old"), "");
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);

    let err = cloud.delete_vm("theirs").await.unwrap_err();
    assert_eq!(err.category(), vmw_cloud::ErrorCategory::Refused);
    let CloudError::NotOurs { vm, reason } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(vm, &at("theirs"));
    assert!(reason.contains("marker"), "{reason}");
    assert!(
        err.hints().iter().any(|h| h.contains("forced deletion")),
        "{:?}",
        err.hints()
    );
    assert_eq!(calls.all(), [info_argv("theirs")]);
    // As an instance too.
    let theirs = cloud.get_instance("theirs").await.unwrap();
    assert!(matches!(
        theirs.delete().await.unwrap_err(),
        CloudError::NotOurs { .. }
    ));
    let err = cloud
        .delete_image(&cloud.image("old").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::NotOurs { .. }), "{err:?}");
    assert!(calls.of("vm.destroy").is_empty());
    assert_eq!(inv.paths(), [at("old"), at("theirs")]);

    // Forced: destroyed.
    let n = calls.len();
    assert_eq!(
        cloud.delete_vm_forced("theirs").await.unwrap(),
        Removal::Destroyed
    );
    assert_eq!(
        calls.since(n),
        [info_argv("theirs"), destroy_argv("theirs")]
    );
    assert_eq!(
        cloud.delete_vm_forced("/DC0/vm/old").await.unwrap(),
        Removal::Destroyed
    );
    assert!(inv.paths().is_empty());

    // A VM with vmw's marker (of any launch) needs no force.
    inv.add(&at("ours"), &marker("image", "0123456789abcdef"));
    let n = calls.len();
    assert_eq!(
        cloud
            .delete_image(&cloud.image("ours").unwrap())
            .await
            .unwrap(),
        Removal::Destroyed
    );
    assert_eq!(calls.since(n), [info_argv("ours"), destroy_argv("ours")]);
    let other = "made by vmw (tag: you, kind: instance, launch: 0123456789abcdef)";
    inv.add(&at("yours"), other);
    let yours = cloud.get_instance("yours").await.unwrap();
    assert_eq!(yours.delete().await.unwrap(), Removal::Destroyed);
}

#[tokio::test(start_paused = true)]
async fn templates_are_never_deleted_even_forced() {
    let inv = Inventory::default();
    // A vSphere template, even one carrying vmw's instance marker.
    inv.add_template(&at("golden"), &marker("instance", "0123456789abcdef"));
    // A source VM by its name, in the folder or anywhere else.
    inv.add(&at(IMAGE), &marker("instance", "0123456789abcdef"));
    inv.add("/DC0/vm/other/TEMPLATE-cloud-init-focal", "");
    // A source template vmw imported.
    inv.add(&at("imported"), &marker("template", "0123456789abcdef"));
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);

    for path in [
        at("golden"),
        at(IMAGE),
        "/DC0/vm/other/TEMPLATE-cloud-init-focal".to_owned(),
        at("imported"),
    ] {
        for force in [false, true] {
            let image = cloud.image(&path).unwrap();
            for err in [
                if force {
                    cloud.delete_vm_forced(&path).await.unwrap_err()
                } else {
                    cloud.delete_vm(&path).await.unwrap_err()
                },
                if force {
                    cloud
                        .delete_vm_forced(image.path().as_str())
                        .await
                        .unwrap_err()
                } else {
                    cloud.delete_image(&image).await.unwrap_err()
                },
            ] {
                assert!(
                    matches!(&err, CloudError::TemplateProtected { name } if *name == path),
                    "{path} (force: {force}): {err:?}"
                );
            }
        }
        let instance = cloud.get_instance(&path).await.unwrap();
        for err in [
            instance.delete().await.unwrap_err(),
            instance.delete_forced().await.unwrap_err(),
        ] {
            assert!(
                matches!(&err, CloudError::TemplateProtected { .. }),
                "{path}: {err:?}"
            );
        }
    }
    // By name in the folder, too.
    let err = cloud.delete_vm_forced(IMAGE).await.unwrap_err();
    assert!(
        matches!(err, CloudError::TemplateProtected { .. }),
        "{err:?}"
    );
    assert!(calls.of("vm.destroy").is_empty());
    assert!(calls.names().iter().all(|n| n == "vm.info"));
    assert_eq!(inv.paths().len(), 4);

    // Neither listed nor swept.
    assert!(cloud.list(&Scope::AllTags).await.unwrap().is_empty());
    assert!(cloud.sweep(&Scope::AllTags).await.unwrap().is_empty());
    assert!(calls.of("vm.destroy").is_empty());
    assert_eq!(inv.paths().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn not_found_naming_another_path_is_not_already_gone() {
    for (stderr, gone_after) in [
        // Another VM.
        ("govc: vm '/DC0/vm/nf-10' not found\n", false),
        // The bare name: not our path.
        ("govc: vm 'nf-1' not found\n", false),
        // Another object.
        ("govc: datastore 'LocalDS_0' not found\n", false),
        // Our path, but a second lookup still finds the VM.
        ("govc: vm '/DC0/vm/nf-1' not found\n", true),
    ] {
        let inv = Inventory::default();
        let i = inv.clone();
        let (mock, calls) = scripted(move |c| match c.name() {
            "vm.destroy" => fail(c, stderr),
            _ => i.happy(c),
        });
        let (cloud, _keys) = new_cloud(mock);
        let vm = cloud
            .launch(&image(), &options("nf-1", WaitStage::None))
            .await
            .unwrap();
        let n = calls.len();
        let err = vm.delete().await.unwrap_err();
        assert_eq!(err.govc().unwrap().kind(), ErrorKind::NotFound, "{stderr}");
        let mut expected = vec![info_argv("nf-1"), destroy_argv("nf-1")];
        if gone_after {
            expected.push(info_argv("nf-1"));
        }
        assert_eq!(calls.since(n), expected, "{stderr}");
        assert_eq!(cloud.tracked_instances(), refs(&["nf-1"]), "{stderr}");
        assert!(inv.contains(&at("nf-1")));
    }
}

#[tokio::test(start_paused = true)]
async fn a_changing_inventory_at_destroy_is_an_error_not_already_gone() {
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.destroy" => fail(c, STDERR_INVENTORY_CHANGED),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let vm = cloud
        .launch(&image(), &options("ch-1", WaitStage::None))
        .await
        .unwrap();
    let n = calls.len();
    let err = vm.delete().await.unwrap_err();
    assert_eq!(
        err.govc().unwrap().kind(),
        ErrorKind::InventoryChanged,
        "{err:?}"
    );
    assert_eq!(calls.since(n), [info_argv("ch-1"), destroy_argv("ch-1")]);
    assert_eq!(cloud.tracked_instances(), refs(&["ch-1"]));
    let err = cloud.clean().await.unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert_eq!(cloud.tracked_instances(), refs(&["ch-1"]));
}

#[tokio::test(start_paused = true)]
async fn delete_image_refuses_templates_and_tolerates_a_missing_image() {
    let inv = Inventory::default();
    inv.add(&at(IMAGE), "");
    inv.add("/DC0/vm/other/TEMPLATE-cloud-init-focal", "");
    inv.add(&at("locked-image"), &marker("image", "0123456789abcdef"));
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.destroy" => fail(c, STDERR_OTHER),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    for (name, path) in [
        (IMAGE, at(IMAGE)),
        (
            "/DC0/vm/other/TEMPLATE-cloud-init-focal",
            "/DC0/vm/other/TEMPLATE-cloud-init-focal".to_owned(),
        ),
    ] {
        let err = cloud
            .delete_image(&cloud.image(name).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CloudError::TemplateProtected { name: n } if *n == path),
            "{err:?}"
        );
    }
    assert!(calls.of("vm.destroy").is_empty());

    let n = calls.len();
    assert_eq!(
        cloud
            .delete_image(&cloud.image("old-image").unwrap())
            .await
            .unwrap(),
        Removal::AlreadyGone
    );
    assert_eq!(calls.since(n), [info_argv("old-image")]);
    let err = cloud
        .delete_image(&cloud.image("locked-image").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::Other);
    assert!(inv.contains(&at("locked-image")));
}
