//! The cloud layer against a scripted govc holding a small fake inventory:
//! the exact command line of every step, a failure injected at each step of
//! launch, snapshot and delete (with the rollback calls and the errors
//! returned), idempotent power and deletion, the ownership checks before
//! every destruction, clones of unknown outcome, cancellation, cleanup, and
//! names and ordering under concurrent launches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vmw_cloud::{
    Cloud, CloudBuilder, CloudError, Image, KeyPair, Kind, LaunchOptions, Removal, Scope, Settings,
    Step, WaitStage, parse_marker,
};
use vmw_config::{Secret, VmwareConfig};
use vmw_govc::{Command, ErrorKind, Govc, GovcError, MockGovc, Output, VmRef};

const FOLDER: &str = "/DC0/vm";
const POOL: &str = "/DC0/host/DC0_C0/Resources";
const IMAGE: &str = "TEMPLATE-cloud-init-jammy";
/// The `-annotation` of an instance's clone, its launch id masked (see
/// [`Calls::all`]).
const ANNOTATION_INSTANCE: &str = "-annotation=made by vmw (tag: me, kind: instance, launch: *)";
const ANNOTATION_IMAGE: &str = "-annotation=made by vmw (tag: me, kind: image, launch: *)";

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
/// A connection that broke in the middle of a call.
const STDERR_CONNECTION_LOST: &str = "govc: Post \"https://vc.example/sdk\": read tcp 10.0.0.1:50412->10.0.0.2:443: read: connection reset by peer";
/// vCenter met an object being deleted or created while it answered.
const STDERR_INVENTORY_CHANGED: &str = "govc: ServerFaultCode: The object 'vim.VirtualMachine:vm-101' has already been deleted or has not been completely created";

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
        // A clone of unknown outcome is looked for twice: now and after
        // this long.
        clone_grace: Duration::from_millis(300),
        ..Settings::default()
    }
}

/// A cloud tagged `me` on `govc`; the returned directory holds its key pair
/// and its SSH host key store (never the user's), and must outlive the
/// cloud.
fn cloud_with<G: Govc + 'static>(
    govc: G,
    cfg: VmwareConfig,
    mut s: Settings,
) -> (Cloud<G>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let base = camino::Utf8Path::from_path(dir.path()).unwrap();
    let path = base.join("ssh");
    let key = KeyPair::generated_in(&path, "me".into()).unwrap();
    if s.known_hosts.is_none() {
        s.known_hosts = Some(vmw_ssh::KnownHosts::new(base.join("known_hosts")));
    }
    let cloud = CloudBuilder::new("me")
        .timestamp(false)
        .config(cfg)
        .key_pair(key)
        .settings(s)
        .build_with(govc)
        .unwrap();
    (cloud, dir)
}

fn new_cloud<G: Govc + 'static>(govc: G) -> (Cloud<G>, tempfile::TempDir) {
    cloud_with(govc, config(), settings(4))
}

// ---------------------------------------------------------------------------
// A fake inventory: what the scripted vCenter holds
// ---------------------------------------------------------------------------

/// One VM of the fake inventory.
#[derive(Clone, Debug)]
struct FakeVm {
    annotation: String,
    template: bool,
    moref: String,
    power: &'static str,
    /// A clone still under way: invisible to lookups until then (but its
    /// name is taken).
    ready_at: Instant,
}

impl FakeVm {
    fn visible(&self) -> bool {
        Instant::now() >= self.ready_at
    }
}

#[derive(Default)]
struct InventoryState {
    vms: BTreeMap<String, FakeVm>,
    next_moref: u64,
}

/// The VMs of the scripted vCenter, by inventory path. Shared by the mock's
/// answers and the test.
#[derive(Clone, Default)]
struct Inventory(Arc<Mutex<InventoryState>>);

impl Inventory {
    fn state(&self) -> std::sync::MutexGuard<'_, InventoryState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a powered-off VM at `path` now; returns its moref.
    fn add(&self, path: &str, annotation: &str) -> String {
        self.insert(path, annotation, false, Instant::now())
    }

    /// Adds a vSphere template at `path`.
    fn add_template(&self, path: &str, annotation: &str) {
        self.insert(path, annotation, true, Instant::now());
    }

    fn insert(&self, path: &str, annotation: &str, template: bool, ready_at: Instant) -> String {
        let mut st = self.state();
        st.next_moref += 1;
        let moref = format!("vm-{}", 100 + st.next_moref);
        st.vms.insert(
            path.to_owned(),
            FakeVm {
                annotation: annotation.to_owned(),
                template,
                moref: moref.clone(),
                power: "poweredOff",
                ready_at,
            },
        );
        moref
    }

    /// The VM at `path`, if it can be seen.
    fn get(&self, path: &str) -> Option<FakeVm> {
        self.state().vms.get(path).filter(|v| v.visible()).cloned()
    }

    fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    fn annotation(&self, path: &str) -> Option<String> {
        self.get(path).map(|v| v.annotation)
    }

    fn set_annotation(&self, path: &str, annotation: &str) {
        self.state().vms.get_mut(path).unwrap().annotation = annotation.to_owned();
    }

    fn remove(&self, path: &str) -> bool {
        self.state().vms.remove(path).is_some()
    }

    /// The paths of the VMs that can be seen.
    fn paths(&self) -> Vec<String> {
        self.state()
            .vms
            .iter()
            .filter(|(_, v)| v.visible())
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// `vm.clone`: the target appears `takes` after the request (vCenter
    /// finishes it even when the client goes away); an existing name is
    /// refused. The source is not checked.
    fn clone_vm(&self, c: &Command, takes: Duration) -> Answer {
        let folder = c.flag_value("folder").expect("vm.clone without -folder");
        let [name] = c.positional() else {
            panic!("vm.clone takes one positional name: {c}")
        };
        assert!(!name.contains('/'), "vm.clone of a path: {c}");
        let path = format!("{folder}/{name}");
        if self.state().vms.contains_key(&path) {
            return fail(c, STDERR_DUPLICATE);
        }
        let annotation = c.flag_value("annotation").unwrap_or_default();
        self.insert(&path, annotation, false, Instant::now() + takes);
        if c.flag_value("on") == Some("true") {
            self.state().vms.get_mut(&path).unwrap().power = "poweredOn";
        }
        ok()
    }

    /// `vm.info -json` of the positional paths.
    fn info_json(&self, paths: &[String]) -> String {
        let vms: Vec<Value> = paths
            .iter()
            .filter_map(|p| {
                let vm = self.get(p)?;
                Some(json!({
                    "name": p.rsplit('/').next().unwrap(),
                    "self": {"type": "VirtualMachine", "value": vm.moref},
                    "config": {
                        "template": vm.template,
                        "annotation": vm.annotation,
                        "uuid": format!("4200{}", vm.moref),
                        "guestId": "",
                        "hardware": {"numCPU": 1, "memoryMB": 1024},
                    },
                    "runtime": {"powerState": vm.power},
                    "guest": {},
                }))
            })
            .collect();
        let list = if vms.is_empty() {
            Value::Null
        } else {
            Value::Array(vms)
        };
        json!({ "virtualMachines": list }).to_string()
    }

    /// `find`: VMs by folder, depth, name glob and property globs; pools
    /// from the fixture.
    fn find(&self, c: &Command) -> Answer {
        if c.flag_value("type") == Some("p") {
            return out(FIND_POOLS);
        }
        assert_eq!(c.flag_value("type"), Some("m"), "{c}");
        let (root, props) = c.positional().split_first().expect("find without a root");
        let root = root.trim_end_matches('/');
        let props: Vec<(&str, &str)> = props
            .chunks(2)
            .map(|kv| (kv[0].strip_prefix('-').unwrap(), kv[1].as_str()))
            .collect();
        let shallow = match c.flag_value("maxdepth") {
            Some("1") => true,
            None => false,
            Some(d) => panic!("unexpected -maxdepth={d}"),
        };
        let st = self.state();
        let found: Vec<&String> = st
            .vms
            .iter()
            .filter(|(_, vm)| vm.visible())
            .filter(|(path, vm)| {
                let (folder, name) = path.rsplit_once('/').unwrap();
                let placed = if shallow {
                    folder == root
                } else {
                    path.starts_with(&format!("{root}/"))
                };
                placed
                    && c.flag_value("name").is_none_or(|g| glob(g, name))
                    && props.iter().all(|(k, v)| match *k {
                        "config.annotation" => glob(v, &vm.annotation),
                        "config.template" => vm.template.to_string() == *v,
                        other => panic!("unexpected property filter {other}"),
                    })
            })
            .map(|(p, _)| p)
            .collect();
        out(&found.iter().map(|p| format!("{p}\n")).collect::<String>())
    }

    /// What a healthy vCenter holding this inventory answers.
    fn happy(&self, c: &Command) -> Answer {
        match c.name() {
            "vm.clone" => self.clone_vm(c, Duration::ZERO),
            "vm.change" => {
                let path = c.flag_value("vm").unwrap();
                if !self.contains(path) {
                    return not_found_at(c, path);
                }
                if let Some(annotation) = c.flag_value("annotation") {
                    self.set_annotation(path, annotation);
                }
                ok()
            }
            "vm.power" => {
                let state = if c.flag_value("on") == Some("true") {
                    "poweredOn"
                } else {
                    "poweredOff"
                };
                for path in c.positional() {
                    match self.state().vms.get_mut(path).filter(|v| v.visible()) {
                        Some(vm) => vm.power = state,
                        None => return not_found_at(c, path),
                    }
                }
                ok()
            }
            "vm.ip" => {
                let path = c.positional().last().unwrap();
                if self.contains(path) {
                    out("10.0.0.10\n")
                } else {
                    not_found_at(c, path)
                }
            }
            "object.collect" => {
                let path = &c.positional()[0];
                match self.get(path) {
                    Some(vm) => out(&power_state_json(vm.power)),
                    None => fail(c, &format!("govc: {path} not found\n")),
                }
            }
            "vm.destroy" => {
                for path in c.positional() {
                    if !self.contains(path) {
                        return not_found_at(c, path);
                    }
                    self.remove(path);
                }
                ok()
            }
            "vm.info" => out(&self.info_json(c.positional())),
            "find" => self.find(c),
            _ => panic!("unexpected govc call: {c}"),
        }
    }
}

/// govc's glob: `*` and `?` (vmw never sends `[`).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((s, m)) = star {
            pi = s + 1;
            ti = m + 1;
            star = Some((s, m + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
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

    /// Every call as it was made.
    fn raw(&self) -> Vec<Vec<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every call, with the launch id of each `-annotation` checked (16 hex
    /// digits) and replaced by `*`.
    fn all(&self) -> Vec<Vec<String>> {
        self.raw().into_iter().map(mask_launch).collect()
    }

    /// The subcommand of each call.
    fn names(&self) -> Vec<String> {
        self.raw().into_iter().map(|a| a[0].clone()).collect()
    }

    fn len(&self) -> usize {
        self.raw().len()
    }

    /// The calls made after the first `n`.
    fn since(&self, n: usize) -> Vec<Vec<String>> {
        self.all().split_off(n)
    }

    /// The calls of subcommand `name`.
    fn of(&self, name: &str) -> Vec<Vec<String>> {
        self.all().into_iter().filter(|a| a[0] == name).collect()
    }

    /// The launch ids of the `vm.clone` calls, in order.
    fn launch_ids(&self) -> Vec<String> {
        self.raw()
            .iter()
            .filter(|a| a[0] == "vm.clone")
            .map(|a| launch_in(a))
            .collect()
    }
}

fn is_launch_id(s: &str) -> bool {
    s.len() == 16 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The launch id in the `-annotation` of a `vm.clone` argv.
fn launch_in(argv: &[String]) -> String {
    let text = argv
        .iter()
        .find_map(|a| a.strip_prefix("-annotation="))
        .unwrap_or_else(|| panic!("no -annotation in {argv:?}"));
    let launch = parse_marker(text)
        .unwrap_or_else(|| panic!("not vmw's marker: {text}"))
        .launch
        .unwrap_or_else(|| panic!("no launch id in {text}"));
    assert!(is_launch_id(&launch), "{launch}");
    launch
}

fn mask_launch(argv: Vec<String>) -> Vec<String> {
    argv.into_iter()
        .map(|a| match a.strip_prefix("-annotation=") {
            Some(text) => match parse_marker(text).and_then(|m| m.launch) {
                Some(l) => {
                    assert!(is_launch_id(&l), "launch id {l:?} in {text}");
                    a.replace(&format!("launch: {l})"), "launch: *)")
                }
                None => a,
            },
            None => a,
        })
        .collect()
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

/// A mock answering like a healthy vCenter holding `inv`.
fn healthy(inv: &Inventory) -> (MockGovc, Calls) {
    let inv = inv.clone();
    scripted(move |c| inv.happy(c))
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

/// govc's finder naming `path`.
fn not_found_at(c: &Command, path: &str) -> Answer {
    fail(c, &format!("govc: vm '{path}' not found\n"))
}

/// govc's finder naming the first positional argument.
fn vm_not_found(c: &Command) -> Answer {
    let path = c.positional().first().cloned().unwrap_or_default();
    not_found_at(c, &path)
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

fn sv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The inventory path of `name` in the folder.
fn at(name: &str) -> String {
    format!("{FOLDER}/{name}")
}

fn vm_ref(name: &str) -> VmRef {
    VmRef::in_folder(FOLDER, name).unwrap()
}

fn refs(names: &[&str]) -> Vec<VmRef> {
    names.iter().map(|n| vm_ref(n)).collect()
}

/// vmw's marker of tag `me`.
fn marker(kind: &str, launch: &str) -> String {
    format!("made by vmw (tag: me, kind: {kind}, launch: {launch})")
}

/// The `vm.clone` argv of a launch from `source` (a name in the folder),
/// launch id masked.
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
    sv(&["vm.power", "-on=true", "--", &at(name)])
}

fn destroy_argv(name: &str) -> Vec<String> {
    sv(&["vm.destroy", "--", &at(name)])
}

fn info_argv(name: &str) -> Vec<String> {
    sv(&["vm.info", "-json=true", "-e=false", "--", &at(name)])
}

/// The one search a cloud tagged `me` makes before its first generated name.
fn find_names_argv() -> Vec<String> {
    sv(&["find", "-type=m", "-name=me-*", "-maxdepth=1", "--", FOLDER])
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

/// The number in a generated name `me-<n>` (or in its inventory path).
fn number_of(name: &str) -> u64 {
    let name = name.rsplit('/').next().unwrap();
    name.strip_prefix("me-")
        .unwrap_or_else(|| panic!("{name} is not me-<n>"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not me-<n>"))
}

/// The VM name a command is about (the last element of its path).
fn vm_name_of(c: &Command) -> Option<String> {
    let text = match c.name() {
        "vm.change" => c.flag_value("vm")?.to_owned(),
        "vm.clone" | "vm.power" | "vm.ip" | "vm.destroy" | "vm.info" => {
            c.positional().last()?.clone()
        }
        _ => return None,
    };
    Some(text.rsplit('/').next().unwrap().to_owned())
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

/// Waits (up to `limit`) until `done` holds.
async fn eventually(limit: Duration, what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// govc wrappers that make calls take time
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

/// Answers the listed subcommands only after a while: the request reaches
/// the scripted vCenter at once (it is logged and acted on), the answer
/// comes later. A dropped call is a client going away.
struct Delay<G> {
    inner: G,
    delays: Vec<(&'static str, Duration)>,
}

impl<G> Delay<G> {
    fn new(inner: G, delays: &[(&'static str, Duration)]) -> Self {
        Self {
            inner,
            delays: delays.to_vec(),
        }
    }
}

impl<G: Govc> Govc for Delay<G> {
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
            let answer = self.inner.run(command).await;
            if let Some((_, d)) = self.delays.iter().find(|(n, _)| *n == command.name()) {
                tokio::time::sleep(*d).await;
            }
            answer
        })
    }
}

// ---------------------------------------------------------------------------
// 1. Launch: the exact command lines
// ---------------------------------------------------------------------------

#[tokio::test]
async fn launch_runs_clone_one_change_power_on_and_ip_with_exact_argv() {
    let inv = Inventory::default();
    let seen: Arc<Mutex<Vec<SeenFile>>> = Arc::default();
    let seen_in_mock = seen.clone();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| {
        if c.name() == "vm.change" {
            seen_in_mock.lock().unwrap().extend(read_guestinfo_files(c));
        }
        i.happy(c)
    });
    let (cloud, _keys) = new_cloud(mock);
    let user_data = b"#cloud-config\n# tools\npackages: [hello]\n".to_vec();
    let launch = LaunchOptions {
        user_data: Some(user_data),
        wait: WaitStage::Ip,
        ..LaunchOptions::default()
    };
    let instance = cloud.launch(IMAGE, &launch).await.unwrap();
    // The folder holds no `me-<n>` yet: the first number.
    assert_eq!(instance.name(), "me-1");
    assert_eq!(instance.vm(), &vm_ref("me-1"));
    let path = at("me-1");
    assert_eq!(instance.cached_ip(), Some(ip("10.0.0.10")));
    assert_eq!(cloud.tracked_instances(), refs(&["me-1"]));

    let all = calls.all();
    assert_eq!(all.len(), 6, "{all:#?}");
    assert_eq!(all[0], find_names_argv());
    // The target path is checked free right before the clone.
    assert_eq!(all[1], info_argv("me-1"));
    assert_eq!(
        all[2],
        sv(&[
            "vm.clone",
            "-vm=/DC0/vm/TEMPLATE-cloud-init-jammy",
            "-on=false",
            "-ds=LocalDS_0",
            "-pool=/DC0/host/DC0_C0/Resources",
            "-folder=/DC0/vm",
            "-annotation=made by vmw (tag: me, kind: instance, launch: *)",
            "-link=false",
            "--",
            "me-1",
        ])
    );
    // The marker carries this launch's id, and the VM made carries it.
    let launch_id = launch_in(&calls.raw()[2]);
    assert_eq!(instance.launch_id(), Some(launch_id.as_str()));
    assert_eq!(
        inv.annotation(&path).unwrap(),
        format!("made by vmw (tag: me, kind: instance, launch: {launch_id})")
    );

    let files = seen.lock().unwrap().clone();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[0].key, "guestinfo.metadata");
    assert_eq!(files[1].key, "guestinfo.userdata");
    assert_eq!(
        all[3],
        sv(&[
            "vm.change",
            "-vm=/DC0/vm/me-1",
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
    assert_eq!(metadata["instance-id"].as_str(), Some("me-1"));
    assert_eq!(metadata["local-hostname"].as_str(), Some("me-1"));

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

    assert_eq!(all[4], sv(&["vm.power", "-on=true", "--", "/DC0/vm/me-1"]));
    assert_eq!(all[5].len(), 4, "{:?}", all[5]);
    assert_eq!(all[5][2..], sv(&["--", "/DC0/vm/me-1"]));
    let wait = ip_wait_of(&all[5]);
    assert!(
        wait > Duration::from_secs(1) && wait <= Duration::from_secs(2),
        "{wait:?}"
    );
    assert_eq!(inv.get(&path).unwrap().power, "poweredOn");

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

    // The next launch counts on without searching again, with a new id.
    let n = calls.len();
    let next = cloud
        .launch(IMAGE, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(next.name(), "me-2");
    assert_eq!(
        calls.names()[n..],
        sv(&["vm.info", "vm.clone", "vm.change", "vm.power", "vm.ip"])
    );
    assert_eq!(calls.all()[n], info_argv("me-2"));
    let ids = calls.launch_ids();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(next.launch_id(), Some(ids[1].as_str()));
}

#[tokio::test]
async fn launch_passes_hardware_extra_config_linked_clone_and_vendor_data() {
    let inv = Inventory::default();
    let seen: Arc<Mutex<Vec<SeenFile>>> = Arc::default();
    let seen_in_mock = seen.clone();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| {
        if c.name() == "vm.change" {
            seen_in_mock.lock().unwrap().extend(read_guestinfo_files(c));
        }
        i.happy(c)
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
    // A name given: no search of the folder (only its path is checked
    // free); no vm.ip without a wait.
    assert_eq!(all.len(), 4, "{all:#?}");
    assert_eq!(all[0], info_argv("web-1"));
    assert_eq!(
        all[1],
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
        all[2],
        sv(&[
            "vm.change",
            "-vm=/DC0/vm/web-1",
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
    assert_eq!(all[3], power_on_argv("web-1"));

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
    let all = calls.since(4);
    let mut expected = clone_argv("x", "web-2", &["-c=3", "-m=1536"], false);
    expected[1] = "-vm=/DC0/vm/other/TEMPLATE-cloud-init-focal".to_owned();
    assert_eq!(all[..2], [info_argv("web-2"), expected]);
    assert!(
        all[2].contains(&"-e=guestinfo.userdata.encoding=gzip+base64".to_owned()),
        "{:?}",
        all[2]
    );
    let files = seen.lock().unwrap().clone();
    let user = vmw_userdata::decode(files[1].contents.as_bytes(), "gzip+base64").unwrap();
    assert!(String::from_utf8(user).unwrap().starts_with(&big));
    assert_eq!(cloud.tracked_instances(), refs(&["web-1", "web-2"]));
    assert_eq!(inv.paths(), [at("web-1"), at("web-2")]);
}

// ---------------------------------------------------------------------------
// 2. Names: one search, then counting; taken names are skipped, not touched
// ---------------------------------------------------------------------------

#[tokio::test]
async fn generated_names_continue_after_the_highest_number_in_the_folder() {
    let inv = Inventory::default();
    for name in ["me-3", "me-10", "me-07", "me-x", "me-too-99", IMAGE] {
        inv.add(&at(name), "");
    }
    // Deeper folders and other folders do not count.
    inv.add("/DC0/vm/sub/me-50", "");
    inv.add("/DC0/vmother/me-60", "");
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let a = cloud
        .launch(IMAGE, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(a.name(), "me-11");
    assert_eq!(calls.all()[0], find_names_argv());
    let b = cloud
        .launch(IMAGE, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(b.name(), "me-12");
    assert_eq!(calls.of("find").len(), 1, "one search per cloud");
}

#[tokio::test]
async fn a_taken_name_moves_the_launch_to_the_next_number_and_never_touches_that_vm() {
    // Made by someone else after the folder was searched and after vmw
    // checked the path free: neither saw them, the clone meets them.
    let inv = Inventory::default();
    let theirs = "notes of the database team";
    let other_run = marker("instance", "00000000deadbeef");
    let (i, o) = (inv.clone(), other_run.clone());
    let (mock, calls) = scripted(move |c| match (c.name(), vm_name_of(c).as_deref()) {
        ("find", _) => out(""),
        ("vm.clone", Some("me-1")) => {
            i.add(&at("me-1"), theirs);
            i.clone_vm(c, Duration::ZERO)
        }
        ("vm.clone", Some("me-2")) => {
            i.add(&at("me-2"), &o);
            i.clone_vm(c, Duration::ZERO)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let a = cloud
        .launch(IMAGE, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(a.name(), "me-3");
    assert_eq!(
        calls.all()[..7],
        [
            find_names_argv(),
            info_argv("me-1"),
            clone_argv(IMAGE, "me-1", &[], false),
            info_argv("me-2"),
            clone_argv(IMAGE, "me-2", &[], false),
            info_argv("me-3"),
            clone_argv(IMAGE, "me-3", &[], false),
        ]
    );
    assert_eq!(calls.names()[7..], sv(&["vm.change", "vm.power", "vm.ip"]));
    // Each attempt had its own launch id; the instance has the last.
    let ids = calls.launch_ids();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3);
    assert_eq!(a.launch_id(), Some(ids[2].as_str()));
    // The VMs met were never looked at after the clone met them, nor
    // changed or destroyed.
    let untouched = |from: usize| {
        for argv in &calls.all()[from..] {
            assert!(
                !argv.contains(&at("me-1")) && !argv.contains(&at("me-2")),
                "{argv:?}"
            );
            assert_ne!(argv.get(1), Some(&format!("-vm={}", at("me-1"))));
            assert_ne!(argv.get(1), Some(&format!("-vm={}", at("me-2"))));
        }
    };
    untouched(5);
    assert_eq!(inv.annotation(&at("me-1")).unwrap(), theirs);
    assert_eq!(inv.annotation(&at("me-2")).unwrap(), other_run);
    assert_eq!(cloud.tracked_instances(), refs(&["me-3"]));

    // The next launch counts on.
    let b = cloud
        .launch(IMAGE, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(b.name(), "me-4");

    // clean() removes only what this cloud made.
    let n = calls.len();
    cloud.clean().await.unwrap();
    let destroyed: BTreeSet<String> = calls
        .since(n)
        .into_iter()
        .filter(|a| a[0] == "vm.destroy")
        .map(|a| a[2].clone())
        .collect();
    assert_eq!(destroyed, BTreeSet::from([at("me-3"), at("me-4")]));
    untouched(5);
    assert_eq!(inv.paths(), [at("me-1"), at("me-2")]);
}

#[tokio::test]
async fn the_check_before_the_clone_skips_a_taken_name_without_cloning_onto_it() {
    // Made by someone else after the folder was searched (the search does
    // not see them): the lookup of the exact path right before the clone
    // does, and the launch moves on without a clone.
    let inv = Inventory::default();
    let theirs = "notes of the database team";
    let other_run = marker("instance", "00000000deadbeef");
    inv.add(&at("me-1"), theirs);
    inv.add(&at("me-2"), &other_run);
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "find" => out(""),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let a = cloud
        .launch(IMAGE, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(a.name(), "me-3");
    assert_eq!(
        calls.all()[..5],
        [
            find_names_argv(),
            info_argv("me-1"),
            info_argv("me-2"),
            info_argv("me-3"),
            clone_argv(IMAGE, "me-3", &[], false),
        ]
    );
    assert_eq!(calls.names()[5..], sv(&["vm.change", "vm.power", "vm.ip"]));
    // One clone, of the free name; its launch id is the instance's.
    assert_eq!(calls.launch_ids(), [a.launch_id().unwrap().to_owned()]);
    // The VMs met were looked up once each, never cloned onto, changed,
    // powered or destroyed.
    for argv in &calls.all()[3..] {
        assert!(
            !argv.contains(&at("me-1")) && !argv.contains(&at("me-2")),
            "{argv:?}"
        );
    }
    for argv in calls.of("vm.clone") {
        assert_eq!(argv.last().unwrap(), "me-3", "{argv:?}");
    }
    assert_eq!(inv.annotation(&at("me-1")).unwrap(), theirs);
    assert_eq!(inv.annotation(&at("me-2")).unwrap(), other_run);
    assert_eq!(cloud.tracked_instances(), refs(&["me-3"]));

    // A fleet's lane whose reserved number is taken meanwhile moves on to
    // the next free number; the order of the names is kept.
    inv.add(&at("me-5"), theirs);
    let n = calls.len();
    let fleet = cloud
        .launch_many(IMAGE, 2, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert!(fleet.failures.is_empty(), "{:?}", fleet.failures);
    let names: Vec<&str> = fleet.instances.iter().map(|i| i.name()).collect();
    assert_eq!(names, ["me-4", "me-6"]);
    let cloned: Vec<String> = calls
        .since(n)
        .into_iter()
        .filter(|a| a[0] == "vm.clone")
        .map(|a| a.last().unwrap().clone())
        .collect();
    assert_eq!(cloned.len(), 2);
    assert!(!cloned.contains(&"me-5".to_owned()), "{cloned:?}");
    assert_eq!(inv.annotation(&at("me-5")).unwrap(), theirs);
    let mut tracked = cloud.tracked_instances();
    tracked.sort();
    assert_eq!(tracked, refs(&["me-3", "me-4", "me-6"]));
}

#[tokio::test]
async fn a_taken_name_given_by_the_caller_is_an_error() {
    // Taken after vmw checked the path free: the clone meets it, and a
    // name given by the caller is not replaced by another.
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.add(&at("fixed-1"), "");
            i.clone_vm(c, Duration::ZERO)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("fixed-1", WaitStage::Ip))
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::Clone));
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::DuplicateName);
    assert!(
        matches!(
            &err,
            CloudError::Step {
                removed: false,
                rollback: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        calls.all(),
        [
            info_argv("fixed-1"),
            clone_argv(IMAGE, "fixed-1", &[], false)
        ]
    );
    assert_eq!(inv.annotation(&at("fixed-1")).unwrap(), "");
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test]
async fn a_taken_name_given_by_the_caller_is_name_taken_without_a_clone() {
    let inv = Inventory::default();
    inv.add(&at("fixed-2"), "owned by the database team");
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("fixed-2", WaitStage::Ip))
        .await
        .unwrap_err();
    let CloudError::Step {
        vm,
        step,
        source,
        removed,
        rollback,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(vm, &at("fixed-2"));
    assert_eq!(*step, Step::Clone);
    assert!(
        matches!(source.as_ref(), CloudError::NameTaken { vm } if *vm == at("fixed-2")),
        "{source:?}"
    );
    assert!(!removed && rollback.is_none(), "{err:?}");
    assert!(err.govc().is_none(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("a VM is already at /DC0/vm/fixed-2"),
        "{text}"
    );
    assert!(text.contains("nothing to remove"), "{text}");
    // One lookup: no clone, no other launch's name, nothing destroyed.
    assert_eq!(calls.all(), [info_argv("fixed-2")]);
    assert_eq!(
        inv.annotation(&at("fixed-2")).unwrap(),
        "owned by the database team"
    );
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test]
async fn a_launch_gives_up_after_a_hundred_taken_names() {
    let inv = Inventory::default();
    for n in 1..=150 {
        inv.add(&at(&format!("me-{n}")), "");
    }
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "find" => out(""),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &LaunchOptions::wait_for_ip())
        .await
        .unwrap_err();
    let CloudError::Step {
        vm,
        step,
        source,
        removed,
        rollback,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(vm, &at("me-100"));
    assert_eq!(*step, Step::Clone);
    assert!(!removed && rollback.is_none());
    assert!(
        matches!(source.as_ref(), CloudError::NameTaken { vm } if *vm == at("me-100")),
        "{source:?}"
    );
    let names = calls.names();
    assert_eq!(names.len(), 101, "one search and 100 lookups");
    assert!(names[1..].iter().all(|n| n == "vm.info"), "{names:?}");
    assert_eq!(calls.all()[100], info_argv("me-100"));
    assert_eq!(inv.paths().len(), 150);
    assert!(cloud.tracked_instances().is_empty());
}

// ---------------------------------------------------------------------------
// 3. Launch: a failure at every step
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
) -> (CloudError, Calls, Vec<VmRef>, Inventory) {
    let inv = Inventory::default();
    let i = inv.clone();
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
        _ => i.happy(c),
    });
    let s = Settings {
        concurrency: 1,
        ip_wait: Duration::from_millis(300),
        ..settings(1)
    };
    let (cloud, _keys) = cloud_with(mock, config(), s);
    let err = cloud
        .launch(IMAGE, &options(vm, WaitStage::Ip))
        .await
        .unwrap_err();
    (err, calls, cloud.tracked_instances(), inv)
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
    let path = at("half-1");
    for (fail_at, step) in cases {
        let (err, calls, tracked, inv) = launch_failing("half-1", fail_at, false).await;
        let CloudError::Step {
            vm,
            step: got,
            source,
            removed,
            rollback,
        } = &err
        else {
            panic!("{fail_at:?}: {err:?}")
        };
        assert_eq!(vm, &path, "{fail_at:?}");
        assert_eq!(*got, step, "{fail_at:?}");
        assert!(rollback.is_none(), "{fail_at:?}: {rollback:?}");
        assert!(*removed, "{fail_at:?}: the half-made VM was removed");
        assert!(
            err.to_string().contains("was removed"),
            "{fail_at:?}: {err}"
        );
        assert!(
            tracked.is_empty(),
            "{fail_at:?}: still tracked: {tracked:?}"
        );
        assert!(!inv.contains(&path), "{fail_at:?}: still in the inventory");

        let all = calls.all();
        assert_eq!(
            all[..2],
            [info_argv("half-1"), clone_argv(IMAGE, "half-1", &[], false)],
            "{fail_at:?}"
        );
        assert_eq!(all[2][0], "vm.change", "{fail_at:?}");
        // The rollback: the exact path looked up, then destroyed.
        assert_eq!(
            all[all.len() - 2..],
            [info_argv("half-1"), destroy_argv("half-1")],
            "{fail_at:?}"
        );
        let names = calls.names();
        assert_eq!(
            names.iter().filter(|n| *n == "vm.destroy").count(),
            1,
            "{fail_at:?}: {names:?}"
        );
        let expected_before_rollback: &[&str] = match fail_at {
            FailAt::Configure => &["vm.info", "vm.clone", "vm.change"],
            FailAt::PowerOn => &["vm.info", "vm.clone", "vm.change", "vm.power"],
            FailAt::PowerOnWrongState => &[
                "vm.info",
                "vm.clone",
                "vm.change",
                "vm.power",
                "object.collect",
            ],
            FailAt::IpEmpty | FailAt::IpKilled => {
                &["vm.info", "vm.clone", "vm.change", "vm.power", "vm.ip"]
            }
            FailAt::IpLinkLocalOnly => {
                // Polled until the wait ended, then gave up.
                let polls = names.iter().filter(|n| *n == "vm.ip").count();
                assert!(polls >= 2, "{polls} vm.ip calls");
                &[]
            }
        };
        if !expected_before_rollback.is_empty() {
            assert_eq!(
                names[..names.len() - 2],
                sv(expected_before_rollback),
                "{fail_at:?}"
            );
        }

        match (fail_at, source.as_ref()) {
            (FailAt::Configure | FailAt::PowerOn, CloudError::Govc(e)) => {
                assert_eq!(e.kind(), ErrorKind::Other, "{fail_at:?}");
                assert_eq!(e.command().unwrap().name(), all[names.len() - 3][0]);
            }
            (FailAt::PowerOnWrongState, CloudError::PowerState { vm, wanted, found }) => {
                assert_eq!(vm, &path);
                assert_eq!(*wanted, "powered on");
                assert!(found.contains("Suspended"), "{found}");
            }
            (FailAt::IpEmpty, CloudError::IpTimeout { vm, seen, .. }) => {
                assert_eq!(vm, &path);
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
            (_, other) => panic!("{fail_at:?}: unexpected source {other:?}"),
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
    for fail_at in [FailAt::Configure, FailAt::PowerOn, FailAt::IpEmpty] {
        let (err, calls, tracked, inv) = launch_failing("half-2", fail_at, true).await;
        let CloudError::Step {
            rollback, removed, ..
        } = &err
        else {
            panic!("{fail_at:?}: {err:?}")
        };
        assert!(!removed);
        let rollback = rollback.as_deref().unwrap_or_else(|| panic!("{fail_at:?}"));
        let e = rollback.govc().unwrap();
        assert_eq!(e.kind(), ErrorKind::Other);
        assert_eq!(e.command().unwrap().argv(), destroy_argv("half-2"));
        assert_eq!(
            calls.all()[calls.len() - 2..],
            [info_argv("half-2"), destroy_argv("half-2")]
        );
        // Still there, so a later clean() tries again.
        assert_eq!(tracked, refs(&["half-2"]), "{fail_at:?}");
        assert!(inv.contains(&at("half-2")));
        let text = err.to_string();
        assert!(text.contains("failed too"), "{text}");
        assert!(text.contains("Permission to perform"), "{text}");
    }
}

#[tokio::test]
async fn a_rollback_finding_the_vm_gone_counts_as_done() {
    // Gone before the rollback: the lookup finds nothing, nothing is
    // destroyed.
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.power" => {
            i.remove(&at("gone-1"));
            fail(c, STDERR_OTHER)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("gone-1", WaitStage::Ip))
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::PowerOn));
    assert!(matches!(&err, CloudError::Step { rollback: None, .. }));
    assert!(cloud.tracked_instances().is_empty());
    assert_eq!(
        calls.names(),
        ["vm.info", "vm.clone", "vm.change", "vm.power", "vm.info"]
    );

    // Gone between the lookup and the destroy: govc names our path, and a
    // second lookup confirms it.
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.power" => fail(c, STDERR_OTHER),
        "vm.destroy" => {
            i.remove(&at("gone-2"));
            vm_not_found(c)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("gone-2", WaitStage::Ip))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CloudError::Step { rollback: None, .. }),
        "{err:?}"
    );
    assert!(cloud.tracked_instances().is_empty());
    assert_eq!(
        calls.all()[4..],
        [
            info_argv("gone-2"),
            destroy_argv("gone-2"),
            info_argv("gone-2")
        ]
    );
}

#[tokio::test]
async fn a_rollback_refuses_a_vm_with_another_launch_id() {
    // While the launch ran, the VM at its path was replaced by another
    // launch's VM of the same name.
    let other = marker("instance", "00000000deadbeef");
    let inv = Inventory::default();
    let (i, o) = (inv.clone(), other.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.power" => {
            i.remove(&at("swap-1"));
            i.add(&at("swap-1"), &o);
            fail(c, STDERR_OTHER)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("swap-1", WaitStage::Ip))
        .await
        .unwrap_err();
    let CloudError::Step {
        step,
        removed,
        rollback,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*step, Step::PowerOn);
    assert!(!removed);
    let Some(CloudError::NotOurs { vm, reason }) = rollback.as_deref() else {
        panic!("{rollback:?}")
    };
    assert_eq!(vm, &at("swap-1"));
    assert!(reason.contains("00000000deadbeef"), "{reason}");
    assert!(calls.of("vm.destroy").is_empty(), "{:?}", calls.all());
    assert_eq!(calls.all().last().unwrap(), &info_argv("swap-1"));
    assert_eq!(inv.annotation(&at("swap-1")).unwrap(), other);

    // clean() refuses it too: nothing of another launch is destroyed. It
    // is no longer this cloud's to track: the next clean() leaves it.
    let err = cloud.clean().await.unwrap_err();
    assert!(
        matches!(err.errors.as_slice(), [CloudError::NotOurs { .. }]),
        "{err}"
    );
    assert!(calls.of("vm.destroy").is_empty());
    assert!(inv.contains(&at("swap-1")));
    assert!(cloud.tracked_instances().is_empty());
    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(calls.len(), n);
}

#[tokio::test]
async fn a_clone_that_fails_is_not_rolled_back() {
    // A duplicate name (taken after vmw checked the path free): the VM
    // there is not ours; it is not looked at after the clone. A missing
    // image: govc answered and nothing was made; the path is looked up
    // once. Neither is waited for or destroyed.
    for (stderr, kind) in [
        (None, ErrorKind::DuplicateName),
        (
            Some("govc: vm '/DC0/vm/TEMPLATE-cloud-init-jammy' not found\n"),
            ErrorKind::NotFound,
        ),
    ] {
        let inv = Inventory::default();
        let i = inv.clone();
        let (mock, calls) = scripted(move |c| match (c.name(), stderr) {
            ("vm.clone", Some(stderr)) => fail(c, stderr),
            ("vm.clone", None) => {
                i.add(&at("me-1"), "");
                i.happy(c)
            }
            ("vm.info", _) => i.happy(c),
            _ => panic!("unexpected govc call after a failed clone: {c}"),
        });
        let (cloud, _keys) = new_cloud(mock);
        let err = cloud
            .launch(IMAGE, &options("me-1", WaitStage::Ip))
            .await
            .unwrap_err();
        let CloudError::Step {
            vm,
            step,
            removed,
            rollback,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(vm, &at("me-1"));
        assert_eq!(*step, Step::Clone);
        assert!(rollback.is_none() && !removed);
        assert_eq!(err.govc().unwrap().kind(), kind);
        let mut expected = vec![info_argv("me-1"), clone_argv(IMAGE, "me-1", &[], false)];
        if kind == ErrorKind::NotFound {
            expected.push(info_argv("me-1"));
        }
        assert_eq!(calls.all(), expected, "{kind:?}");
        assert!(cloud.tracked_instances().is_empty());
        let left: &[String] = if kind == ErrorKind::DuplicateName {
            &[at("me-1")]
        } else {
            &[]
        };
        assert_eq!(inv.paths(), left, "{kind:?}");
    }
}

#[tokio::test]
async fn a_failed_clone_does_not_claim_a_vm_was_removed() {
    let inv = Inventory::default();
    inv.add(&at("me-1"), "");
    let (mock, _calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("me-1", WaitStage::Ip))
        .await
        .unwrap_err();
    let text = err.to_string();
    // The VM named me-1 exists and belongs to someone else: vmw did not
    // touch it, and the message must not say it removed it.
    assert!(!text.contains("was removed"), "{text}");
    assert!(text.contains("nothing to remove"), "{text}");
}

#[tokio::test]
async fn a_clone_killed_by_the_deadline_is_rolled_back() {
    // vCenter finished the clone although govc was stopped: the VM carrying
    // this launch's marker is removed.
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.clone_vm(c, Duration::ZERO).unwrap();
            killed(c)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("slow-1", WaitStage::Ip))
        .await
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::Clone));
    assert!(
        matches!(
            &err,
            CloudError::Step {
                rollback: None,
                removed: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(err.govc(), Some(GovcError::Timeout { .. })));
    assert_eq!(
        calls.all(),
        [
            info_argv("slow-1"),
            clone_argv(IMAGE, "slow-1", &[], false),
            info_argv("slow-1"),
            info_argv("slow-1"),
            destroy_argv("slow-1")
        ]
    );
    assert!(cloud.tracked_instances().is_empty());
    assert!(inv.paths().is_empty());

    // The rollback failing too is reported (after retries within the grace
    // period).
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.clone_vm(c, Duration::ZERO).unwrap();
            killed(c)
        }
        "vm.destroy" => fail(c, STDERR_OTHER),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("slow-2", WaitStage::Ip))
        .await
        .unwrap_err();
    let CloudError::Step {
        rollback, removed, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(!removed);
    assert_eq!(
        rollback.as_deref().unwrap().govc().unwrap().kind(),
        ErrorKind::Other
    );
    let names = calls.names();
    assert_eq!(names[..2], sv(&["vm.info", "vm.clone"]));
    assert!(names.len() >= 5, "{names:?}");
    for argv in &calls.all()[2..] {
        assert!(
            argv == &info_argv("slow-2") || argv == &destroy_argv("slow-2"),
            "{argv:?}"
        );
    }
    assert_eq!(cloud.tracked_instances(), refs(&["slow-2"]));
}

#[tokio::test]
async fn a_killed_clone_whose_rollback_failed_stays_tracked_for_clean() {
    let refuse = Arc::new(Mutex::new(true));
    let refusing = refuse.clone();
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.clone_vm(c, Duration::ZERO).unwrap();
            killed(c)
        }
        // The rollback fails; a later clean() succeeds.
        "vm.destroy" if *refusing.lock().unwrap() => fail(c, STDERR_OTHER),
        _ => i.happy(c),
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
    assert_eq!(cloud.tracked_instances(), refs(&["slow-3"]));
    *refuse.lock().unwrap() = false;
    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(
        calls.since(n),
        [
            info_argv("slow-3"),
            info_argv("slow-3"),
            destroy_argv("slow-3")
        ]
    );
    assert!(cloud.tracked_instances().is_empty());
    assert!(inv.paths().is_empty());
}

#[tokio::test]
async fn a_clone_of_unknown_outcome_is_looked_for_and_removed_when_it_appears() {
    // The connection broke, or govc was stopped: the clone may still
    // finish. Here it appears after a while, with this launch's marker, and
    // is removed. (A failure govc reported is settled at once: see
    // `an_answered_clone_failure_*`.)
    for lost in [true, false] {
        let inv = Inventory::default();
        let i = inv.clone();
        let (mock, calls) = scripted(move |c| match c.name() {
            "vm.clone" => {
                i.clone_vm(c, Duration::from_millis(100)).unwrap();
                if lost {
                    fail(c, STDERR_CONNECTION_LOST)
                } else {
                    killed(c)
                }
            }
            _ => i.happy(c),
        });
        let s = Settings {
            clone_grace: Duration::from_secs(2),
            ..settings(4)
        };
        let (cloud, _keys) = cloud_with(mock, config(), s);
        let err = cloud
            .launch(IMAGE, &options("lost-1", WaitStage::Ip))
            .await
            .unwrap_err();
        let CloudError::Step {
            vm,
            step,
            removed,
            rollback,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((vm.as_str(), *step), (at("lost-1").as_str(), Step::Clone));
        assert!(*removed && rollback.is_none(), "{err:?}");
        let kind = if lost {
            ErrorKind::ConnectionLost
        } else {
            ErrorKind::Timeout
        };
        assert_eq!(err.govc().unwrap().kind(), kind);
        let all = calls.all();
        assert_eq!(
            all[..2],
            [info_argv("lost-1"), clone_argv(IMAGE, "lost-1", &[], false)]
        );
        assert_eq!(all.last().unwrap(), &destroy_argv("lost-1"));
        // Looked for until it appeared, then looked up and destroyed.
        assert!(
            all[2..all.len() - 1]
                .iter()
                .all(|a| a == &info_argv("lost-1")),
            "{all:#?}"
        );
        assert!(all.len() >= 6, "{all:#?}");
        assert!(calls.of("vm.change").is_empty(), "{all:#?}");
        assert!(cloud.tracked_instances().is_empty());
        assert!(inv.paths().is_empty());
    }
}

#[tokio::test]
async fn a_clone_of_unknown_outcome_that_never_appears_may_exist_and_stays_tracked() {
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => fail(c, STDERR_CONNECTION_LOST),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let started = Instant::now();
    let err = cloud
        .launch(IMAGE, &options("lost-2", WaitStage::Ip))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300), "the grace");
    let CloudError::Step {
        removed, rollback, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(!removed);
    let Some(CloudError::MayExist { vm, waited }) = rollback.as_deref() else {
        panic!("{rollback:?}")
    };
    assert_eq!(vm, &at("lost-2"));
    assert_eq!(*waited, Duration::from_millis(300));
    assert!(err.to_string().contains("may still finish"), "{err}");
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::ConnectionLost);
    let all = calls.all();
    assert_eq!(
        all[..2],
        [info_argv("lost-2"), clone_argv(IMAGE, "lost-2", &[], false)]
    );
    assert!(
        all[2..].iter().all(|a| a == &info_argv("lost-2")),
        "{all:#?}"
    );
    assert!(all.len() >= 4, "looked for more than once: {all:#?}");
    assert!(calls.of("vm.destroy").is_empty());
    // Still tracked: clean() looks again.
    assert_eq!(cloud.tracked_instances(), refs(&["lost-2"]));

    // vCenter finishes it after all: clean() removes it.
    let launch = calls.launch_ids()[0].clone();
    inv.add(&at("lost-2"), &marker("instance", &launch));
    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(
        calls.since(n),
        [
            info_argv("lost-2"),
            info_argv("lost-2"),
            destroy_argv("lost-2")
        ]
    );
    assert!(cloud.tracked_instances().is_empty());
    assert!(inv.paths().is_empty());

    // A clean() while it has still not appeared: one look, and it stays
    // tracked (a clone that finishes later is still vmw's to remove).
    let err = cloud
        .launch(IMAGE, &options("lost-4", WaitStage::Ip))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CloudError::Step {
                removed: false,
                rollback: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(cloud.tracked_instances(), refs(&["lost-4"]));
    let n = calls.len();
    let err = cloud.clean().await.unwrap_err();
    assert!(
        matches!(err.errors.as_slice(), [CloudError::MayExist { .. }]),
        "{err:?}"
    );
    assert_eq!(calls.since(n), [info_argv("lost-4")]);
    assert_eq!(cloud.tracked_instances(), refs(&["lost-4"]));
}

#[tokio::test]
async fn a_vm_of_another_launch_at_the_target_of_an_unknown_clone_is_left_alone() {
    // The connection broke; what is at the target is another run's VM.
    let inv = Inventory::default();
    let other = marker("instance", "00000000deadbeef");
    let (i, o) = (inv.clone(), other.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.add(&at("lost-3"), &o);
            fail(c, STDERR_CONNECTION_LOST)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let err = cloud
        .launch(IMAGE, &options("lost-3", WaitStage::Ip))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CloudError::Step {
                removed: false,
                rollback: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        calls.all(),
        [
            info_argv("lost-3"),
            clone_argv(IMAGE, "lost-3", &[], false),
            info_argv("lost-3")
        ]
    );
    assert!(calls.of("vm.change").is_empty());
    assert_eq!(inv.annotation(&at("lost-3")).unwrap(), other);
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test]
async fn an_ambiguous_pool_is_explained_with_the_pools_found() {
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => fail(c, STDERR_AMBIGUOUS_POOL),
        "find" | "vm.info" => i.happy(c),
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
    // Refused before anything was made: the pools are looked up to
    // explain it, the target is not looked for after the clone.
    assert_eq!(
        calls.all(),
        [
            info_argv("pool-1"),
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
    assert!(
        err.hints().iter().any(|h| h.contains("resource_pool")),
        "{:?}",
        err.hints()
    );
    assert!(cloud.tracked_instances().is_empty());
}

/// The `vm.change` with which vmw writes `marker` on the VM `name` before
/// it removes it (exact argv, launch id not masked).
fn claim_argv(name: &str, marker: &str) -> Vec<String> {
    sv(&[
        "vm.change",
        &format!("-vm={}", at(name)),
        &format!("-annotation={marker}"),
    ])
}

#[tokio::test]
async fn an_unmarked_vm_left_by_a_lost_clone_is_claimed_after_it_settles_and_destroyed() {
    // The connection broke after vCenter had made the VM but before govc
    // wrote the annotation: the VM is there without any marker. The path
    // was free right before the clone, so it is this clone's; once it has
    // stayed unmarked for the settle time (3 s), vmw writes this launch's
    // marker on it and destroys it. (Waits the 3 s settle time.)
    let inv = Inventory::default();
    let times: Arc<Mutex<BTreeMap<&'static str, Instant>>> = Arc::default();
    let (i, t) = (inv.clone(), times.clone());
    let (mock, calls) = scripted(move |c| {
        match c.name() {
            "vm.clone" => {
                t.lock().unwrap().insert("clone", Instant::now());
                i.add(&at("unm-1"), "");
                return fail(c, STDERR_CONNECTION_LOST);
            }
            "vm.change" => {
                t.lock().unwrap().insert("claim", Instant::now());
            }
            _ => {}
        }
        i.happy(c)
    });
    // A grace shorter than the settle time: a pending claim is waited for
    // all the same.
    let (cloud, _keys) = new_cloud(mock);
    let started = Instant::now();
    let err = cloud
        .launch(IMAGE, &options("unm-1", WaitStage::Ip))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    let CloudError::Step {
        vm,
        step,
        source,
        removed,
        rollback,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((vm.as_str(), *step), (at("unm-1").as_str(), Step::Clone));
    assert!(*removed && rollback.is_none(), "{err:?}");
    assert!(
        matches!(source.as_ref(), CloudError::Govc(e) if e.kind() == ErrorKind::ConnectionLost),
        "{source:?}"
    );
    assert!(err.to_string().contains("was removed"), "{err}");

    let raw = calls.raw();
    let launch = launch_in(&raw[1]);
    let all = calls.all();
    assert_eq!(
        all[..2],
        [info_argv("unm-1"), clone_argv(IMAGE, "unm-1", &[], false)]
    );
    // Looked at while it settled, then claimed with this launch's marker,
    // looked at again (now ours), looked up and destroyed.
    let claim = raw
        .iter()
        .position(|a| a[0] == "vm.change")
        .unwrap_or_else(|| panic!("never claimed: {all:#?}"));
    assert!(
        all[2..claim].iter().all(|a| a == &info_argv("unm-1")),
        "{all:#?}"
    );
    assert!(claim >= 4, "looked at more than once first: {all:#?}");
    assert_eq!(
        raw[claim],
        claim_argv("unm-1", &marker("instance", &launch))
    );
    assert_eq!(
        all[claim + 1..],
        [
            info_argv("unm-1"),
            info_argv("unm-1"),
            destroy_argv("unm-1")
        ]
    );
    assert_eq!(calls.of("vm.change").len(), 1);

    let times = times.lock().unwrap().clone();
    let unmarked_for = times["claim"] - times["clone"];
    assert!(
        unmarked_for >= Duration::from_secs(3),
        "claimed after only {unmarked_for:?}"
    );
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    assert!(inv.paths().is_empty());
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test]
async fn an_unmarked_vm_that_gets_another_launchs_marker_while_it_settles_is_left_alone() {
    // The connection broke; the unmarked VM at the target was another
    // vmw's, whose govc writes its marker a moment later: it is not
    // claimed, changed or destroyed.
    let inv = Inventory::default();
    let other = marker("instance", "00000000deadbeef");
    let looked = Arc::new(AtomicUsize::new(0));
    let (i, o, l) = (inv.clone(), other.clone(), looked.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.add(&at("unm-2"), "");
            fail(c, STDERR_CONNECTION_LOST)
        }
        // The lookups after the clone: the second one sees the marker.
        "vm.info" if i.contains(&at("unm-2")) => {
            if l.fetch_add(1, Ordering::SeqCst) == 1 {
                i.set_annotation(&at("unm-2"), &o);
            }
            i.happy(c)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let started = Instant::now();
    let err = cloud
        .launch(IMAGE, &options("unm-2", WaitStage::Ip))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "not waited out: {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            &err,
            CloudError::Step {
                removed: false,
                rollback: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::ConnectionLost);
    assert_eq!(
        calls.all(),
        [
            info_argv("unm-2"),
            clone_argv(IMAGE, "unm-2", &[], false),
            info_argv("unm-2"),
            info_argv("unm-2"),
        ]
    );
    assert_eq!(inv.annotation(&at("unm-2")).unwrap(), other);
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test]
async fn an_answered_clone_failure_claims_and_destroys_the_unmarked_vm_after_the_settle_time() {
    // vCenter made the VM, then the reconfigure with which govc writes the
    // annotation failed, and govc reported it: the VM is there, unmarked,
    // now. One lookup, no settle time: claimed, then destroyed.
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            i.add(&at("ans-1"), "");
            fail(c, STDERR_OTHER)
        }
        _ => i.happy(c),
    });
    let s = Settings {
        clone_grace: Duration::from_secs(10),
        ..settings(4)
    };
    let (cloud, _keys) = cloud_with(mock, config(), s);
    let started = Instant::now();
    let err = cloud
        .launch(IMAGE, &options("ans-1", WaitStage::Ip))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    // The unmarked VM is given the settle time (another vmw's govc may be
    // about to mark it), not the whole grace.
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(6),
        "waited {elapsed:?} (grace 10 s, settle 3 s)"
    );
    let CloudError::Step {
        step,
        source,
        removed,
        rollback,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*step, Step::Clone);
    assert!(*removed && rollback.is_none(), "{err:?}");
    let CloudError::Govc(e) = source.as_ref() else {
        panic!("{source:?}")
    };
    assert_eq!(e.kind(), ErrorKind::Other);
    assert_eq!(e.stderr(), Some(STDERR_OTHER));
    let launch = launch_in(&calls.raw()[1]);
    assert_eq!(
        calls.all()[..3],
        [
            info_argv("ans-1"),
            clone_argv(IMAGE, "ans-1", &[], false),
            info_argv("ans-1"),
        ]
    );
    // Looked at again while it settles, then claimed, then destroyed.
    let raw = calls.raw();
    let claim = claim_argv("ans-1", &marker("instance", &launch));
    let at_claim = raw.iter().position(|c| *c == claim).unwrap();
    assert!(at_claim >= 3, "{raw:#?}");
    assert!(
        calls.all()[3..at_claim]
            .iter()
            .all(|c| *c == info_argv("ans-1")),
        "{raw:#?}"
    );
    assert_eq!(
        calls.all()[at_claim + 1..],
        [
            info_argv("ans-1"),
            info_argv("ans-1"),
            destroy_argv("ans-1")
        ]
    );
    assert!(inv.paths().is_empty());
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test]
async fn an_answered_clone_failure_that_made_nothing_returns_at_once() {
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => fail(c, STDERR_OTHER),
        _ => i.happy(c),
    });
    let s = Settings {
        clone_grace: Duration::from_secs(10),
        ..settings(4)
    };
    let (cloud, _keys) = cloud_with(mock, config(), s);
    let started = Instant::now();
    let err = cloud
        .launch(IMAGE, &options("ans-2", WaitStage::Ip))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "waited {elapsed:?}");
    assert!(
        matches!(
            &err,
            CloudError::Step {
                step: Step::Clone,
                removed: false,
                rollback: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::Other);
    assert!(err.to_string().contains("nothing to remove"), "{err}");
    // One lookup after the clone, nothing claimed or destroyed.
    assert_eq!(
        calls.all(),
        [
            info_argv("ans-2"),
            clone_argv(IMAGE, "ans-2", &[], false),
            info_argv("ans-2"),
        ]
    );
    assert!(cloud.tracked_instances().is_empty());
    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(calls.len(), n, "nothing left for clean()");
}

#[tokio::test]
async fn a_refused_clone_is_not_looked_for() {
    // Refused before anything was made (an ambiguous pool, a command line
    // govc rejects): the target is not looked for after the clone.
    for (stderr, kind) in [
        (STDERR_AMBIGUOUS_POOL, ErrorKind::AmbiguousResourcePool),
        (
            "govc: flag provided but not defined: -bogus\n",
            ErrorKind::Usage,
        ),
    ] {
        let inv = Inventory::default();
        let i = inv.clone();
        let (mock, calls) = scripted(move |c| match c.name() {
            "vm.clone" => fail(c, stderr),
            "find" | "vm.info" => i.happy(c),
            _ => panic!("unexpected govc call: {c}"),
        });
        let cfg = VmwareConfig {
            resource_pool: None,
            ..config()
        };
        let s = Settings {
            clone_grace: Duration::from_secs(10),
            ..settings(4)
        };
        let (cloud, _keys) = cloud_with(mock, cfg, s);
        let started = Instant::now();
        let err = cloud
            .launch(IMAGE, &options("ref-1", WaitStage::Ip))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "{kind:?}");
        assert!(
            matches!(
                &err,
                CloudError::Step {
                    step: Step::Clone,
                    removed: false,
                    rollback: None,
                    ..
                }
            ),
            "{kind:?}: {err:?}"
        );
        assert_eq!(err.govc().unwrap().kind(), kind);
        let all = calls.all();
        assert_eq!(all[0], info_argv("ref-1"), "{kind:?}");
        assert_eq!(all[1][0], "vm.clone", "{kind:?}");
        // Only the pools, to explain an ambiguous one.
        let after: Vec<&str> = all[2..].iter().map(|a| a[0].as_str()).collect();
        let expected: &[&str] = match kind {
            ErrorKind::AmbiguousResourcePool => &["find"],
            _ => &[],
        };
        assert_eq!(after, expected, "{kind:?}: {all:#?}");
        assert!(cloud.tracked_instances().is_empty());
    }
}

// ---------------------------------------------------------------------------
// 4. Bad input is rejected before any govc call
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

    // Names govc would read as a pattern or a path never reach it.
    for name in [
        "a/b",
        "",
        "tab\there",
        &"x".repeat(81),
        "web-*",
        "a?",
        "[ab]",
    ] {
        let o = with(&|o| o.name = Some(name.to_owned()));
        invalid(cloud.launch(IMAGE, &o).await.unwrap_err(), "VM name");
    }
    // So are images given as a pattern or a relative path.
    let o = LaunchOptions::wait_for_ip();
    for image in ["TEMPLATE-cloud-init-*", "vm/TEMPLATE-cloud-init-jammy"] {
        invalid(cloud.launch(image, &o).await.unwrap_err(), "VM name");
    }
    invalid(
        cloud.launch("/DC0/vm/TEMPLATE-*", &o).await.unwrap_err(),
        "VM path",
    );

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

    // Deletion of a pattern or a relative path is refused too.
    invalid(cloud.delete_vm("me-*", true).await.unwrap_err(), "VM name");
    invalid(
        cloud.delete_image("vm/x-image", true).await.unwrap_err(),
        "VM name",
    );
    invalid(
        cloud.get_instance("/DC0/vm/me-?").await.unwrap_err(),
        "VM path",
    );

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
// 5. Power operations are idempotent
// ---------------------------------------------------------------------------

/// A cloud whose govc expects, in this order, `vm.info` of `/DC0/vm/me-1`,
/// then `vm.power -<op>=true -- /DC0/vm/me-1` failing with `power_stderr`,
/// then (when `state` is given) `object.collect` of the power state
/// answering `state`.
fn power_script(op: &str, power_stderr: &'static str, state: Option<&'static str>) -> MockGovc {
    let mut seq = Default::default();
    let mut mock = MockGovc::new();
    mock.expect_run()
        .withf(|c| c.argv() == info_argv("me-1"))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| out(VM_INFO));
    let power = sv(&["vm.power", &format!("-{op}=true"), "--", "/DC0/vm/me-1"]);
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
            assert_eq!(vm, "/DC0/vm/me-1");
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
        matches!(&err, CloudError::NoSuchVm { name } if name == "/DC0/vm/nope"),
        "{err:?}"
    );
    // An absolute path is looked up as it is, never searched for.
    cloud.get_instance("/DC0/vm/other/nope").await.unwrap_err();
    assert_eq!(
        calls.all(),
        [
            info_argv("nope"),
            sv(&[
                "vm.info",
                "-json=true",
                "-e=false",
                "--",
                "/DC0/vm/other/nope"
            ])
        ]
    );
    assert!(cloud.tracked_instances().is_empty());
}

// ---------------------------------------------------------------------------
// 6. Deletion: looked up right before, vmw's marker demanded
// ---------------------------------------------------------------------------

#[tokio::test]
async fn delete_is_one_destroy_and_tolerates_a_missing_vm() {
    let inv = Inventory::default();
    let refuse = Arc::new(Mutex::new(false));
    let (i, refusing) = (inv.clone(), refuse.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.destroy" if *refusing.lock().unwrap() => fail(c, STDERR_OTHER),
        _ => i.happy(c),
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
    assert_eq!(
        cloud.tracked_instances(),
        refs(&["del-1", "del-2", "del-3"])
    );

    // A running instance: looked up, then one vm.destroy; no power-off.
    let n = calls.len();
    assert_eq!(a.delete().await.unwrap(), Removal::Destroyed);
    assert_eq!(calls.since(n), [info_argv("del-1"), destroy_argv("del-1")]);
    assert_eq!(a.cached_ip(), None);
    assert_eq!(cloud.tracked_instances(), refs(&["del-2", "del-3"]));
    assert!(!inv.contains(&at("del-1")));
    // Deleting it again: already gone, nothing destroyed.
    let n = calls.len();
    assert_eq!(a.delete().await.unwrap(), Removal::AlreadyGone);
    assert_eq!(calls.since(n), [info_argv("del-1")]);

    // Gone behind vmw's back: success, no vm.destroy.
    inv.remove(&at("del-2"));
    let n = calls.len();
    assert_eq!(b.delete().await.unwrap(), Removal::AlreadyGone);
    assert_eq!(calls.since(n), [info_argv("del-2")]);
    assert_eq!(cloud.tracked_instances(), refs(&["del-3"]));

    // Any other failure is an error, and the instance stays tracked.
    *refuse.lock().unwrap() = true;
    let n = calls.len();
    let err = c.delete().await.unwrap_err();
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::Other);
    assert_eq!(calls.since(n), [info_argv("del-3"), destroy_argv("del-3")]);
    assert_eq!(cloud.tracked_instances(), refs(&["del-3"]));
    *refuse.lock().unwrap() = false;
    assert_eq!(c.delete().await.unwrap(), Removal::Destroyed);
    assert!(cloud.tracked_instances().is_empty());
    assert!(inv.paths().is_empty());
}

#[tokio::test]
async fn a_vm_without_the_marker_is_deleted_only_when_forced() {
    let inv = Inventory::default();
    inv.add(&at("theirs"), "owned by the database team");
    inv.add(&at("old"), "");
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);

    let err = cloud.delete_vm("theirs", false).await.unwrap_err();
    let CloudError::NotOurs { vm, reason } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(vm, &at("theirs"));
    assert!(reason.contains("marker"), "{reason}");
    assert!(
        err.hints().iter().any(|h| h.contains("forced deletion")),
        "{:?}",
        err.hints()
    );
    assert_eq!(calls.all(), [info_argv("theirs")]);
    // As an instance too.
    let theirs = cloud.get_instance("theirs").await.unwrap();
    assert!(matches!(
        theirs.delete().await.unwrap_err(),
        CloudError::NotOurs { .. }
    ));
    let err = cloud.delete_image("old", false).await.unwrap_err();
    assert!(matches!(err, CloudError::NotOurs { .. }), "{err:?}");
    assert!(calls.of("vm.destroy").is_empty());
    assert_eq!(inv.paths(), [at("old"), at("theirs")]);

    // Forced: destroyed.
    let n = calls.len();
    assert_eq!(
        cloud.delete_vm("theirs", true).await.unwrap(),
        Removal::Destroyed
    );
    assert_eq!(
        calls.since(n),
        [info_argv("theirs"), destroy_argv("theirs")]
    );
    assert_eq!(
        cloud.delete_image("/DC0/vm/old", true).await.unwrap(),
        Removal::Destroyed
    );
    assert!(inv.paths().is_empty());

    // A VM with vmw's marker (of any launch) needs no force.
    inv.add(&at("ours"), &marker("image", "0123456789abcdef"));
    let n = calls.len();
    assert_eq!(
        cloud.delete_image("ours", false).await.unwrap(),
        Removal::Destroyed
    );
    assert_eq!(calls.since(n), [info_argv("ours"), destroy_argv("ours")]);
    let other = "made by vmw (tag: you, kind: instance, launch: 0123456789abcdef)";
    inv.add(&at("yours"), other);
    let yours = cloud.get_instance("yours").await.unwrap();
    assert_eq!(yours.delete().await.unwrap(), Removal::Destroyed);
}

#[tokio::test]
async fn templates_are_never_deleted_even_forced() {
    let inv = Inventory::default();
    // A vSphere template, even one carrying vmw's instance marker.
    inv.add_template(&at("golden"), &marker("instance", "0123456789abcdef"));
    // A source VM by its name, in the folder or anywhere else.
    inv.add(&at(IMAGE), &marker("instance", "0123456789abcdef"));
    inv.add("/DC0/vm/other/TEMPLATE-cloud-init-focal", "");
    // A source template vmw imported.
    inv.add(&at("imported"), &marker("template", "0123456789abcdef"));
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);

    for path in [
        at("golden"),
        at(IMAGE),
        "/DC0/vm/other/TEMPLATE-cloud-init-focal".to_owned(),
        at("imported"),
    ] {
        for force in [false, true] {
            for err in [
                cloud.delete_vm(&path, force).await.unwrap_err(),
                cloud.delete_image(&path, force).await.unwrap_err(),
            ] {
                assert!(
                    matches!(&err, CloudError::TemplateProtected { name } if *name == path),
                    "{path} (force: {force}): {err:?}"
                );
            }
        }
        let instance = cloud.get_instance(&path).await.unwrap();
        for err in [
            instance.delete().await.unwrap_err(),
            instance.delete_forced().await.unwrap_err(),
        ] {
            assert!(
                matches!(&err, CloudError::TemplateProtected { .. }),
                "{path}: {err:?}"
            );
        }
    }
    // By name in the folder, too.
    let err = cloud.delete_vm(IMAGE, true).await.unwrap_err();
    assert!(
        matches!(err, CloudError::TemplateProtected { .. }),
        "{err:?}"
    );
    assert!(calls.of("vm.destroy").is_empty());
    assert!(calls.names().iter().all(|n| n == "vm.info"));
    assert_eq!(inv.paths().len(), 4);

    // Neither listed nor swept.
    assert!(cloud.list(&Scope::AllTags).await.unwrap().is_empty());
    assert!(cloud.sweep(&Scope::AllTags).await.unwrap().is_empty());
    assert!(calls.of("vm.destroy").is_empty());
    assert_eq!(inv.paths().len(), 4);
}

#[tokio::test]
async fn not_found_naming_another_path_is_not_already_gone() {
    for (stderr, gone_after) in [
        // Another VM.
        ("govc: vm '/DC0/vm/nf-10' not found\n", false),
        // The bare name: not our path.
        ("govc: vm 'nf-1' not found\n", false),
        // Another object.
        ("govc: datastore 'LocalDS_0' not found\n", false),
        // Our path, but a second lookup still finds the VM.
        ("govc: vm '/DC0/vm/nf-1' not found\n", true),
    ] {
        let inv = Inventory::default();
        let i = inv.clone();
        let (mock, calls) = scripted(move |c| match c.name() {
            "vm.destroy" => fail(c, stderr),
            _ => i.happy(c),
        });
        let (cloud, _keys) = new_cloud(mock);
        let vm = cloud
            .launch(IMAGE, &options("nf-1", WaitStage::None))
            .await
            .unwrap();
        let n = calls.len();
        let err = vm.delete().await.unwrap_err();
        assert_eq!(err.govc().unwrap().kind(), ErrorKind::NotFound, "{stderr}");
        let mut expected = vec![info_argv("nf-1"), destroy_argv("nf-1")];
        if gone_after {
            expected.push(info_argv("nf-1"));
        }
        assert_eq!(calls.since(n), expected, "{stderr}");
        assert_eq!(cloud.tracked_instances(), refs(&["nf-1"]), "{stderr}");
        assert!(inv.contains(&at("nf-1")));
    }
}

#[tokio::test]
async fn a_changing_inventory_at_destroy_is_an_error_not_already_gone() {
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.destroy" => fail(c, STDERR_INVENTORY_CHANGED),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let vm = cloud
        .launch(IMAGE, &options("ch-1", WaitStage::None))
        .await
        .unwrap();
    let n = calls.len();
    let err = vm.delete().await.unwrap_err();
    assert_eq!(
        err.govc().unwrap().kind(),
        ErrorKind::InventoryChanged,
        "{err:?}"
    );
    assert_eq!(calls.since(n), [info_argv("ch-1"), destroy_argv("ch-1")]);
    assert_eq!(cloud.tracked_instances(), refs(&["ch-1"]));
    let err = cloud.clean().await.unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert_eq!(cloud.tracked_instances(), refs(&["ch-1"]));
}

#[tokio::test]
async fn delete_image_refuses_templates_and_tolerates_a_missing_image() {
    let inv = Inventory::default();
    inv.add(&at(IMAGE), "");
    inv.add("/DC0/vm/other/TEMPLATE-cloud-init-focal", "");
    inv.add(&at("locked-image"), &marker("image", "0123456789abcdef"));
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.destroy" => fail(c, STDERR_OTHER),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    for (name, path) in [
        (IMAGE, at(IMAGE)),
        (
            "/DC0/vm/other/TEMPLATE-cloud-init-focal",
            "/DC0/vm/other/TEMPLATE-cloud-init-focal".to_owned(),
        ),
    ] {
        let err = cloud.delete_image(name, false).await.unwrap_err();
        assert!(
            matches!(&err, CloudError::TemplateProtected { name: n } if *n == path),
            "{err:?}"
        );
    }
    assert!(calls.of("vm.destroy").is_empty());

    let n = calls.len();
    assert_eq!(
        cloud.delete_image("old-image", false).await.unwrap(),
        Removal::AlreadyGone
    );
    assert_eq!(calls.since(n), [info_argv("old-image")]);
    let err = cloud.delete_image("locked-image", false).await.unwrap_err();
    assert_eq!(err.govc().unwrap().kind(), ErrorKind::Other);
    assert!(inv.contains(&at("locked-image")));
}

// ---------------------------------------------------------------------------
// 7. Snapshots
// ---------------------------------------------------------------------------

#[tokio::test]
async fn snapshot_clones_the_instance_into_a_tracked_image() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
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
            name: "base-1-image".to_owned(),
            path: vm_ref("base-1-image"),
        }
    );
    // The image's path checked free, then the clone.
    assert_eq!(
        calls.since(n),
        [
            info_argv("base-1-image"),
            sv(&[
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
            ])
        ]
    );
    assert_eq!(cloud.tracked_images(), refs(&["base-1-image"]));
    let launch = launch_in(&calls.raw()[n + 1]);
    assert_eq!(
        inv.annotation(&at("base-1-image")).unwrap(),
        marker("image", &launch)
    );

    // The image launches like any other.
    let n = calls.len();
    cloud
        .launch(&image.name, &options("child-1", WaitStage::None))
        .await
        .unwrap();
    assert_eq!(
        calls.since(n)[..2],
        [
            info_argv("child-1"),
            clone_argv("base-1-image", "child-1", &[], false)
        ]
    );
    assert_eq!(cloud.tracked_instances(), refs(&["base-1", "child-1"]));

    // Deleting it untracks it.
    let n = calls.len();
    assert_eq!(
        cloud.delete_image("base-1-image", false).await.unwrap(),
        Removal::Destroyed
    );
    assert_eq!(
        calls.since(n),
        [info_argv("base-1-image"), destroy_argv("base-1-image")]
    );
    assert!(cloud.tracked_images().is_empty());
}

#[tokio::test]
async fn a_failed_snapshot_tracks_nothing() {
    let clone_answer: Arc<Mutex<&'static str>> = Arc::new(Mutex::new("ok"));
    let answer = clone_answer.clone();
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match (c.name(), *answer.lock().unwrap()) {
        ("vm.clone", "kill") => {
            i.clone_vm(c, Duration::ZERO).unwrap();
            killed(c)
        }
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let base = cloud
        .launch(IMAGE, &options("base-2", WaitStage::None))
        .await
        .unwrap();

    // Refused (an image of that name exists, and is not touched): its path
    // is looked up, nothing is cloned.
    inv.add(&at("base-2-image"), "someone's image");
    let n = calls.len();
    let err = cloud.snapshot(&base, false).await.unwrap_err();
    assert_eq!(err.step(), Some(Step::Clone));
    assert!(err.govc().is_none(), "{err:?}");
    let CloudError::Step {
        vm,
        source,
        rollback: None,
        removed: false,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(vm, &at("base-2-image"));
    assert!(
        matches!(source.as_ref(), CloudError::NameTaken { vm } if *vm == at("base-2-image")),
        "{source:?}"
    );
    assert_eq!(calls.since(n), [info_argv("base-2-image")]);
    assert!(cloud.tracked_images().is_empty());
    assert_eq!(
        inv.annotation(&at("base-2-image")).unwrap(),
        "someone's image"
    );
    inv.remove(&at("base-2-image"));

    // Killed by the deadline: the image that was made is removed.
    *clone_answer.lock().unwrap() = "kill";
    let n = calls.len();
    let err = cloud.snapshot(&base, false).await.unwrap_err();
    assert_eq!(err.step(), Some(Step::Clone));
    assert!(matches!(&err, CloudError::Step { removed: true, .. }));
    assert_eq!(calls.since(n)[0], info_argv("base-2-image"));
    assert_eq!(calls.since(n)[1][0], "vm.clone");
    assert_eq!(
        calls.since(n)[2..],
        [
            info_argv("base-2-image"),
            info_argv("base-2-image"),
            destroy_argv("base-2-image")
        ]
    );
    assert!(cloud.tracked_images().is_empty());
    assert_eq!(cloud.tracked_instances(), refs(&["base-2"]));
    assert_eq!(inv.paths(), [at("base-2")]);
}

#[tokio::test]
async fn snapshot_with_guest_cleaning_clones_nothing_when_the_guest_is_unreachable() {
    // The guest is at 127.0.0.1 on a port where nothing listens.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.ip" => out("127.0.0.1\n"),
        _ => i.happy(c),
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
// 8. clean(), list(), sweep()
// ---------------------------------------------------------------------------

#[tokio::test]
async fn clean_deletes_instances_then_images_and_then_has_nothing_left() {
    let inv = Inventory::default();
    // Not this cloud's: never touched by clean().
    inv.add(&at("theirs"), "");
    inv.add(&at("c-9"), &marker("instance", "0123456789abcdef"));
    let (mock, calls) = healthy(&inv);
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
    let since = calls.since(n);
    // Each VM looked up, then destroyed.
    for pair in since.chunks(2) {
        assert_eq!(pair[0][0], "vm.info", "{since:#?}");
        assert_eq!(pair[1][..2], sv(&["vm.destroy", "--"]), "{since:#?}");
        assert_eq!(pair[0].last(), pair[1].last());
    }
    let order: Vec<&str> = since
        .iter()
        .filter(|a| a[0] == "vm.destroy")
        .map(|a| a[2].as_str())
        .collect();
    assert_eq!(order.len(), 5, "{order:?}");
    let first: BTreeSet<&str> = order[..3].iter().copied().collect();
    let then: BTreeSet<&str> = order[3..].iter().copied().collect();
    assert_eq!(
        first,
        BTreeSet::from(["/DC0/vm/c-1", "/DC0/vm/c-2", "/DC0/vm/c-3"])
    );
    assert_eq!(
        then,
        BTreeSet::from(["/DC0/vm/c-1-image", "/DC0/vm/c-2-image"])
    );
    assert!(cloud.tracked_instances().is_empty());
    assert!(cloud.tracked_images().is_empty());
    assert_eq!(inv.paths(), [at("c-9"), at("theirs")]);

    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(calls.len(), n, "a second clean() calls govc");
}

#[tokio::test]
async fn clean_tries_everything_and_keeps_what_it_could_not_delete() {
    let refuse = Arc::new(Mutex::new(true));
    let refusing = refuse.clone();
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.destroy" if c.positional() == [at("k-2")] && *refusing.lock().unwrap() => {
            fail(c, STDERR_OTHER)
        }
        // Gone between the lookup and the destroy.
        "vm.destroy" if c.positional() == [at("k-3")] => {
            i.remove(&at("k-3"));
            vm_not_found(c)
        }
        _ => i.happy(c),
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
    let destroyed: BTreeSet<String> = calls
        .since(n)
        .into_iter()
        .filter(|a| a[0] == "vm.destroy")
        .map(|a| a[2].clone())
        .collect();
    assert_eq!(
        destroyed,
        ["k-1", "k-2", "k-3", "k-1-image"]
            .into_iter()
            .map(at)
            .collect()
    );
    assert_eq!(cloud.tracked_instances(), refs(&["k-2"]));
    assert!(cloud.tracked_images().is_empty());

    // Once the VM can be removed, the next clean() removes only it.
    *refuse.lock().unwrap() = false;
    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(calls.since(n), [info_argv("k-2"), destroy_argv("k-2")]);
    assert!(cloud.tracked_instances().is_empty());
    assert!(inv.paths().is_empty());
}

#[tokio::test]
async fn clean_stops_tracking_what_turned_out_not_to_be_this_clouds() {
    // While tracked, the VMs at the paths of an instance and of an image
    // this cloud made were replaced: by another launch's instance, and by
    // a vSphere template. clean() refuses both (reported, never destroyed)
    // and stops tracking them: the next clean() leaves them alone.
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let base = cloud
        .launch(IMAGE, &options("u-1", WaitStage::None))
        .await
        .unwrap();
    cloud.snapshot(&base, false).await.unwrap();
    assert_eq!(cloud.tracked_instances(), refs(&["u-1"]));
    assert_eq!(cloud.tracked_images(), refs(&["u-1-image"]));
    let other = marker("instance", "00000000deadbeef");
    inv.remove(&at("u-1"));
    inv.add(&at("u-1"), &other);
    inv.remove(&at("u-1-image"));
    inv.add_template(&at("u-1-image"), "");

    let n = calls.len();
    let err = cloud.clean().await.unwrap_err();
    assert_eq!(err.errors.len(), 2, "{err}");
    let CloudError::NotOurs { vm, reason } = &err.errors[0] else {
        panic!("{err:?}")
    };
    assert_eq!(vm, &at("u-1"));
    assert!(reason.contains("00000000deadbeef"), "{reason}");
    assert!(
        matches!(&err.errors[1], CloudError::TemplateProtected { name } if *name == at("u-1-image")),
        "{err:?}"
    );
    assert_eq!(calls.since(n), [info_argv("u-1"), info_argv("u-1-image")]);
    assert!(cloud.tracked_instances().is_empty());
    assert!(cloud.tracked_images().is_empty());
    assert_eq!(inv.annotation(&at("u-1")).unwrap(), other);
    assert!(inv.contains(&at("u-1-image")));

    let n = calls.len();
    cloud.clean().await.unwrap();
    assert_eq!(calls.len(), n, "a second clean() calls govc");
    assert_eq!(inv.paths(), [at("u-1"), at("u-1-image")]);
}

/// The `find` of [`Cloud::list`] for this annotation glob.
fn list_argv(glob: &str) -> Vec<String> {
    sv(&[
        "find",
        "-type=m",
        "-maxdepth=1",
        "--",
        FOLDER,
        "-config.annotation",
        glob,
    ])
}

#[tokio::test]
async fn list_finds_vmw_vms_by_marker_and_sweep_deletes_exactly_those() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let base = cloud
        .launch(IMAGE, &options("me-1", WaitStage::None))
        .await
        .unwrap();
    cloud.snapshot(&base, false).await.unwrap();
    // A crashed run of the same tag.
    let moref_crashed = inv.add(&at("me-7"), &marker("instance", "0123456789abcdef"));
    // Not in scope: someone else's VM, another tag, a subfolder, a
    // template, a source VM.
    inv.add(&at("theirs"), "made by hand");
    let you = "made by vmw (tag: you, kind: instance, launch: 0123456789abcdef)";
    inv.add(&at("you-1"), you);
    inv.add("/DC0/vm/sub/me-9", &marker("instance", "0123456789abcdef"));
    inv.add_template(&at("me-golden"), &marker("instance", "0123456789abcdef"));
    inv.add(&at(IMAGE), &marker("instance", "0123456789abcdef"));

    let n = calls.len();
    let records = cloud.list(&Scope::ThisTag).await.unwrap();
    let all = calls.since(n);
    assert_eq!(all[0], list_argv("made by vmw (tag: me, kind: *"));
    assert_eq!(
        all[1][..4],
        sv(&["vm.info", "-json=true", "-e=false", "--"])
    );
    assert_eq!(all.len(), 2, "two calls however many VMs: {all:#?}");
    let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["me-1", "me-1-image", "me-7"]);
    let r = &records[2];
    assert_eq!(r.path, vm_ref("me-7"));
    assert_eq!(r.moref, moref_crashed);
    assert_eq!(r.tag, "me");
    assert_eq!(r.kind, Kind::Instance);
    assert_eq!(r.launch.as_deref(), Some("0123456789abcdef"));
    assert_eq!(records[1].kind, Kind::Image);
    assert_eq!(records[0].launch.as_deref(), base.launch_id());

    let n = calls.len();
    let all_tags = cloud.list(&Scope::AllTags).await.unwrap();
    assert_eq!(calls.since(n)[0], list_argv("made by vmw (tag: *"));
    let names: Vec<&str> = all_tags.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["me-1", "me-1-image", "me-7", "you-1"]);

    // sweep: instances first, then images, each looked up right before.
    let n = calls.len();
    let removed = cloud.sweep(&Scope::ThisTag).await.unwrap();
    let since = calls.since(n);
    assert_eq!(since[0], list_argv("made by vmw (tag: me, kind: *"));
    let destroyed: Vec<&str> = since
        .iter()
        .filter(|a| a[0] == "vm.destroy")
        .map(|a| a[2].as_str())
        .collect();
    assert_eq!(destroyed.len(), 3);
    assert_eq!(destroyed[2], at("me-1-image"));
    let mut removed_paths: Vec<String> = removed.iter().map(ToString::to_string).collect();
    removed_paths.sort();
    assert_eq!(removed_paths, [at("me-1"), at("me-1-image"), at("me-7")]);
    assert!(cloud.tracked_instances().is_empty());
    assert!(cloud.tracked_images().is_empty());
    assert_eq!(
        inv.paths(),
        [
            "/DC0/vm/TEMPLATE-cloud-init-jammy",
            "/DC0/vm/me-golden",
            "/DC0/vm/sub/me-9",
            "/DC0/vm/theirs",
            "/DC0/vm/you-1",
        ]
    );
}

#[tokio::test]
async fn delete_listed_refuses_a_vm_that_changed_since_it_was_listed() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let mine = marker("instance", "0123456789abcdef");
    inv.add(&at("me-5"), &mine);
    inv.add(&at("me-6"), &mine);
    inv.add(&at("me-8"), &mine);
    let records = cloud.list(&Scope::ThisTag).await.unwrap();
    assert_eq!(records.len(), 3);

    // me-5 was replaced by another object carrying the same marker; me-6
    // now carries another tag's marker; me-8 is gone.
    inv.remove(&at("me-5"));
    inv.add(&at("me-5"), &mine);
    inv.set_annotation(
        &at("me-6"),
        "made by vmw (tag: you, kind: instance, launch: 0123456789abcdef)",
    );
    inv.remove(&at("me-8"));

    let n = calls.len();
    let err = cloud.delete_listed(&records).await.unwrap_err();
    assert_eq!(err.errors.len(), 2, "{err}");
    let reasons: Vec<String> = err
        .errors
        .iter()
        .map(|e| match e {
            CloudError::NotOurs { vm, reason } => format!("{vm}: {reason}"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        reasons[0].starts_with("/DC0/vm/me-5: ") && reasons[0].contains("another object"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("/DC0/vm/me-6: ") && reasons[1].contains("you"),
        "{reasons:?}"
    );
    assert!(calls.since(n).iter().all(|a| a[0] == "vm.info"));
    assert_eq!(inv.paths(), [at("me-5"), at("me-6")]);

    // Listed afresh, they go (me-6 now belongs to the tag `you`).
    let again = cloud.list(&Scope::ThisTag).await.unwrap();
    assert_eq!(cloud.delete_listed(&again).await.unwrap(), refs(&["me-5"]));
    assert_eq!(inv.paths(), [at("me-6")]);
}

// ---------------------------------------------------------------------------
// 9. Concurrency
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sixty_four_parallel_launches_get_unique_names_in_order() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
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
        .of("vm.clone")
        .into_iter()
        .map(|a| a.last().unwrap().clone())
        .collect();
    assert_eq!(cloned.len(), 64);
    assert_ne!(cloned, names, "the mock's delays did not reorder the calls");
    // One search of the folder, then five calls per launch (the lookup of
    // its path, clone, change, power, ip).
    assert_eq!(calls.of("find").len(), 1);
    assert_eq!(calls.len(), 1 + 64 * 5);
    assert_eq!(calls.of("vm.info").len(), 64);
    let mut tracked = cloud.tracked_instances();
    tracked.sort();
    let mut sorted: Vec<VmRef> = names.iter().map(|n| vm_ref(n)).collect();
    sorted.sort();
    assert_eq!(tracked, sorted);
    assert_eq!(inv.paths().len(), 64);
    // Every instance knows the launch id its VM carries.
    for i in &fleet.instances {
        let m = parse_marker(&inv.annotation(i.vm().as_str()).unwrap()).unwrap();
        assert_eq!(m.launch.as_deref(), i.launch_id());
    }
}

#[tokio::test]
async fn launch_many_runs_at_most_the_configured_number_at_once() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = cloud_with(Slow::new(mock), config(), settings(5));
    let fleet = cloud
        .launch_many(IMAGE, 20, &LaunchOptions::wait_for_ip())
        .await
        .unwrap();
    assert_eq!(fleet.instances.len(), 20);
    assert_eq!(cloud.govc().peak.load(Ordering::SeqCst), 5);
    assert_eq!(calls.len(), 1 + 20 * 5);
}

#[tokio::test]
async fn two_clouds_with_the_same_tag_never_pick_the_same_name() {
    // One vCenter, two clouds: both search the empty folder and count from
    // 1, so their clones meet each other's names and move on.
    let inv = Inventory::default();
    let (mock_a, calls_a) = healthy(&inv);
    let (mock_b, calls_b) = healthy(&inv);
    let (a, _keys_a) = cloud_with(Slow::new(mock_a), config(), settings(32));
    let (b, _keys_b) = cloud_with(Slow::new(mock_b), config(), settings(32));
    assert_eq!(a.tag(), b.tag());
    let o = LaunchOptions::wait_for_ip();
    let (fa, fb) = tokio::join!(a.launch_many(IMAGE, 32, &o), b.launch_many(IMAGE, 32, &o));
    let (fa, fb) = (fa.unwrap(), fb.unwrap());
    assert!(fa.failures.is_empty() && fb.failures.is_empty());
    let names: BTreeSet<String> = fa
        .instances
        .iter()
        .chain(&fb.instances)
        .map(|i| i.name().to_owned())
        .collect();
    assert_eq!(names.len(), 64, "{names:?}");
    // Each instance is the VM its own launch made; nothing was destroyed.
    for i in fa.instances.iter().chain(&fb.instances) {
        let m = parse_marker(&inv.annotation(i.vm().as_str()).unwrap()).unwrap();
        assert_eq!(m.launch.as_deref(), i.launch_id(), "{}", i.name());
    }
    assert_eq!(inv.paths().len(), 64);
    for calls in [&calls_a, &calls_b] {
        assert!(calls.of("vm.destroy").is_empty());
        assert_eq!(calls.of("find").len(), 1);
    }
    let clones = calls_a.of("vm.clone").len() + calls_b.of("vm.clone").len();
    assert!(clones > 64, "the clouds never met: {clones} clones");
}

#[tokio::test]
async fn launch_many_reports_each_failure_by_index_and_keeps_the_rest_in_order() {
    // By the number in the name: 4k+1 is refused by vCenter at the clone,
    // 4k+2 fails to configure (and is destroyed), the others launch.
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| {
        let Some(vm) = vm_name_of(c) else {
            return i.happy(c);
        };
        match (c.name(), number_of(&vm) % 4) {
            ("vm.clone", 1) => fail(c, "govc: vm '/DC0/vm/TEMPLATE-cloud-init-jammy' not found"),
            ("vm.change", 2) => fail(c, STDERR_OTHER),
            _ => i.happy(c),
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
            vm,
            step,
            rollback,
            removed,
            ..
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
        assert_eq!(*removed, expected == Step::Configure, "{vm}");
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
        .of("vm.destroy")
        .into_iter()
        .map(|a| number_of(&a[2]))
        .collect();
    let configure_failed: BTreeSet<u64> = numbers.iter().copied().filter(|n| n % 4 == 2).collect();
    assert_eq!(destroyed, configure_failed);
    let mut tracked = cloud.tracked_instances();
    tracked.sort();
    let mut launched: Vec<VmRef> = fleet.instances.iter().map(|i| i.vm().clone()).collect();
    launched.sort();
    assert_eq!(tracked, launched);
    let mut left: Vec<String> = inv.paths();
    left.sort();
    let mut expected: Vec<String> = launched.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(left, expected);
}

// ---------------------------------------------------------------------------
// 10. Images of releases
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
                    "-maxdepth=1",
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
            name: IMAGE.to_owned(),
            path: vm_ref(IMAGE),
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
// 11. ip()
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
    let inv = Inventory::default();
    inv.add(&at("me-1"), "");
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.ip" => out(pending.lock().unwrap().pop().unwrap()),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let vm = cloud.get_instance("me-1").await.unwrap();
    assert!(cloud.tracked_instances().is_empty());
    assert_eq!(vm.launch_id(), None);

    assert_eq!(vm.ip().await.unwrap(), ip("10.0.0.7"));
    assert_eq!(calls.names(), ["vm.info", "vm.ip"]);
    let argv = &calls.all()[1];
    assert_eq!(argv[2..], sv(&["--", "/DC0/vm/me-1"]));
    assert!(ip_wait_of(argv) <= Duration::from_secs(2));

    // Cached: no govc call.
    assert_eq!(vm.ip().await.unwrap(), ip("10.0.0.7"));
    assert_eq!(vm.clone().cached_ip(), Some(ip("10.0.0.7")));
    assert_eq!(calls.len(), 2);

    // A restart forgets the address; link-local answers are polled past.
    vm.shutdown().await.unwrap();
    assert_eq!(vm.cached_ip(), None);
    assert_eq!(inv.get(&at("me-1")).unwrap().power, "poweredOff");
    vm.start().await.unwrap();
    assert_eq!(inv.get(&at("me-1")).unwrap().power, "poweredOn");
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
    let inv = Inventory::default();
    inv.add(&at("me-1"), "");
    let i = inv.clone();
    let (mock, _calls) = scripted(move |c| match c.name() {
        "vm.ip" => vm_not_found(c),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let vm = cloud.get_instance("me-1").await.unwrap();
    let err = vm.ip().await.unwrap_err();
    assert!(err.govc().unwrap().is_not_found(), "{err:?}");
    assert_eq!(vm.cached_ip(), None);

    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.ip" => out(""),
        _ => i.happy(c),
    });
    let (cloud, _keys) = new_cloud(mock);
    let vm = cloud.get_instance("me-1").await.unwrap();
    let err = vm.ip().await.unwrap_err();
    assert!(
        matches!(&err, CloudError::IpTimeout { vm, seen, .. } if *vm == at("me-1") && seen.is_empty()),
        "{err:?}"
    );
    assert_eq!(calls.names(), ["vm.info", "vm.ip"]);
}

// ---------------------------------------------------------------------------
// 12. Source checks and the step hook
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_source_is_checked_once_before_the_first_clone() {
    let inv = Inventory::default();
    inv.add(&at(IMAGE), "");
    inv.add_template(&at("TEMPLATE-cloud-init-golden"), "");
    let (mock, calls) = healthy(&inv);
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
    let source_check = sv(&[
        "vm.info",
        "-json=true",
        "-e=true",
        "--",
        &format!("{FOLDER}/{IMAGE}"),
    ]);
    let all = calls.all();
    assert_eq!(all[0], source_check, "{all:#?}");
    // Then the target's path checked free, then the clone.
    assert_eq!(all[1], info_argv("c-1"), "{all:#?}");
    assert_eq!(all[2][0], "vm.clone", "{all:#?}");
    assert_eq!(
        all.iter().filter(|a| **a == source_check).count(),
        1,
        "cached: {all:#?}"
    );
    assert_eq!(
        all.iter()
            .filter(|a| a[0] == "vm.info" && **a != source_check)
            .collect::<Vec<_>>(),
        [&info_argv("c-1"), &info_argv("c-2")]
    );

    // A vSphere template is refused before any clone.
    let n = calls.len();
    let err = cloud
        .launch(
            "TEMPLATE-cloud-init-golden",
            &options("c-3", WaitStage::None),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CloudError::BadSource { problems, .. } if problems[0].contains("vSphere template")),
        "{err:?}"
    );
    assert_eq!(calls.names()[n..], sv(&["vm.info"]));
}

#[tokio::test]
async fn the_step_hook_hears_each_step_in_order() {
    let inv = Inventory::default();
    let (mock, _calls) = healthy(&inv);
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

// ---------------------------------------------------------------------------
// 13. Cancellation and dropped launches
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_launch_cancelled_before_it_starts_calls_nothing() {
    let (cloud, _keys) = new_cloud(silent());
    let token = CancellationToken::new();
    token.cancel();
    let o = LaunchOptions {
        cancel: Some(token),
        ..LaunchOptions::wait_for_ip()
    };
    let err = cloud.launch(IMAGE, &o).await.unwrap_err();
    assert!(matches!(err, CloudError::Cancelled), "{err:?}");
    let fleet = cloud.launch_many(IMAGE, 3, &o).await.unwrap();
    assert!(fleet.instances.is_empty());
    let indices: Vec<usize> = fleet.failures.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, [0, 1, 2]);
    assert!(
        fleet
            .failures
            .iter()
            .all(|(_, e)| matches!(e, CloudError::Cancelled))
    );
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test]
async fn a_launch_cancelled_while_its_path_is_checked_clones_nothing() {
    // The cancellation comes while the target's path is looked up: it is
    // seen before the clone, which is never sent.
    let inv = Inventory::default();
    let token = CancellationToken::new();
    let (i, t) = (inv.clone(), token.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.info" => {
            t.cancel();
            i.happy(c)
        }
        _ => panic!("unexpected govc call after a cancellation: {c}"),
    });
    let (cloud, _keys) = new_cloud(mock);
    let o = LaunchOptions {
        cancel: Some(token),
        ..options("cx-0", WaitStage::Ip)
    };
    let err = cloud.launch(IMAGE, &o).await.unwrap_err();
    let CloudError::Step {
        vm,
        step,
        source,
        removed,
        rollback,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((vm.as_str(), *step), (at("cx-0").as_str(), Step::Clone));
    assert!(
        matches!(source.as_ref(), CloudError::Cancelled),
        "{source:?}"
    );
    assert!(!removed && rollback.is_none(), "{err:?}");
    assert_eq!(calls.all(), [info_argv("cx-0")]);
    assert!(cloud.tracked_instances().is_empty());
    assert!(inv.paths().is_empty());
}

/// How long a slow clone takes on the scripted vCenter.
const CLONE_TIME: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_launch_cancelled_during_the_clone_waits_for_it_and_removes_it() {
    let inv = Inventory::default();
    let token = CancellationToken::new();
    let (i, t) = (inv.clone(), token.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            t.cancel();
            i.clone_vm(c, CLONE_TIME)
        }
        _ => i.happy(c),
    });
    let s = Settings {
        clone_grace: Duration::from_secs(2),
        ..settings(4)
    };
    let govc = Delay::new(mock, &[("vm.clone", CLONE_TIME)]);
    let (cloud, _keys) = cloud_with(govc, config(), s);
    let o = LaunchOptions {
        cancel: Some(token),
        ..options("cx-1", WaitStage::Ip)
    };
    let started = Instant::now();
    let err = cloud.launch(IMAGE, &o).await.unwrap_err();
    assert!(started.elapsed() >= CLONE_TIME, "the clone was awaited");
    let CloudError::Step {
        vm,
        step,
        source,
        removed,
        rollback,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(vm, &at("cx-1"));
    assert_eq!(*step, Step::Clone);
    assert!(
        matches!(source.as_ref(), CloudError::Cancelled),
        "{source:?}"
    );
    assert!(*removed && rollback.is_none(), "{err:?}");
    assert_eq!(
        calls.all(),
        [
            info_argv("cx-1"),
            clone_argv(IMAGE, "cx-1", &[], false),
            info_argv("cx-1"),
            destroy_argv("cx-1")
        ]
    );
    assert!(inv.paths().is_empty());
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test]
async fn a_clone_outlasting_the_grace_after_a_cancellation_may_exist_until_clean() {
    // The clone takes longer than the grace: vmw stops waiting, looks for
    // it for the grace period, and reports that it may still appear.
    let takes = Duration::from_millis(1500);
    let inv = Inventory::default();
    let token = CancellationToken::new();
    let (i, t) = (inv.clone(), token.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => {
            t.cancel();
            i.clone_vm(c, takes)
        }
        _ => i.happy(c),
    });
    let s = Settings {
        clone_grace: Duration::from_millis(200),
        ..settings(4)
    };
    let (cloud, _keys) = cloud_with(Delay::new(mock, &[("vm.clone", takes)]), config(), s);
    let o = LaunchOptions {
        cancel: Some(token),
        ..options("cx-2", WaitStage::Ip)
    };
    let err = cloud.launch(IMAGE, &o).await.unwrap_err();
    let CloudError::Step {
        source,
        removed,
        rollback,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(matches!(source.as_ref(), CloudError::Cancelled));
    assert!(!removed);
    assert!(
        matches!(rollback.as_deref(), Some(CloudError::MayExist { .. })),
        "{rollback:?}"
    );
    assert!(calls.of("vm.destroy").is_empty());
    assert_eq!(cloud.tracked_instances(), refs(&["cx-2"]));

    // Once vCenter has finished it, clean() removes it.
    eventually(Duration::from_secs(3), "the clone finishes", || {
        inv.contains(&at("cx-2"))
    })
    .await;
    cloud.clean().await.unwrap();
    assert_eq!(calls.of("vm.destroy"), [destroy_argv("cx-2")]);
    assert!(inv.paths().is_empty());
    assert!(cloud.tracked_instances().is_empty());
}

#[tokio::test]
async fn a_launch_cancelled_during_power_on_is_rolled_back() {
    let inv = Inventory::default();
    let token = CancellationToken::new();
    let (i, t) = (inv.clone(), token.clone());
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.power" => {
            t.cancel();
            i.happy(c)
        }
        _ => i.happy(c),
    });
    let govc = Delay::new(mock, &[("vm.power", Duration::from_secs(5))]);
    let (cloud, _keys) = cloud_with(govc, config(), settings(4));
    let o = LaunchOptions {
        cancel: Some(token),
        ..options("cx-3", WaitStage::Ip)
    };
    let started = Instant::now();
    let err = cloud.launch(IMAGE, &o).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the power-on was not awaited"
    );
    let CloudError::Step {
        vm,
        step,
        source,
        removed,
        rollback,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(vm, &at("cx-3"));
    assert_eq!(*step, Step::PowerOn);
    assert!(
        matches!(source.as_ref(), CloudError::Cancelled),
        "{source:?}"
    );
    assert!(*removed && rollback.is_none(), "{err:?}");
    assert_eq!(
        calls.names(),
        [
            "vm.info",
            "vm.clone",
            "vm.change",
            "vm.power",
            "vm.info",
            "vm.destroy"
        ]
    );
    assert_eq!(calls.all()[4..], [info_argv("cx-3"), destroy_argv("cx-3")]);
    assert!(inv.paths().is_empty());
    assert!(cloud.tracked_instances().is_empty());
    assert!(err.to_string().contains("cancelled"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_dropped_mid_clone_has_its_vm_destroyed_in_the_background() {
    let inv = Inventory::default();
    let i = inv.clone();
    let (mock, calls) = scripted(move |c| match c.name() {
        "vm.clone" => i.clone_vm(c, CLONE_TIME),
        _ => i.happy(c),
    });
    let s = Settings {
        clone_grace: Duration::from_secs(2),
        ..settings(4)
    };
    let govc = Delay::new(mock, &[("vm.clone", CLONE_TIME)]);
    let (cloud, _keys) = cloud_with(govc, config(), s);
    let dropped = tokio::time::timeout(
        Duration::from_millis(50),
        cloud.launch(IMAGE, &options("drop-1", WaitStage::Ip)),
    )
    .await;
    assert!(dropped.is_err(), "the launch should still be cloning");
    // Tracked until the background task is done with it.
    assert_eq!(cloud.tracked_instances(), refs(&["drop-1"]));
    eventually(
        Duration::from_secs(4),
        "the dropped launch's VM is removed",
        || !inv.contains(&at("drop-1")) && cloud.tracked_instances().is_empty(),
    )
    .await;
    assert_eq!(calls.of("vm.destroy"), [destroy_argv("drop-1")]);
    assert_eq!(
        calls.all()[..2],
        [info_argv("drop-1"), clone_argv(IMAGE, "drop-1", &[], false)]
    );
    assert!(
        calls.names()[2..]
            .iter()
            .all(|n| n == "vm.info" || n == "vm.destroy"),
        "{:?}",
        calls.names()
    );
    assert!(inv.paths().is_empty());
}

#[tokio::test]
async fn a_launch_dropped_during_power_on_has_its_vm_destroyed_in_the_background() {
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let govc = Delay::new(mock, &[("vm.power", Duration::from_secs(5))]);
    let (cloud, _keys) = cloud_with(govc, config(), settings(4));
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        cloud.launch(IMAGE, &options("drop-2", WaitStage::Ip)),
    )
    .await;
    assert!(dropped.is_err(), "the launch should still be powering on");
    eventually(
        Duration::from_secs(2),
        "the dropped launch's VM is removed",
        || !inv.contains(&at("drop-2")) && cloud.tracked_instances().is_empty(),
    )
    .await;
    assert_eq!(
        calls.names(),
        [
            "vm.info",
            "vm.clone",
            "vm.change",
            "vm.power",
            "vm.info",
            "vm.destroy"
        ]
    );
    assert_eq!(calls.all()[5], destroy_argv("drop-2"));
}

#[tokio::test]
async fn a_cancelled_fleet_removes_what_its_lanes_made() {
    // Cancelled as the third lane powers on: every lane under way is
    // rolled back, lanes not started never start.
    let inv = Inventory::default();
    let token = CancellationToken::new();
    let powered = Arc::new(AtomicUsize::new(0));
    let (i, t, p) = (inv.clone(), token.clone(), powered.clone());
    let (mock, calls) = scripted(move |c| {
        if c.name() == "vm.power" && p.fetch_add(1, Ordering::SeqCst) == 2 {
            t.cancel();
        }
        i.happy(c)
    });
    let govc = Delay::new(mock, &[("vm.power", Duration::from_millis(50))]);
    let (cloud, _keys) = cloud_with(govc, config(), settings(2));
    let o = LaunchOptions {
        cancel: Some(token),
        ..LaunchOptions::wait_for_ip()
    };
    let fleet = cloud.launch_many(IMAGE, 6, &o).await.unwrap();
    assert_eq!(fleet.instances.len() + fleet.failures.len(), 6);
    assert!(!fleet.failures.is_empty());
    for (_, e) in &fleet.failures {
        match e {
            CloudError::Cancelled => {}
            CloudError::Step {
                source,
                removed: true,
                rollback: None,
                ..
            } => assert!(matches!(source.as_ref(), CloudError::Cancelled), "{e:?}"),
            other => panic!("{other:?}"),
        }
    }
    // What is left is exactly what launched.
    let mut left = inv.paths();
    left.sort();
    let mut launched: Vec<String> = fleet.instances.iter().map(|i| i.vm().to_string()).collect();
    launched.sort();
    assert_eq!(left, launched);
    assert_eq!(
        calls.of("vm.clone").len(),
        6 - fleet
            .failures
            .iter()
            .filter(|(_, e)| matches!(e, CloudError::Cancelled))
            .count()
    );
}
