//! Launching: the exact command line of every step of a launch (clone,
//! one `vm.change` with the guestinfo files, power on, IP wait), the files
//! passed to `vm.change` while it runs, hardware, extra config, linked
//! clones and vendor data.

use crate::*;

#[tokio::test(start_paused = true)]
async fn launch_runs_clone_one_change_power_on_and_ip_with_exact_argv() {
    let inv = Inventory::default();
    let seen: Arc<Mutex<Vec<SeenFile>>> = Arc::default();
    let seen_in_mock = seen.clone();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| {
        if c.name() == "vm.change" {
            seen_in_mock.lock().unwrap().extend(read_guestinfo_files(c));
        }
        i.happy(c)
    });
    let (cloud, _keys) = new_cloud(mock);
    let user_data = b"#cloud-config\n# tools\npackages: [hello]\n".to_vec();
    let launch = LaunchOptions {
        user_data: Some(user_data),
        wait: WaitStage::Ip,
        ..LaunchOptions::default()
    };
    let instance = cloud.launch(&image(), &launch).await.unwrap();
    // The folder holds no `me-<n>` yet: the first number.
    assert_eq!(instance.name(), "me-1");
    assert_eq!(instance.vm(), &vm_ref("me-1"));
    let path = at("me-1");
    assert_eq!(instance.cached_ip(), Some(ip("10.0.0.10")));
    assert_eq!(cloud.tracked_instances(), refs(&["me-1"]));

    let all = calls.all();
    assert_eq!(all.len(), 5, "{all:#?}");
    // The search of the folder is what shows the number free: no lookup
    // of the path before the clone.
    assert_eq!(all[0], find_names_argv());
    assert_eq!(
        all[1],
        sv(&[
            "vm.clone",
            "-vm=/DC0/vm/TEMPLATE-cloud-init-jammy",
            "-on=false",
            "-ds=LocalDS_0",
            "-pool=/DC0/host/DC0_C0/Resources",
            "-folder=/DC0/vm",
            "-annotation=made by vmw (tag: me, kind: instance, launch: *)",
            "-link=false",
            "--",
            "me-1",
        ])
    );
    // The marker carries this launch's id, and the VM made carries it.
    let launch_id = launch_in(&calls.raw()[1]);
    assert_eq!(instance.launch_id(), Some(launch_id.as_str()));
    assert_eq!(
        inv.annotation(&path).unwrap(),
        format!("made by vmw (tag: me, kind: instance, launch: {launch_id})")
    );

    let files = seen.lock().unwrap().clone();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[0].key, "guestinfo.metadata");
    assert_eq!(files[1].key, "guestinfo.userdata");
    assert_eq!(
        all[2],
        sv(&[
            "vm.change",
            "-vm=/DC0/vm/me-1",
            "-e=guestinfo.metadata.encoding=base64",
            "-e=guestinfo.userdata.encoding=base64",
            &format!("-f=guestinfo.metadata={}", files[0].path),
            &format!("-f=guestinfo.userdata={}", files[1].path),
        ])
    );
    for f in &files {
        assert_eq!(f.mode, 0o600, "{f:?}");
        assert!(
            !std::path::Path::new(&f.path).exists(),
            "{} must be removed after the launch",
            f.path
        );
    }

    let metadata = yaml(&vmw_userdata::decode(files[0].contents.as_bytes(), "base64").unwrap());
    assert_eq!(metadata["instance-id"].as_str(), Some("me-1"));
    assert_eq!(metadata["local-hostname"].as_str(), Some("me-1"));

    let user = vmw_userdata::decode(files[1].contents.as_bytes(), "base64").unwrap();
    let user_text = String::from_utf8(user).unwrap();
    assert!(
        user_text.starts_with("#cloud-config\n# tools\npackages: [hello]\n"),
        "{user_text}"
    );
    let user_yaml = yaml(user_text.as_bytes());
    assert_eq!(user_yaml["packages"][0].as_str(), Some("hello"));
    let key = &cloud.key_pair().public_key;
    let keys = user_yaml["ssh_authorized_keys"].as_sequence().unwrap();
    assert_eq!(keys.len(), 1, "{user_text}");
    assert!(key.matches_line(keys[0].as_str().unwrap()), "{user_text}");

    assert_eq!(all[3], sv(&["vm.power", "-on=true", "--", "/DC0/vm/me-1"]));
    assert_eq!(all[4].len(), 4, "{:?}", all[4]);
    assert_eq!(all[4][2..], sv(&["--", "/DC0/vm/me-1"]));
    let wait = ip_wait_of(&all[4]);
    assert!(
        wait > Duration::from_secs(1) && wait <= Duration::from_secs(2),
        "{wait:?}"
    );
    assert_eq!(inv.get(&path).unwrap().power, "poweredOn");

    // No guestinfo value, and not the key, is ever on a command line.
    for argv in &all {
        for arg in argv {
            for f in &files {
                assert!(!arg.contains(&f.contents), "value of {} in {arg}", f.key);
            }
            assert!(!arg.contains(key.data()), "public key in {arg}");
            if let Some(kv) = arg.strip_prefix("-e=guestinfo.") {
                let (k, _) = kv.split_once('=').unwrap();
                assert!(k.ends_with(".encoding"), "guestinfo value on argv: {arg}");
            }
        }
    }

    // The next launch counts on without searching again, with a new id.
    let n = calls.len();
    let next = cloud
        .launch(&image(), &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(next.name(), "me-2");
    assert_eq!(
        calls.names()[n..],
        sv(&["vm.clone", "vm.change", "vm.power", "vm.ip"])
    );
    let ids = calls.launch_ids();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(next.launch_id(), Some(ids[1].as_str()));
}

#[tokio::test(start_paused = true)]
async fn launch_passes_hardware_extra_config_linked_clone_and_vendor_data() {
    let inv = Inventory::default();
    inv.add(&at(IMAGE), "");
    let seen: Arc<Mutex<Vec<SeenFile>>> = Arc::default();
    let seen_in_mock = seen.clone();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| {
        if c.name() == "vm.change" {
            seen_in_mock.lock().unwrap().extend(read_guestinfo_files(c));
        }
        i.happy(c)
    });
    let (cloud, _keys) = new_cloud(mock);

    // An instance type, extra config, a linked clone, vendor data, no wait.
    let first = LaunchOptions {
        instance_type: Some("2c4g".parse().unwrap()),
        extra_config: vec![
            ("disk.EnableUUID".to_owned(), "TRUE".to_owned()),
            ("guestinfo.custom".to_owned(), "a b=c".to_owned()),
        ],
        linked_clone: true,
        vendor_data: Some(b"#cloud-config\nruncmd: [true]\n".to_vec()),
        ..options("web-1", WaitStage::None)
    };
    let a = cloud.launch(&image(), &first).await.unwrap();
    assert_eq!(a.name(), "web-1");
    assert_eq!(a.cached_ip(), None);
    // A linked clone comes from vmw's snapshot of the image, taken once
    // when missing.
    let snapshots = calls.all();
    let tree = sv(&[
        "snapshot.tree",
        &format!("-vm={FOLDER}/{IMAGE}"),
        "-D=true",
        "-i=true",
        "-json=true",
    ]);
    assert_eq!(snapshots[0], tree);
    assert_eq!(
        snapshots[1],
        sv(&[
            "snapshot.create",
            &format!("-vm={FOLDER}/{IMAGE}"),
            "-m=false",
            "-d=the disks vmw's linked clones share",
            "--",
            vmw_cloud::LINKED_BASE,
        ])
    );
    assert_eq!(snapshots[2], tree);
    let all = calls.since(3);
    // A name given: no search of the folder (only its path is checked
    // free); no vm.ip without a wait.
    assert_eq!(all.len(), 4, "{all:#?}");
    assert_eq!(all[0], info_argv("web-1"));
    let mut linked = clone_argv(IMAGE, "web-1", &["-c=2", "-m=4096"], true);
    let name = linked.pop().unwrap();
    let dashes = linked.pop().unwrap();
    linked.push("-snapshot=snapshot-2".to_owned());
    linked.extend([dashes, name]);
    assert_eq!(all[1], linked);
    let files = seen.lock().unwrap().clone();
    let keys: Vec<&str> = files.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "guestinfo.metadata",
            "guestinfo.userdata",
            "guestinfo.vendordata"
        ]
    );
    assert_eq!(
        all[2],
        sv(&[
            "vm.change",
            "-vm=/DC0/vm/web-1",
            "-e=guestinfo.metadata.encoding=base64",
            "-e=guestinfo.userdata.encoding=base64",
            "-e=guestinfo.vendordata.encoding=base64",
            "-e=disk.EnableUUID=TRUE",
            "-e=guestinfo.custom=a b=c",
            &format!("-f=guestinfo.metadata={}", files[0].path),
            &format!("-f=guestinfo.userdata={}", files[1].path),
            &format!("-f=guestinfo.vendordata={}", files[2].path),
        ])
    );
    assert_eq!(
        vmw_userdata::decode(files[2].contents.as_bytes(), "base64").unwrap(),
        b"#cloud-config\nruncmd: [true]\n"
    );
    assert_eq!(all[3], power_on_argv("web-1"));

    // CPUs and memory given apart; a large user data travels gzipped; an
    // image given as an inventory path is used as it is.
    seen.lock().unwrap().clear();
    let big = format!("#cloud-config\n# {}\nruncmd: [true]\n", "x".repeat(40_000));
    let second = LaunchOptions {
        cpus: Some(3),
        memory_mb: Some(1536),
        user_data: Some(big.clone().into_bytes()),
        ..options("web-2", WaitStage::None)
    };
    cloud
        .launch(
            &cloud
                .image("/DC0/vm/other/TEMPLATE-cloud-init-focal")
                .unwrap(),
            &second,
        )
        .await
        .unwrap();
    let all = calls.since(7);
    let mut expected = clone_argv("x", "web-2", &["-c=3", "-m=1536"], false);
    expected[1] = "-vm=/DC0/vm/other/TEMPLATE-cloud-init-focal".to_owned();
    assert_eq!(all[..2], [info_argv("web-2"), expected]);
    assert!(
        all[2].contains(&"-e=guestinfo.userdata.encoding=gzip+base64".to_owned()),
        "{:?}",
        all[2]
    );
    let files = seen.lock().unwrap().clone();
    let user = vmw_userdata::decode(files[1].contents.as_bytes(), "gzip+base64").unwrap();
    assert!(String::from_utf8(user).unwrap().starts_with(&big));
    assert_eq!(cloud.tracked_instances(), refs(&["web-1", "web-2"]));
    assert_eq!(inv.paths(), [at(IMAGE), at("web-1"), at("web-2")]);
}
