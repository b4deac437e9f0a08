//! `ip()`: IPv4 preferred, link-local addresses skipped, the answer cached;
//! errors returned.

use crate::*;

#[tokio::test(start_paused = true)]
async fn ip_prefers_ipv4_skips_link_local_and_caches() {
    let answers: Arc<Mutex<Vec<&'static str>>> = Arc::new(Mutex::new(vec![
        // Popped from the end.
        "fe80::1,2001:db8::5\n",
        "10.0.0.9\n",
        "fe80::1\n",
        "fe80::1\n",
        "fe80::1,2001:db8::5,10.0.0.7\n",
    ]));
    let pending = answers.clone();
    let inv = Inventory::default();
    inv.add(&at("me-1"), "");
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.ip" => out(pending.lock().unwrap().pop().unwrap()),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let vm = cloud.get_instance("me-1").await.unwrap();
    assert!(cloud.tracked_instances().is_empty());
    assert_eq!(vm.launch_id(), None);

    assert_eq!(vm.ip().await.unwrap(), ip("10.0.0.7"));
    assert_eq!(calls.names(), ["vm.info", "vm.ip"]);
    let argv = &calls.all()[1];
    assert_eq!(argv[2..], sv(&["--", "/DC0/vm/me-1"]));
    assert!(ip_wait_of(argv) <= Duration::from_secs(2));

    // Cached: no govc call.
    assert_eq!(vm.ip().await.unwrap(), ip("10.0.0.7"));
    assert_eq!(vm.clone().cached_ip(), Some(ip("10.0.0.7")));
    assert_eq!(calls.len(), 2);

    // A restart forgets the address; link-local answers are polled past.
    vm.power_off().await.unwrap();
    assert_eq!(vm.cached_ip(), None);
    assert_eq!(inv.get(&at("me-1")).unwrap().power, "poweredOff");
    vm.power_on().await.unwrap();
    assert_eq!(inv.get(&at("me-1")).unwrap().power, "poweredOn");
    let n = calls.len();
    assert_eq!(
        vm.wait_until(WaitStage::Ip).await.unwrap(),
        Some(ip("10.0.0.9"))
    );
    assert_eq!(calls.names()[n..], sv(&["vm.ip", "vm.ip", "vm.ip"]));

    // Only a global IPv6 besides the link-local one: that one.
    vm.power_on().await.unwrap();
    assert_eq!(vm.ip().await.unwrap(), ip("2001:db8::5"));
    assert!(answers.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn ip_errors_are_returned() {
    let inv = Inventory::default();
    inv.add(&at("me-1"), "");
    let i = inv.clone();
    let (mock, _calls) = scripted(move |c| match c.name() {
        "vm.ip" => vm_not_found(c),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let vm = cloud.get_instance("me-1").await.unwrap();
    let err = vm.ip().await.unwrap_err();
    assert!(err.govc().unwrap().is_not_found(), "{err:?}");
    assert_eq!(vm.cached_ip(), None);

    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.ip" => out(""),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let vm = cloud.get_instance("me-1").await.unwrap();
    let err = vm.ip().await.unwrap_err();
    assert!(
        matches!(&err, CloudError::IpTimeout { vm, seen, .. } if *vm == at("me-1") && seen.is_empty()),
        "{err:?}"
    );
    assert_eq!(calls.names(), ["vm.info", "vm.ip"]);
}
