//! vmw on a vCenter shared with others, black-box: the `vmw` binary against
//! a vcsim holding other people's VMs with the very names vmw picks (in a
//! sibling folder, on a second datastore, and in a second datacenter), a
//! protected template name in another folder, and a hand-made VM in vmw's
//! own folder. Every command runs against it, including failing launches
//! and launches stopped by SIGINT, SIGTERM and SIGHUP in the middle of a
//! clone; afterwards every foreign VM must still exist and none of vmw's
//! must be left.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Bed, Run, Running, bed_in};
use serde_json::Value;
use vmw_govc::requests::{Find, ObjectType, VmCreate};
use vmw_govc::{GovcExt, VmRef};
use vmw_testbed::VcsimOptions;

const MINE: &str = "/DC0/vm/mine";
const THEIRS: &str = "/DC0/vm/theirs";
const TEMPLATE: &str = "/DC0/vm/TEMPLATE-cloud-init-jammy";

/// Creates a VM nobody marked, as a colleague would.
async fn create_foreign(b: &Bed, path: &str) {
    let vm = VmRef::parse(path).unwrap();
    let dc1 = path.starts_with("/DC1/");
    let mut r = VmCreate::new(vm);
    r.pool = Some(if dc1 {
        "/DC1/host/DC1_C0/Resources".to_owned()
    } else {
        vmw_testbed::CLUSTER_POOL.to_owned()
    });
    // Files of same-named VMs must not meet on one datastore.
    r.datastore = Some(if dc1 {
        "/DC1/datastore/LocalDS_1".to_owned()
    } else if path.starts_with(MINE) {
        "LocalDS_0".to_owned()
    } else {
        "LocalDS_1".to_owned()
    });
    r.network = Some(if dc1 {
        "/DC1/network/VM Network".to_owned()
    } else {
        vmw_testbed::NETWORK.to_owned()
    });
    b.sim.govc().exec(&r).await.unwrap();
}

/// Every VM path in the inventory.
async fn all_vms(b: &Bed) -> BTreeSet<String> {
    b.sim
        .govc()
        .exec(&Find::new("/").kind(ObjectType::VirtualMachine))
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// VMs in vmw's folder.
async fn mine(b: &Bed) -> BTreeSet<String> {
    all_vms(b)
        .await
        .into_iter()
        .filter(|p| p.starts_with(&format!("{MINE}/")))
        .collect()
}

/// The foreign VMs of the scenario.
fn foreign_paths() -> Vec<String> {
    let mut v = Vec::new();
    for name in [
        "t-1",
        "t-2",
        "t-3",
        "t-1-image",
        "t-2-image",
        "web-1",
        "acc-1",
    ] {
        v.push(format!("{THEIRS}/{name}"));
    }
    v.push(format!("{THEIRS}/TEMPLATE-cloud-init-focal"));
    v.push(format!("{THEIRS}/TEMPLATE-cloud-init-noble"));
    v.push("/DC1/vm/t-1".to_owned());
    v.push("/DC1/vm/TEMPLATE-cloud-init-noble".to_owned());
    v.push(format!("{MINE}/handmade"));
    v
}

async fn shared_bed(options: VcsimOptions) -> (Bed, Vec<String>) {
    let b = bed_in(options.datastores(2).datacenters(2), Some(MINE)).await;
    use vmw_govc::Govc;
    b.sim
        .govc()
        .run(&vmw_govc::Command::new("folder.create").arg(THEIRS))
        .await
        .unwrap();
    let foreign = foreign_paths();
    for p in &foreign {
        create_foreign(&b, p).await;
    }
    (b, foreign)
}

impl Bed {
    async fn t(&self, args: &[&str]) -> Run {
        let mut all = vec!["--tag", "t", "--no-timestamp"];
        all.extend_from_slice(args);
        self.vmw(&all).await
    }
}

async fn assert_foreign_intact(b: &Bed, foreign: &[String], after: &str) {
    let now = all_vms(b).await;
    let gone: Vec<&String> = foreign.iter().filter(|p| !now.contains(*p)).collect();
    assert!(
        gone.is_empty(),
        "after {after}: foreign VMs destroyed: {gone:?}"
    );
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_a_shared_vcenter_touches_only_its_own_vms() {
    let (b, foreign) = shared_bed(VcsimOptions::new()).await;
    let before_mine = mine(&b).await;
    assert_eq!(before_mine.len(), 1, "{before_mine:?}");

    // Launch: the names t-1..t-3 exist in the sibling folder and t-1 in
    // the other datacenter; vmw's go into its folder.
    let launched = b
        .t(&[
            "launch", "--image", TEMPLATE, "--count", "3", "--wait", "ip", "--json",
        ])
        .await;
    let doc = launched.ok().json();
    assert_eq!(names(&doc), ["t-1", "t-2", "t-3"], "{doc}");
    for o in doc.as_array().unwrap() {
        assert!(
            o["path"].as_str().unwrap().starts_with("/DC0/vm/mine/"),
            "{o}"
        );
    }
    assert_foreign_intact(&b, &foreign, "launch").await;

    // Delete by bare name: only the VM in vmw's folder.
    b.t(&["delete", "t-1"]).await.ok();
    assert!(!mine(&b).await.contains("/DC0/vm/mine/t-1"));
    assert_foreign_intact(&b, &foreign, "delete t-1").await;

    // Not ours: refused without --force, whatever names them.
    for target in ["handmade", "/DC0/vm/theirs/web-1", "/DC1/vm/t-1"] {
        let r = b.t(&["delete", target]).await;
        r.expect_code(1);
        assert!(r.stderr.contains("marker"), "{target}: {}", r.stderr);
    }
    // Templates: never, even forced, by any path.
    for target in [
        "/DC0/vm/theirs/TEMPLATE-cloud-init-focal",
        "/DC0/vm/TEMPLATE-cloud-init-focal",
        "/DC1/vm/TEMPLATE-cloud-init-noble",
    ] {
        let r = b.t(&["delete", "--force", target]).await;
        r.expect_code(1);
        assert!(r.stderr.contains("template"), "{target}: {}", r.stderr);
        let r = b.t(&["image", "delete", "--force", target]).await;
        r.expect_code(1);
    }
    // Globs and relative paths are refused before anything is touched.
    for target in ["web-*", "t-?", "vm/t-2", "[t]-2"] {
        let r = b.t(&["delete", target]).await;
        r.expect_code(2);
    }
    assert_foreign_intact(&b, &foreign, "refused deletes").await;

    // Snapshot into t-2-image (a foreign t-2-image exists next door), then
    // delete that image by name.
    let snap = b.t(&["snapshot", "--no-clean", "t-2"]).await;
    snap.ok();
    assert!(mine(&b).await.contains("/DC0/vm/mine/t-2-image"));
    b.t(&["image", "delete", "t-2-image"]).await.ok();
    assert!(!mine(&b).await.contains("/DC0/vm/mine/t-2-image"));
    assert_foreign_intact(&b, &foreign, "snapshot and image delete").await;

    // A launch whose wait fails removes what it made, and only that.
    let failing = b
        .t(&[
            "--ssh-port",
            "1",
            "launch",
            "--image",
            TEMPLATE,
            "--wait",
            "ssh",
            "--wait-timeout",
            "3s",
        ])
        .await;
    failing.expect_code(1);
    assert!(failing.stderr.contains("was removed"), "{}", failing.stderr);
    assert_foreign_intact(&b, &foreign, "failed launch").await;

    // clean: lists, then deletes exactly what it listed.
    let cleaned = b.t(&["clean", "--yes", "--json"]).await;
    let doc = cleaned.ok().json();
    let planned: Vec<&str> = doc["planned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    let removed: Vec<&str> = doc["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(planned, ["/DC0/vm/mine/t-2", "/DC0/vm/mine/t-3"], "{doc}");
    assert_eq!(removed, planned, "{doc}");
    assert_foreign_intact(&b, &foreign, "clean").await;

    // Import a template into vmw's folder, then replace it: a same-named
    // template in the sibling folder and in the other datacenter stays.
    let ova = vmw_testbed::ova::make_ova(&b.home, "noble").unwrap();
    for extra in [&[][..], &["--replace"][..]] {
        let mut args = vec![
            "image",
            "import",
            ova.as_str(),
            "--release",
            "noble",
            "--network",
            "VM Network",
        ];
        args.extend_from_slice(extra);
        b.t(&args).await.ok();
    }
    assert!(
        mine(&b)
            .await
            .contains("/DC0/vm/mine/TEMPLATE-cloud-init-noble")
    );
    assert_foreign_intact(&b, &foreign, "import --replace").await;

    // Sweep of every tag: vmw's template is no instance or image; nothing
    // foreign is touched.
    b.vmw(&["launch", "--image", TEMPLATE, "--wait", "none"])
        .await
        .ok();
    b.vmw(&["clean", "--all-tags", "--yes"]).await.ok();
    assert_foreign_intact(&b, &foreign, "clean --all-tags").await;
    let left: BTreeSet<String> = mine(&b).await;
    assert_eq!(
        left,
        BTreeSet::from([
            "/DC0/vm/mine/TEMPLATE-cloud-init-noble".to_owned(),
            "/DC0/vm/mine/handmade".to_owned()
        ]),
        "none of vmw's instances or images is left"
    );
    eprintln!(
        "shared vCenter: foreign VMs destroyed: 0 of {}; vmw VMs left: 0",
        foreign.len()
    );
}

/// A launch stopped by a signal while its clones are under way (vcsim makes
/// each clone take 2 s): the clones are awaited and removed, the exit
/// status is 128 + the signal, and nothing foreign is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_sigterm_and_sighup_mid_clone_leave_nothing_behind() {
    let (b, foreign) = shared_bed(VcsimOptions::new().method_delay("CloneVM_Task", 2000)).await;
    let mut left_total = 0;
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let mut run = Running::spawn(b.command(&[
            "--tag",
            "t",
            "--no-timestamp",
            "launch",
            "--image",
            TEMPLATE,
            "--count",
            "2",
            "--wait",
            "ip",
        ]));
        run.wait_for("cloning").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        run.signal(signal);
        let (status, seen, rest) = run.finish().await;
        assert_eq!(status.code(), Some(code), "SIG{signal}: {seen}{rest}");
        assert!(rest.contains("interrupted"), "{rest}");
        // The clones were awaited and removed; nothing appears later.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let left: Vec<String> = mine(&b)
            .await
            .into_iter()
            .filter(|p| p != "/DC0/vm/mine/handmade")
            .collect();
        left_total += left.len();
        assert!(left.is_empty(), "SIG{signal}: left {left:?}\n{rest}");
        assert_foreign_intact(&b, &foreign, &format!("SIG{signal}")).await;
    }
    eprintln!("signals mid-clone: VMs left behind: {left_total}");
}

/// Two `vmw launch` runs with one tag at once: both succeed, with distinct
/// names; neither touches the other's VMs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_launches_with_one_tag_both_succeed() {
    let (b, foreign) = shared_bed(VcsimOptions::new().method_delay("CloneVM_Task", 300)).await;
    let args = [
        "--tag",
        "t",
        "--no-timestamp",
        "launch",
        "--image",
        TEMPLATE,
        "--count",
        "3",
        "--wait",
        "none",
        "--json",
    ];
    let (one, two) = tokio::join!(b.vmw(&args), b.vmw(&args));
    let one = names(&one.ok().json());
    let two = names(&two.ok().json());
    let all: BTreeSet<&String> = one.iter().chain(two.iter()).collect();
    assert_eq!(all.len(), 6, "{one:?} {two:?}");
    let mut expected: BTreeSet<String> = all.iter().map(|n| format!("{MINE}/{n}")).collect();
    expected.insert(format!("{MINE}/handmade"));
    assert_eq!(mine(&b).await, expected);
    assert_foreign_intact(&b, &foreign, "concurrent launches").await;
}
