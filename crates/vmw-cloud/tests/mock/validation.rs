//! Bad input (launch options, names, key pairs) rejected before any govc
//! call.

use crate::*;

#[tokio::test(start_paused = true)]
async fn bad_launch_options_are_rejected_before_any_govc_call() {
    let (cloud, _keys) = new_cloud(silent());
    let with = |f: &dyn Fn(&mut LaunchOptions)| {
        let mut o = LaunchOptions::wait_for_ip();
        f(&mut o);
        o
    };
    let invalid = |err: CloudError, option: &str| match err {
        CloudError::InvalidOption { option: o, .. } if o == option => {}
        other => panic!("expected an invalid {option}, got {other:?}"),
    };

    invalid(
        "t2.micro".parse::<vmw_cloud::InstanceType>().unwrap_err(),
        "instance type",
    );

    let o = with(&|o| {
        o.instance_type = Some("2c4g".parse().unwrap());
        o.cpus = Some(2);
    });
    let err = cloud.launch(&image(), &o).await.unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
    invalid(err, "instance type");

    let o = with(&|o| o.cpus = Some(0));
    invalid(cloud.launch(&image(), &o).await.unwrap_err(), "CPU count");
    let o = with(&|o| o.memory_mb = Some(2));
    invalid(cloud.launch(&image(), &o).await.unwrap_err(), "memory");

    for key in [
        "a=b",
        "",
        "guestinfo.userdata",
        "guestinfo.metadata.encoding",
    ] {
        let o = with(&|o| o.extra_config = vec![(key.into(), "x".into())]);
        invalid(
            cloud.launch(&image(), &o).await.unwrap_err(),
            "extraConfig key",
        );
    }

    let o = with(&|o| o.user_data = Some(b"#cloud-config\npackages: [unclosed\n".to_vec()));
    let err = cloud.launch(&image(), &o).await.unwrap_err();
    assert!(
        matches!(
            err,
            CloudError::UserData(vmw_userdata::UserDataError::InvalidYaml { .. })
        ),
        "{err:?}"
    );

    // Names govc would read as a pattern or a path never reach it.
    for name in [
        "a/b",
        "",
        "tab\there",
        &"x".repeat(81),
        "web-*",
        "a?",
        "[ab]",
    ] {
        let o = with(&|o| o.name = Some(name.to_owned()));
        invalid(cloud.launch(&image(), &o).await.unwrap_err(), "VM name");
    }
    // So are images given as a pattern or a relative path.
    for image in ["TEMPLATE-cloud-init-*", "vm/TEMPLATE-cloud-init-jammy"] {
        invalid(cloud.image(image).unwrap_err(), "VM name");
    }
    invalid(cloud.image("/DC0/vm/TEMPLATE-*").unwrap_err(), "VM path");

    let o = with(&|o| o.name = Some("solo".to_owned()));
    invalid(
        cloud.launch_many(&image(), 2, &o).await.unwrap_err(),
        "name",
    );
    invalid(
        "2x".parse::<vmw_cloud::InstanceType>().unwrap_err(),
        "instance type",
    );
    let fleet = cloud
        .launch_many(&image(), 0, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert!(fleet.instances.is_empty() && fleet.failures.is_empty());
    assert!(cloud.tracked_instances().is_empty());

    // Deletion of a pattern or a relative path is refused too.
    invalid(cloud.delete_vm_forced("me-*").await.unwrap_err(), "VM name");
    invalid(
        cloud.delete_vm_forced("vm/x-image").await.unwrap_err(),
        "VM name",
    );
    invalid(
        cloud.get_instance("/DC0/vm/me-?").await.unwrap_err(),
        "VM path",
    );

    // A concurrency of 0 is refused when the cloud is built.
    let dir = tempfile::tempdir().unwrap();
    let path = camino::Utf8Path::from_path(dir.path()).unwrap().join("ssh");
    let err = CloudBuilder::new("me")
        .timestamp(false)
        .config(config())
        .key_pair(KeyPair::generated_in(&path, "me".into()).unwrap())
        .settings(settings(0))
        .build_with(silent())
        .unwrap_err();
    invalid(err, "concurrency");
}
