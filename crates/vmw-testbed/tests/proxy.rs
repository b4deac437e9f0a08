//! The fault-injecting proxy between govc and a real vcsim.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use vmw_govc::requests::{About, Find, VmClone, VmInfo};
use vmw_govc::{GovcError, GovcExt, VmRef};
use vmw_testbed::{ClientClose, FaultProxy, FaultRule, TEMPLATES, Vcsim, VcsimOptions};

const CLONE: &str = "CloneVM_Task";

async fn plain_sim() -> Vcsim {
    Vcsim::start_with(VcsimOptions::new().plain_http())
        .await
        .unwrap()
}

fn at(name: &str) -> VmRef {
    VmRef::in_folder("/DC0/vm", name).unwrap()
}

fn clone_of_template(name: &str) -> VmClone {
    VmClone::new(at(TEMPLATES[1]), at(name))
}

/// Asks vcsim directly (not through the proxy) for `/DC0/vm/<name>`,
/// allowing the clone task a little time to finish.
async fn wait_for_vm(sim: &Vcsim, name: &str) -> Vec<vmw_govc::parse::VmInfo> {
    let path = at(name);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match sim.govc().exec(&VmInfo::new(path.clone())).await {
            Ok(vms) if !vms.is_empty() => return vms,
            result if Instant::now() >= deadline => panic!("{path} never appeared: {result:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn plain_http_config_names_an_http_url_and_the_proxy_keeps_the_sdk_path() {
    let sim = plain_sim().await;
    assert_eq!(sim.config().server, format!("http://{}/sdk", sim.address()));
    let proxy = FaultProxy::start(sim.socket_addr(), FaultRule::drop_after(CLONE))
        .await
        .unwrap();
    assert_eq!(
        sim.config_via(proxy.address()).server,
        format!("http://{}/sdk", proxy.address())
    );
    assert_eq!(proxy.upstream(), sim.socket_addr());
}

#[tokio::test]
async fn about_and_find_pass_through_untouched() {
    let sim = plain_sim().await;
    let proxy = FaultProxy::start(sim.socket_addr(), FaultRule::drop_after(CLONE))
        .await
        .unwrap();
    let govc = sim.govc_via(proxy.address());
    let about = govc.exec(&About).await.unwrap();
    assert!(about.full_name.contains("govmomi simulator"), "{about:?}");
    assert_eq!(about.api_type, "VirtualCenter");
    // A second command reuses the persisted session, through the proxy.
    let templates = govc
        .exec(&Find::new("/DC0/vm").name("TEMPLATE-*"))
        .await
        .unwrap();
    assert_eq!(templates.len(), 2, "{templates:?}");
    assert_eq!(proxy.fired(), 0);
    assert!(proxy.connections() >= 2, "{}", proxy.connections());
}

/// Clones through a proxy that fires once; returns the error of the
/// clone, and the proxy's address.
async fn clone_dropped(close: ClientClose) -> (GovcError, String) {
    let sim = plain_sim().await;
    let proxy = FaultProxy::start(sim.socket_addr(), FaultRule::drop_after(CLONE).close(close))
        .await
        .unwrap();
    let via = sim.govc_via(proxy.address());

    let err = via.exec(&clone_of_template("vm-1")).await.unwrap_err();
    assert_eq!(proxy.fired(), 1);
    // govc logged in, looked the template up and asked for the clone on one
    // keep-alive connection: the fault hit a request in the middle of it.
    assert_eq!(proxy.connections(), 1);

    // vcsim executed the clone all the same.
    let vms = wait_for_vm(&sim, "vm-1").await;
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0].name, "vm-1");

    // The rule fired once: the next clone through the proxy gets its answer.
    via.exec(&clone_of_template("vm-2")).await.unwrap();
    assert_eq!(proxy.fired(), 1);
    assert_eq!(wait_for_vm(&sim, "vm-2").await[0].name, "vm-2");
    (err, proxy.address().to_string())
}

/// govc's exit code and stderr.
fn failure(err: &GovcError) -> (Option<i32>, &str) {
    match err {
        GovcError::Failed(f) => (f.exit_code, &f.stderr),
        other => panic!("expected govc to fail, got {other:?}"),
    }
}

#[tokio::test]
async fn the_clone_runs_but_govc_reads_end_of_file() {
    let (err, proxy) = clone_dropped(ClientClose::Eof).await;
    let (code, stderr) = failure(&err);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.ends_with(&format!("govc: Post \"http://{proxy}/sdk\": EOF\n")),
        "{stderr:?}"
    );
}

#[tokio::test]
async fn the_clone_runs_but_govc_sees_a_reset() {
    let (err, proxy) = clone_dropped(ClientClose::Reset).await;
    let (code, stderr) = failure(&err);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "govc: Post \"http://{proxy}/sdk\": read tcp 127.0.0.1:"
        )),
        "{stderr:?}"
    );
    assert!(
        stderr.ends_with(&format!("->{proxy}: read: connection reset by peer\n")),
        "{stderr:?}"
    );
}

#[tokio::test]
async fn a_rule_for_every_time_drops_every_clone() {
    let sim = plain_sim().await;
    let proxy = FaultProxy::start(sim.socket_addr(), FaultRule::drop_after(CLONE).every_time())
        .await
        .unwrap();
    let via = sim.govc_via(proxy.address());
    for (n, name) in ["vm-1", "vm-2"].into_iter().enumerate() {
        let err = via.exec(&clone_of_template(name)).await.unwrap_err();
        assert!(
            err.stderr().is_some_and(|s| s.ends_with(": EOF\n")),
            "{err}"
        );
        assert_eq!(proxy.fired(), n as u64 + 1);
        assert_eq!(wait_for_vm(&sim, name).await[0].name, name);
    }
    // Other calls still go through.
    assert!(via.exec(&About).await.is_ok());
    assert_eq!(proxy.fired(), 2);
}
