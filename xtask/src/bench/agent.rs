//! The bench's stand-in for VMware Tools, in a process of its own
//! (`cargo xtask bench-agent`): it reports an address for every bench VM a
//! fixed delay after the VM powers on.
//!
//! One long-running `govc events -f` streams the datacenter's power-on
//! events (no polling; a container view of the folder would be simpler,
//! but vcsim deadlocks when VMs are cloned into a folder watched that
//! way), and one `vm.change` per VM sets the vcsim-only key
//! `SET.guest.ipAddress`. Living in its own process, the
//! agent's govc processes are never counted as the measured tool's: the
//! bench reaps the agent only at the end.

use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The name prefix of the VMs the agent serves.
pub(crate) const PREFIX: &str = "bench";

/// Runs the agent: `args` are `GOVC FOLDER DELAY_MS`; the simulator's
/// `GOVC_*` variables come in the environment. Prints `ready` once the
/// stream is up, then runs until killed.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let [govc, folder, delay_ms] = args else {
        bail!("usage: xtask bench-agent GOVC FOLDER DELAY_MS");
    };
    let delay = Duration::from_millis(delay_ms.parse().context("DELAY_MS")?);
    // A page as large as the biggest fleet: no power-on is missed between
    // two updates of the stream.
    let mut watch = Command::new(govc)
        .args([
            "events",
            "-f",
            "-json",
            "-n",
            "500",
            "-type",
            "VmPoweredOnEvent",
        ])
        .arg(datacenter(folder))
        .stdout(Stdio::piped())
        // Its complaint when the simulator is stopped at the end is noise.
        .stderr(Stdio::null())
        .spawn()
        .context("could not start govc events")?;
    let stdout = watch.stdout.take().context("no stdout")?;
    let events = serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>();
    let mut ready = false;
    for event in events {
        let event = event.context("govc events printed something else than JSON")?;
        if !ready {
            // The simulator's own VMs were powered on at its start: the
            // stream is up once their events arrive.
            println!("ready");
            ready = true;
        }
        let message = event.get("message").and_then(Value::as_str).unwrap_or("");
        let Some((name, _)) = message.split_once(" on ") else {
            continue;
        };
        if name.starts_with(PREFIX) {
            let vm = format!("{folder}/{name}");
            let govc = govc.clone();
            std::thread::spawn(move || report(&govc, &vm, delay));
        }
    }
    bail!("govc events ended")
}

/// The datacenter of an inventory path (`/DC0/vm` → `/DC0`).
fn datacenter(folder: &str) -> String {
    let dc = folder
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    format!("/{dc}")
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
