//! `cargo xtask bench`: vmw against hand-written govc, in one run, on the
//! same simulator (started afresh, the same way, for every run: vcsim
//! slows down as its event history grows).
//!
//! vcsim answers in microseconds; a vCenter takes seconds. Workload W1
//! starts the simulator with per-method delays scaled down from a real
//! vCenter (clone 1 s, power-on 0.3 s, destroy 0.2 s) and the address agent
//! ([`agent`]) reports each VM's address 2 s after power-on; W0 has no
//! delays and no agent (each tool's configure step sets the address), so
//! that only the client's own cost is left.
//!
//! On each, the same fleet (N launches to an address, then their deletion)
//! is made by:
//! - N hand-written parallel govc lanes (a shell script: `vm.clone`,
//!   `vm.change` with the guestinfo, `vm.power -on`, `vm.ip`; then N
//!   parallel `vm.destroy`): the baseline;
//! - one such lane alone: the floor no tool can beat;
//! - batched govc (W0): every command that takes many VMs gets them all;
//! - the real `vmw` binary (`vmw launch --count N --wait ip` with
//!   `--concurrency N`, then `vmw delete`), without and with the console
//!   log (`--console`);
//! - the library (`launch_many` then `clean`, in a process of its own).
//!
//! Each is a process of its own; the bench measures its wall time, the CPU
//! time of it and of the govc processes it ran, and (for `vmw`) its own
//! peak memory ([`measure`]). A second pass at W0 runs each through a govc
//! wrapper that counts the govc processes. Then the curve of n = 1, 10, 20,
//! 50, 100 at W1, `vmw list` against one `govc find` plus one
//! `object.collect` with 200 VMs, and the targets. The tables go to stdout
//! and between the markers of `docs/perf.md`.
//!
//! `--smoke` runs every part with tiny numbers and writes nothing: the
//! check that keeps the bench working (it asserts no timing).

mod agent;
mod library;
mod measure;

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use measure::{Taken, measure};
use vmw_testbed::{Vcsim, VcsimOptions};

pub(crate) use agent::run as agent_main;
pub(crate) use library::run as library_main;

const CLONE_MS: u32 = 1000;
const POWER_ON_MS: u32 = 300;
const DESTROY_MS: u32 = 200;
const IP_AFTER_MS: u64 = 2000;
const FOLDER: &str = "/DC0/vm";
/// The vcsim-only extraConfig that gives a guest its address at once.
const PRESET_IP: &str = "SET.guest.ipAddress=127.0.0.1";
const RELEASE: &str = "jammy";
const TEMPLATE: &str = "/DC0/vm/TEMPLATE-cloud-init-jammy";

/// Markers of the generated part of `docs/perf.md`.
const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

/// N hand-written parallel lanes.
const LANES: &str = r#"set -u
lane() {
  name="$PREFIX-$1"
  "$GOVC" vm.clone -vm "$TEMPLATE" -on=false "$name" >/dev/null 2>&1 &&
  "$GOVC" vm.change -vm "$FOLDER/$name" $PRESET \
    -f "guestinfo.userdata=$USERDATA" -e guestinfo.userdata.encoding=base64 \
    -f "guestinfo.metadata=$METADATA" -e guestinfo.metadata.encoding=base64 &&
  "$GOVC" vm.power -on "$FOLDER/$name" >/dev/null &&
  "$GOVC" vm.ip -wait 5m "$FOLDER/$name" >/dev/null
}
pids=""
for i in $(seq 1 "$COUNT"); do lane "$i" & pids="$pids $!"; done
status=0
for p in $pids; do wait "$p" || status=1; done
exit $status
"#;

/// Batched: clones and changes one per VM (in parallel), then one
/// power-on and one address wait for all.
const BATCHED: &str = r#"set -u
paths=""
pids=""
for i in $(seq 1 "$COUNT"); do
  "$GOVC" vm.clone -vm "$TEMPLATE" -on=false "$PREFIX-$i" >/dev/null 2>&1 & pids="$pids $!"
  paths="$paths $FOLDER/$PREFIX-$i"
done
status=0
for p in $pids; do wait "$p" || status=1; done
pids=""
for vm in $paths; do
  "$GOVC" vm.change -vm "$vm" $PRESET \
    -f "guestinfo.userdata=$USERDATA" -e guestinfo.userdata.encoding=base64 \
    -f "guestinfo.metadata=$METADATA" -e guestinfo.metadata.encoding=base64 & pids="$pids $!"
done
for p in $pids; do wait "$p" || status=1; done
[ "$status" = 0 ] || exit 1
"$GOVC" vm.power -on $paths >/dev/null && "$GOVC" vm.ip -wait 5m $paths >/dev/null
"#;

/// N parallel `vm.destroy` of the paths given.
const DESTROY: &str = r#"pids=""
for vm in "$@"; do "$GOVC" vm.destroy "$vm" & pids="$pids $!"; done
status=0
for p in $pids; do wait "$p" || status=1; done
exit $status
"#;

/// One `vm.destroy` of all the paths given.
const DESTROY_BATCHED: &str = r#""$GOVC" vm.destroy "$@""#;

/// What `vmw list` does, by hand: the paths, then their properties.
const LIST: &str = r#""$GOVC" find "$FOLDER" -type m -maxdepth 1 -config.annotation "$GLOB" >/dev/null &&
"$GOVC" object.collect -json -type m "$FOLDER" name config.annotation config.template runtime.powerState guest.ipAddress >/dev/null
"#;

/// A govc that counts its runs in `census`, for the census pass (`vmw`
/// hands govc only the variables it knows, so the paths are written in).
fn counting_govc(census: &Utf8Path, govc: &Utf8Path) -> String {
    format!("#!/bin/sh\necho \"$1\" >> '{census}'\nexec '{govc}' \"$@\"\n")
}

#[derive(Clone, Debug)]
struct Options {
    count: usize,
    repeat: usize,
    curve: Vec<usize>,
    list_vms: usize,
    rss_count: usize,
    smoke: bool,
    write: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Options {
            count: 20,
            repeat: 3,
            curve: vec![1, 10, 20, 50, 100],
            list_vms: 200,
            rss_count: 100,
            smoke: false,
            write: true,
        };
        let mut it = args.iter();
        let number = |v: Option<&String>, what: &str| -> Result<usize> {
            v.with_context(|| format!("{what} needs a number"))?
                .parse()
                .with_context(|| format!("{what} needs a number"))
        };
        while let Some(a) = it.next() {
            match a.as_str() {
                "--count" => o.count = number(it.next(), "--count")?,
                "--repeat" => o.repeat = number(it.next(), "--repeat")?.max(1),
                "--no-write" => o.write = false,
                "--smoke" => {
                    o = Options {
                        count: 2,
                        repeat: 1,
                        curve: vec![1, 2],
                        list_vms: 4,
                        rss_count: 2,
                        smoke: true,
                        write: false,
                    }
                }
                other => bail!("unknown bench option {other:?}"),
            }
        }
        Ok(o)
    }
}

/// The two workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// vCenter-like delays, scaled down.
    W1,
    /// No delays: the client's own cost.
    W0,
}

/// Launch and delete of one fleet by one tool.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    launch: Taken,
    delete: Taken,
}

impl Sample {
    fn total(&self) -> f64 {
        (self.launch.wall + self.delete.wall).as_secs_f64()
    }
    fn cpu(&self) -> f64 {
        (self.launch.cpu + self.delete.cpu).as_secs_f64()
    }
}

/// The median sample (by total time) of `samples`.
fn median(mut samples: Vec<Sample>) -> Sample {
    samples.sort_by(|a, b| a.total().total_cmp(&b.total()));
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// The built binaries the bench runs.
struct Binaries {
    vmw: Utf8PathBuf,
    /// This program, for the agent and the library child.
    xtask: Utf8PathBuf,
    govc: Utf8PathBuf,
    /// The interpreter of `target/python/venv`, with vmw's Python package.
    python: Utf8PathBuf,
}

/// A simulator of one workload with its agent and a working directory.
struct Bed {
    workload: Workload,
    /// Kept running while the bed lives.
    _sim: Vcsim,
    /// The address agent (W1; under W0 the guests have their address
    /// from the start).
    agent: Option<Child>,
    dir: tempfile::TempDir,
    bins: std::rc::Rc<Binaries>,
    /// `GOVC_*` for the scripts, with the password.
    govc_env: Vec<(String, String)>,
    /// HOME, config and govc for `vmw`.
    vmw_env: Vec<(String, String)>,
    config: Utf8PathBuf,
    runs: usize,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(agent) = &mut self.agent {
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
}

impl Bed {
    fn start(
        workload: Workload,
        bins: std::rc::Rc<Binaries>,
        rt: &tokio::runtime::Runtime,
    ) -> Result<Self> {
        let options = match workload {
            Workload::W1 => VcsimOptions::new()
                .method_delay("CloneVM_Task", CLONE_MS)
                .method_delay("PowerOnVM_Task", POWER_ON_MS)
                .method_delay("PowerOnMultiVM_Task", POWER_ON_MS)
                .method_delay("Destroy_Task", DESTROY_MS),
            Workload::W0 => VcsimOptions::new(),
        };
        let sim = rt.block_on(Vcsim::start_with(options))?;
        let dir = tempfile::Builder::new().prefix("vmw-bench-").tempdir()?;
        let path = Utf8Path::from_path(dir.path())
            .context("the temporary directory is not UTF-8")?
            .to_owned();
        let config = sim.config();
        let target =
            vmw_govc::GovcTarget::new(&config, Some(sim.session_dir()), &Default::default());
        let mut govc_env: Vec<(String, String)> = target
            .vars()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        govc_env.push((
            vmw_config::env::GOVC_PASSWORD.to_owned(),
            config.login().password.expose().to_owned(),
        ));
        govc_env.push(("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()));
        let config_file = sim.write_config(&path)?;
        let home = path.join("home");
        std::fs::create_dir_all(&home)?;
        let vmw_env = vec![
            ("HOME".to_owned(), home.to_string()),
            ("USER".to_owned(), "bench".to_owned()),
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
            ("PYCLOUDLIB_CONFIG".to_owned(), config_file.to_string()),
            ("VMW_GOVC".to_owned(), bins.govc.to_string()),
        ];
        // The guestinfo the baseline lanes write, as vmw's would be.
        std::fs::write(path.join("userdata.b64"), "I2Nsb3VkLWNvbmZpZwp7fQo=")?;
        std::fs::write(path.join("metadata.b64"), "aW5zdGFuY2UtaWQ6IGJlbmNoCg==")?;
        std::fs::write(
            path.join("counting-govc"),
            counting_govc(&path.join("census"), &bins.govc),
        )?;
        set_executable(&path.join("counting-govc"))?;
        let agent = match workload {
            Workload::W1 => Some(start_agent(&bins, &govc_env)?),
            Workload::W0 => None,
        };
        let bed = Bed {
            workload,
            _sim: sim,
            agent,
            dir,
            bins,
            govc_env,
            vmw_env,
            config: config_file,
            runs: 0,
        };
        // Logged in once, version known: as a user who has run them before.
        bed.script(r#""$GOVC" about >/dev/null"#, &[], false)?;
        for census in [false, true] {
            measure(bed.vmw(census).args(["list"]), "vmw list")?;
        }
        Ok(bed)
    }

    fn path(&self) -> &Utf8Path {
        Utf8Path::from_path(self.dir.path()).unwrap_or(Utf8Path::new("/tmp"))
    }

    fn census_file(&self) -> Utf8PathBuf {
        self.path().join("census")
    }

    fn govc_for(&self, census: bool) -> Utf8PathBuf {
        if census {
            self.path().join("counting-govc")
        } else {
            self.bins.govc.clone()
        }
    }

    /// A shell running `script` with the lanes' environment.
    fn script_command(&self, script: &str, args: &[String], census: bool) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script).arg("bench").args(args);
        c.env_clear()
            .envs(self.govc_env.iter().map(|(k, v)| (k, v)))
            .env("GOVC", self.govc_for(census))
            .env("FOLDER", FOLDER)
            .env("TEMPLATE", TEMPLATE)
            .env("USERDATA", self.path().join("userdata.b64"))
            .env("METADATA", self.path().join("metadata.b64"))
            .env(
                "PRESET",
                self.preset().map_or(String::new(), |kv| format!("-e {kv}")),
            )
            .current_dir(self.path());
        c
    }

    /// Under W0 every tool's configure step also sets the guest's address
    /// (a vcsim key): a guest with its address from the start, no agent.
    fn preset(&self) -> Option<&'static str> {
        (self.workload == Workload::W0).then_some(PRESET_IP)
    }

    fn script(&self, script: &str, args: &[String], census: bool) -> Result<Taken> {
        Ok(measure(
            &mut self.script_command(script, args, census),
            "a govc script",
        )?
        .0)
    }

    /// `vmw` with the bench's environment.
    fn vmw(&self, census: bool) -> Command {
        let mut c = Command::new(&self.bins.vmw);
        c.env_clear()
            .envs(self.vmw_env.iter().map(|(k, v)| (k, v)))
            .env("VMW_GOVC", self.govc_for(census))
            .current_dir(self.path());
        c
    }

    /// A name prefix no earlier run of this bed used: `bench-<kind><n>`.
    fn prefix(&mut self, kind: char) -> String {
        self.runs += 1;
        format!("{}-{kind}{}", agent::PREFIX, self.runs)
    }

    fn paths(prefix: &str, n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("{FOLDER}/{prefix}-{i}")).collect()
    }

    /// N parallel lanes, then N parallel destroys.
    fn govc_lanes(&mut self, n: usize, census: bool) -> Result<Sample> {
        self.govc_fleet(LANES, DESTROY, "the govc lanes", n, census)
    }

    /// Batched govc: one power-on, one address wait, one destroy.
    fn govc_batched(&mut self, n: usize, census: bool) -> Result<Sample> {
        self.govc_fleet(
            BATCHED,
            DESTROY_BATCHED,
            "the batched govc calls",
            n,
            census,
        )
    }

    /// The `launch` script for `n` VMs, then the `delete` script of them.
    fn govc_fleet(
        &mut self,
        launch: &str,
        delete: &str,
        what: &str,
        n: usize,
        census: bool,
    ) -> Result<Sample> {
        let prefix = self.prefix('g');
        let mut c = self.script_command(launch, &[], census);
        c.env("COUNT", n.to_string()).env("PREFIX", &prefix);
        let (launch, _) = measure(&mut c, what)?;
        let delete = self.script(delete, &Self::paths(&prefix, n), census)?;
        Ok(Sample { launch, delete })
    }

    /// `vmw launch --count N --wait ip`, then `vmw delete` of those.
    fn vmw_cli(&mut self, n: usize, console: bool, census: bool) -> Result<Sample> {
        let tag = self.prefix('v');
        let lanes = n.to_string();
        let mut launch = self.vmw(census);
        launch
            .args([
                "--json",
                "--concurrency",
                &lanes,
                "launch",
                "--release",
                RELEASE,
            ])
            .args(["--count", &lanes, "--wait", "ip", "--tag", &tag]);
        if console {
            launch.arg("--console");
        }
        if let Some(kv) = self.preset() {
            launch.args(["--extra-config", kv]);
        }
        let (launched, stdout) = measure(&mut launch, "vmw launch")?;
        let made: Vec<serde_json::Value> =
            serde_json::from_str(&stdout).context("vmw launch --json printed no JSON list")?;
        let names: Vec<String> = made
            .iter()
            .filter_map(|m| m.get("name").and_then(|n| n.as_str()).map(str::to_owned))
            .collect();
        if names.len() != n {
            bail!("vmw launch made {} of {n} instances", names.len());
        }
        let mut delete = self.vmw(census);
        delete
            .args(["--concurrency", &lanes, "delete"])
            .args(&names);
        let (deleted, _) = measure(&mut delete, "vmw delete")?;
        Ok(Sample {
            launch: launched,
            delete: deleted,
        })
    }

    /// The library in a process of its own; its CPU is split between
    /// launch and delete in proportion to their time.
    fn library(&mut self, n: usize, census: bool) -> Result<Sample> {
        let govc = self.govc_for(census);
        let mut c = Command::new(&self.bins.xtask);
        c.args([
            "bench-library",
            self.config.as_str(),
            govc.as_str(),
            TEMPLATE,
        ])
        .args([n.to_string(), n.to_string()])
        .args(self.preset())
        .env_clear()
        .envs(self.vmw_env.iter().map(|(k, v)| (k, v)))
        .current_dir(self.path());
        let (taken, stdout) = measure(&mut c, "the library")?;
        child_sample(&taken, &stdout, "bench-library")
    }

    /// vmw's Python package, in a Python process of its own: `VMWare`,
    /// `launch_many` to an address, then `clean()`.
    fn python(&mut self, n: usize, census: bool) -> Result<Sample> {
        let govc = self.govc_for(census);
        let mut c = Command::new(&self.bins.python);
        c.args(["-c", PYTHON_BENCH])
            .args([
                self.config.as_str(),
                &format!("{}py", agent::PREFIX),
                TEMPLATE,
            ])
            .args([n.to_string(), n.to_string()])
            .args(self.preset())
            .env_clear()
            .envs(self.vmw_env.iter().map(|(k, v)| (k, v)))
            .env("VMW_GOVC", govc)
            .current_dir(self.path());
        let (taken, stdout) = measure(&mut c, "the Python package")?;
        child_sample(&taken, &stdout, "the Python bench")
    }

    /// govc processes per VM of `run` (a census pass).
    fn census(&mut self, n: usize, run: impl FnOnce(&mut Self) -> Result<Sample>) -> Result<f64> {
        let file = self.census_file();
        let _ = std::fs::remove_file(&file);
        run(self)?;
        let lines = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .count();
        Ok(lines as f64 / n as f64)
    }
}

/// The sample of a child that printed its launch and delete durations as
/// JSON (`{"launch": s, "delete": s}`); its CPU is shared out between the
/// two in proportion.
fn child_sample(taken: &Taken, stdout: &str, who: &str) -> Result<Sample> {
    let times: serde_json::Value =
        serde_json::from_str(stdout.trim()).with_context(|| format!("{who} printed no JSON"))?;
    let secs =
        |k: &str| Duration::from_secs_f64(times.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0));
    let (launch, delete) = (secs("launch"), secs("delete"));
    let share = launch.as_secs_f64() / (launch + delete).as_secs_f64().max(1e-9);
    Ok(Sample {
        launch: Taken {
            wall: launch,
            cpu: taken.cpu.mul_f64(share),
            peak_rss_kib: 0,
        },
        delete: Taken {
            wall: delete,
            cpu: taken.cpu.mul_f64(1.0 - share),
            peak_rss_kib: 0,
        },
    })
}

/// What the Python tool runs: `CONFIG TAG IMAGE COUNT LANES [K=V]`;
/// prints the two durations as JSON, as the library child does.
const PYTHON_BENCH: &str = r#"
import json, sys, time
import vmw
config, tag, image, count, lanes = sys.argv[1:6]
extra = dict([sys.argv[6].split("=", 1)]) if len(sys.argv) > 6 else None
cloud = vmw.VMWare(tag, config_file=config, concurrency=int(lanes))
cloud.releases()
started = time.monotonic()
cloud.launch_many(image, int(count), wait="ip", extra_config=extra)
launched = time.monotonic() - started
started = time.monotonic()
errors = cloud.clean()
deleted = time.monotonic() - started
if errors:
    raise SystemExit(f"clean failed: {errors}")
print(json.dumps({"launch": launched, "delete": deleted}))
"#;

/// Starts the W1 address agent and waits for its first look.
fn start_agent(bins: &Binaries, govc_env: &[(String, String)]) -> Result<Child> {
    let mut agent = Command::new(&bins.xtask)
        .args([
            "bench-agent",
            bins.govc.as_str(),
            FOLDER,
            &IP_AFTER_MS.to_string(),
        ])
        .env_clear()
        .envs(govc_env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .spawn()
        .context("could not start the address agent")?;
    let mut first = String::new();
    let stdout = agent.stdout.take().context("no agent stdout")?;
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first)?;
    if first.trim() != "ready" {
        let _ = agent.kill();
        let _ = agent.wait();
        bail!("the address agent did not start");
    }
    Ok(agent)
}

fn set_executable(path: &Utf8Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Builds `vmw` and this program (release for a real run) and returns
/// their paths.
fn build(smoke: bool) -> Result<Binaries> {
    let govc = crate::govmomi_tools(false)?.govc;
    let mut cargo = crate::cargo();
    cargo.args([
        "build",
        "--quiet",
        "--message-format=json",
        "-p",
        "vmw-cli",
        "-p",
        "xtask",
    ]);
    if !smoke {
        cargo.arg("--release");
    }
    let output = cargo.stderr(Stdio::inherit()).output()?;
    if !output.status.success() {
        bail!("cargo build of vmw and xtask failed");
    }
    let mut vmw = None;
    let mut xtask = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(exe) = msg.get("executable").and_then(|e| e.as_str()) else {
            continue;
        };
        match msg.pointer("/target/name").and_then(|n| n.as_str()) {
            Some("vmw") => vmw = Some(Utf8PathBuf::from(exe)),
            Some("xtask") => xtask = Some(Utf8PathBuf::from(exe)),
            _ => {}
        }
    }
    Ok(Binaries {
        vmw: vmw.context("cargo built no vmw")?,
        xtask: xtask.context("cargo built no xtask")?,
        govc,
        python: crate::python::environment()?,
    })
}

/// One row of a table.
#[derive(Clone)]
struct Row {
    tool: String,
    sample: Sample,
    processes: Option<f64>,
    n: usize,
}

fn table(rows: &[Row], baseline: &Sample) -> String {
    let mut t = String::from(
        "| tool | launch to IP | delete | total | × govc lanes | delete × | govc processes / VM | CPU s / VM |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let s = &r.sample;
        let _ = writeln!(
            t,
            "| {} | {:.2} s | {:.2} s | {:.2} s | {:.2}× | {:.2}× | {} | {:.3} |",
            r.tool,
            s.launch.wall.as_secs_f64(),
            s.delete.wall.as_secs_f64(),
            s.total(),
            s.total() / baseline.total().max(1e-9),
            s.delete.wall.as_secs_f64() / baseline.delete.wall.as_secs_f64().max(1e-9),
            r.processes.map_or("–".to_owned(), |p| format!("{p:.2}")),
            s.cpu() / r.n as f64,
        );
    }
    t
}

/// A target and whether it holds.
struct Target {
    what: String,
    measured: f64,
    limit: f64,
    unit: &'static str,
}

/// What the bench shares between its runs.
struct Bench {
    bins: std::rc::Rc<Binaries>,
    rt: tokio::runtime::Runtime,
}

impl Bench {
    /// Runs `f` on a simulator of its own: vcsim slows down as its event
    /// history grows, so no run inherits another's.
    fn fresh<T>(&self, workload: Workload, f: impl FnOnce(&mut Bed) -> Result<T>) -> Result<T> {
        let mut bed = Bed::start(workload, self.bins.clone(), &self.rt)?;
        f(&mut bed)
    }

    /// The median of `repeat` fresh runs of `f`.
    fn median(
        &self,
        workload: Workload,
        repeat: usize,
        f: &dyn Fn(&mut Bed) -> Result<Sample>,
    ) -> Result<Sample> {
        let mut samples = Vec::new();
        for _ in 0..repeat {
            samples.push(self.fresh(workload, f)?);
        }
        Ok(median(samples))
    }

    /// govc processes per VM of `f` (a census run).
    fn census(&self, n: usize, f: impl FnOnce(&mut Bed) -> Result<Sample>) -> Result<f64> {
        self.fresh(Workload::W0, |bed| bed.census(n, f))
    }
}

/// The tools of a table, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Lanes,
    OneLane,
    Batched,
    Cli,
    CliConsole,
    Library,
    Python,
}

impl Tool {
    fn label(self, n: usize) -> String {
        match self {
            Tool::Lanes => format!("govc, {n} parallel lanes"),
            Tool::OneLane => "govc, one lane alone (the floor)".to_owned(),
            Tool::Batched => "govc, batched calls".to_owned(),
            Tool::Cli => format!("`vmw launch --count {n}` + `vmw delete`"),
            Tool::CliConsole => "the same, with `--console`".to_owned(),
            Tool::Library => "library: `launch_many` + `clean`".to_owned(),
            Tool::Python => "Python: `launch_many` + `clean()`".to_owned(),
        }
    }

    fn run(self, bed: &mut Bed, n: usize, census: bool) -> Result<Sample> {
        match self {
            Tool::Lanes => bed.govc_lanes(n, census),
            Tool::OneLane => bed.govc_lanes(1, census),
            Tool::Batched => bed.govc_batched(n, census),
            Tool::Cli => bed.vmw_cli(n, false, census),
            Tool::CliConsole => bed.vmw_cli(n, true, census),
            Tool::Library => bed.library(n, census),
            Tool::Python => bed.python(n, census),
        }
    }

    /// VMs a run of `n` makes.
    fn vms(self, n: usize) -> usize {
        if self == Tool::OneLane { 1 } else { n }
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    let bench = Bench {
        bins: std::rc::Rc::new(build(o.smoke)?),
        rt: tokio::runtime::Runtime::new()?,
    };
    let n = o.count;
    let mut out = String::new();
    let mut targets: Vec<Target> = Vec::new();
    let _ = writeln!(
        out,
        "Measured by `cargo xtask bench` (n = {n}; each row the median of {} runs, each run on \
         a simulator of its own; this machine: {} CPUs). W1: vcsim with clone {CLONE_MS} ms, \
         power-on {POWER_ON_MS} ms, destroy {DESTROY_MS} ms, the address {IP_AFTER_MS} ms after \
         power-on (an agent looking every 200 ms). W0: no delays, the address set with the \
         guestinfo. The ratios are to the parallel govc lanes.\n",
        o.repeat,
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    // How many govc processes each tool runs per VM (W0, counted).
    eprintln!("bench: counting govc processes, n = {n}");
    let tools = [
        Tool::Lanes,
        Tool::OneLane,
        Tool::Batched,
        Tool::Cli,
        Tool::CliConsole,
        Tool::Library,
        Tool::Python,
    ];
    let mut processes = Vec::new();
    for tool in tools {
        let k = tool.vms(n);
        processes.push((tool, bench.census(k, |b| tool.run(b, n, true))?));
    }
    let processes_of = |t: Tool| processes.iter().find(|(p, _)| *p == t).map(|(_, c)| *c);

    let table_of = |workload: Workload, tools: &[Tool]| -> Result<Vec<(Tool, Row)>> {
        let mut rows = Vec::new();
        for &tool in tools {
            eprintln!("bench: {workload:?}, {}", tool.label(n));
            let sample = bench.median(workload, o.repeat, &|b| tool.run(b, n, false))?;
            rows.push((
                tool,
                Row {
                    tool: tool.label(n),
                    sample,
                    processes: processes_of(tool),
                    n: tool.vms(n),
                },
            ));
        }
        Ok(rows)
    };
    let sample_of = |rows: &[(Tool, Row)], t: Tool| {
        rows.iter()
            .find(|(r, _)| *r == t)
            .map(|(_, r)| r.sample)
            .unwrap_or_default()
    };

    let w0 = table_of(
        Workload::W0,
        &[
            Tool::Lanes,
            Tool::Batched,
            Tool::Cli,
            Tool::CliConsole,
            Tool::Library,
            Tool::Python,
        ],
    )?;
    let base = sample_of(&w0, Tool::Lanes);
    let rows: Vec<Row> = w0.iter().map(|(_, r)| r.clone()).collect();
    let _ = writeln!(out, "### W0: no delays, n = {n}\n\n{}", table(&rows, &base));
    targets.push(Target {
        what: format!("W0 n={n}: vmw CLI ≤ 1.0× parallel govc"),
        measured: sample_of(&w0, Tool::Cli).total() / base.total(),
        limit: 1.0,
        unit: "×",
    });

    let w1 = table_of(
        Workload::W1,
        &[
            Tool::Lanes,
            Tool::OneLane,
            Tool::Cli,
            Tool::CliConsole,
            Tool::Library,
            Tool::Python,
        ],
    )?;
    let base = sample_of(&w1, Tool::Lanes);
    let cli = sample_of(&w1, Tool::Cli);
    let rows: Vec<Row> = w1.iter().map(|(_, r)| r.clone()).collect();
    let _ = writeln!(
        out,
        "### W1: vCenter-like delays, n = {n}\n\n{}",
        table(&rows, &base)
    );
    targets.push(Target {
        what: format!("W1 n={n}: vmw CLI ≤ 1.1× parallel govc"),
        measured: cli.total() / base.total(),
        limit: 1.1,
        unit: "×",
    });
    targets.push(Target {
        what: format!("W1: deleting {n} VMs ≤ 1.1× {n} parallel vm.destroy"),
        measured: cli.delete.wall.as_secs_f64() / base.delete.wall.as_secs_f64(),
        limit: 1.1,
        unit: "×",
    });

    // The curve, one run per point.
    let _ = writeln!(
        out,
        "### W1 curve: launch to IP + delete, one run per point\n\n\
         | n | govc lanes | vmw CLI | × | vmw CPU s / VM | vmw peak RSS |\n\
         |---:|---:|---:|---:|---:|---:|"
    );
    let mut peak_rss = None;
    let last = o.curve.last().copied().unwrap_or(n);
    for &k in &o.curve {
        eprintln!("bench: W1 curve, n = {k}");
        let (lanes, cli) = if k == n {
            (base, cli)
        } else {
            (
                bench.fresh(Workload::W1, |b| b.govc_lanes(k, false))?,
                bench.fresh(Workload::W1, |b| b.vmw_cli(k, false, false))?,
            )
        };
        if k == o.rss_count {
            peak_rss = Some(cli.launch.peak_rss_kib);
        }
        let _ = writeln!(
            out,
            "| {k} | {:.2} s | {:.2} s | {:.2}× | {:.3} | {:.1} MB |",
            lanes.total(),
            cli.total(),
            cli.total() / lanes.total(),
            cli.cpu() / k as f64,
            cli.launch.peak_rss_kib as f64 * 1024.0 / 1e6,
        );
        if k == last && k != n {
            targets.push(Target {
                what: format!("W1 n={k}: vmw CLI ≤ 1.2× parallel govc"),
                measured: cli.total() / lanes.total(),
                limit: 1.2,
                unit: "×",
            });
        }
    }
    let peak_rss = match peak_rss {
        Some(p) => p,
        None => {
            bench
                .fresh(Workload::W1, |b| b.vmw_cli(o.rss_count, false, false))?
                .launch
                .peak_rss_kib
        }
    };
    targets.push(Target {
        what: format!(
            "peak RSS of `vmw launch --count {}` (govc excluded) ≤ 30 MB",
            o.rss_count
        ),
        measured: peak_rss as f64 * 1024.0 / 1e6,
        limit: 30.0,
        unit: " MB",
    });

    // vmw list against find + object.collect.
    eprintln!("bench: vmw list with {} VMs", o.list_vms);
    let (list_vmw, list_govc) = bench.fresh(Workload::W0, |b| list_bench(b, &o))?;
    let _ = writeln!(
        out,
        "\n### `vmw list` with {} VMs (W0, median of {})\n\n\
         | tool | time |\n|---|---:|\n\
         | `vmw list` | {:.3} s |\n\
         | `govc find` + `govc object.collect` | {:.3} s |\n",
        o.list_vms,
        o.repeat.max(5),
        list_vmw,
        list_govc
    );
    targets.push(Target {
        what: format!(
            "`vmw list` of {} VMs ≤ 1.2× find + object.collect",
            o.list_vms
        ),
        measured: list_vmw / list_govc,
        limit: 1.2,
        unit: "×",
    });

    let _ = writeln!(
        out,
        "### Targets\n\n| target | measured | holds |\n|---|---:|---|"
    );
    for t in &targets {
        let _ = writeln!(
            out,
            "| {} | {:.2}{} | {} |",
            t.what,
            t.measured,
            t.unit,
            if t.measured <= t.limit {
                "yes"
            } else {
                "**no**"
            }
        );
    }
    println!("{out}");
    if o.write {
        write_perf_doc(&out)?;
    }
    if o.smoke {
        eprintln!("bench: every part ran (smoke: nothing written, no timing judged)");
    }
    Ok(())
}

/// `vmw list` and its two-call govc equivalent, with `o.list_vms` of
/// vmw's VMs in the folder: median seconds of each.
fn list_bench(bed: &mut Bed, o: &Options) -> Result<(f64, f64)> {
    let tag = format!("{}-list", agent::PREFIX);
    let count = o.list_vms.to_string();
    measure(
        bed.vmw(false)
            .args([
                "--concurrency",
                "50",
                "launch",
                "--release",
                RELEASE,
                "--count",
                &count,
            ])
            .args([
                "--wait",
                "none",
                "--no-console",
                "--tag",
                &tag,
                "--no-timestamp",
            ]),
        "vmw launch of the VMs to list",
    )?;
    let runs = o.repeat.max(5);
    let mut vmw = Vec::new();
    let mut govc = Vec::new();
    for _ in 0..runs {
        let (t, stdout) = measure(
            bed.vmw(false)
                .args(["--json", "list", "--tag", &tag, "--no-timestamp"]),
            "vmw list",
        )?;
        let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout)?;
        if listed.len() != o.list_vms {
            bail!("vmw list showed {} of {} VMs", listed.len(), o.list_vms);
        }
        vmw.push(t.wall.as_secs_f64());
        let mut c = bed.script_command(LIST, &[], false);
        c.env("GLOB", vmw_cloud::annotation_glob(None));
        govc.push(
            measure(&mut c, "find + object.collect")?
                .0
                .wall
                .as_secs_f64(),
        );
    }
    measure(
        bed.vmw(false).args([
            "--concurrency",
            "50",
            "clean",
            "--yes",
            "--tag",
            &tag,
            "--no-timestamp",
        ]),
        "vmw clean of the listed VMs",
    )?;
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    Ok((mid(vmw), mid(govc)))
}

/// Replaces the part of `docs/perf.md` between the markers.
fn write_perf_doc(generated: &str) -> Result<()> {
    let path = crate::root().join("docs/perf.md");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        bail!("{path} lacks the markers {BEGIN} and {END}");
    };
    let updated = format!("{}{BEGIN}\n{generated}\n{}", &text[..b], &text[e..]);
    std::fs::write(&path, updated)?;
    eprintln!("bench: wrote the tables into {path}");
    Ok(())
}
