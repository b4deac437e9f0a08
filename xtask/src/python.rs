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

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use vmw_testbed::sshd::CloudInitMode;
use vmw_testbed::{AgentOptions, Sshd, Vcsim};

use crate::{DEBIAN_PYTHON, Tools, apt_get, is_root, root, run};

/// The Python tools of the checks, pinned.
const PYTHON_TOOLS: &[&str] = &["pytest==8.4.2", "ruff==0.14.5", "mypy==1.18.2"];

/// Where the environment lives.
fn venv_dir() -> Utf8PathBuf {
    root().join("target").join("python").join("venv")
}

/// The environment's interpreter, made (and the package installed) now.
pub(crate) fn environment() -> Result<Utf8PathBuf> {
    if !Command::new(DEBIAN_PYTHON)
        .args(["-c", "import ensurepip, venv"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
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
        ])?;
    }
    let venv = venv_dir();
    let python = venv.join("bin/python");
    if !python.is_file() {
        run(Command::new(DEBIAN_PYTHON).args(["-m", "venv", venv.as_str()]))?;
    }
    run(Command::new(&python).args(["-m", "pip", "install", "-q", "--upgrade", "pip"]))?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "-q"])
        .args(PYTHON_TOOLS))?;
    // The README's install command; a dev build reuses the workspace's
    // compiled crates.
    run(Command::new(&python)
        .current_dir(root())
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--force-reinstall",
            "--no-deps",
            "./crates/vmw-py",
        ])
        .env("MATURIN_PEP517_ARGS", "--profile dev"))?;
    Ok(python)
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

/// The pytest suite against a simulator, the SSH peer playing the guests.
fn suite(python: &Utf8Path, tools: &Tools) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let tmp = tempfile::Builder::new().prefix("vmw-python-").tempdir()?;
        let dir = Utf8Path::from_path(tmp.path())
            .context("the temporary directory is not UTF-8")?
            .to_owned();
        let home = dir.join("home");
        std::fs::create_dir_all(&home)?;
        let sim = Vcsim::start().await?;
        let _agent = sim.guest_agent(AgentOptions::default());
        let sshd = Sshd::start()?;
        sshd.set_cloud_init(Duration::from_millis(300), CloudInitMode::Done)?;
        // The key vmw makes for a user without one, made now so the peer
        // takes it.
        let key = vmw_cloud::KeyPair::generated_in(&home.join(".cache/vmw/ssh"), "py".into())?;
        sshd.authorize(&std::fs::read_to_string(&key.public_path)?)?;
        let config_file = sim.write_config(&dir)?;
        let status = Command::new(python)
            .current_dir(root().join("crates/vmw-py"))
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
            .env_clear()
            .env("HOME", &home)
            .env("USER", "py")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PYCLOUDLIB_CONFIG", &config_file)
            .env("VMW_GOVC", &tools.govc)
            .env("VMW_SSH_USER", sshd.user())
            .env("VMW_SSH_PORT", sshd.port().to_string())
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

/// `cargo xtask python`.
pub(crate) fn task(tools: &Tools) -> Result<()> {
    let python = environment()?;
    lint(&python)?;
    suite(&python, tools)?;
    eprintln!("xtask: the Python package passed ruff, mypy and its suite");
    Ok(())
}
