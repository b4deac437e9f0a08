//! The cloud layer against a scripted govc: the exact command line of every
//! step, a failure injected at each step of launch, snapshot and delete (with
//! the rollback calls and the errors returned), idempotent power and
//! deletion, cleanup, and names and ordering under concurrent launches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmw_cloud::{
    Cloud, CloudBuilder, CloudError, Image, KeyPair, LaunchOptions, Settings, Step, WaitStage,
};
use vmw_config::{Secret, VmwareConfig};
use vmw_govc::{Command, ErrorKind, Govc, GovcError, MockGovc, Output};

const FOLDER: &str = "/DC0/vm";
const POOL: &str = "/DC0/host/DC0_C0/Resources";
const IMAGE: &str = "TEMPLATE-cloud-init-jammy";
const ANNOTATION_INSTANCE: &str = "-annotation=made by vmw (tag: me, kind: instance)";
const ANNOTATION_IMAGE: &str = "-annotation=made by vmw (tag: me, kind: image)";

const STDERR_AMBIGUOUS_POOL: &str =
    include_str!("../../vmw-govc/tests/fixtures/stderr_ambiguous_pool.txt");
const STDERR_DUPLICATE: &str =
    include_str!("../../vmw-govc/tests/fixtures/stderr_duplicate_name.txt");
const STDERR_INVALID_POWER: &str =
    include_str!("../../vmw-govc/tests/fixtures/stderr_invalid_power_state.txt");
const FIND_POOLS: &str = include_str!("../../vmw-govc/tests/fixtures/find_pools.txt");
const VM_INFO: &str = include_str!("../../vmw-govc/tests/fixtures/vm_info.json");
const VM_INFO_NONE: &str = include_str!("../../vmw-govc/tests/fixtures/vm_info_none.json");

/// A vSphere error that is none of the kinds vmw treats specially.
const STDERR_OTHER: &str =
    "govc: ServerFaultCode: Permission to perform this operation was denied.";

type Answer = Result<Output, GovcError>;

// ---------------------------------------------------------------------------
// Building clouds
// ---------------------------------------------------------------------------

fn config() -> VmwareConfig {
    VmwareConfig {
        server: "vc.example".to_owned(),
        username: "user".to_owned(),
        password: Secret::new("pw"),
        datacenter: "DC0".to_owned(),
        datastore: "LocalDS_0".to_owned(),
        folder: FOLDER.to_owned(),
        insecure_transport: false,
        resource_pool: Some(POOL.to_owned()),
        network: None,
        public_key_path: None,
        private_key_path: None,
        key_name: None,
    }
}

fn settings(concurrency: usize) -> Settings {
    Settings {
        concurrency,
        ip_wait: Duration::from_secs(2),
        ip_poll: Duration::from_millis(10),
        // Source checks have a test of their own.
        check_sources: false,
        ..Settings::default()
    }
}

/// A cloud tagged `me` on `govc`; the returned directory holds its key pair
/// and must outlive the cloud.
fn cloud_with<G: Govc>(govc: G, cfg: VmwareConfig, s: Settings) -> (Cloud<G>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = camino::Utf8Path::from_path(dir.path()).unwrap().join("ssh");
    let key = KeyPair::generated_in(&path, "me".into()).unwrap();
    let cloud = CloudBuilder::new("me")
        .timestamp(false)
        .config(cfg)
        .key_pair(key)
        .settings(s)
        .build_with(govc)
        .unwrap();
    (cloud, dir)
}

fn new_cloud<G: Govc>(govc: G) -> (Cloud<G>, tempfile::TempDir) {
    cloud_with(govc, config(), settings(4))
}

// ---------------------------------------------------------------------------
// A scripted govc: every call is logged, then answered by a closure
// ---------------------------------------------------------------------------

/// The argv of every govc call, in the order they were made.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Vec<String>>>>);

impl Calls {
    fn push(&self, c: &Command) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c.argv());
    }

    fn all(&self) -> Vec<Vec<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The subcommand of each call.
    fn names(&self) -> Vec<String> {
        self.all().into_iter().map(|a| a[0].clone()).collect()
    }

    fn len(&self) -> usize {
        self.all().len()
    }

    /// The calls made after the first `n`.
    fn since(&self, n: usize) -> Vec<Vec<String>> {
        self.all().split_off(n)
    }
}

/// A mock answering every call with `answer`, and the log of its calls.
fn scripted<F>(answer: F) -> (MockGovc, Calls)
where
    F: FnMut(&Command) -> Answer + Send + 'static,
{
    let calls = Calls::default();
    let log = calls.clone();
    let mut answer = answer;
    let mut mock = MockGovc::new();
    mock.expect_run().returning(move |c| {
        log.push(c);
        answer(c)
    });
    (mock, calls)
}

/// A mock that fails the test on any call.
fn silent() -> MockGovc {
    let mut mock = MockGovc::new();
    mock.expect_run().times(0);
    mock
}

fn ok() -> Answer {
    Ok(Output::default())
}

fn out(stdout: &str) -> Answer {
    Ok(Output::stdout(stdout))
}

fn fail(c: &Command, stderr: &str) -> Answer {
    Err(GovcError::failed(c.clone(), Some(1), stderr))
}

fn vm_not_found(c: &Command) -> Answer {
    let name = c.positional().first().cloned().unwrap_or_default();
    fail(c, &format!("govc: vm '{name}' not found\n"))
}

fn killed(c: &Command) -> Answer {
    Err(GovcError::Timeout {
        command: Box::new(c.clone()),
        after: Duration::from_secs(3600),
    })
}

fn power_state_json(state: &str) -> String {
    format!(r#"[{{"name":"runtime.powerState","op":"assign","val":"{state}"}}]"#)
}

/// What a healthy vCenter answers.
fn happy(c: &Command) -> Answer {
    match c.name() {
        "vm.clone" | "vm.change" | "vm.power" | "vm.destroy" => ok(),
        "vm.ip" => out("10.0.0.10\n"),
        "object.collect" => out(&power_state_json("poweredOn")),
        "vm.info" => out(VM_INFO),
        _ => panic!("unexpected govc call: {c}"),
    }
}

fn sv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The `vm.clone` argv of a launch from `source` (a name in the folder).
fn clone_argv(source: &str, name: &str, hardware: &[&str], linked: bool) -> Vec<String> {
    let mut v = sv(&[
        "vm.clone",
        &format!("-vm={FOLDER}/{source}"),
        "-on=false",
        "-ds=LocalDS_0",
        &format!("-pool={POOL}"),
        &format!("-folder={FOLDER}"),
        ANNOTATION_INSTANCE,
    ]);
    v.extend(sv(hardware));
    v.push(format!("-link={linked}"));
    v.push("--".to_owned());
    v.push(name.to_owned());
    v
}

fn power_on_argv(name: &str) -> Vec<String> {
    sv(&["vm.power", "-on=true", "--", name])
}

fn destroy_argv(name: &str) -> Vec<String> {
    sv(&["vm.destroy", "--", name])
}

/// The `-wait` of a `vm.ip` argv, as a duration.
fn ip_wait_of(argv: &[String]) -> Duration {
    assert_eq!(argv[0], "vm.ip");
    let v = argv[1]
        .strip_prefix("-wait=")
        .unwrap_or_else(|| panic!("no -wait in {argv:?}"));
    if let Some(ms) = v.strip_suffix("ms") {
        Duration::from_millis(ms.parse().unwrap())
    } else {
        Duration::from_secs(v.strip_suffix('s').unwrap().parse().unwrap())
    }
}

fn options(name: &str, wait: WaitStage) -> LaunchOptions {
    LaunchOptions {
        name: Some(name.to_owned()),
        wait,
        ..LaunchOptions::default()
    }
}

/// The number in a generated name `me-<n>`.
fn number_of(name: &str) -> u64 {
    name.strip_prefix("me-")
        .unwrap_or_else(|| panic!("{name} is not me-<n>"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not me-<n>"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A guestinfo file passed with `vm.change -f`, as seen during the call.
#[derive(Clone, Debug)]
struct SeenFile {
    key: String,
    path: String,
    mode: u32,
    contents: String,
}

/// Reads the files of every `-f=key=path` of a `vm.change` while it runs.
fn read_guestinfo_files(c: &Command) -> Vec<SeenFile> {
    c.argv()
        .iter()
        .filter_map(|a| a.strip_prefix("-f="))
        .map(|kv| {
            let (key, path) = kv.split_once('=').unwrap();
            let meta = std::fs::metadata(path)
                .unwrap_or_else(|e| panic!("{path} must exist during vm.change: {e}"));
            SeenFile {
                key: key.to_owned(),
                path: path.to_owned(),
                mode: meta.permissions().mode() & 0o777,
                contents: std::fs::read_to_string(path).unwrap(),
            }
        })
        .collect()
}

fn yaml(bytes: &[u8]) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_slice(bytes).unwrap()
}

// ---------------------------------------------------------------------------
// A govc wrapper that makes every call take time, so launches overlap
// ---------------------------------------------------------------------------

/// Delays each call (by a pseudo-random amount derived from the VM name, so
/// that calls finish out of order) and measures how many run at once.
struct Slow<G> {
    inner: G,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

impl<G> Slow<G> {
    fn new(inner: G) -> Self {
        Self {
            inner,
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    fn delay(command: &Command) -> Duration {
        let seed: u64 = command
            .argv()
            .last()
            .map(|s| {
                s.bytes()
                    .fold(7_u64, |h, b| h.wrapping_mul(31) ^ u64::from(b))
            })
            .unwrap_or_default();
        Duration::from_millis(1 + seed % 13)
    }
}

impl<G: Govc> Govc for Slow<G> {
    fn run<'a, 'b, 'f>(
        &'a self,
        command: &'b Command,
    ) -> Pin<Box<dyn Future<Output = Answer> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Self::delay(command)).await;
            let answer = self.inner.run(command).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            answer
        })
    }
}

// ---------------------------------------------------------------------------
// 1. Launch: the exact command lines
// ---------------------------------------------------------------------------

#[tokio::test]
async fn launch_runs_clone_one_change_power_on_and_ip_with_exact_argv() {
    let seen: Arc<Mutex<Vec<SeenFile>>> = Arc::default();
    let seen_in_mock = seen.clone();
    let (mock, calls) = scripted(move |c| {
        if c.name() == "vm.change" {
            seen_in_mock.lock().unwrap().extend(read_guestinfo_files(c));
        }
        happy(c)
    });
    let (cloud, _keys) = new_cloud(mock);
    let user_data = b"#cloud-config\n# tools\npackages: [hello]\n".to_vec();
    let launch = LaunchOptions {
        user_data: Some(user_data),
        wait: WaitStage::Ip,
        ..LaunchOptions::default()
    };
    let instance = cloud.launch(IMAGE, &launch).await.unwrap();
    let name = instance.name().to_owned();
    number_of(&name);
    assert_eq!(instance.cached_ip(), Some(ip("10.0.0.10")));
    assert_eq!(cloud.tracked_instances(), vec![name.clone()]);

    let all = calls.all();
    assert_eq!(all.len(), 4, "{all:#?}");
    assert_eq!(
        all[0],
        sv(&[
            "vm.clone",
            "-vm=/DC0/vm/TEMPLATE-cloud-init-jammy",
            "-on=false",
            "-ds=LocalDS_0",
            "-pool=/DC0/host/DC0_C0/Resources",
            "-folder=/DC0/vm",
            "-annotation=made by vmw (tag: me, kind: instance)",
            "-link=false",
            "--",
            &name,
        ])
    );

    let files = seen.lock().unwrap().clone();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[0].key, "guestinfo.metadata");
    assert_eq!(files[1].key, "guestinfo.userdata");
    assert_eq!(
        all[1],
        sv(&[
            "vm.change",
            &format!("-vm={name}"),
            "-e=guestinfo.metadata.encoding=base64",
            "-e=guestinfo.userdata.encoding=base64",
            &format!("-f=guestinfo.metadata={}", files[0].path),
            &format!("-f=guestinfo.userdata={}", files[1].path),
        ])
    );
    for f in &files {
        assert_eq!(f.mode, 0o600, "{f:?}");
        assert!(
            !std::path::Path::new(&f.path).exists(),
            "{} must be removed after the launch",
            f.path
        );
    }

    let metadata = yaml(&vmw_userdata::decode(files[0].contents.as_bytes(), "base64").unwrap());
    assert_eq!(metadata["instance-id"].as_str(), Some(name.as_str()));
    assert_eq!(metadata["local-hostname"].as_str(), Some(name.as_str()));

    let user = vmw_userdata::decode(files[1].contents.as_bytes(), "base64").unwrap();
    let user_text = String::from_utf8(user).unwrap();
    assert!(
        user_text.starts_with("#cloud-config\n# tools\npackages: [hello]\n"),
        "{user_text}"
    );
    let user_yaml = yaml(user_text.as_bytes());
    assert_eq!(user_yaml["packages"][0].as_str(), Some("hello"));
    let key = &cloud.key_pair().public_key;
    let keys = user_yaml["ssh_authorized_keys"].as_sequence().unwrap();
    assert_eq!(keys.len(), 1, "{user_text}");
    assert!(key.matches_line(keys[0].as_str().unwrap()), "{user_text}");

    assert_eq!(all[2], power_on_argv(&name));
    assert_eq!(all[3].len(), 4, "{:?}", all[3]);
    assert_eq!(all[3][2..], sv(&["--", &name]));
    let wait = ip_wait_of(&all[3]);
    assert!(
        wait > Duration::from_secs(1) && wait <= Duration::from_secs(2),
        "{wait:?}"
    );

    // No guestinfo value, and not the key, is ever on a command line.
    for argv in &all {
        for arg in argv {
            for f in &files {
                assert!(!arg.contains(&f.contents), "value of {} in {arg}", f.key);
            }
            assert!(!arg.contains(key.data()), "public key in {arg}");
            if let Some(kv) = arg.strip_prefix("-e=guestinfo.") {
                let (k, _) = kv.split_once('=').unwrap();
                assert!(k.ends_with(".encoding"), "guestinfo value on argv: {arg}");
            }
        }
    }
}

#[tokio::test]
async fn launch_passes_hardware_extra_config_linked_clone_and_vendor_data() {
    let seen: Arc<Mutex<Vec<SeenFile>>> = Arc::default();
    let seen_in_mock = seen.clone();
    let (mock, calls) = scripted(move |c| {
        if c.name() == "vm.change" {
            seen_in_mock.lock().unwrap().extend(read_guestinfo_files(c));
        }
        happy(c)
    });
    let (cloud, _keys) = new_cloud(mock);

    // An instance type, extra config, a linked clone, vendor data, no wait.
    let first = LaunchOptions {
        instance_type: Some("2c4g".to_owned()),
        extra_config: vec![
            ("disk.EnableUUID".to_owned(), "TRUE".to_owned()),
            ("guestinfo.custom".to_owned(), "a b=c".to_owned()),
        ],
        linked_clone: true,
        vendor_data: Some(b"#cloud-config\nruncmd: [true]\n".to_vec()),
        ..options("web-1", WaitStage::None)
    };
    let a = cloud.launch(IMAGE, &first).await.unwrap();
    assert_eq!(a.name(), "web-1");
    assert_eq!(a.cached_ip(), None);
    let all = calls.all();
    assert_eq!(all.len(), 3, "no vm.ip without a wait: {all:#?}");
    assert_eq!(
        all[0],
        clone_argv(IMAGE, "web-1", &["-c=2", "-m=4096"], true)
    );
    let files = seen.lock().unwrap().clone();
    let keys: Vec<&str> = files.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "guestinfo.metadata",
            "guestinfo.userdata",
            "guestinfo.vendordata"
        ]
    );
    assert_eq!(
        all[1],
        sv(&[
            "vm.change",
            "-vm=web-1",
            "-e=guestinfo.metadata.encoding=base64",
            "-e=guestinfo.userdata.encoding=base64",
            "-e=guestinfo.vendordata.encoding=base64",
            "-e=disk.EnableUUID=TRUE",
            "-e=guestinfo.custom=a b=c",
            &format!("-f=guestinfo.metadata={}", files[0].path),
            &format!("-f=guestinfo.userdata={}", files[1].path),
            &format!("-f=guestinfo.vendordata={}", files[2].path),
        ])
    );
    assert_eq!(
        vmw_userdata::decode(files[2].contents.as_bytes(), "base64").unwrap(),
        b"#cloud-config\nruncmd: [true]\n"
    );
    assert_eq!(all[2], power_on_argv("web-1"));

    // CPUs and memory given apart; a large user data travels gzipped; an
    // image given as an inventory path is used as it is.
    seen.lock().unwrap().clear();
    let big = format!("#cloud-config\n# {}\nruncmd: [true]\n", "x".repeat(40_000));
    let second = LaunchOptions {
        cpus: Some(3),
        memory_mb: Some(1536),
        user_data: Some(big.clone().into_bytes()),
        ..options("web-2", WaitStage::None)
    };
    cloud
        .launch("/DC0/vm/other/TEMPLATE-cloud-init-focal", &second)
        .await
        .unwrap();
    let all = calls.since(3);
    let mut expected = clone_argv("x", "web-2", &["-c=3", "-m=1536"], false);
    expected[1] = "-vm=/DC0/vm/other/TEMPLATE-cloud-init-focal".to_owned();
    assert_eq!(all[0], expected);
    assert!(
        all[1].contains(&"-e=guestinfo.userdata.encoding=gzip+base64".to_owned()),
        "{:?}",
        all[1]
    );
    let files = seen.lock().unwrap().clone();
    let user = vmw_userdata::decode(files[1].contents.as_bytes(), "gzip+base64").unwrap();
    assert!(String::from_utf8(user).unwrap().starts_with(&big));
    assert_eq!(cloud.tracked_instances(), ["web-1", "web-2"]);
}

// ---------------------------------------------------------------------------
// 2. Launch: a failure at every step
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailAt {
    Configure,
    PowerOn,
    PowerOnWrongState,
    IpEmpty,
    IpLinkLocalOnly,
    IpKilled,
}

/// Launches `vm` with govc failing at `at`, and the rollback's `vm.destroy`
/// failing too when `destroy_fails`.
async fn launch_failing(
    vm: &'static str,
    at: FailAt,
    destroy_fails: bool,
) -> (CloudError, Calls, Vec<String>) {
    let (mock, calls) = scripted(move |c| match (at, c.name()) {
        (FailAt::Configure, "vm.change") => fail(
            c,
            "govc: ServerFaultCode: A specified parameter was not correct: spec.extraConfig",
        ),
        (FailAt::PowerOn, "vm.power") => {
            fail(c, "govc: ServerFaultCode: InsufficientResourcesFault")
        }
        (FailAt::PowerOnWrongState, "vm.power") => fail(c, STDERR_INVALID_POWER),
        (FailAt::PowerOnWrongState, "object.collect") => out(&power_state_json("suspended")),
        (FailAt::IpEmpty, "vm.ip") => out(""),
        (FailAt::IpLinkLocalOnly, "vm.ip") => out("fe80::250:56ff:fe8a:1\n"),
        (FailAt::IpKilled, "vm.ip") => killed(c),
        (_, "vm.destroy") if destroy_fails => fail(c, STDERR_OTHER),
        _ => happy(c),
    });
    let s = Settings {
        concurrency: 1,
        ip_wait: Duration::from_millis(300),
        ip_poll: Duration::from_millis(10),
        // Source checks have a test of their own.
        check_sources: false,
        ..Settings::default()
    };
    let (cloud, _keys) = cloud_with(mock, config(), s);
    let err = cloud
        .launch(IMAGE, &options(vm, WaitStage::Ip))
        .await
        .unwrap_err();
    (err, calls, cloud.tracked_instances())
}

#[tokio::test]
async fn a_failure_after_the_clone_destroys_the_vm_and_names_the_step() {
    let cases = [
        (FailAt::Configure, Step::Configure),
        (FailAt::PowerOn, Step::PowerOn),
        (FailAt::PowerOnWrongState, Step::PowerOn),
        (FailAt::IpEmpty, Step::WaitIp),
        (FailAt::IpLinkLocalOnly, Step::WaitIp),
        (FailAt::IpKilled, Step::WaitIp),
    ];
    for (at, step) in cases {
        let (err, calls, tracked) = launch_failing("half-1", at, false).await;
        let CloudError::Step {
            vm,
            step: got,
            source,
            removed,
            rollback,
        } = &err
        else {
            panic!("{at:?}: {err:?}")
        };
        assert_eq!(vm, "half-1", "{at:?}");
        assert_eq!(*got, step, "{at:?}");
        assert!(rollback.is_none(), "{at:?}: {rollback:?}");
        assert!(*removed, "{at:?}: the half-made VM was removed");
        assert!(err.to_string().contains("was removed"), "{at:?}: {err}");
        assert!(tracked.is_empty(), "{at:?}: still tracked: {tracked:?}");

        let all = calls.all();
        assert_eq!(all[0], clone_argv(IMAGE, "half-1", &[], false), "{at:?}");
        assert_eq!(all[1][0], "vm.change", "{at:?}");
        assert_eq!(all.last().unwrap(), &destroy_argv("half-1"), "{at:?}");
        let names = calls.names();
        assert_eq!(
            names.iter().filter(|n| *n == "vm.destroy").count(),
            1,
            "{at:?}: {names:?}"
        );
        let expected_before_destroy: &[&str] = match at {
            FailAt::Configure => &["vm.clone", "vm.change"],
            FailAt::PowerOn => &["vm.clone", "vm.change", "vm.power"],
            FailAt::PowerOnWrongState => &["vm.clone", "vm.change", "vm.power", "object.collect"],
            FailAt::IpEmpty | FailAt::IpKilled => &["vm.clone", "vm.change", "vm.power", "vm.ip"],
            FailAt::IpLinkLocalOnly => {
                // Polled until the wait ended, then gave up.
                let polls = names.iter().filter(|n| *n == "vm.ip").count();
                assert!(polls >= 2, "{polls} vm.ip calls");
                &[]
            }
        };
        if !expected_before_destroy.is_empty() {
            assert_eq!(
                names[..names.len() - 1],
                sv(expected_before_destroy),
                "{at:?}"
            );
        }

        match (at, source.as_ref()) {
            (FailAt::Configure | FailAt::PowerOn, CloudError::Govc(e)) => {
                assert_eq!(e.kind(), ErrorKind::Other, "{at:?}");
                assert_eq!(e.command().unwrap().name(), all[names.len() - 2][0]);
            }
            (FailAt::PowerOnWrongState, CloudError::PowerState { vm, wanted, found }) => {
                assert_eq!(vm, "half-1");
                assert_eq!(*wanted, "powered on");
                assert!(found.contains("Suspended"), "{found}");
            }
            (FailAt::IpEmpty, CloudError::IpTimeout { vm, seen, .. }) => {
                assert_eq!(vm, "half-1");
                assert!(seen.is_empty(), "{seen:?}");
            }
            (FailAt::IpLinkLocalOnly, CloudError::IpTimeout { seen, waited, .. }) => {
                assert_eq!(seen, &["fe80::250:56ff:fe8a:1"]);
                assert_eq!(*waited, Duration::from_millis(300));
                assert!(err.to_string().contains("fe80::250:56ff:fe8a:1"), "{err}");
            }
            (FailAt::IpKilled, CloudError::Govc(e)) => {
                assert!(matches!(e, GovcError::Timeout { .. }), "{e:?}");
            }
            (_, other) => panic!("{at:?}: unexpected source {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("half-1") && text.contains(&step.to_string()),
            "{text}"
        );
        assert!(text.contains("was removed"), "{text}");
    }
}

#[tokio::test]
async fn a_failed_rollback_is_reported_and_the_vm_stays_tracked() {
    for at in [FailAt::Configure, FailAt::PowerOn, FailAt::IpEmpty] {
        let (err, calls, tracked) = launch_failing("half-2", at, true).await;
        let CloudError::Step { rollback, .. } = &err else {
            panic!("{at:?}: {err:?}")
        };
        let rollback = rollback.as_deref().unwrap_or_else(|| panic!("{at:?}"));
        let e = rollback.govc().unwrap();
        assert_eq!(e.kind(), ErrorKind::Other);
        assert_eq!(e.command().unwrap().argv(), destroy_argv("half-2"));
        assert_eq!(calls.all().last().unwrap(), &destroy_argv("half-2"));
        // Still there, so a later clean() tries again.
        assert_eq!(tracked, ["half-2"], "{at:?}");
        let text = err.to_string();
        assert!(text.contains("failed too"), "{text}");
        assert!(text.contains("Permission to perform"), "{text}");
    }
}

#[tokio::test]
async fn a_rollback_finding_the_vm_gone_counts_as_done() {
    let (mock, calls) = scripted(|c| match c.name() {
        "vm.power" => fail(c, STDERR_OTHER),
        "vm.destroy" => vm_not_found(c),
        _ => happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("gone-1", WaitStage::Ip))
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::PowerOn));
    assert!(matches!(&err, CloudError::Step { rollback: None, .. }));
    assert!(cloud.tracked_instances().is_empty());
    assert_eq!(calls.names().last().unwrap(), "vm.destroy");
}

#[tokio::test]
async fn a_clone_that_fails_is_not_rolled_back() {
    // A duplicate name: the VM there is not ours. A missing image: nothing
    // was made. Neither is destroyed.
    for (stderr, kind) in [
        (STDERR_DUPLICATE, ErrorKind::DuplicateName),
        (
            "govc: vm 'TEMPLATE-cloud-init-jammy' not found\n",
            ErrorKind::NotFound,
        ),
    ] {
        let (mock, calls) = scripted(move |c| match c.name() {
            "vm.clone" => fail(c, stderr),
            _ => panic!("unexpected govc call after a failed clone: {c}"),
        });
        let (cloud, _keys) = new_cloud(mock);
        let err = cloud
            .launch(IMAGE, &options("me-1", WaitStage::Ip))
            .await
            .unwrap_err();
        let CloudError::Step {
            vm, step, rollback, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(vm, "me-1");
        assert_eq!(*step, Step::Clone);
        assert!(rollback.is_none());
        assert_eq!(err.govc().unwrap().kind(), kind);
        assert_eq!(calls.all(), [clone_argv(IMAGE, "me-1", &[], false)]);
        assert!(cloud.tracked_instances().is_empty());
    }
}

#[tokio::test]
async fn a_failed_clone_does_not_claim_a_vm_was_removed() {
    let (mock, _calls) = scripted(|c| match c.name() {
        "vm.clone" => fail(c, STDERR_DUPLICATE),
        _ => panic!("unexpected govc call: {c}"),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("me-1", WaitStage::Ip))
        .await
        .unwrap_err();
    let text = err.to_string();
    // The VM named me-1 exists and belongs to someone else: vmw did not
    // touch it, and the message must not say it removed it.
    assert!(!text.contains("was removed"), "{text}");
}

#[tokio::test]
async fn a_clone_killed_by_the_deadline_is_rolled_back() {
    let (mock, calls) = scripted(|c| match c.name() {
        "vm.clone" => killed(c),
        "vm.destroy" => ok(),
        _ => panic!("unexpected govc call: {c}"),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("slow-1", WaitStage::Ip))
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::Clone));
    assert!(
        matches!(&err, CloudError::Step { rollback: None, .. }),
        "{err:?}"
    );
    assert!(matches!(err.govc(), Some(GovcError::Timeout { .. })));
    assert_eq!(
        calls.all(),
        [
            clone_argv(IMAGE, "slow-1", &[], false),
            destroy_argv("slow-1")
        ]
    );
    assert!(cloud.tracked_instances().is_empty());

    // The rollback failing too is reported.
    let (mock, calls) = scripted(|c| match c.name() {
        "vm.clone" => killed(c),
        "vm.destroy" => fail(c, STDERR_OTHER),
        _ => panic!("unexpected govc call: {c}"),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("slow-2", WaitStage::Ip))
        .await
        .unwrap_err();
    let CloudError::Step { rollback, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        rollback.as_deref().unwrap().govc().unwrap().kind(),
        ErrorKind::Other
    );
    assert_eq!(calls.names(), ["vm.clone", "vm.destroy"]);
}

#[tokio::test]
async fn a_killed_clone_whose_rollback_failed_stays_tracked_for_clean() {
    let destroys = Arc::new(AtomicUsize::new(0));
    let count = destroys.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => killed(c),
        // The rollback fails; a later clean() succeeds.
        "vm.destroy" if count.fetch_add(1, Ordering::SeqCst) == 0 => fail(c, STDERR_OTHER),
        "vm.destroy" => ok(),
        _ => panic!("unexpected govc call: {c}"),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("slow-3", WaitStage::Ip))
        .await
        .unwrap_err();
    assert!(matches!(
        &err,
        CloudError::Step {
            rollback: Some(_),
            ..
        }
    ));
    // As after a failed rollback of any later step.
    assert_eq!(cloud.tracked_instances(), ["slow-3"]);
    cloud.clean().await.unwrap();
    assert_eq!(calls.since(2), [destroy_argv("slow-3")]);
}

#[tokio::test]
async fn an_ambiguous_pool_is_explained_with_the_pools_found() {
    let (mock, calls) = scripted(|c| match c.name() {
        "vm.clone" => fail(c, STDERR_AMBIGUOUS_POOL),
        "find" => out(FIND_POOLS),
        _ => panic!("unexpected govc call: {c}"),
    });
    let cfg = VmwareConfig {
        resource_pool: None,
        ..config()
    };
    let (cloud, _keys) = cloud_with(mock, cfg, settings(4));
    let err = cloud
        .launch(IMAGE, &options("pool-1", WaitStage::Ip))
        .await
        .unwrap_err();
    assert_eq!(
        calls.all(),
        [
            sv(&[
                "vm.clone",
                "-vm=/DC0/vm/TEMPLATE-cloud-init-jammy",
                "-on=false",
                "-ds=LocalDS_0",
                "-folder=/DC0/vm",
                ANNOTATION_INSTANCE,
                "-link=false",
                "--",
                "pool-1",
            ]),
            sv(&["find", "-type=p", "--", "/"]),
        ]
    );
    assert_eq!(err.step(), Some(Step::Clone));
    let Some(GovcError::Failed(failure)) = err.govc() else {
        panic!("{err:?}")
    };
    assert_eq!(failure.kind, ErrorKind::AmbiguousResourcePool);
    assert_eq!(
        failure.resource_pools,
        ["/DC0/host/DC0_H0/Resources", "/DC0/host/DC0_C0/Resources"]
    );
    let text = err.to_string();
    assert!(
        text.contains("/DC0/host/DC0_H0/Resources, /DC0/host/DC0_C0/Resources"),
        "{text}"
    );
    assert!(text.contains("resource_pool"), "{text}");
    assert!(cloud.tracked_instances().is_empty());
}

// ---------------------------------------------------------------------------
// 3. Bad input is rejected before any govc call
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_launch_options_are_rejected_before_any_govc_call() {
    let (cloud, _keys) = new_cloud(silent());
    let with = |f: &dyn Fn(&mut LaunchOptions)| {
        let mut o = LaunchOptions::wait_for_ip();
        f(&mut o);
        o
    };
    let invalid = |err: CloudError, option: &str| match err {
        CloudError::InvalidOption { option: o, .. } if o == option => {}
        other => panic!("expected an invalid {option}, got {other:?}"),
    };

    let o = with(&|o| o.instance_type = Some("t2.micro".into()));
    invalid(cloud.launch(IMAGE, &o).await.unwrap_err(), "instance type");

    let o = with(&|o| {
        o.instance_type = Some("2c4g".into());
        o.cpus = Some(2);
    });
    let err = cloud.launch(IMAGE, &o).await.unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
    invalid(err, "instance type");

    let o = with(&|o| o.cpus = Some(0));
    invalid(cloud.launch(IMAGE, &o).await.unwrap_err(), "CPU count");
    let o = with(&|o| o.memory_mb = Some(2));
    invalid(cloud.launch(IMAGE, &o).await.unwrap_err(), "memory");

    for key in [
        "a=b",
        "",
        "guestinfo.userdata",
        "guestinfo.metadata.encoding",
    ] {
        let o = with(&|o| o.extra_config = vec![(key.into(), "x".into())]);
        invalid(
            cloud.launch(IMAGE, &o).await.unwrap_err(),
            "extraConfig key",
        );
    }

    let o = with(&|o| o.user_data = Some(b"#cloud-config\npackages: [unclosed\n".to_vec()));
    let err = cloud.launch(IMAGE, &o).await.unwrap_err();
    assert!(
        matches!(
            err,
            CloudError::UserData(vmw_userdata::UserDataError::InvalidYaml { .. })
        ),
        "{err:?}"
    );

    for name in ["a/b", "", "tab\there", &"x".repeat(81)] {
        let o = with(&|o| o.name = Some(name.to_owned()));
        invalid(cloud.launch(IMAGE, &o).await.unwrap_err(), "VM name");
    }

    let o = with(&|o| o.name = Some("solo".to_owned()));
    invalid(cloud.launch_many(IMAGE, 2, &o).await.unwrap_err(), "name");
    let o = with(&|o| o.instance_type = Some("2x".into()));
    invalid(
        cloud.launch_many(IMAGE, 3, &o).await.unwrap_err(),
        "instance type",
    );
    let fleet = cloud
        .launch_many(IMAGE, 0, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert!(fleet.instances.is_empty() && fleet.failures.is_empty());
    assert!(cloud.tracked_instances().is_empty());

    // A concurrency of 0 is refused when the cloud is built.
    let dir = tempfile::tempdir().unwrap();
    let path = camino::Utf8Path::from_path(dir.path()).unwrap().join("ssh");
    let err = CloudBuilder::new("me")
        .timestamp(false)
        .config(config())
        .key_pair(KeyPair::generated_in(&path, "me".into()).unwrap())
        .settings(settings(0))
        .build_with(silent())
        .unwrap_err();
    invalid(err, "concurrency");
}

// ---------------------------------------------------------------------------
// 4. Power operations are idempotent
// ---------------------------------------------------------------------------

/// A cloud whose govc expects, in this order, `vm.info` of `/DC0/vm/me-1`,
/// then `vm.power -<op>=true -- me-1` failing with `power_stderr`, then (when
/// `state` is given) `object.collect` of the power state answering `state`.
fn power_script(op: &str, power_stderr: &'static str, state: Option<&'static str>) -> MockGovc {
    let mut seq = Default::default();
    let mut mock = MockGovc::new();
    mock.expect_run()
        .withf(|c| c.argv() == sv(&["vm.info", "-json=true", "-e=false", "--", "/DC0/vm/me-1"]))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| out(VM_INFO));
    let power = sv(&["vm.power", &format!("-{op}=true"), "--", "me-1"]);
    mock.expect_run()
        .withf(move |c| c.argv() == power)
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |c| fail(c, power_stderr));
    if let Some(state) = state {
        mock.expect_run()
            .withf(|c| {
                c.argv()
                    == sv(&[
                        "object.collect",
                        "-json=true",
                        "--",
                        "/DC0/vm/me-1",
                        "runtime.powerState",
                    ])
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |_| out(&power_state_json(state)));
    }
    mock
}

#[tokio::test]
async fn start_and_shutdown_accept_the_state_already_reached() {
    let (cloud, _keys) = new_cloud(power_script("on", STDERR_INVALID_POWER, Some("poweredOn")));
    let vm = cloud.get_instance("me-1").await.unwrap();
    vm.start().await.unwrap();

    let (cloud, _keys) = new_cloud(power_script(
        "off",
        STDERR_INVALID_POWER,
        Some("poweredOff"),
    ));
    let vm = cloud.get_instance("me-1").await.unwrap();
    vm.shutdown().await.unwrap();
}

#[tokio::test]
async fn start_and_shutdown_report_a_wrong_state() {
    let (cloud, _keys) = new_cloud(power_script("on", STDERR_INVALID_POWER, Some("poweredOff")));
    let vm = cloud.get_instance("me-1").await.unwrap();
    match vm.start().await.unwrap_err() {
        CloudError::PowerState { vm, wanted, found } => {
            assert_eq!(vm, "me-1");
            assert_eq!(wanted, "powered on");
            assert_eq!(found, "Off");
        }
        other => panic!("{other:?}"),
    }

    let (cloud, _keys) = new_cloud(power_script("off", STDERR_INVALID_POWER, Some("poweredOn")));
    let vm = cloud.get_instance("me-1").await.unwrap();
    match vm.shutdown().await.unwrap_err() {
        CloudError::PowerState { wanted, found, .. } => {
            assert_eq!(wanted, "powered off");
            assert_eq!(found, "On");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn other_power_failures_are_errors_without_a_state_query() {
    for op in ["on", "off"] {
        let (cloud, _keys) = new_cloud(power_script(op, STDERR_OTHER, None));
        let vm = cloud.get_instance("me-1").await.unwrap();
        let err = if op == "on" {
            vm.start().await.unwrap_err()
        } else {
            vm.shutdown().await.unwrap_err()
        };
        assert_eq!(err.govc().unwrap().kind(), ErrorKind::Other, "{err:?}");
    }
}

#[tokio::test]
async fn get_instance_of_a_missing_vm_is_an_error() {
    let (mock, calls) = scripted(|c| match c.name() {
        "vm.info" => out(VM_INFO_NONE),
        _ => panic!("unexpected govc call: {c}"),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud.get_instance("nope").await.unwrap_err();
    assert!(
        matches!(&err, CloudError::NoSuchVm { name } if name == "nope"),
        "{err:?}"
    );
    assert_eq!(
        calls.all(),
        [sv(&[
            "vm.info",
            "-json=true",
            "-e=false",
            "--",
            "/DC0/vm/nope"
        ])]
    );
    assert!(cloud.tracked_instances().is_empty());
}

// ---------------------------------------------------------------------------
// 5. Deletion
// ---------------------------------------------------------------------------

#[tokio::test]
async fn delete_is_one_destroy_and_tolerates_a_missing_vm() {
    let destroy_answers: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let answers = destroy_answers.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.destroy" => match answers.lock().unwrap().pop() {
            Some("gone") => vm_not_found(c),
            Some("denied") => fail(c, STDERR_OTHER),
            _ => ok(),
        },
        _ => happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let a = cloud
        .launch(IMAGE, &options("del-1", WaitStage::Ip))
        .await
        .unwrap();
    let b = cloud
        .launch(IMAGE, &options("del-2", WaitStage::None))
        .await
        .unwrap();
    let c = cloud
        .launch(IMAGE, &options("del-3", WaitStage::None))
        .await
        .unwrap();
    assert_eq!(cloud.tracked_instances(), ["del-1", "del-2", "del-3"]);

    // A running instance: one vm.destroy, no power-off before it.
    let n = calls.len();
    a.delete().await.unwrap();
    assert_eq!(calls.since(n), [destroy_argv("del-1")]);
    assert_eq!(a.cached_ip(), None);
    assert_eq!(cloud.tracked_instances(), ["del-2", "del-3"]);

    // Already gone: success.
    destroy_answers.lock().unwrap().push("gone");
    let n = calls.len();
    b.delete().await.unwrap();
    assert_eq!(calls.since(n), [destroy_argv("del-2")]);
    assert_eq!(cloud.tracked_instances(), ["del-3"]);

    // Any other failure is an error, and the instance stays tracked.
    destroy_answers.lock().unwrap().push("denied");
    let n = calls.len();
    let err = c.delete().await.unwrap_err();
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::Other);
    assert_eq!(calls.since(n), [destroy_argv("del-3")]);
    assert_eq!(cloud.tracked_instances(), ["del-3"]);
    c.delete().await.unwrap();
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test]
async fn delete_image_refuses_templates_and_tolerates_a_missing_image() {
    let (cloud, _keys) = new_cloud(silent());
    for name in [IMAGE, "/DC0/vm/TEMPLATE-cloud-init-focal"] {
        let err = cloud.delete_image(name).await.unwrap_err();
        assert!(
            matches!(&err, CloudError::TemplateProtected { name: n } if n == name),
            "{err:?}"
        );
    }

    let mut mock = MockGovc::new();
    mock.expect_run()
        .withf(|c| c.argv() == destroy_argv("old-image"))
        .times(1)
        .returning(vm_not_found);
    mock.expect_run()
        .withf(|c| c.argv() == destroy_argv("locked-image"))
        .times(1)
        .returning(|c| fail(c, STDERR_OTHER));
    let (cloud, _keys) = new_cloud(mock);
    cloud.delete_image("old-image").await.unwrap();
    let err = cloud.delete_image("locked-image").await.unwrap_err();
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::Other);
}

// ---------------------------------------------------------------------------
// 6. Snapshots
// ---------------------------------------------------------------------------

#[tokio::test]
async fn snapshot_clones_the_instance_into_a_tracked_image() {
    let (mock, calls) = scripted(happy);
    let (cloud, _keys) = new_cloud(mock);
    let base = cloud
        .launch(IMAGE, &options("base-1", WaitStage::None))
        .await
        .unwrap();
    let n = calls.len();
    let image = cloud.snapshot(&base, false).await.unwrap();
    assert_eq!(
        image,
        Image {
            name: "base-1-image".to_owned()
        }
    );
    assert_eq!(
        calls.since(n),
        [sv(&[
            "vm.clone",
            "-vm=/DC0/vm/base-1",
            "-on=false",
            "-ds=LocalDS_0",
            "-pool=/DC0/host/DC0_C0/Resources",
            "-folder=/DC0/vm",
            ANNOTATION_IMAGE,
            "-link=false",
            "--",
            "base-1-image",
        ])]
    );
    assert_eq!(cloud.tracked_images(), ["base-1-image"]);

    // The image launches like any other.
    let n = calls.len();
    cloud
        .launch(&image.name, &options("child-1", WaitStage::None))
        .await
        .unwrap();
    assert_eq!(
        calls.since(n)[0],
        clone_argv("base-1-image", "child-1", &[], false)
    );
    assert_eq!(cloud.tracked_instances(), ["base-1", "child-1"]);

    // Deleting it untracks it.
    let n = calls.len();
    cloud.delete_image("base-1-image").await.unwrap();
    assert_eq!(calls.since(n), [destroy_argv("base-1-image")]);
    assert!(cloud.tracked_images().is_empty());
}

#[tokio::test]
async fn a_failed_snapshot_tracks_nothing() {
    let clone_answer: Arc<Mutex<&'static str>> = Arc::new(Mutex::new("ok"));
    let answer = clone_answer.clone();
    let (mock, calls) = scripted(move |c| match (c.name(), *answer.lock().unwrap()) {
        ("vm.clone", "fail") => fail(c, STDERR_OTHER),
        ("vm.clone", "kill") => killed(c),
        _ => happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let base = cloud
        .launch(IMAGE, &options("base-2", WaitStage::None))
        .await
        .unwrap();

    *clone_answer.lock().unwrap() = "fail";
    let n = calls.len();
    let err = cloud.snapshot(&base, false).await.unwrap_err();
    assert_eq!(err.step(), Some(Step::Clone));
    assert!(matches!(&err, CloudError::Step { vm, rollback: None, .. } if vm == "base-2-image"));
    assert_eq!(calls.names()[n..], sv(&["vm.clone"]));
    assert!(cloud.tracked_images().is_empty());

    // Killed by the deadline: the image that may have been made is removed.
    *clone_answer.lock().unwrap() = "kill";
    let n = calls.len();
    let err = cloud.snapshot(&base, false).await.unwrap_err();
    assert_eq!(err.step(), Some(Step::Clone));
    assert_eq!(calls.since(n)[1], destroy_argv("base-2-image"));
    assert_eq!(calls.len(), n + 2);
    assert!(cloud.tracked_images().is_empty());
    assert_eq!(cloud.tracked_instances(), ["base-2"]);
}

#[tokio::test]
async fn snapshot_with_guest_cleaning_clones_nothing_when_the_guest_is_unreachable() {
    // The guest is at 127.0.0.1 on a port where nothing listens.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (mock, calls) = scripted(|c| match c.name() {
        "vm.ip" => out("127.0.0.1\n"),
        _ => happy(c),
    });
    let mut s = settings(4);
    s.ssh.port = port;
    let (cloud, _keys) = cloud_with(mock, config(), s);
    let base = cloud
        .launch(IMAGE, &options("base-3", WaitStage::Ip))
        .await
        .unwrap();
    let n = calls.len();
    let err = cloud.snapshot(&base, true).await.unwrap_err();
    assert_eq!(err.step(), Some(Step::CleanGuest), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("connect"), "{text}");
    assert!(text.contains("nothing to remove"), "{text}");
    assert_eq!(calls.len(), n, "no clone after a failed guest clean");
    assert!(cloud.tracked_images().is_empty());
}

// ---------------------------------------------------------------------------
// 7. clean()
// ---------------------------------------------------------------------------

#[tokio::test]
async fn clean_deletes_instances_then_images_and_then_has_nothing_left() {
    let (mock, calls) = scripted(happy);
    let (cloud, _keys) = new_cloud(mock);
    let mut made = Vec::new();
    for name in ["c-1", "c-2", "c-3"] {
        made.push(
            cloud
                .launch(IMAGE, &options(name, WaitStage::None))
                .await
                .unwrap(),
        );
    }
    cloud.snapshot(&made[0], false).await.unwrap();
    cloud.snapshot(&made[1], false).await.unwrap();

    let n = calls.len();
    cloud.clean().await.unwrap();
    let destroyed = calls.since(n);
    assert!(
        destroyed
            .iter()
            .all(|a| a[..2] == sv(&["vm.destroy", "--"]))
    );
    let order: Vec<&str> = destroyed.iter().map(|a| a[2].as_str()).collect();
    assert_eq!(order.len(), 5, "{order:?}");
    let first: BTreeSet<&str> = order[..3].iter().copied().collect();
    let then: BTreeSet<&str> = order[3..].iter().copied().collect();
    assert_eq!(first, BTreeSet::from(["c-1", "c-2", "c-3"]));
    assert_eq!(then, BTreeSet::from(["c-1-image", "c-2-image"]));
    assert!(cloud.tracked_instances().is_empty());
    assert!(cloud.tracked_images().is_empty());

    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(calls.len(), n, "a second clean() calls govc");
}

#[tokio::test]
async fn clean_tries_everything_and_keeps_what_it_could_not_delete() {
    let refuse = Arc::new(Mutex::new(true));
    let refusing = refuse.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.destroy" if c.positional() == ["k-2"] && *refusing.lock().unwrap() => {
            fail(c, STDERR_OTHER)
        }
        "vm.destroy" if c.positional() == ["k-3"] => vm_not_found(c),
        _ => happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let mut made = Vec::new();
    for name in ["k-1", "k-2", "k-3"] {
        made.push(
            cloud
                .launch(IMAGE, &options(name, WaitStage::None))
                .await
                .unwrap(),
        );
    }
    cloud.snapshot(&made[0], false).await.unwrap();

    let n = calls.len();
    let err = cloud.clean().await.unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    let e = err.errors[0].govc().unwrap();
    assert_eq!(e.kind(), ErrorKind::Other);
    assert_eq!(e.command().unwrap().argv(), destroy_argv("k-2"));
    assert!(err.to_string().contains("k-2"), "{err}");
    let destroyed: BTreeSet<String> = calls.since(n).into_iter().map(|a| a[2].clone()).collect();
    assert_eq!(
        destroyed,
        ["k-1", "k-2", "k-3", "k-1-image"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
    assert_eq!(cloud.tracked_instances(), ["k-2"]);
    assert!(cloud.tracked_images().is_empty());

    // Once the VM can be removed, the next clean() removes only it.
    *refuse.lock().unwrap() = false;
    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(calls.since(n), [destroy_argv("k-2")]);
    assert!(cloud.tracked_instances().is_empty());
}

// ---------------------------------------------------------------------------
// 8. Concurrency
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sixty_four_parallel_launches_get_unique_names_in_order() {
    let (mock, calls) = scripted(happy);
    let slow = Slow::new(mock);
    let (cloud, _keys) = cloud_with(slow, config(), settings(64));
    let fleet = cloud
        .launch_many(IMAGE, 64, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert!(fleet.failures.is_empty(), "{:?}", fleet.failures);
    assert_eq!(fleet.instances.len(), 64);
    let names: Vec<String> = fleet
        .instances
        .iter()
        .map(|i| i.name().to_owned())
        .collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), 64, "{names:?}");
    // In the order asked: names are numbered in that order.
    let numbers: Vec<u64> = names.iter().map(|n| number_of(n)).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    // All 64 ran at once, and they did finish out of order.
    assert_eq!(cloud.govc().peak.load(Ordering::SeqCst), 64);
    let cloned: Vec<String> = calls
        .all()
        .into_iter()
        .filter(|a| a[0] == "vm.clone")
        .map(|a| a.last().unwrap().clone())
        .collect();
    assert_eq!(cloned.len(), 64);
    assert_ne!(cloned, names, "the mock's delays did not reorder the calls");
    assert_eq!(calls.len(), 64 * 4);
    let mut tracked = cloud.tracked_instances();
    tracked.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(tracked, sorted);
}

#[tokio::test]
async fn launch_many_runs_at_most_the_configured_number_at_once() {
    let (mock, calls) = scripted(happy);
    let (cloud, _keys) = cloud_with(Slow::new(mock), config(), settings(5));
    let fleet = cloud
        .launch_many(IMAGE, 20, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(fleet.instances.len(), 20);
    assert_eq!(cloud.govc().peak.load(Ordering::SeqCst), 5);
    assert_eq!(calls.len(), 80);
}

#[tokio::test]
async fn two_clouds_with_the_same_tag_never_pick_the_same_name() {
    let (mock_a, _) = scripted(happy);
    let (mock_b, _) = scripted(happy);
    let (a, _keys_a) = cloud_with(Slow::new(mock_a), config(), settings(32));
    let (b, _keys_b) = cloud_with(Slow::new(mock_b), config(), settings(32));
    assert_eq!(a.tag(), b.tag());
    let o = LaunchOptions::wait_for_ip();
    let (fa, fb) = tokio::join!(a.launch_many(IMAGE, 32, &o), b.launch_many(IMAGE, 32, &o));
    let (fa, fb) = (fa.unwrap(), fb.unwrap());
    let names: BTreeSet<String> = fa
        .instances
        .iter()
        .chain(&fb.instances)
        .map(|i| i.name().to_owned())
        .collect();
    assert_eq!(names.len(), 64, "{names:?}");
}

#[tokio::test]
async fn launch_many_reports_each_failure_by_index_and_keeps_the_rest_in_order() {
    // By the number in the name: 4k+1 fails to clone, 4k+2 fails to
    // configure (and is destroyed), the others launch.
    let (mock, calls) = scripted(|c| {
        let vm = match c.name() {
            "vm.change" => c.flag_value("vm").unwrap().to_owned(),
            _ => c.positional().last().cloned().unwrap_or_default(),
        };
        match (c.name(), number_of(&vm) % 4) {
            ("vm.clone", 1) => fail(c, STDERR_OTHER),
            ("vm.change", 2) => fail(c, STDERR_OTHER),
            _ => happy(c),
        }
    });
    let (cloud, _keys) = cloud_with(Slow::new(mock), config(), settings(8));
    let fleet = cloud
        .launch_many(IMAGE, 24, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(fleet.instances.len() + fleet.failures.len(), 24);

    // Rebuild the name of every index from the results.
    let mut by_index: Vec<Option<(String, bool)>> = vec![None; 24];
    for (i, e) in &fleet.failures {
        let CloudError::Step {
            vm, step, rollback, ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert!(rollback.is_none(), "{e:?}");
        let expected = match number_of(vm) % 4 {
            1 => Step::Clone,
            2 => Step::Configure,
            _ => panic!("{vm} should have launched: {e}"),
        };
        assert_eq!(*step, expected, "{vm}");
        by_index[*i] = Some((vm.clone(), false));
    }
    let failed_indices: Vec<usize> = fleet.failures.iter().map(|(i, _)| *i).collect();
    assert!(
        failed_indices.windows(2).all(|w| w[0] < w[1]),
        "{failed_indices:?}"
    );
    let free: Vec<usize> = (0..24).filter(|i| by_index[*i].is_none()).collect();
    assert_eq!(free.len(), fleet.instances.len());
    for (&i, instance) in free.iter().zip(&fleet.instances) {
        assert_ne!(number_of(instance.name()) % 4, 1);
        assert_ne!(number_of(instance.name()) % 4, 2);
        by_index[i] = Some((instance.name().to_owned(), true));
    }
    let names: Vec<String> = by_index.into_iter().map(|x| x.unwrap().0).collect();
    let numbers: Vec<u64> = names.iter().map(|n| number_of(n)).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    assert!(!fleet.failures.is_empty() && !fleet.instances.is_empty());

    // Clone failures were not rolled back, configure failures were.
    let destroyed: BTreeSet<u64> = calls
        .all()
        .into_iter()
        .filter(|a| a[0] == "vm.destroy")
        .map(|a| number_of(&a[2]))
        .collect();
    let configure_failed: BTreeSet<u64> = numbers.iter().copied().filter(|n| n % 4 == 2).collect();
    assert_eq!(destroyed, configure_failed);
    let mut tracked = cloud.tracked_instances();
    tracked.sort();
    let mut launched: Vec<String> = fleet
        .instances
        .iter()
        .map(|i| i.name().to_owned())
        .collect();
    launched.sort();
    assert_eq!(tracked, launched);
}

// ---------------------------------------------------------------------------
// 9. Images of releases
// ---------------------------------------------------------------------------

#[tokio::test]
async fn released_image_is_found_with_one_cached_find() {
    let mut mock = MockGovc::new();
    mock.expect_run()
        .withf(|c| {
            c.argv()
                == sv(&[
                    "find",
                    "-type=m",
                    "-name=TEMPLATE-cloud-init-*",
                    "--",
                    "/DC0/vm",
                ])
        })
        .times(1)
        .returning(|_| {
            out("/DC0/vm/TEMPLATE-cloud-init-jammy\n/DC0/vm/TEMPLATE-cloud-init-focal\n/DC0/vm/TEMPLATE-cloud-init-\n")
        });
    let (cloud, _keys) = new_cloud(mock);
    assert_eq!(
        cloud.released_image("jammy").await.unwrap(),
        Image {
            name: IMAGE.to_owned()
        }
    );
    assert_eq!(
        cloud.daily_image("focal").await.unwrap().name,
        "TEMPLATE-cloud-init-focal"
    );
    assert_eq!(cloud.releases().await.unwrap(), ["focal", "jammy"]);
    let err = cloud.released_image("noble").await.unwrap_err();
    match &err {
        CloudError::UnknownRelease {
            release,
            folder,
            available,
        } => {
            assert_eq!(release, "noble");
            assert_eq!(folder, FOLDER);
            assert_eq!(available, &["focal", "jammy"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("available: focal, jammy"), "{err}");
}

#[tokio::test]
async fn a_failed_release_lookup_is_not_cached() {
    let failed = Arc::new(Mutex::new(false));
    let once = failed.clone();
    let (mock, calls) = scripted(move |c| {
        let mut f = once.lock().unwrap();
        if *f {
            out("")
        } else {
            *f = true;
            fail(
                c,
                "govc: Post \"https://vc.example/sdk\": dial tcp: connect: connection refused",
            )
        }
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud.released_image("jammy").await.unwrap_err();
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::Unreachable);
    let err = cloud.released_image("jammy").await.unwrap_err();
    assert!(
        matches!(&err, CloudError::UnknownRelease { available, .. } if available.is_empty()),
        "{err:?}"
    );
    assert!(err.to_string().contains("available: none"), "{err}");
    assert_eq!(calls.names(), ["find", "find"]);
    cloud.released_image("focal").await.unwrap_err();
    assert_eq!(calls.len(), 2);
}

// ---------------------------------------------------------------------------
// 10. ip()
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ip_prefers_ipv4_skips_link_local_and_caches() {
    let answers: Arc<Mutex<Vec<&'static str>>> = Arc::new(Mutex::new(vec![
        // Popped from the end.
        "fe80::1,2001:db8::5\n",
        "10.0.0.9\n",
        "fe80::1\n",
        "fe80::1\n",
        "fe80::1,2001:db8::5,10.0.0.7\n",
    ]));
    let pending = answers.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.ip" => out(pending.lock().unwrap().pop().unwrap()),
        _ => happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let vm = cloud.get_instance("me-1").await.unwrap();
    assert!(cloud.tracked_instances().is_empty());

    assert_eq!(vm.ip().await.unwrap(), ip("10.0.0.7"));
    assert_eq!(calls.names(), ["vm.info", "vm.ip"]);
    let argv = &calls.all()[1];
    assert_eq!(argv[2..], sv(&["--", "me-1"]));
    assert!(ip_wait_of(argv) <= Duration::from_secs(2));

    // Cached: no govc call.
    assert_eq!(vm.ip().await.unwrap(), ip("10.0.0.7"));
    assert_eq!(vm.clone().cached_ip(), Some(ip("10.0.0.7")));
    assert_eq!(calls.len(), 2);

    // A restart forgets the address; link-local answers are polled past.
    vm.shutdown().await.unwrap();
    assert_eq!(vm.cached_ip(), None);
    vm.start().await.unwrap();
    let n = calls.len();
    assert_eq!(vm.wait_for(WaitStage::Ip).await.unwrap(), ip("10.0.0.9"));
    assert_eq!(calls.names()[n..], sv(&["vm.ip", "vm.ip", "vm.ip"]));

    // Only a global IPv6 besides the link-local one: that one.
    vm.start().await.unwrap();
    assert_eq!(vm.ip().await.unwrap(), ip("2001:db8::5"));
    assert!(answers.lock().unwrap().is_empty());
}

#[tokio::test]
async fn ip_errors_are_returned() {
    let (mock, _calls) = scripted(|c| match c.name() {
        "vm.ip" => vm_not_found(c),
        _ => happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let vm = cloud.get_instance("me-1").await.unwrap();
    let err = vm.ip().await.unwrap_err();
    assert!(err.govc().unwrap().is_not_found(), "{err:?}");
    assert_eq!(vm.cached_ip(), None);

    let (mock, calls) = scripted(|c| match c.name() {
        "vm.ip" => out(""),
        _ => happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let vm = cloud.get_instance("me-1").await.unwrap();
    let err = vm.ip().await.unwrap_err();
    assert!(
        matches!(&err, CloudError::IpTimeout { vm, seen, .. } if vm == "me-1" && seen.is_empty()),
        "{err:?}"
    );
    assert_eq!(calls.names(), ["vm.info", "vm.ip"]);
}

// ---------------------------------------------------------------------------
// 11. source checks
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_source_is_checked_once_before_the_first_clone() {
    let (mock, calls) = scripted(happy);
    let s = Settings {
        check_sources: true,
        ..settings(4)
    };
    let (cloud, _keys) = cloud_with(mock, config(), s);
    cloud
        .launch(IMAGE, &options("c-1", WaitStage::None))
        .await
        .unwrap();
    cloud
        .launch(IMAGE, &options("c-2", WaitStage::None))
        .await
        .unwrap();
    let names = calls.names();
    assert_eq!(names[0], "vm.info", "{names:?}");
    assert_eq!(names[1], "vm.clone", "{names:?}");
    assert_eq!(
        names.iter().filter(|n| *n == "vm.info").count(),
        1,
        "cached: {names:?}"
    );
    assert_eq!(
        calls.all()[0],
        sv(&[
            "vm.info",
            "-json=true",
            "-e=true",
            "--",
            &format!("{FOLDER}/{IMAGE}")
        ])
    );
}

#[tokio::test]
async fn the_step_hook_hears_each_step_in_order() {
    let (mock, _calls) = scripted(happy);
    let (cloud, _keys) = new_cloud(mock);
    let heard: Arc<Mutex<Vec<(String, Step)>>> = Arc::default();
    let h = heard.clone();
    let options = LaunchOptions {
        on_step: Some(vmw_cloud::StepHook::new(move |vm, step| {
            h.lock().unwrap().push((vm.to_owned(), step));
        })),
        ..options("hooked-1", WaitStage::Ip)
    };
    cloud.launch(IMAGE, &options).await.unwrap();
    let heard = heard.lock().unwrap().clone();
    assert!(heard.iter().all(|(vm, _)| vm == "hooked-1"));
    assert_eq!(
        heard.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [
            Step::Clone,
            Step::WriteGuestinfo,
            Step::Configure,
            Step::PowerOn,
            Step::WaitIp
        ]
    );
}
