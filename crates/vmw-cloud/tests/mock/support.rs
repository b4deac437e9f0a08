//! What the topic modules share: the configuration and settings of a cloud
//! tagged `me` on a scripted govc, the command lines vmw sends (launch ids
//! masked), small builders of names and paths, and govc wrappers that make
//! calls take time ([`Slow`], [`Delay`]).

use crate::*;

pub(crate) const FOLDER: &str = "/DC0/vm";
pub(crate) const POOL: &str = "/DC0/host/DC0_C0/Resources";
pub(crate) const IMAGE: &str = "TEMPLATE-cloud-init-jammy";
/// The `-annotation` of an instance's clone, its launch id masked (see
/// [`Masked::all`]).
pub(crate) const ANNOTATION_INSTANCE: &str =
    "-annotation=made by vmw (tag: me, kind: instance, launch: *)";
pub(crate) const ANNOTATION_IMAGE: &str =
    "-annotation=made by vmw (tag: me, kind: image, launch: *)";

pub(crate) const STDERR_AMBIGUOUS_POOL: &str =
    include_str!("../../../vmw-govc/tests/fixtures/stderr_ambiguous_pool.txt");
pub(crate) const STDERR_INVALID_POWER: &str =
    include_str!("../../../vmw-govc/tests/fixtures/stderr_invalid_power_state.txt");
pub(crate) const VM_INFO: &str = include_str!("../../../vmw-govc/tests/fixtures/vm_info.json");
pub(crate) const VM_INFO_NONE: &str =
    include_str!("../../../vmw-govc/tests/fixtures/vm_info_none.json");

/// A vSphere error that is none of the kinds vmw treats specially.
pub(crate) const STDERR_OTHER: &str =
    "govc: ServerFaultCode: Permission to perform this operation was denied.";
/// A connection that broke in the middle of a call.
pub(crate) const STDERR_CONNECTION_LOST: &str = "govc: Post \"https://vc.example/sdk\": read tcp 10.0.0.1:50412->10.0.0.2:443: read: connection reset by peer";
/// vCenter met an object being deleted or created while it answered.
pub(crate) const STDERR_INVENTORY_CHANGED: &str = "govc: ServerFaultCode: The object 'vim.VirtualMachine:vm-101' has already been deleted or has not been completely created";

// ---------------------------------------------------------------------------
// Building clouds
// ---------------------------------------------------------------------------

pub(crate) fn config() -> VmwareConfig {
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

pub(crate) fn settings(concurrency: usize) -> Settings {
    Settings {
        concurrency,
        ip_wait: Duration::from_secs(2),
        ip_poll: Duration::from_millis(10),
        // Source checks have a test of their own.
        check_sources: false,
        // A clone of unknown outcome is looked for twice: now and after
        // this long.
        clone_grace: Duration::from_millis(300),
        // The console log has a test of its own.
        console_log: false,
        // The guests of the scripted vCenter never answer over SSH: a
        // sync before a snapshot or a power-off gives up at once.
        sync_wait: Duration::from_millis(100),
        ..Settings::default()
    }
}

/// A cloud tagged `me` on `govc` ([`crate::common::cloud_with`]); the
/// returned directory holds its key pair and its SSH host key store (never
/// the user's), and must outlive the cloud.
pub(crate) fn cloud_with<G: Govc + 'static>(
    govc: G,
    cfg: VmwareConfig,
    s: Settings,
) -> (Cloud<G>, tempfile::TempDir) {
    crate::common::cloud_with(govc, cfg, "me", s)
}

pub(crate) fn new_cloud<G: Govc + 'static>(govc: G) -> (Cloud<G>, tempfile::TempDir) {
    cloud_with(govc, config(), settings(4))
}

/// The calls of a [`Calls`] log with vmw's launch ids masked.
pub(crate) trait Masked {
    /// Every call, with the launch id of each `-annotation` checked (16 hex
    /// digits) and replaced by `*`.
    fn all(&self) -> Vec<Vec<String>>;

    /// The calls made after the first `n`, masked.
    fn since(&self, n: usize) -> Vec<Vec<String>> {
        self.all().split_off(n)
    }

    /// The calls of subcommand `name`, masked.
    fn of(&self, name: &str) -> Vec<Vec<String>> {
        self.all().into_iter().filter(|a| a[0] == name).collect()
    }

    /// The launch ids of the `vm.clone` calls, in order.
    fn launch_ids(&self) -> Vec<String>;
}

impl Masked for Calls {
    fn all(&self) -> Vec<Vec<String>> {
        self.raw().into_iter().map(mask_launch).collect()
    }

    fn launch_ids(&self) -> Vec<String> {
        self.raw()
            .iter()
            .filter(|a| a[0] == "vm.clone")
            .map(|a| launch_in(a))
            .collect()
    }
}

pub(crate) fn is_launch_id(s: &str) -> bool {
    s.len() == 16 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The launch id in the `-annotation` of a `vm.clone` argv.
pub(crate) fn launch_in(argv: &[String]) -> String {
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

pub(crate) fn mask_launch(argv: Vec<String>) -> Vec<String> {
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

pub(crate) fn sv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The inventory path of `name` in the folder.
pub(crate) fn at(name: &str) -> String {
    format!("{FOLDER}/{name}")
}

pub(crate) fn vm_ref(name: &str) -> VmRef {
    VmRef::in_folder(FOLDER, name).unwrap()
}

pub(crate) fn refs(names: &[&str]) -> Vec<VmRef> {
    names.iter().map(|n| vm_ref(n)).collect()
}

/// vmw's marker of tag `me`.
pub(crate) fn marker(kind: &str, launch: &str) -> String {
    format!("made by vmw (tag: me, kind: {kind}, launch: {launch})")
}

/// The `vm.clone` argv of a launch from `source` (a name in the folder),
/// launch id masked.
pub(crate) fn clone_argv(source: &str, name: &str, hardware: &[&str], linked: bool) -> Vec<String> {
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

pub(crate) fn power_on_argv(name: &str) -> Vec<String> {
    sv(&["vm.power", "-on=true", "--", &at(name)])
}

pub(crate) fn destroy_argv(name: &str) -> Vec<String> {
    sv(&["vm.destroy", "--", &at(name)])
}

pub(crate) fn info_argv(name: &str) -> Vec<String> {
    sv(&["vm.info", "-json=true", "-e=false", "--", &at(name)])
}

/// The one search a cloud tagged `me` makes before its first generated name.
pub(crate) fn find_names_argv() -> Vec<String> {
    sv(&["find", "-type=m", "-name=me-*", "-maxdepth=1", "--", FOLDER])
}

/// The `-wait` of a `vm.ip` argv, as a duration.
pub(crate) fn ip_wait_of(argv: &[String]) -> Duration {
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

pub(crate) fn options(name: &str, wait: WaitStage) -> LaunchOptions {
    LaunchOptions {
        name: Some(name.to_owned()),
        wait,
        ..LaunchOptions::default()
    }
}

/// The number in a generated name `me-<n>` (or in its inventory path).
pub(crate) fn number_of(name: &str) -> u64 {
    let name = name.rsplit('/').next().unwrap();
    name.strip_prefix("me-")
        .unwrap_or_else(|| panic!("{name} is not me-<n>"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not me-<n>"))
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A guestinfo file passed with `vm.change -f`, as seen during the call.
#[derive(Clone, Debug)]
pub(crate) struct SeenFile {
    pub(crate) key: String,
    pub(crate) path: String,
    pub(crate) mode: u32,
    pub(crate) contents: String,
}

/// Reads the files of every `-f=key=path` of a `vm.change` while it runs.
pub(crate) fn read_guestinfo_files(c: &Command) -> Vec<SeenFile> {
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

pub(crate) fn yaml(bytes: &[u8]) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_slice(bytes).unwrap()
}

/// Waits (up to `limit`) until `done` holds.
pub(crate) async fn eventually(limit: Duration, what: &str, done: impl Fn() -> bool) {
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
pub(crate) struct Slow<G> {
    inner: G,
    in_flight: AtomicUsize,
    pub(crate) peak: AtomicUsize,
}

impl<G> Slow<G> {
    pub(crate) fn new(inner: G) -> Self {
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
pub(crate) struct Delay<G> {
    inner: G,
    delays: Vec<(&'static str, Duration)>,
}

impl<G> Delay<G> {
    pub(crate) fn new(inner: G, delays: &[(&'static str, Duration)]) -> Self {
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

/// The image every launch here is from: [`IMAGE`] in [`FOLDER`].
pub(crate) fn image() -> Image {
    Image::at(VmRef::parse(&format!("{FOLDER}/{IMAGE}")).unwrap())
}
