//! `cargo xtask cloud-init-tests`: cloud-init's own integration tests on a
//! `vmware` platform backed by vmw, against real guests.
//!
//! 1. The guest image of the chosen release (`--release`, trixie by
//!    default) and the version of cloud-init it holds, from its
//!    `packages.txt`.
//! 2. Debian's source package of exactly that version (`apt-get source
//!    --download-only cloud-init=VERSION` with a private apt state whose
//!    only sources are the release's `deb-src` lines), unpacked with
//!    `dpkg-source` into `target/cloud-init-tests/cloud-init-VERSION`,
//!    kept for the next run. Its files are never changed.
//! 3. A virtual environment in `target/cloud-init-tests/venv` with what
//!    the tests ask for (`integration-requirements.txt`: their pinned
//!    pycloudlib, pytest, cloud-init's own requirements), pytest-xdist to
//!    run two guests at a time, and vmw's package built from this tree.
//! 4. A vCenter simulator whose VMs boot real guests of that image, the
//!    template `TEMPLATE-cloud-init-<release>`, and pytest run from the
//!    source's root on the chosen modules, with our plugin
//!    (`crates/vmw-py/tests/cloud_init/vmw_cloud_init_platform.py`)
//!    adding the `vmware` platform and the settings
//!    `CLOUD_INIT_PLATFORM=vmware`,
//!    `CLOUD_INIT_OS_IMAGE=::debian::<release>::<version>` and
//!    `CLOUD_INIT_CLOUD_INIT_SOURCE=NONE` (the image's cloud-init is the
//!    one tested).
//! 5. The outcome of every test, from pytest's JUnit XML, summed up per
//!    module and written to `target/cloud-init-tests/results.md`.
//!
//! Without arguments the chosen set ([`CHOSEN`]) runs; `--all` runs every
//! module of the framework; other arguments are test files or node ids
//! relative to `tests/integration_tests` (`modules/test_cli.py`,
//! `cmd/test_status.py::test_status_json_errors`). `--workers N` sets how
//! many guests boot at a time (pytest-xdist workers, one module each;
//! default 2), `--release` the guest's Debian release.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::guest::Release;
use crate::{Tools, root, run};

/// The tests `cargo xtask test` runs (files, classes or single tests):
/// what vmw does, covered with the fewest guest boots. Why these, and what
/// every other module does on this platform, is in
/// `docs/cloud-init-tests.md`.
pub(crate) const CHOSEN: &[&str] = &[
    // The harness itself (no guest).
    "test_reaper.py",
    // A clean boot of the image through the VMware datasource.
    "test_defaults.py::TestDefaults::test_clean_log",
    "test_defaults.py::TestDefaults::test_var_log_cloud_init_output_not_world_readable",
    // User data: write_files (base64, gzip, binary, deferred) across a
    // restart; MIME parts run per boot, per instance and once.
    "modules/test_write_files.py",
    "test_multi_part_user_data_handling.py::test_per_freq",
    // Invalid user data and schema: the status and exit codes.
    "modules/test_cli.py::TestValidUserData",
    "modules/test_cli.py::test_invalid_userdata_schema",
    "cmd/test_status.py::test_status_json_errors",
    "cmd/test_schema.py::TestSchemaDeprecations::test_schema_deprecations",
    // Host name, users and passwords, SSH host keys.
    "modules/test_set_hostname.py::TestHostname::test_hostname_and_fqdn",
    "modules/test_set_password.py::TestPasswordUsersList",
    "modules/test_ssh_keys_provided.py",
    // cloud-init clean and a restart as a new instance; the None
    // datasource; restarts with and without a version change.
    "modules/test_jinja_templating.py::test_substitution_in_etc_cloud",
    "datasources/test_none.py",
    "modules/test_version_change.py::test_reboot_without_version_change",
];

/// Python packages of ours beside the tests' own requirements: the pytest
/// of `cargo xtask python` (theirs is only `!=7.3.2`) and pytest-xdist.
const EXTRA: &[&str] = &["pytest==8.4.2", "pytest-xdist==3.8.0"];

fn base() -> Utf8PathBuf {
    root().join("target").join("cloud-init-tests")
}

/// The options of the task.
struct Options {
    release: Release,
    workers: u32,
    all: bool,
    tests: Vec<String>,
    /// Arguments after `--`, for pytest as they are.
    pytest: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        release: Release::default(),
        workers: 2,
        all: false,
        tests: Vec::new(),
        pytest: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" => {
                options.pytest = it.by_ref().cloned().collect();
            }
            "--release" => {
                options.release = it.next().context("--release needs a release")?.parse()?;
            }
            "--workers" => {
                options.workers = it
                    .next()
                    .context("--workers needs a number")?
                    .parse()
                    .context("--workers needs a number of guests, 1 or more")?;
                if options.workers == 0 {
                    bail!("--workers needs a number of guests, 1 or more");
                }
            }
            "--all" => options.all = true,
            flag if flag.starts_with('-') => bail!(
                "unknown cloud-init-tests option {flag:?}\n\
                 usage: cargo xtask cloud-init-tests [--release R] [--workers N] [--all | TEST...] [-- PYTEST-ARGS]"
            ),
            test => options.tests.push(test.to_owned()),
        }
    }
    if options.all && !options.tests.is_empty() {
        bail!("--all runs every module; name tests or give --all, not both");
    }
    Ok(options)
}

/// `cargo xtask cloud-init-tests`; `built` says that vmw's wheel was
/// just built from this tree (by `cargo xtask python`), else it is built.
pub(crate) fn task(tools: &Tools, args: &[String], built: bool) -> Result<()> {
    let options = parse(args)?;
    let image = crate::guest::for_real_guests(options.release)?;
    let version = cloud_init_version(image.dir())?;
    let source = source(options.release, &version)?;
    let python = environment(&source, built)?;
    let tests: Vec<String> = if options.all {
        vec!["tests/integration_tests".to_owned()]
    } else if options.tests.is_empty() {
        CHOSEN
            .iter()
            .map(|t| format!("tests/integration_tests/{t}"))
            .collect()
    } else {
        options
            .tests
            .iter()
            .map(|t| format!("tests/integration_tests/{t}"))
            .collect()
    };
    let started = Instant::now();
    let junit = base().join("junit.xml");
    let outcome = run_tests(
        tools,
        &python,
        &source,
        image.dir(),
        &options,
        &tests,
        &junit,
    );
    let took = started.elapsed().as_secs_f64();
    let summary = match std::fs::read_to_string(&junit) {
        Ok(xml) => {
            let results = Results::from_junit(&xml);
            let table = results.table(&version, options.release, took);
            std::fs::write(base().join("results.md"), &table)?;
            eprintln!("{table}");
            Some(results)
        }
        Err(_) => None,
    };
    eprintln!("xtask: cloud-init {version}'s integration tests: {took:.0} s");
    outcome?;
    match summary {
        Some(r) if r.failed() == 0 && r.total() > 0 => Ok(()),
        Some(r) if r.total() == 0 => bail!("no cloud-init integration test ran"),
        Some(r) => bail!("{} of cloud-init's integration tests failed", r.failed()),
        None => bail!("pytest left no report in {junit}"),
    }
}

/// The version of cloud-init in the image, from its `packages.txt`.
fn cloud_init_version(image: &Utf8Path) -> Result<String> {
    let list = image.join("packages.txt");
    std::fs::read_to_string(&list)
        .with_context(|| format!("reading {list}"))?
        .lines()
        .find_map(|l| l.strip_prefix("cloud-init ").map(str::to_owned))
        .with_context(|| format!("{list} lists no cloud-init"))
}

/// cloud-init's Debian source package of `version`, unpacked (and kept);
/// its root directory.
fn source(release: Release, version: &str) -> Result<Utf8PathBuf> {
    let upstream = version.split('-').next().unwrap_or(version);
    let dir = base().join(format!("cloud-init-{version}"));
    if dir.join("tests/integration_tests/conftest.py").is_file() {
        eprintln!("xtask: cloud-init {version}'s source is in {dir}");
        return Ok(dir);
    }
    crate::install_missing(
        "unpacking Debian source packages",
        &[("/usr/bin/dpkg-source", "dpkg-dev")],
    )?;
    let apt = tempfile::Builder::new().prefix("vmw-apt-").tempdir()?;
    let apt_dir = Utf8Path::from_path(apt.path())
        .context("the temporary directory is not UTF-8")?
        .to_owned();
    for d in ["lists/partial", "cache/archives/partial", "download"] {
        std::fs::create_dir_all(apt_dir.join(d))?;
    }
    let suite = release.suite();
    std::fs::write(
        apt_dir.join("sources.list"),
        format!(
            "deb-src http://deb.debian.org/debian {suite} main\n\
             deb-src http://deb.debian.org/debian {suite}-updates main\n\
             deb-src http://deb.debian.org/debian-security {suite}-security main\n"
        ),
    )?;
    // apt's own state of the machine is left alone: lists, cache and
    // sources are the temporary directory's.
    let private = |cmd: &mut Command| {
        cmd.args([
            "-q",
            "-o",
            &format!("Dir::Etc::SourceList={apt_dir}/sources.list"),
            "-o",
            "Dir::Etc::SourceParts=/nonexistent",
            "-o",
            &format!("Dir::State::Lists={apt_dir}/lists"),
            "-o",
            &format!("Dir::Cache={apt_dir}/cache"),
            "-o",
            "Debug::NoLocking=1",
        ])
        .stdout(std::io::stderr());
    };
    let mut update = Command::new("apt-get");
    private(&mut update);
    run(update.arg("update"))?;
    let download = apt_dir.join("download");
    let mut fetch = Command::new("apt-get");
    private(&mut fetch);
    run(fetch.current_dir(&download).args([
        "source",
        "--download-only",
        &format!("cloud-init={version}"),
    ]))?;
    let dsc = format!(
        "cloud-init_{}.dsc",
        version.split_once(':').map_or(version, |v| v.1)
    );
    let unpacking = base().join(format!(".cloud-init-{version}"));
    if unpacking.exists() {
        std::fs::remove_dir_all(&unpacking)?;
    }
    std::fs::create_dir_all(base())?;
    run(Command::new("dpkg-source")
        .current_dir(&download)
        .args(["--no-check", "-x", &dsc, unpacking.as_str()])
        .stdout(std::io::stderr()))?;
    if !unpacking
        .join("tests/integration_tests/conftest.py")
        .is_file()
    {
        bail!("cloud-init {upstream}'s source has no tests/integration_tests");
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::rename(&unpacking, &dir)?;
    eprintln!("xtask: cloud-init {version}'s source unpacked into {dir}");
    Ok(dir)
}

/// The environment of the tests: their requirements, pytest-xdist, and
/// vmw's package from this tree; its interpreter.
fn environment(source: &Utf8Path, built: bool) -> Result<Utf8PathBuf> {
    if !built {
        // Builds vmw's wheel (and the environment of `cargo xtask python`).
        crate::python::environment()?;
    }
    let wheel = crate::python::wheel_path()?;
    let requirements = source.join("integration-requirements.txt");
    let requirements = requirements.as_str();
    let mut packages = vec!["-r", requirements];
    packages.extend(EXTRA);
    let python = crate::python::venv(&base().join("venv"), &packages)?;
    crate::python::install_wheel(&python, &wheel)?;
    Ok(python)
}

/// pytest on `tests` in cloud-init's source, against a bed of real guests
/// of `image`; the outcome of each test goes to `junit`.
fn run_tests(
    tools: &Tools,
    python: &Utf8Path,
    source: &Utf8Path,
    image: &Utf8Path,
    options: &Options,
    tests: &[String],
    junit: &Utf8Path,
) -> Result<()> {
    let (release, workers) = (options.release, options.workers);
    if junit.exists() {
        std::fs::remove_file(junit)?;
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (_tmp, dir, home) = crate::python::workdir("vmw-cloud-init-")?;
        let bed = crate::vcsim::bed(&[(release, image)]).await?;
        let config = bed.sim.write_config(&dir)?;
        let logs = base().join("logs");
        let plugin = root().join("crates/vmw-py/tests/cloud_init");
        let mut pytest = crate::python::pytest(python, &home, &config, tools);
        pytest
            .current_dir(source)
            .args(["-p", "vmw_cloud_init_platform", "-rfEs", "--durations=0"])
            // A module that cannot be imported here (some compare the
            // release with Ubuntu's at import) is reported, not fatal.
            .arg("--continue-on-collection-errors")
            .arg(format!("--junitxml={junit}"))
            .args(["-o", "junit_family=xunit1"]);
        if workers > 1 {
            pytest.args(["-n", &workers.to_string(), "--dist", "loadfile"]);
        }
        let status = pytest
            .args(tests)
            .args(&options.pytest)
            .env("PYTHONPATH", format!("{plugin}:{source}"))
            .env("CLOUD_INIT_PLATFORM", "vmware")
            .env(
                "CLOUD_INIT_OS_IMAGE",
                format!("::debian::{release}::{}", release.version()),
            )
            .env("CLOUD_INIT_CLOUD_INIT_SOURCE", "NONE")
            // The framework's one path through a snapshot with the image's
            // own cloud-init: a first instance gets their profiling script
            // (which finds nothing to change in cloud-init 25.1's units)
            // and is snapshotted, every test launches from that image, and
            // the image is deleted at the end.
            .env("CLOUD_INIT_INCLUDE_PROFILE", "1")
            .env("CLOUD_INIT_LOCAL_LOG_PATH", logs.as_str())
            .env("VMW_SSH_USER", "debian")
            .env("VMW_SSH_PORT", bed.ssh_port.to_string())
            .status()
            .context("could not start pytest")?;
        drop(bed);
        if !status.success() {
            eprintln!("xtask: pytest ended with {status}");
        }
        Ok(())
    })
}

/// The outcome of one test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Passed,
    Skipped,
    Failed,
}

/// Every test's outcome, by module.
#[derive(Debug, Default)]
struct Results {
    /// module → (test, outcome, the reason of a skip or failure).
    modules: BTreeMap<String, Vec<(String, Outcome, String)>>,
}

impl Results {
    /// Reads pytest's JUnit XML (xunit1): one `<testcase>` per test, with
    /// a `<skipped>`, `<failure>` or `<error>` child when it did not pass.
    fn from_junit(xml: &str) -> Self {
        let mut results = Results::default();
        for case in xml.split("<testcase ").skip(1) {
            let (head, body) = case.split_once('>').unwrap_or((case, ""));
            let file = attribute(head, "file")
                .or_else(|| attribute(head, "classname").map(|c| c.replace('.', "/") + ".py"))
                .unwrap_or_default();
            let module = file
                .strip_prefix("tests/integration_tests/")
                .unwrap_or(&file)
                .to_owned();
            let name = attribute(head, "name").unwrap_or_default();
            let body = if head.ends_with('/') {
                ""
            } else {
                body.split("</testcase>").next().unwrap_or("")
            };
            let child = |tag: &str| {
                body.find(&format!("<{tag}"))
                    .map(|at| attribute(&body[at..], "message").unwrap_or_default())
            };
            let (outcome, reason) = if let Some(m) = child("skipped") {
                (Outcome::Skipped, m)
            } else if let Some(m) = child("failure").or_else(|| child("error")) {
                (Outcome::Failed, m)
            } else {
                (Outcome::Passed, String::new())
            };
            results
                .modules
                .entry(module)
                .or_default()
                .push((name, outcome, reason));
        }
        results
    }

    fn count(&self, wanted: Outcome) -> usize {
        self.modules
            .values()
            .flatten()
            .filter(|(_, o, _)| *o == wanted)
            .count()
    }

    fn failed(&self) -> usize {
        self.count(Outcome::Failed)
    }

    fn total(&self) -> usize {
        self.modules.values().map(Vec::len).sum()
    }

    /// The results as Markdown: a line per module, then every test that
    /// did not pass with its reason.
    fn table(&self, version: &str, release: Release, seconds: f64) -> String {
        let mut out = format!(
            "# cloud-init {version} integration tests on vmw (Debian {release})\n\n\
             {} passed, {} skipped, {} failed in {seconds:.0} s\n\n\
             | module | passed | skipped | failed |\n|---|---|---|---|\n",
            self.count(Outcome::Passed),
            self.count(Outcome::Skipped),
            self.failed(),
        );
        for (module, tests) in &self.modules {
            let n = |o: Outcome| tests.iter().filter(|(_, t, _)| *t == o).count();
            out.push_str(&format!(
                "| {module} | {} | {} | {} |\n",
                n(Outcome::Passed),
                n(Outcome::Skipped),
                n(Outcome::Failed)
            ));
        }
        let mut notes = String::new();
        for (module, tests) in &self.modules {
            for (name, outcome, reason) in tests {
                if *outcome != Outcome::Passed {
                    let first = reason.lines().next().unwrap_or_default();
                    notes.push_str(&format!("- {outcome:?}: {module}::{name}: {first}\n"));
                }
            }
        }
        if !notes.is_empty() {
            out.push('\n');
            out.push_str(&notes);
        }
        out
    }
}

/// The value of `name="..."` in an XML tag's text, unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + tag[start..].find('"')?;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#10;", "\n")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_results_are_summed_up_by_module_with_reasons() {
        let xml = r#"<?xml version="1.0"?><testsuites><testsuite name="pytest">
<testcase classname="tests.integration_tests.modules.test_cli" name="test_a" file="tests/integration_tests/modules/test_cli.py" time="1.0" />
<testcase classname="tests.integration_tests.modules.test_cli" name="test_b" file="tests/integration_tests/modules/test_cli.py" time="1.0"><skipped type="pytest.skip" message="Not supported on &quot;vmware&quot;">x</skipped></testcase>
<testcase classname="tests.integration_tests.cmd.test_status" name="test_c" file="tests/integration_tests/cmd/test_status.py" time="2.0"><failure message="assert 1 == 2&#10;more">trace</failure></testcase>
</testsuite></testsuites>"#;
        let r = Results::from_junit(xml);
        assert_eq!(r.total(), 3);
        assert_eq!(r.failed(), 1);
        assert_eq!(r.count(Outcome::Skipped), 1);
        let table = r.table("25.1.4-1", Release::Trixie, 12.0);
        assert!(
            table.contains("| modules/test_cli.py | 1 | 1 | 0 |"),
            "{table}"
        );
        assert!(
            table.contains("| cmd/test_status.py | 0 | 0 | 1 |"),
            "{table}"
        );
        assert!(
            table.contains("- Skipped: modules/test_cli.py::test_b: Not supported on \"vmware\""),
            "{table}"
        );
        assert!(
            table.contains("- Failed: cmd/test_status.py::test_c: assert 1 == 2\n"),
            "{table}"
        );
    }

    #[test]
    fn options_name_tests_or_all_never_both() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let o = parse(&args(&["--workers", "1", "modules/test_cli.py"])).unwrap();
        assert_eq!((o.workers, o.tests.len(), o.all), (1, 1, false));
        assert!(parse(&args(&["--all", "modules/test_cli.py"])).is_err());
        assert!(parse(&args(&["--workers", "0"])).is_err());
        assert!(parse(&args(&["--bogus"])).is_err());
        let o = parse(&args(&["--all", "--", "--deselect", "x.py", "-x"])).unwrap();
        assert_eq!(o.pytest, args(&["--deselect", "x.py", "-x"]));
        assert_eq!(
            parse(&args(&["--release", "bookworm"])).unwrap().release,
            Release::Bookworm
        );
    }
}
