//! Generated and given names: one search, then counting past the highest
//! number; a taken name is skipped and never touched, a taken name given by
//! the caller is an error, and a launch gives up after a hundred taken
//! names.

use crate::*;

#[tokio::test(start_paused = true)]
async fn generated_names_continue_after_the_highest_number_in_the_folder() {
    let inv = Inventory::default();
    for name in ["me-3", "me-10", "me-07", "me-x", "me-too-99", IMAGE] {
        inv.add(&at(name), "");
    }
    // Deeper folders and other folders do not count.
    inv.add("/DC0/vm/sub/me-50", "");
    inv.add("/DC0/vmother/me-60", "");
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let a = cloud
        .launch(&image(), &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(a.name(), "me-11");
    assert_eq!(calls.all()[0], find_names_argv());
    let b = cloud
        .launch(&image(), &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(b.name(), "me-12");
    assert_eq!(calls.of("find").len(), 1, "one search per cloud");
}

#[tokio::test(start_paused = true)]
async fn a_taken_name_moves_the_launch_to_the_next_number_and_never_touches_that_vm() {
    // Made by someone else after the folder was searched: the search did
    // not see them, the clone meets them.
    let inv = Inventory::default();
    let theirs = "notes of the database team";
    let other_run = marker("instance", "00000000deadbeef");
    let (i, o) = (inv.clone(), other_run.clone());
    let (mock, calls) = scripted(move |c| match (c.name(), vm_name_of(c).as_deref()) {
        ("find", _) => out(""),
        ("vm.clone", Some("me-1")) => {
            i.add(&at("me-1"), theirs);
            i.clone_vm(c, Duration::ZERO)
        }
        ("vm.clone", Some("me-2")) => {
            i.add(&at("me-2"), &o);
            i.clone_vm(c, Duration::ZERO)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let a = cloud
        .launch(&image(), &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(a.name(), "me-3");
    assert_eq!(
        calls.all()[..4],
        [
            find_names_argv(),
            clone_argv(IMAGE, "me-1", &[], false),
            clone_argv(IMAGE, "me-2", &[], false),
            clone_argv(IMAGE, "me-3", &[], false),
        ]
    );
    assert_eq!(calls.names()[4..], sv(&["vm.change", "vm.power", "vm.ip"]));
    // Each attempt had its own launch id; the instance has the last.
    let ids = calls.launch_ids();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3);
    assert_eq!(a.launch_id(), Some(ids[2].as_str()));
    // The VMs met were never looked at after the clone met them, nor
    // changed or destroyed.
    let untouched = |from: usize| {
        for argv in &calls.all()[from..] {
            assert!(
                !argv.contains(&at("me-1")) && !argv.contains(&at("me-2")),
                "{argv:?}"
            );
            assert_ne!(argv.get(1), Some(&format!("-vm={}", at("me-1"))));
            assert_ne!(argv.get(1), Some(&format!("-vm={}", at("me-2"))));
        }
    };
    untouched(3);
    assert_eq!(inv.annotation(&at("me-1")).unwrap(), theirs);
    assert_eq!(inv.annotation(&at("me-2")).unwrap(), other_run);
    assert_eq!(cloud.tracked_instances(), refs(&["me-3"]));

    // The next launch counts on.
    let b = cloud
        .launch(&image(), &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(b.name(), "me-4");

    // clean() removes only what this cloud made.
    let n = calls.len();
    cloud.clean().await.unwrap();
    let destroyed: BTreeSet<String> = calls
        .since(n)
        .into_iter()
        .filter(|a| a[0] == "vm.destroy")
        .map(|a| a[2].clone())
        .collect();
    assert_eq!(destroyed, BTreeSet::from([at("me-3"), at("me-4")]));
    untouched(3);
    assert_eq!(inv.paths(), [at("me-1"), at("me-2")]);
}

#[tokio::test(start_paused = true)]
async fn a_name_the_search_missed_is_refused_by_the_clone_and_its_vm_left_alone() {
    // Made by someone else after the folder was searched (the search does
    // not see them): the lookup of the exact path right before the clone
    // does, and the launch moves on without a clone.
    let inv = Inventory::default();
    let theirs = "notes of the database team";
    let other_run = marker("instance", "00000000deadbeef");
    inv.add(&at("me-1"), theirs);
    inv.add(&at("me-2"), &other_run);
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "find" => out(""),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let a = cloud
        .launch(&image(), &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(a.name(), "me-3");
    assert_eq!(
        calls.all()[..4],
        [
            find_names_argv(),
            clone_argv(IMAGE, "me-1", &[], false),
            clone_argv(IMAGE, "me-2", &[], false),
            clone_argv(IMAGE, "me-3", &[], false),
        ]
    );
    assert_eq!(calls.names()[4..], sv(&["vm.change", "vm.power", "vm.ip"]));
    // The instance has the launch id of the clone that made it.
    assert_eq!(calls.launch_ids().last().map(String::as_str), a.launch_id());
    // The VMs met were refused to the clones, then never looked up,
    // changed, powered or destroyed.
    for argv in &calls.all()[3..] {
        assert!(
            !argv.contains(&at("me-1")) && !argv.contains(&at("me-2")),
            "{argv:?}"
        );
    }
    assert_eq!(inv.annotation(&at("me-1")).unwrap(), theirs);
    assert_eq!(inv.annotation(&at("me-2")).unwrap(), other_run);
    assert_eq!(cloud.tracked_instances(), refs(&["me-3"]));

    // A fleet's lane whose reserved number is taken meanwhile moves on to
    // the next free number; the order of the names is kept.
    inv.add(&at("me-5"), theirs);
    let n = calls.len();
    let fleet = cloud
        .launch_many(&image(), 2, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert!(fleet.failures.is_empty(), "{:?}", fleet.failures);
    let names: Vec<&str> = fleet.instances.iter().map(|i| i.name()).collect();
    assert_eq!(names, ["me-4", "me-6"]);
    let cloned: Vec<String> = calls
        .since(n)
        .into_iter()
        .filter(|a| a[0] == "vm.clone")
        .map(|a| a.last().unwrap().clone())
        .collect();
    // me-5's clone was refused; the VM there is as it was.
    assert_eq!(cloned, ["me-4", "me-5", "me-6"]);
    assert_eq!(inv.annotation(&at("me-5")).unwrap(), theirs);
    let mut tracked = cloud.tracked_instances();
    tracked.sort();
    assert_eq!(tracked, refs(&["me-3", "me-4", "me-6"]));
}

#[tokio::test(start_paused = true)]
async fn a_taken_name_given_by_the_caller_is_an_error() {
    // Taken after vmw checked the path free: the clone meets it, and a
    // name given by the caller is not replaced by another.
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.add(&at("fixed-1"), "");
            i.clone_vm(c, Duration::ZERO)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(&image(), &options("fixed-1", WaitStage::Ip))
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::Clone));
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::DuplicateName);
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
            info_argv("fixed-1"),
            clone_argv(IMAGE, "fixed-1", &[], false)
        ]
    );
    assert_eq!(inv.annotation(&at("fixed-1")).unwrap(), "");
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_taken_name_given_by_the_caller_is_name_taken_without_a_clone() {
    let inv = Inventory::default();
    inv.add(&at("fixed-2"), "owned by the database team");
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(&image(), &options("fixed-2", WaitStage::Ip))
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
    assert_eq!(vm, &at("fixed-2"));
    assert_eq!(*step, Step::Clone);
    assert!(
        matches!(source.as_ref(), CloudError::NameTaken { vm } if *vm == at("fixed-2")),
        "{source:?}"
    );
    assert!(!removed && rollback.is_none(), "{err:?}");
    assert!(err.govc().is_none(), "{err:?}");
    let text = vmw_cloud::render(&err);
    assert!(
        text.contains("a VM is already at /DC0/vm/fixed-2"),
        "{text}"
    );
    assert!(text.contains("nothing to remove"), "{text}");
    // One lookup: no clone, no other launch's name, nothing destroyed.
    assert_eq!(calls.all(), [info_argv("fixed-2")]);
    assert_eq!(
        inv.annotation(&at("fixed-2")).unwrap(),
        "owned by the database team"
    );
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_launch_gives_up_after_a_hundred_taken_names() {
    let inv = Inventory::default();
    for n in 1..=150 {
        inv.add(&at(&format!("me-{n}")), "");
    }
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "find" => out(""),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(&image(), &LaunchOptions::wait_for_ip())
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
    assert_eq!(vm, &at("me-100"));
    assert_eq!(*step, Step::Clone);
    assert!(!removed && rollback.is_none());
    assert!(source.to_string().contains("already exists"), "{source:?}");
    let names = calls.names();
    assert_eq!(names.len(), 101, "one search and 100 refused clones");
    assert!(names[1..].iter().all(|n| n == "vm.clone"), "{names:?}");
    assert_eq!(calls.all()[100], clone_argv(IMAGE, "me-100", &[], false));
    assert_eq!(inv.paths().len(), 150);
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_tag_timestamped_now_numbers_from_one_without_a_search() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let dir = tempfile::tempdir().unwrap();
    let keys = camino::Utf8Path::from_path(dir.path())
        .unwrap()
        .join("keys");
    let cloud = CloudBuilder::new("me")
        .config(config())
        .key_pair(KeyPair::generated_in(&keys, "me".into()).unwrap())
        .environment(vmw_config::Environment::default())
        .settings(settings(4))
        .build_with(mock)
        .unwrap();
    let tag = cloud.tag().to_string();
    assert!(
        tag.starts_with("me-") && tag.len() == "me-1125-021500".len(),
        "{tag}"
    );
    // Another run of the same tag in the same second made `-1` already:
    // the clone is refused and the launch moves on, leaving it alone.
    let theirs = format!("made by vmw (tag: {tag}, kind: instance, launch: 00000000deadbeef)");
    inv.add(&at(&format!("{tag}-1")), &theirs);
    let a = cloud
        .launch(&image(), &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(a.name(), format!("{tag}-2"));
    assert_eq!(
        calls.names(),
        ["vm.clone", "vm.clone", "vm.change", "vm.power", "vm.ip"]
    );
    assert_eq!(inv.annotation(&at(&format!("{tag}-1"))).unwrap(), theirs);
}
