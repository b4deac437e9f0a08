//! Images of releases: found with one cached `find`; a failed lookup is not
//! cached.

use crate::*;

#[tokio::test]
async fn released_image_is_found_with_one_cached_find() {
    let mut mock = MockGovc::new();
    mock.expect_run()
        .withf(|c| {
            c.argv()
                == sv(&[
                    "find",
                    "-type=m",
                    "-name=TEMPLATE-cloud-init-*",
                    "-maxdepth=1",
                    "--",
                    "/DC0/vm",
                ])
        })
        .times(1)
        .returning(|_| {
            out("/DC0/vm/TEMPLATE-cloud-init-jammy\n/DC0/vm/TEMPLATE-cloud-init-focal\n/DC0/vm/TEMPLATE-cloud-init-\n")
        });
    let (cloud, _keys) = new_cloud(mock);
    assert_eq!(
        cloud.released_image("jammy").await.unwrap(),
        Image {
            name: IMAGE.to_owned(),
            path: vm_ref(IMAGE),
        }
    );
    assert_eq!(
        cloud.daily_image("focal").await.unwrap().name,
        "TEMPLATE-cloud-init-focal"
    );
    assert_eq!(cloud.releases().await.unwrap(), ["focal", "jammy"]);
    let err = cloud.released_image("noble").await.unwrap_err();
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
}

#[tokio::test]
async fn a_failed_release_lookup_is_not_cached() {
    let failed = Arc::new(Mutex::new(false));
    let once = failed.clone();
    let (mock, calls) = scripted(move |c| {
        let mut f = once.lock().unwrap();
        if *f {
            out("")
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
    assert_eq!(calls.names(), ["find", "find"]);
    cloud.released_image("focal").await.unwrap_err();
    assert_eq!(calls.len(), 2);
}
