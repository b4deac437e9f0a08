//! Development tasks of the vmw workspace, run as `cargo xtask <task>`:
//!
//! - `tools [--force]`: makes govc and vcsim (govmomi v0.56.0) available in
//!   `.tools/bin`, building them with `go install` from the pinned module in
//!   `xtask/govmomi`, or reusing binaries of the right version already there
//!   or on `PATH`; unpacks Debian's cloud-init into `.tools/cloud-init`
//!   for the user-data judge, installing the python3 packages it imports;
//!   and installs Debian's OpenSSH server and sudo for the SSH tests.
//! - `test`: `tools`, then `tidy`, `cargo fmt --check`, `cargo clippy
//!   --all-targets -D warnings`, every test of the workspace (unit, vcsim,
//!   SSH, cloud-init, real guests), the Python package (`python`),
//!   cloud-init's own integration tests (`cloud-init-tests`), and the
//!   demo.
//! - `python`: builds vmw's Python package into `target/python/venv`, runs
//!   ruff and mypy on it and its pytest suite on a simulator ([`python`]).
//! - `tidy`: the rules the compiler does not check ([`tidy`]).
//! - `vcsim [--real-guests [--release R]...]`: starts a seeded simulator,
//!   prints the `GOVC_*` variables to use it by hand and writes a
//!   `pycloudlib.toml` for it, until Ctrl-C; with `--real-guests`, its VMs
//!   boot real Debian guests ([`vcsim`]).
//! - `cloud-init-tests [--release R] [--workers N] [--all | TEST...]`:
//!   cloud-init's own integration tests, from Debian's source package of
//!   the guest's cloud-init, on a `vmware` platform backed by vmw and real
//!   guests ([`cloud_init_tests`]).
//! - `demo [--real-guests]`: makes sure of govc, vcsim and sshd as `tools`
//!   does, then runs the main job of vmw on the local simulator; with
//!   `--real-guests`, on real Debian guests under QEMU instead of sshd.
//! - `bench [--count N] [--repeat R] [--no-write] [--smoke]`: vmw (the
//!   CLI and the library) against hand-written govc on the same simulator,
//!   with and without vCenter-like delays; writes the tables into
//!   `docs/perf.md` ([`bench`]). `--smoke` runs every part tiny and judges
//!   nothing; `test` runs it so the bench keeps working.
//! - `guest-image [--release R] [--force] [--boot-check [--accel tcg|kvm]]`:
//!   builds the Debian guest image (trixie, or bookworm) that can stand
//!   behind a vcsim VM (cached by its inputs) and prints its directory;
//!   `--boot-check` boots it once with QEMU and checks that cloud-init sees
//!   a VMware VM.
//! - `man [--out DIR]`: writes vmw's man pages (`vmw.1`, `vmw-launch.1`,
//!   ...) into DIR (default `target/man`) by running `vmw man`, which
//!   generates them from the command line's own definitions.

mod bench;
mod cloud_init_tests;
mod demo;
mod guest;
mod python;
mod tidy;
mod vcsim;

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use vmw_testbed::tools::{self, GOVMOMI_VERSION, Tool};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  tools [--force]   install govc and vcsim (govmomi v0.56.0) into .tools/bin,
                    and cloud-init (the user-data judge) into .tools/cloud-init
  test              tools, then tidy, fmt check, clippy, every test (cloud-init's
                    integration tests too) and the demo
  tidy              the rules the compiler does not check (layers, env, processes, docs)
  vcsim [--real-guests [--release R]...]
                    run a seeded vCenter simulator until Ctrl-C, printing its
                    GOVC_* variables and writing target/vcsim/pycloudlib.toml;
                    --real-guests: its VMs boot real Debian guests (trixie,
                    or each --release given)
  cloud-init-tests [--release R] [--workers N] [--all | TEST...]
                    cloud-init's own integration tests (Debian's source of the
                    guest's version) on a vmware platform backed by vmw and
                    real guests: the chosen set, --all, or the TESTs named
                    (e.g. modules/test_cli.py)
  demo [--real-guests]
                    the main job of vmw on the local simulator; --real-guests
                    with Debian guests under QEMU behind the VMs
  bench [--count N] [--repeat R] [--no-write] [--smoke]
                    vmw against hand-written govc lanes on one simulator; writes
                    docs/perf.md (--smoke: tiny, nothing written or judged)
  guest-image [--release bookworm|trixie] [--force] [--boot-check [--accel tcg|kvm]]
                    build (or find cached) the Debian guest image (default
                    trixie) for QEMU-backed VMs and print its directory;
                    --boot-check boots it once
  python [--no-peer] build vmw's Python package into target/python/venv, run
                    ruff, mypy, its pytest suite on the simulator, and
                    pycloudlib's public-API test on real guests through it
                    (--no-peer: not that one)
  man [--out DIR]   write vmw's man pages (vmw.1, vmw-launch.1, ...) into DIR
                    (default target/man)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("tools") => tools_task(args.iter().any(|a| a == "--force")).map(|_| ()),
        Some("cloud-init") => cloud_init_task().map(|_| ()),
        Some("test") => test_task(),
        Some("vcsim") => vcsim::task(&args[1..]),
        Some("demo") => demo_task(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("bench-agent") => bench::agent_main(&args[1..]),
        Some("bench-library") => bench::library_main(&args[1..]),
        Some("guest-image") => guest::run(&args[1..]),
        Some("python") => govmomi_tools(false).and_then(|tools| {
            ssh_peer_task()?;
            if args.iter().any(|a| a == "--no-peer") {
                return python::task(&tools, None);
            }
            let image = guest::for_real_guests(guest::Release::default())?;
            python::task(&tools, Some(image.dir()))
        }),
        Some("cloud-init-tests") => govmomi_tools(false).and_then(|tools| {
            ssh_peer_task()?;
            cloud_init_tests::task(&tools, &args[1..], false)
        }),
        Some("tidy") => tidy::run(),
        Some("man") => man_task(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown task {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> Utf8PathBuf {
    tools::workspace_root()
}

/// Runs a command, failing when it fails.
fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", shown(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", shown(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", shown(cmd));
    }
    Ok(())
}

fn shown(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where govc and vcsim are, after making sure they are there.
pub(crate) struct Tools {
    govc: Utf8PathBuf,
    vcsim: Utf8PathBuf,
}

fn tools_task(force: bool) -> Result<Tools> {
    let tools = govmomi_tools(force)?;
    cloud_init_task()?;
    ssh_peer_task()?;
    Ok(tools)
}

/// Debian's OpenSSH server (the SSH test peer), sudo (for the sudo tests)
/// and qemu-img (to make the disks of test OVAs), installed with apt-get
/// when missing.
fn ssh_peer_task() -> Result<()> {
    install_missing(
        "the SSH tests",
        &[
            ("/usr/sbin/sshd", "openssh-server"),
            ("/usr/bin/sudo", "sudo"),
            ("/usr/bin/qemu-img", "qemu-utils"),
        ],
    )?;
    eprintln!("xtask: sshd, sudo and qemu-img are installed");
    Ok(())
}

/// Installs with apt-get the Debian package of each `(file, package)` whose
/// file is missing; without root, fails with the command to run instead.
fn install_missing(purpose: &str, needs: &[(&str, &str)]) -> Result<()> {
    let mut missing: Vec<&str> = needs
        .iter()
        .filter(|(path, _)| !Utf8Path::new(path).is_file())
        .map(|(_, package)| *package)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "{} missing, needed for {purpose}\nhint: as root, run `apt-get install -y {}`",
            missing.join(" and "),
            missing.join(" ")
        );
    }
    apt_get(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    apt_get(&args)
}

pub(crate) fn govmomi_tools(force: bool) -> Result<Tools> {
    let bin = tools::tools_bin_dir();
    let local_ok = |tool: Tool| {
        let p = bin.join(tool.name());
        tools::reported_version(tool, &p).as_deref() == Some(GOVMOMI_VERSION)
            && (tool != Tool::Vcsim
                || tools::vcsim_front_end(&p).is_some_and(|r| r >= tools::VCSIM_FRONT_END))
    };
    if !force && local_ok(Tool::Govc) && local_ok(Tool::Vcsim) {
        eprintln!("xtask: govc and vcsim {GOVMOMI_VERSION} are in {bin}");
        return Ok(Tools {
            govc: bin.join("govc"),
            vcsim: bin.join("vcsim"),
        });
    }
    if !force
        && let (Ok(govc), Ok(vcsim)) = (tools::locate(Tool::Govc), tools::locate(Tool::Vcsim))
        && !govc.starts_with(&bin)
        && !vcsim.starts_with(&bin)
    {
        eprintln!("xtask: using {govc} and {vcsim} ({GOVMOMI_VERSION})");
        return Ok(Tools { govc, vcsim });
    }
    install_with_go(&bin)?;
    for tool in [Tool::Govc, Tool::Vcsim] {
        let found = tools::reported_version(tool, &bin.join(tool.name()));
        if found.as_deref() != Some(GOVMOMI_VERSION) {
            bail!(
                "{} was built but reports {:?}, not {GOVMOMI_VERSION}",
                tool.name(),
                found
            );
        }
    }
    let front_end = tools::vcsim_front_end(&bin.join("vcsim"));
    if front_end.is_none_or(|r| r < tools::VCSIM_FRONT_END) {
        bail!(
            "vcsim was built but reports front end revision {front_end:?}, not {}",
            tools::VCSIM_FRONT_END
        );
    }
    eprintln!("xtask: installed govc and vcsim {GOVMOMI_VERSION} into {bin}");
    Ok(Tools {
        govc: bin.join("govc"),
        vcsim: bin.join("vcsim"),
    })
}

/// Builds govc and vcsim from the govmomi module pinned in `xtask/govmomi`.
///
/// `go install github.com/vmware/govmomi/govc@v0.56.0` does not work: since
/// v0.47 govc and vcsim are nested modules with a local `replace`, which the
/// Go module proxy cannot build. `xtask/govmomi` holds main packages over
/// the library packages of github.com/vmware/govmomi v0.56.0 instead.
fn install_with_go(bin: &Utf8Path) -> Result<()> {
    let go_ok = Command::new("go")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !go_ok {
        bail!(
            "Go is not installed, so govc and vcsim {GOVMOMI_VERSION} cannot be built.\n\
             hint: install Go 1.25 or newer (https://go.dev/dl/) and run `cargo xtask tools` again, \
             or put govc and vcsim {GOVMOMI_VERSION} (https://github.com/vmware/govmomi/releases/tag/{GOVMOMI_VERSION}) \
             on PATH, or set VMW_GOVC and VMW_VCSIM to their paths"
        );
    }
    std::fs::create_dir_all(bin).with_context(|| format!("creating {bin}"))?;
    let module = root().join("xtask").join("govmomi");
    run(Command::new("go")
        .current_dir(&module)
        .env("GOBIN", bin)
        .env("GOFLAGS", "-mod=readonly")
        .env("CGO_ENABLED", "0")
        .args([
            "install",
            "-trimpath",
            "-ldflags",
            &format!("-s -w -X github.com/vmware/govmomi/cli/flags.BuildVersion={GOVMOMI_VERSION}"),
            "./govc",
            "./vcsim",
        ]))
}

/// Debian's python3 modules cloud-init 22.4 imports, with their packages.
const CLOUD_INIT_PYTHON_DEPS: &[(&str, &str)] = &[
    ("yaml", "python3-yaml"),
    ("jinja2", "python3-jinja2"),
    ("jsonschema", "python3-jsonschema"),
    ("configobj", "python3-configobj"),
    ("jsonpatch", "python3-jsonpatch"),
    ("netifaces", "python3-netifaces"),
    ("oauthlib", "python3-oauthlib"),
    ("requests", "python3-requests"),
    ("serial", "python3-serial"),
];

/// Debian's interpreter: the judge runs cloud-init the way a Debian guest does.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

fn python_imports(pythonpath: Option<&Utf8Path>, modules: &[&str]) -> bool {
    let mut cmd = Command::new(DEBIAN_PYTHON);
    cmd.arg("-c").arg(format!("import {}", modules.join(", ")));
    if let Some(p) = pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs apt-get, its output going to stderr with xtask's other logs.
fn apt_get(args: &[&str]) -> Result<()> {
    run(Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::io::stderr()))
}

/// Unpacks Debian's cloud-init into `.tools/cloud-init` (no service is
/// installed) and makes sure Debian's python3 has the modules it imports.
fn cloud_init_task() -> Result<Utf8PathBuf> {
    let root = root().join(".tools").join("cloud-init");
    let site = root.join("usr/lib/python3/dist-packages");
    let modules: Vec<&str> = CLOUD_INIT_PYTHON_DEPS.iter().map(|(m, _)| *m).collect();
    let mut updated = false;

    if !python_imports(None, &modules) {
        let packages: Vec<&str> = std::iter::once("python3")
            .chain(CLOUD_INIT_PYTHON_DEPS.iter().map(|(_, p)| *p))
            .collect();
        if !is_root() {
            bail!(
                "Debian's python3 lacks modules cloud-init needs.\nhint: as root, run `apt-get install -y {}`",
                packages.join(" ")
            );
        }
        apt_get(&["update", "-qq"])?;
        updated = true;
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&packages);
        apt_get(&args)?;
    }

    if !site.join("cloudinit").is_dir() {
        let download = root.join("download");
        std::fs::create_dir_all(&download)?;
        let fetch = || {
            run(Command::new("apt-get").current_dir(&download).args([
                "download",
                "-qq",
                "cloud-init",
            ]))
        };
        if fetch().is_err() {
            if updated || !is_root() {
                bail!(
                    "`apt-get download cloud-init` failed\nhint: run `apt-get update` (as root) and try again"
                );
            }
            apt_get(&["update", "-qq"])?;
            fetch()?;
        }
        let deb = std::fs::read_dir(&download)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .context("apt-get download left no .deb")?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        std::fs::remove_dir_all(&download)?;
    }

    if !python_imports(
        Some(&site),
        &["cloudinit.sources.DataSourceVMware", "cloudinit.stages"],
    ) {
        bail!("cloud-init in {root} does not import with {DEBIAN_PYTHON}");
    }
    eprintln!("xtask: cloud-init (user-data judge) is in {root}");
    Ok(root)
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    c.current_dir(root());
    // vmw-py is a Python extension module: it is linked for the
    // interpreter that loads it, never against libpython.
    c.env("PYO3_BUILD_EXTENSION_MODULE", "1");
    c
}

/// The feature that builds the real-guest suite.
const REAL_GUESTS: &str = "vmw-cloud/real-guests";

fn test_task() -> Result<()> {
    let tools = govmomi_tools(false)?;
    let cloud_init = cloud_init_task()?;
    ssh_peer_task()?;
    let guest_image = guest::for_real_guests(guest::Release::Trixie)?;
    let bookworm_image = guest::for_real_guests(guest::Release::Bookworm)?;
    tidy::run()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--features",
        REAL_GUESTS,
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo()
        .args(["test", "--workspace", "--locked"])
        .args(["--features", REAL_GUESTS])
        .env(vmw_config::env::VMW_GOVC, &tools.govc)
        .env(tools::VMW_VCSIM, &tools.vcsim)
        .env("VMW_CLOUD_INIT_ROOT", &cloud_init)
        .env("VMW_JUDGE_PYTHON", DEBIAN_PYTHON)
        .env(vmw_testbed::GUEST_IMAGE_VAR, guest_image.dir())
        .env(vmw_testbed::BOOKWORM_IMAGE_VAR, bookworm_image.dir()))?;
    eprintln!("xtask: the Python package: built, linted, and its suite on the simulator");
    python::task(&tools, Some(guest_image.dir()))?;
    eprintln!("xtask: cloud-init's own integration tests, the chosen set, on trixie guests");
    cloud_init_tests::task(&tools, &[], true)?;
    eprintln!("xtask: the demo, as the README's first command runs it");
    demo::run(false)?;
    eprintln!("xtask: the bench, tiny (it must keep working; nothing is timed)");
    bench::run(&["--smoke".to_owned()])?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

fn demo_task(args: &[String]) -> Result<()> {
    match args {
        [] => demo::run(false),
        [flag] if flag == "--real-guests" => demo::run(true),
        _ => bail!("usage: cargo xtask demo [--real-guests]"),
    }
}

/// Writes vmw's man pages into `--out DIR` (default `target/man` of the
/// workspace) with `vmw man`: the pages come from the binary's own clap
/// definitions, so xtask needs none of vmw-cli's code.
fn man_task(args: &[String]) -> Result<()> {
    let out = match args {
        [] => root().join("target").join("man"),
        [flag, dir] if flag == "--out" => {
            let dir = Utf8PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                // cargo runs from the workspace root; DIR is the caller's.
                let cwd = std::env::current_dir().context("the current directory")?;
                Utf8PathBuf::try_from(cwd)?.join(dir)
            }
        }
        _ => bail!("usage: cargo xtask man [--out DIR]"),
    };
    run(cargo()
        .args([
            "run",
            "--quiet",
            "--package",
            "vmw-cli",
            "--bin",
            "vmw",
            "--",
        ])
        .args(["man", "--out"])
        .arg(&out))?;
    eprintln!("xtask: man pages in {out}; read one with `man -l {out}/vmw.1`");
    Ok(())
}
