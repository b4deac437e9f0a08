//! A stand-in for VMware Tools: reports a guest IP address for VMs that
//! power on, as the guest agent of a real VM would.
//!
//! vcsim never reports guest addresses by itself; the vcsim-only extraConfig
//! key `SET.guest.ipAddress` sets one. The agent polls for powered-on VMs
//! and, a short delay after it first sees one on, sets its address. A VM
//! that powers off and on again is reported again.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use vmw_govc::VmRef;
use vmw_govc::requests::{Find, ObjectType, VmChange};
use vmw_govc::{GovcExt, ProcessGovc};

/// How the agent behaves.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Time from seeing a VM powered on to reporting its address.
    pub delay: Duration,
    /// The address reported.
    pub ip: IpAddr,
    /// When set, an IPv6 link-local address is reported first, and the real
    /// address only this long after it.
    pub link_local_first: Option<Duration>,
    /// How often the agent looks for powered-on VMs.
    pub poll: Duration,
    /// Only VMs whose name starts with this are served (`None`: all).
    pub name_prefix: Option<String>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(200),
            ip: IpAddr::from([127, 0, 0, 1]),
            link_local_first: None,
            poll: Duration::from_millis(100),
            name_prefix: None,
        }
    }
}

/// The link-local address reported first in `link_local_first` mode.
pub const LINK_LOCAL: &str = "fe80::250:56ff:fe00:1";

/// A running guest-agent stand-in; stopped on drop.
#[derive(Debug)]
pub struct GuestAgent {
    task: JoinHandle<()>,
    reported: Arc<Mutex<Vec<String>>>,
}

impl GuestAgent {
    /// Starts the agent on `govc`'s simulator.
    pub fn start(govc: ProcessGovc, options: AgentOptions) -> Self {
        let reported = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(run(govc, options, reported.clone()));
        Self { task, reported }
    }

    /// Inventory paths of the VMs the agent has given an address, in order
    /// (a VM restarted appears again).
    pub fn reported(&self) -> Vec<String> {
        self.reported.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for GuestAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(govc: ProcessGovc, options: AgentOptions, reported: Arc<Mutex<Vec<String>>>) {
    let find = Find::new("/")
        .kind(ObjectType::VirtualMachine)
        .property("runtime.powerState", "poweredOn");
    // VM path -> the task reporting its address (for this power cycle).
    let mut serving: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        if let Ok(on) = govc.exec(&find).await {
            let on: HashSet<String> = on
                .into_iter()
                .filter(|path| {
                    let name = path.rsplit('/').next().unwrap_or_default();
                    options
                        .name_prefix
                        .as_deref()
                        .is_none_or(|p| name.starts_with(p))
                })
                .collect();
            // Forget VMs that went off (or away): a new power-on is new.
            serving.retain(|path, task| {
                let keep = on.contains(path);
                if !keep {
                    task.abort();
                }
                keep
            });
            for path in on {
                if serving.contains_key(&path) {
                    continue;
                }
                let task = tokio::spawn(report(
                    govc.clone(),
                    options.clone(),
                    path.clone(),
                    reported.clone(),
                ));
                serving.insert(path, task);
            }
        }
        tokio::time::sleep(options.poll).await;
    }
}

async fn report(
    govc: ProcessGovc,
    options: AgentOptions,
    path: String,
    reported: Arc<Mutex<Vec<String>>>,
) {
    tokio::time::sleep(options.delay).await;
    // Paths come from `govc find`; one that could not address exactly one
    // VM (glob characters in its name) is not served.
    let Ok(vm) = VmRef::parse(&path) else {
        return;
    };
    let set = |ip: String| VmChange::new(vm.clone()).extra("SET.guest.ipAddress", ip);
    if let Some(after) = options.link_local_first {
        if govc.exec(&set(LINK_LOCAL.to_owned())).await.is_err() {
            return;
        }
        tokio::time::sleep(after).await;
    }
    if govc.exec(&set(options.ip.to_string())).await.is_ok()
        && let Ok(mut r) = reported.lock()
    {
        r.push(path);
    }
}
