//! The bench's stand-in for VMware Tools under W1, in a process of its own
//! (`cargo xtask bench-agent`): it reports an address for every bench VM a
//! fixed delay after it first sees the VM powered on.
//!
//! It looks every 200 ms with one `govc find` (a stream would cost less,
//! but vcsim deadlocks when VMs are cloned into a folder watched through a
//! container view, and its event history grows slower with every event);
//! one `vm.change` per VM sets the vcsim-only key `SET.guest.ipAddress`.
//! Living in its own process, the agent's govc processes are never counted
//! as the measured tool's: the bench reaps the agent only at the end.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The name prefix of the VMs the agent serves.
pub(crate) const PREFIX: &str = "bench";

/// How often the agent looks.
const POLL: Duration = Duration::from_millis(200);

/// Runs the agent: `args` are `GOVC FOLDER DELAY_MS`; the simulator's
/// `GOVC_*` variables come in the environment. Prints `ready` after its
/// first look, then runs until killed.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let [govc, folder, delay_ms] = args else {
        bail!("usage: xtask bench-agent GOVC FOLDER DELAY_MS");
    };
    let delay = Duration::from_millis(delay_ms.parse().context("DELAY_MS")?);
    let mut seen: HashSet<String> = HashSet::new();
    let mut ready = false;
    loop {
        let found = Command::new(govc)
            .args(["find", folder, "-type", "m", "-maxdepth", "1"])
            .args([
                "-name",
                &format!("{PREFIX}*"),
                "-runtime.powerState",
                "poweredOn",
            ])
            .stderr(Stdio::null())
            .output()
            .context("could not run govc find")?;
        if !found.status.success() {
            bail!("govc find failed: {}", found.status);
        }
        for vm in String::from_utf8_lossy(&found.stdout).lines() {
            if seen.insert(vm.to_owned()) {
                let (govc, vm) = (govc.clone(), vm.to_owned());
                std::thread::spawn(move || report(&govc, &vm, delay));
            }
        }
        if !ready {
            println!("ready");
            ready = true;
        }
        std::thread::sleep(POLL);
    }
}

fn report(govc: &str, vm: &str, delay: Duration) {
    std::thread::sleep(delay);
    let _ = Command::new(govc)
        .args([
            "vm.change",
            "-vm",
            vm,
            "-e",
            "SET.guest.ipAddress=127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
