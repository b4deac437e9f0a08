//! Images of releases: one lookup of the template's path (reused by the
//! launch), the folder searched only to list the releases; a failed lookup
//! is not cached.

use crate::*;

#[tokio::test(start_paused = true)]
async fn a_released_image_is_one_lookup_and_the_folder_is_searched_only_to_list() {
    let inv = Inventory::default();
    inv.add(&at("TEMPLATE-cloud-init-jammy"), "");
    inv.add(&at("TEMPLATE-cloud-init-focal"), "");
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    assert_eq!(
        cloud.released_image("jammy").await.unwrap(),
        Image::at(vm_ref(IMAGE))
    );
    assert_eq!(calls.names(), ["vm.info"]);
    // The lookup serves the launch that follows.
    cloud
        .launch(&image(), &options("r-1", WaitStage::None))
        .await
        .unwrap();
    assert_eq!(
        calls.names().iter().filter(|n| *n == "vm.info").count(),
        2,
        "the source once, the target's path once: {:?}",
        calls.names()
    );
    assert_eq!(
        cloud.daily_image("focal").await.unwrap().name(),
        "TEMPLATE-cloud-init-focal"
    );
    calls.clear();
    let err = cloud.released_image("noble").await.unwrap_err();
    assert_eq!(calls.names(), ["vm.info", "find"]);
    match &err {
        CloudError::UnknownRelease {
            release,
            folder,
            available,
        } => {
            assert_eq!(release, "noble");
            assert_eq!(folder, FOLDER);
            assert_eq!(available, &["focal", "jammy"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("available: focal, jammy"), "{err}");
    // Listed once: from now on the list answers for the releases it
    // knows; one it does not know is looked up (it may have been imported
    // meanwhile), and, absent, listed again.
    calls.clear();
    assert_eq!(cloud.releases().await.unwrap(), ["focal", "jammy"]);
    assert_eq!(cloud.released_image("jammy").await.unwrap().name(), IMAGE);
    assert!(calls.is_empty(), "{:?}", calls.names());
    assert!(cloud.released_image("noble").await.is_err());
    assert_eq!(calls.names(), ["vm.info", "find"]);
    calls.clear();
    inv.add(&at("TEMPLATE-cloud-init-noble"), "");
    assert_eq!(
        cloud.released_image("noble").await.unwrap().name(),
        "TEMPLATE-cloud-init-noble"
    );
    assert_eq!(calls.names(), ["vm.info"]);
    assert_eq!(
        cloud.releases().await.unwrap(),
        ["focal", "jammy", "noble"],
        "the list follows"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_release_lookup_is_not_cached() {
    let failed = Arc::new(Mutex::new(false));
    let once = failed.clone();
    let (mock, calls) = scripted(move |c| {
        let mut f = once.lock().unwrap();
        if *f {
            match c.name() {
                "vm.info" => out(r#"{"virtualMachines": null}"#),
                _ => out(""),
            }
        } else {
            *f = true;
            fail(
                c,
                "govc: Post \"https://vc.example/sdk\": dial tcp: connect: connection refused",
            )
        }
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud.released_image("jammy").await.unwrap_err();
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::Unreachable);
    let err = cloud.released_image("jammy").await.unwrap_err();
    assert!(
        matches!(&err, CloudError::UnknownRelease { available, .. } if available.is_empty()),
        "{err:?}"
    );
    assert!(err.to_string().contains("available: none"), "{err}");
    assert_eq!(calls.names(), ["vm.info", "vm.info", "find"]);
    // A release the list does not know is looked up again (it may have been
    // imported since).
    cloud.released_image("focal").await.unwrap_err();
    assert_eq!(
        calls.names(),
        ["vm.info", "vm.info", "find", "vm.info", "find"]
    );
}
