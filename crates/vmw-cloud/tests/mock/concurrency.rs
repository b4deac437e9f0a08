//! Concurrent launches: unique names in order, at most the configured
//! number at once, two clouds of one tag never picking the same name, and
//! a fleet reporting each failure by index while keeping the rest in
//! order.

use crate::*;

#[tokio::test(start_paused = true)]
async fn sixty_four_parallel_launches_get_unique_names_in_order() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let slow = Slow::new(mock);
    let (cloud, _keys) = cloud_with(slow, config(), settings(64));
    let fleet = cloud
        .launch_many(&image(), 64, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert!(fleet.failures.is_empty(), "{:?}", fleet.failures);
    assert_eq!(fleet.instances.len(), 64);
    let names: Vec<String> = fleet
        .instances
        .iter()
        .map(|i| i.name().to_owned())
        .collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), 64, "{names:?}");
    // In the order asked: names are numbered in that order.
    let numbers: Vec<u64> = names.iter().map(|n| number_of(n)).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    // All 64 ran at once, and they did finish out of order.
    assert_eq!(cloud.govc().peak.load(Ordering::SeqCst), 64);
    let cloned: Vec<String> = calls
        .of("vm.clone")
        .into_iter()
        .map(|a| a.last().unwrap().clone())
        .collect();
    assert_eq!(cloned.len(), 64);
    assert_ne!(cloned, names, "the mock's delays did not reorder the calls");
    // One search of the folder (it shows the numbers free), then four
    // calls per launch: clone, change, power, ip.
    assert_eq!(calls.of("find").len(), 1);
    assert_eq!(calls.len(), 1 + 64 * 4);
    let mut tracked = cloud.tracked_instances();
    tracked.sort();
    let mut sorted: Vec<VmRef> = names.iter().map(|n| vm_ref(n)).collect();
    sorted.sort();
    assert_eq!(tracked, sorted);
    assert_eq!(inv.paths().len(), 64);
    // Every instance knows the launch id its VM carries.
    for i in &fleet.instances {
        let m = parse_marker(&inv.annotation(i.vm().as_str()).unwrap()).unwrap();
        assert_eq!(m.launch.as_deref(), i.launch_id());
    }
}

#[tokio::test(start_paused = true)]
async fn launch_many_runs_at_most_the_configured_number_at_once() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = cloud_with(Slow::new(mock), config(), settings(5));
    let fleet = cloud
        .launch_many(&image(), 20, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(fleet.instances.len(), 20);
    assert_eq!(cloud.govc().peak.load(Ordering::SeqCst), 5);
    assert_eq!(calls.len(), 1 + 20 * 4);
}

#[tokio::test(start_paused = true)]
async fn two_clouds_with_the_same_tag_never_pick_the_same_name() {
    // One vCenter, two clouds: both search the empty folder and count from
    // 1, so their clones meet each other's names and move on.
    let inv = Inventory::default();
    let (mock_a, calls_a) = healthy(&inv);
    let (mock_b, calls_b) = healthy(&inv);
    let (a, _keys_a) = cloud_with(Slow::new(mock_a), config(), settings(32));
    let (b, _keys_b) = cloud_with(Slow::new(mock_b), config(), settings(32));
    assert_eq!(a.tag(), b.tag());
    let o = LaunchOptions::wait_for_ip();
    let image = image();
    let (fa, fb) = tokio::join!(a.launch_many(&image, 32, &o), b.launch_many(&image, 32, &o));
    let (fa, fb) = (fa.unwrap(), fb.unwrap());
    assert!(fa.failures.is_empty() && fb.failures.is_empty());
    let names: BTreeSet<String> = fa
        .instances
        .iter()
        .chain(&fb.instances)
        .map(|i| i.name().to_owned())
        .collect();
    assert_eq!(names.len(), 64, "{names:?}");
    // Each instance is the VM its own launch made; nothing was destroyed.
    for i in fa.instances.iter().chain(&fb.instances) {
        let m = parse_marker(&inv.annotation(i.vm().as_str()).unwrap()).unwrap();
        assert_eq!(m.launch.as_deref(), i.launch_id(), "{}", i.name());
    }
    assert_eq!(inv.paths().len(), 64);
    for calls in [&calls_a, &calls_b] {
        assert!(calls.of("vm.destroy").is_empty());
        assert_eq!(calls.of("find").len(), 1);
    }
    let clones = calls_a.of("vm.clone").len() + calls_b.of("vm.clone").len();
    assert!(clones > 64, "the clouds never met: {clones} clones");
}

#[tokio::test(start_paused = true)]
async fn launch_many_reports_each_failure_by_index_and_keeps_the_rest_in_order() {
    // By the number in the name: 4k+1 is refused by vCenter at the clone,
    // 4k+2 fails to configure (and is destroyed), the others launch.
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| {
        let Some(vm) = vm_name_of(c) else {
            return i.happy(c);
        };
        match (c.name(), number_of(&vm) % 4) {
            ("vm.clone", 1) => fail(c, "govc: vm '/DC0/vm/TEMPLATE-cloud-init-jammy' not found"),
            ("vm.change", 2) => fail(c, STDERR_OTHER),
            _ => i.happy(c),
        }
    });
    let (cloud, _keys) = cloud_with(Slow::new(mock), config(), settings(8));
    let fleet = cloud
        .launch_many(&image(), 24, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(fleet.instances.len() + fleet.failures.len(), 24);

    // Rebuild the name of every index from the results.
    let mut by_index: Vec<Option<(String, bool)>> = vec![None; 24];
    for (i, e) in &fleet.failures {
        let CloudError::Step {
            vm,
            step,
            rollback,
            removed,
            ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert!(rollback.is_none(), "{e:?}");
        let expected = match number_of(vm) % 4 {
            1 => Step::Clone,
            2 => Step::Configure,
            _ => panic!("{vm} should have launched: {e}"),
        };
        assert_eq!(*step, expected, "{vm}");
        assert_eq!(*removed, expected == Step::Configure, "{vm}");
        by_index[*i] = Some((vm.clone(), false));
    }
    let failed_indices: Vec<usize> = fleet.failures.iter().map(|(i, _)| *i).collect();
    assert!(
        failed_indices.windows(2).all(|w| w[0] < w[1]),
        "{failed_indices:?}"
    );
    let free: Vec<usize> = (0..24).filter(|i| by_index[*i].is_none()).collect();
    assert_eq!(free.len(), fleet.instances.len());
    for (&i, instance) in free.iter().zip(&fleet.instances) {
        assert_ne!(number_of(instance.name()) % 4, 1);
        assert_ne!(number_of(instance.name()) % 4, 2);
        by_index[i] = Some((instance.name().to_owned(), true));
    }
    let names: Vec<String> = by_index.into_iter().map(|x| x.unwrap().0).collect();
    let numbers: Vec<u64> = names.iter().map(|n| number_of(n)).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    assert!(!fleet.failures.is_empty() && !fleet.instances.is_empty());

    // Clone failures were not rolled back, configure failures were.
    let destroyed: BTreeSet<u64> = calls
        .of("vm.destroy")
        .into_iter()
        .map(|a| number_of(&a[2]))
        .collect();
    let configure_failed: BTreeSet<u64> = numbers.iter().copied().filter(|n| n % 4 == 2).collect();
    assert_eq!(destroyed, configure_failed);
    let mut tracked = cloud.tracked_instances();
    tracked.sort();
    let mut launched: Vec<VmRef> = fleet.instances.iter().map(|i| i.vm().clone()).collect();
    launched.sort();
    assert_eq!(tracked, launched);
    let mut left: Vec<String> = inv.paths();
    left.sort();
    let mut expected: Vec<String> = launched.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(left, expected);
}

#[tokio::test(start_paused = true)]
async fn a_fleet_reads_its_source_once_while_the_folder_is_searched() {
    let inv = Inventory::default();
    inv.add(&at(IMAGE), "");
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = cloud_with(
        Slow::new(mock),
        config(),
        Settings {
            check_sources: true,
            ..settings(8)
        },
    );
    let fleet = cloud
        .launch_many(&image(), 8, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(fleet.instances.len(), 8);
    let sources: Vec<Vec<String>> = calls
        .of("vm.info")
        .into_iter()
        .filter(|a| a.last() == Some(&at(IMAGE)))
        .collect();
    assert_eq!(sources.len(), 1, "{sources:?}");
    // Both before the first clone.
    let names = calls.names();
    let first_clone = names.iter().position(|n| n == "vm.clone").unwrap();
    assert_eq!(
        names[..first_clone].iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([&"find".to_owned(), &"vm.info".to_owned()])
    );
}
