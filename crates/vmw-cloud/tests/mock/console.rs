//! What a launch sets up besides the guestinfo: the console log (a serial
//! port connected to a file in the VM's folder, before the power-on), the
//! first NIC's network, the first disk's size; the calls, and the rollback
//! when one of them fails.

use crate::*;

fn console_on(name: &str) -> LaunchOptions {
    LaunchOptions {
        console_log: Some(true),
        ..options(name, WaitStage::None)
    }
}

#[tokio::test(start_paused = true)]
async fn a_launch_connects_a_new_serial_port_to_a_file_before_the_power_on() {
    let inv = Inventory::default();
    inv.add(&at(IMAGE), "");
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| i.happy(c));
    let (cloud, _keys) = new_cloud(mock);
    cloud.launch(&image(), &console_on("c-1")).await.unwrap();
    assert_eq!(
        calls.names(),
        sv(&[
            // The source, once: it has no serial port to reuse.
            "vm.info",
            "vm.info",
            "vm.clone",
            "vm.change",
            "device.serial.add",
            "device.serial.connect",
            "vm.power",
        ])
    );
    let connect = calls
        .all()
        .into_iter()
        .find(|a| a[0] == "device.serial.connect")
        .unwrap();
    // `-`: the port's name and `.log` in the VM's own log directory.
    assert_eq!(
        connect,
        sv(&[
            "device.serial.connect",
            &format!("-vm={}", at("c-1")),
            "-device=serialport-9000",
            "--",
            "-"
        ])
    );

    // A second launch from the same image reads the source no more.
    calls.clear();
    cloud.launch(&image(), &console_on("c-2")).await.unwrap();
    assert_eq!(calls.names()[0], "vm.info");
    assert_eq!(
        calls.names().iter().filter(|n| *n == "vm.info").count(),
        1,
        "{:?}",
        calls.names()
    );
}

#[tokio::test(start_paused = true)]
async fn a_console_that_cannot_be_connected_rolls_the_launch_back() {
    let inv = Inventory::default();
    inv.add(&at(IMAGE), "");
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "device.serial.connect" => fail(c, "govc: no serial port free\n"),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(&image(), &console_on("c-1"))
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::Console), "{err}");
    assert!(err.to_string().contains("was removed"), "{err}");
    assert_eq!(calls.all().last().unwrap(), &destroy_argv("c-1"));
    assert!(!inv.contains(&at("c-1")));
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_network_goes_on_the_clone_and_a_disk_that_is_missing_fails_first() {
    let inv = Inventory::default();
    inv.add(&at(IMAGE), "");
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| i.happy(c));
    let (cloud, _keys) = new_cloud(mock);
    let launch = LaunchOptions {
        network: Some("lab net".into()),
        ..options("n-1", WaitStage::None)
    };
    cloud.launch(&image(), &launch).await.unwrap();
    let clone = calls
        .all()
        .into_iter()
        .find(|a| a[0] == "vm.clone")
        .unwrap();
    assert!(clone.contains(&"-net=lab net".to_owned()), "{clone:?}");

    // The fake's source has no disk: nothing is cloned.
    calls.clear();
    let launch = LaunchOptions {
        disk_gib: Some(20),
        ..options("d-1", WaitStage::None)
    };
    let err = cloud.launch(&image(), &launch).await.unwrap_err();
    assert!(
        matches!(
            &err,
            CloudError::InvalidOption {
                option: "disk size",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(calls.names(), sv(&["vm.info"]));
}
