//! The guest-agent stand-in against a real vcsim.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use vmw_govc::parse::is_link_local_v6;
use vmw_govc::requests::{PowerOp, VmClone, VmIp, VmPower};
use vmw_govc::{GovcExt, VmRef};
use vmw_testbed::{AgentOptions, Vcsim};

async fn launch(sim: &Vcsim, name: &str) {
    let govc = sim.govc();
    govc.exec(&VmClone::new(vm("TEMPLATE-cloud-init-jammy"), vm(name)))
        .await
        .unwrap();
    govc.exec(&VmPower::new(vm(name), PowerOp::On))
        .await
        .unwrap();
}

fn vm(name: &str) -> VmRef {
    VmRef::in_folder("/DC0/vm", name).unwrap()
}

async fn wait_for(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn powered_on_vms_get_an_address_after_the_delay() {
    let sim = Vcsim::start().await.unwrap();
    let agent = sim.guest_agent(AgentOptions {
        name_prefix: Some("vm-".into()),
        ..AgentOptions::default()
    });
    let started = Instant::now();
    launch(&sim, "vm-1").await;
    let ips = sim
        .govc()
        .exec(&VmIp::new(vm("vm-1"), Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(ips, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
    assert!(started.elapsed() >= Duration::from_millis(200));
    wait_for(|| !agent.reported().is_empty()).await;
    assert_eq!(agent.reported(), ["/DC0/vm/vm-1"]);

    // Off and on again: reported again.
    let govc = sim.govc();
    govc.exec(&VmPower::new(vm("vm-1"), PowerOp::Off))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    govc.exec(&VmPower::new(vm("vm-1"), PowerOp::On))
        .await
        .unwrap();
    wait_for(|| agent.reported().len() >= 2).await;
    assert_eq!(agent.reported(), ["/DC0/vm/vm-1", "/DC0/vm/vm-1"]);
}

#[tokio::test]
async fn link_local_first_mode_reports_fe80_then_ipv4() {
    let sim = Vcsim::start().await.unwrap();
    let _agent = sim.guest_agent(AgentOptions {
        link_local_first: Some(Duration::from_millis(1500)),
        name_prefix: Some("vm-".into()),
        ..AgentOptions::default()
    });
    launch(&sim, "vm-1").await;
    let govc = sim.govc();
    let first = govc
        .exec(&VmIp::new(vm("vm-1"), Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(is_link_local_v6(&first[0]), "{first:?}");
    let mut v4 = VmIp::new(vm("vm-1"), Duration::from_secs(20));
    v4.v4 = true;
    let later = govc.exec(&v4).await.unwrap();
    assert_eq!(later, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
}
