//! The source check made once before the first clone, and the step hook
//! hearing each step of a launch in order.

use crate::*;

#[tokio::test(start_paused = true)]
async fn the_source_is_checked_once_before_the_first_clone() {
    let inv = Inventory::default();
    inv.add(&at(IMAGE), "");
    inv.add_template(&at("TEMPLATE-cloud-init-golden"), "");
    let (mock, calls) = healthy(&inv);
    let s = Settings {
        check_sources: true,
        ..settings(4)
    };
    let (cloud, _keys) = cloud_with(mock, config(), s);
    cloud
        .launch(&image(), &options("c-1", WaitStage::None))
        .await
        .unwrap();
    cloud
        .launch(&image(), &options("c-2", WaitStage::None))
        .await
        .unwrap();
    let source_check = sv(&[
        "vm.info",
        "-json=true",
        "-e=true",
        "--",
        &format!("{FOLDER}/{IMAGE}"),
    ]);
    let all = calls.all();
    assert_eq!(all[0], source_check, "{all:#?}");
    // Then the target's path checked free, then the clone.
    assert_eq!(all[1], info_argv("c-1"), "{all:#?}");
    assert_eq!(all[2][0], "vm.clone", "{all:#?}");
    assert_eq!(
        all.iter().filter(|a| **a == source_check).count(),
        1,
        "cached: {all:#?}"
    );
    assert_eq!(
        all.iter()
            .filter(|a| a[0] == "vm.info" && **a != source_check)
            .collect::<Vec<_>>(),
        [&info_argv("c-1"), &info_argv("c-2")]
    );

    // A vSphere template is refused before any clone.
    let n = calls.len();
    let err = cloud
        .launch(
            &cloud.image("TEMPLATE-cloud-init-golden").unwrap(),
            &options("c-3", WaitStage::None),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CloudError::BadSource { problems, .. } if problems[0].contains("vSphere template")),
        "{err:?}"
    );
    assert_eq!(calls.names()[n..], sv(&["vm.info"]));
}

#[tokio::test(start_paused = true)]
async fn the_step_hook_hears_each_step_in_order() {
    let inv = Inventory::default();
    let (mock, _calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let heard: Arc<Mutex<Vec<(String, Step)>>> = Arc::default();
    let h = heard.clone();
    let options = LaunchOptions {
        on_step: Some(vmw_cloud::StepHook::new(move |vm, step| {
            h.lock().unwrap().push((vm.to_owned(), step));
        })),
        ..options("hooked-1", WaitStage::Ip)
    };
    cloud.launch(&image(), &options).await.unwrap();
    let heard = heard.lock().unwrap().clone();
    assert!(heard.iter().all(|(vm, _)| vm == "hooked-1"));
    assert_eq!(
        heard.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [
            Step::Clone,
            Step::WriteGuestinfo,
            Step::Configure,
            Step::PowerOn,
            Step::WaitIp
        ]
    );
}
