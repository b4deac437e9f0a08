//! Snapshots: an instance cloned into a tracked image, a failed snapshot
//! tracking nothing, and guest cleaning that clones nothing when the guest
//! is unreachable.

use crate::*;

#[tokio::test(start_paused = true)]
async fn snapshot_clones_the_instance_into_a_tracked_image() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let base = cloud
        .launch(&image(), &options("base-1", WaitStage::None))
        .await
        .unwrap();
    let n = calls.len();
    let image = cloud.snapshot(&base, false).await.unwrap();
    assert_eq!(image, Image::at(vm_ref("base-1-image")));
    // The guest flushed (it does not answer here), the image's path checked
    // free, then the clone.
    assert_eq!(
        calls.since(n)[0],
        sv(&[
            "object.collect",
            "-json=true",
            "--",
            "/DC0/vm/base-1",
            "runtime.powerState"
        ])
    );
    assert_eq!(calls.since(n)[1][0], "vm.ip");
    let n = n + 2;
    assert_eq!(
        calls.since(n),
        [
            info_argv("base-1-image"),
            sv(&[
                "vm.clone",
                "-vm=/DC0/vm/base-1",
                "-on=false",
                "-ds=LocalDS_0",
                "-pool=/DC0/host/DC0_C0/Resources",
                "-folder=/DC0/vm",
                ANNOTATION_IMAGE,
                "-link=false",
                "--",
                "base-1-image",
            ])
        ]
    );
    assert_eq!(cloud.tracked_images(), refs(&["base-1-image"]));
    let launch = launch_in(&calls.raw()[n + 1]);
    assert_eq!(
        inv.annotation(&at("base-1-image")).unwrap(),
        marker("image", &launch)
    );

    // The image launches like any other.
    let n = calls.len();
    cloud
        .launch(&image, &options("child-1", WaitStage::None))
        .await
        .unwrap();
    assert_eq!(
        calls.since(n)[..2],
        [
            info_argv("child-1"),
            clone_argv("base-1-image", "child-1", &[], false)
        ]
    );
    assert_eq!(cloud.tracked_instances(), refs(&["base-1", "child-1"]));

    // Deleting it untracks it.
    let n = calls.len();
    assert_eq!(
        cloud
            .delete_image(&cloud.image("base-1-image").unwrap())
            .await
            .unwrap(),
        Removal::Destroyed
    );
    assert_eq!(
        calls.since(n),
        [info_argv("base-1-image"), destroy_argv("base-1-image")]
    );
    assert!(cloud.tracked_images().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_snapshot_tracks_nothing() {
    let clone_answer: Arc<Mutex<&'static str>> = Arc::new(Mutex::new("ok"));
    let answer = clone_answer.clone();
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match (c.name(), *answer.lock().unwrap()) {
        ("vm.clone", "kill") => {
            i.clone_vm(c, Duration::ZERO).unwrap();
            killed(c)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let base = cloud
        .launch(&image(), &options("base-2", WaitStage::None))
        .await
        .unwrap();

    // Refused (an image of that name exists, and is not touched): its path
    // is looked up, nothing is cloned.
    inv.add(&at("base-2-image"), "someone's image");
    let n = calls.len();
    let err = cloud.snapshot(&base, false).await.unwrap_err();
    let n = n + 2;
    assert_eq!(err.step(), Some(Step::Clone));
    assert!(err.govc().is_none(), "{err:?}");
    let CloudError::Step {
        vm,
        source,
        rollback: None,
        removed: false,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(vm, &at("base-2-image"));
    assert!(
        matches!(source.as_ref(), CloudError::NameTaken { vm } if *vm == at("base-2-image")),
        "{source:?}"
    );
    assert_eq!(calls.since(n), [info_argv("base-2-image")]);
    assert!(cloud.tracked_images().is_empty());
    assert_eq!(
        inv.annotation(&at("base-2-image")).unwrap(),
        "someone's image"
    );
    inv.remove(&at("base-2-image"));

    // Killed by the deadline: the image that was made is removed.
    *clone_answer.lock().unwrap() = "kill";
    let n = calls.len();
    // (The guest's address is known now: no look at it first.)
    let err = cloud.snapshot(&base, false).await.unwrap_err();
    assert_eq!(err.step(), Some(Step::Clone));
    assert!(matches!(&err, CloudError::Step { removed: true, .. }));
    assert_eq!(calls.since(n)[0], info_argv("base-2-image"));
    assert_eq!(calls.since(n)[1][0], "vm.clone");
    assert_eq!(
        calls.since(n)[2..],
        [
            info_argv("base-2-image"),
            info_argv("base-2-image"),
            destroy_argv("base-2-image")
        ]
    );
    assert!(cloud.tracked_images().is_empty());
    assert_eq!(cloud.tracked_instances(), refs(&["base-2"]));
    assert_eq!(inv.paths(), [at("base-2")]);
}

#[tokio::test(start_paused = true)]
async fn snapshot_with_guest_cleaning_clones_nothing_when_the_guest_is_unreachable() {
    // The guest is at 127.0.0.1 on a port where nothing listens.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.ip" => out("127.0.0.1\n"),
        _ => i.happy(c),
    });
    let mut s = settings(4);
    s.ssh.port = port;
    let (cloud, _keys) = cloud_with(mock, config(), s);
    let base = cloud
        .launch(&image(), &options("base-3", WaitStage::Ip))
        .await
        .unwrap();
    let n = calls.len();
    let err = cloud.snapshot(&base, true).await.unwrap_err();
    assert_eq!(err.step(), Some(Step::CleanGuest), "{err:?}");
    let text = vmw_cloud::render(&err);
    assert!(text.contains("connect"), "{text}");
    assert!(text.contains("nothing to remove"), "{text}");
    assert_eq!(calls.len(), n, "no clone after a failed guest clean");
    assert!(cloud.tracked_images().is_empty());
}
