//! `cargo xtask python`: vmw's Python package, built and checked.
//!
//! 1. A virtual environment in `target/python/venv` (Debian's python3;
//!    `python3-venv` installed with apt-get when missing), with the package
//!    installed from this tree the way the README says (`pip install
//!    ./crates/vmw-py`, built by maturin; a dev build here, so the
//!    workspace's compiled crates are reused), and pytest, ruff and mypy.
//! 2. ruff (lint and format) and mypy (strict) on the package's Python
//!    files and stubs.
//! 3. The pytest suite of `crates/vmw-py/tests` against a vCenter
//!    simulator whose VMs report 127.0.0.1 and whose "guests" are the SSH
//!    test peer (with its cloud-init stand-in): the package is used as a
//!    user uses it, through `PYCLOUDLIB_CONFIG`, `VMW_GOVC`,
//!    `VMW_SSH_USER` and `VMW_SSH_PORT`, in a home of its own.
//! 4. pycloudlib's own public-API test, `test_public_api[vmware]`, taken
//!    unchanged from pycloudlib 1!11.1.10's sdist on PyPI (downloaded now,
//!    cached in `target/python`), in a second environment with that
//!    pycloudlib installed: a plugin of ours
//!    (`crates/vmw-py/tests/peer/vmw_as_pycloudlib.py`) binds
//!    `pycloudlib.VMWare` to `vmw.VMWare` before the test is collected, and
//!    the simulator's VMs are real Debian guests under QEMU, whose
//!    templates are named as the test asks (`noble`, the newest LTS it
//!    knows; `stonking`, the newest release of its map, only named).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use vmw_testbed::sshd::CloudInitMode;
use vmw_testbed::{AgentOptions, GuestImage, RealGuestOptions, RealGuests, Sshd, Vcsim};

use crate::{DEBIAN_PYTHON, Tools, apt_get, is_root, root, run};

/// The Python tools of the checks, pinned.
const PYTHON_TOOLS: &[&str] = &["pytest==8.4.2", "ruff==0.14.5", "mypy==1.18.2"];

/// Where the environment lives.
fn venv_dir() -> Utf8PathBuf {
    root().join("target").join("python").join("venv")
}

/// Makes sure Debian's python3 can make virtual environments.
fn venv_support() -> Result<()> {
    let works = Command::new(DEBIAN_PYTHON)
        .args(["-c", "import ensurepip, venv"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if works {
        return Ok(());
    }
    if !is_root() {
        bail!("python3-venv is missing\nhint: as root, run `apt-get install -y python3-venv`");
    }
    apt_get(&["update", "-qq"])?;
    apt_get(&[
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "python3-venv",
    ])
}

/// The interpreter of the environment at `dir`, made if needed, with
/// `packages` installed.
pub(crate) fn venv(dir: &Utf8Path, packages: &[&str]) -> Result<Utf8PathBuf> {
    let python = dir.join("bin/python");
    if !python.is_file() {
        run(Command::new(DEBIAN_PYTHON).args(["-m", "venv", dir.as_str()]))?;
        run(Command::new(&python).args(["-m", "pip", "install", "-q", "--upgrade", "pip"]))?;
    }
    run(Command::new(&python)
        .args(["-m", "pip", "install", "-q"])
        .args(packages))?;
    Ok(python)
}

/// The package's wheel, built from this tree as the README's `pip install
/// ./crates/vmw-py` builds it (a dev build here, which reuses the
/// workspace's compiled crates).
fn wheel(python: &Utf8Path) -> Result<Utf8PathBuf> {
    let out = root().join("target/python/wheels");
    if out.is_dir() {
        std::fs::remove_dir_all(&out)?;
    }
    run(Command::new(python)
        .current_dir(root())
        .args([
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            out.as_str(),
            "./crates/vmw-py",
        ])
        .env("MATURIN_PEP517_ARGS", "--profile dev"))?;
    let mut found = std::fs::read_dir(&out)?
        .filter_map(|e| Utf8PathBuf::from_path_buf(e.ok()?.path()).ok())
        .filter(|p| p.extension() == Some("whl"));
    found.next().context("pip wheel made no wheel")
}

/// The wheel [`wheel`] built last.
pub(crate) fn wheel_path() -> Result<Utf8PathBuf> {
    let out = root().join("target/python/wheels");
    let mut found = std::fs::read_dir(&out)?
        .filter_map(|e| Utf8PathBuf::from_path_buf(e.ok()?.path()).ok())
        .filter(|p| p.extension() == Some("whl"));
    found.next().context("no wheel built")
}

/// Installs `wheel` (again) into the environment of `python`.
pub(crate) fn install_wheel(python: &Utf8Path, wheel: &Utf8Path) -> Result<()> {
    run(Command::new(python).args([
        "-m",
        "pip",
        "install",
        "-q",
        "--force-reinstall",
        "--no-deps",
        wheel.as_str(),
    ]))
}

/// ruff and mypy on the package's Python side.
fn lint(python: &Utf8Path) -> Result<()> {
    let package = root().join("crates/vmw-py");
    run(Command::new(python)
        .current_dir(&package)
        .args(["-m", "ruff", "check", "python", "tests"]))?;
    run(Command::new(python)
        .current_dir(&package)
        .args(["-m", "ruff", "format", "--check", "python", "tests"]))?;
    run(Command::new(python)
        .current_dir(&package)
        .args(["-m", "mypy", "python/vmw", "tests"]))?;
    Ok(())
}

/// A temporary directory with a `home` in it: (the directory's guard, its
/// path, the home).
pub(crate) fn workdir(prefix: &str) -> Result<(tempfile::TempDir, Utf8PathBuf, Utf8PathBuf)> {
    let tmp = tempfile::Builder::new().prefix(prefix).tempdir()?;
    let dir = Utf8Path::from_path(tmp.path())
        .context("the temporary directory is not UTF-8")?
        .to_owned();
    let home = dir.join("home");
    std::fs::create_dir_all(&home)?;
    Ok((tmp, dir, home))
}

/// pytest in the environment of `python`, as a user of vmw runs it: a
/// home of its own, the configuration in `PYCLOUDLIB_CONFIG`, vmw's govc,
/// and nothing else of this process's environment but `PATH`.
pub(crate) fn pytest(
    python: &Utf8Path,
    home: &Utf8Path,
    config: &Utf8Path,
    tools: &Tools,
) -> Command {
    let mut c = Command::new(python);
    c.args(["-m", "pytest", "-p", "no:cacheprovider"])
        .env_clear()
        .env("HOME", home)
        .env("USER", "vmw")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYCLOUDLIB_CONFIG", config)
        .env("VMW_GOVC", &tools.govc);
    c
}

/// The pytest suite against a simulator, the SSH peer playing the guests.
fn suite(python: &Utf8Path, tools: &Tools) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (_tmp, dir, home) = workdir("vmw-python-")?;
        let sim = Vcsim::start().await?;
        let _agent = sim.guest_agent(AgentOptions::default());
        let sshd = Sshd::start()?;
        sshd.set_cloud_init(Duration::from_millis(300), CloudInitMode::Done)?;
        // The key vmw makes for a user without one, made now so the peer
        // takes it.
        let key = vmw_cloud::KeyPair::generated_in(&home.join(".cache/vmw/ssh"), "py".into())?;
        sshd.authorize(&std::fs::read_to_string(&key.public_path)?)?;
        let config_file = sim.write_config(&dir)?;
        let status = pytest(python, &home, &config_file, tools)
            .current_dir(root().join("crates/vmw-py"))
            .args(["-q", "tests"])
            .env("VMW_SSH_USER", sshd.user())
            .env("VMW_SSH_PORT", sshd.port().to_string())
            .env("VMW_TEST_CLOUD_INIT_CONTROL", sshd.cloud_init_control())
            .status()
            .context("could not start pytest")?;
        drop(sshd);
        drop(sim);
        if !status.success() {
            bail!("the Python suite failed ({status})");
        }
        Ok(())
    })
}

/// The pycloudlib release whose public-API test vmw passes.
const PYCLOUDLIB: &str = "pycloudlib==1!11.1.10";

/// pycloudlib's sdist, downloaded once, unpacked; its root directory.
fn pycloudlib_source(python: &Utf8Path) -> Result<Utf8PathBuf> {
    let base = root().join("target/python/pycloudlib-sdist");
    let unpacked = base.join("pycloudlib-1!11.1.10");
    if unpacked
        .join("tests/integration_tests/test_public_api.py")
        .is_file()
    {
        return Ok(unpacked);
    }
    std::fs::create_dir_all(&base)?;
    run(Command::new(python).args([
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--no-binary",
        ":all:",
        PYCLOUDLIB,
        "-d",
        base.as_str(),
    ]))?;
    run(Command::new("tar")
        .current_dir(&base)
        .args(["xzf", "pycloudlib-1!11.1.10.tar.gz"]))?;
    Ok(unpacked)
}

/// pycloudlib's `test_public_api[vmware]` on real guests, through vmw.
fn pycloudlib_public_api(python: &Utf8Path, tools: &Tools, image: &Utf8Path) -> Result<()> {
    let source = pycloudlib_source(python)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (_tmp, dir, home) = workdir("vmw-pycloudlib-")?;
        let sim = Vcsim::start().await?;
        sim.add_templates(&["TEMPLATE-cloud-init-noble", "TEMPLATE-cloud-init-stonking"])
            .await?;
        let options = RealGuestOptions::new(GuestImage::from_dir(image)?);
        let port = options.ssh_port;
        let guests = RealGuests::start(sim.govc(), options)?;
        let config_file = sim.write_config(&dir)?;
        let plugins = root().join("crates/vmw-py/tests/peer");
        let started = std::time::Instant::now();
        let status = pytest(python, &home, &config_file, tools)
            .current_dir(&source)
            .args([
                "-p",
                "vmw_as_pycloudlib",
                "-v",
                "tests/integration_tests/test_public_api.py",
                "-k",
                "vmware",
            ])
            .env("PYTHONPATH", &plugins)
            .env("VMW_SSH_USER", "debian")
            .env("VMW_SSH_PORT", port.to_string())
            .status()
            .context("could not start pytest")?;
        eprintln!(
            "xtask: pycloudlib's test_public_api[vmware]: {:.0} s",
            started.elapsed().as_secs_f64()
        );
        drop(guests);
        drop(sim);
        if !status.success() {
            bail!("pycloudlib's public-API test failed through vmw ({status})");
        }
        Ok(())
    })
}

/// The interpreter of `target/python/venv`, with the package built from
/// this tree installed (for the bench).
pub(crate) fn environment() -> Result<Utf8PathBuf> {
    venv_support()?;
    let python = venv(&venv_dir(), PYTHON_TOOLS)?;
    let built = wheel(&python)?;
    install_wheel(&python, &built)?;
    Ok(python)
}

/// `cargo xtask python`; pycloudlib's test runs when there is a guest
/// `image` for it.
pub(crate) fn task(tools: &Tools, image: Option<&Utf8Path>) -> Result<()> {
    let python = environment()?;
    let built = wheel_path()?;
    lint(&python)?;
    suite(&python, tools)?;
    eprintln!("xtask: the Python package passed ruff, mypy and its suite");
    let Some(image) = image else {
        return Ok(());
    };
    let peer = venv(
        &root().join("target/python/pycloudlib-venv"),
        &[PYCLOUDLIB, "pytest==8.4.2", "pytest-mock==3.15.1"],
    )?;
    install_wheel(&peer, &built)?;
    pycloudlib_public_api(&peer, tools, image)?;
    eprintln!("xtask: pycloudlib's public-API test passed on real guests through vmw");
    Ok(())
}
