//! A typed request for every govc command vmw runs: each builds its
//! [`Command`] and parses the command's output into a typed value.
//!
//! A request never runs anything; hand it to [`crate::GovcExt::exec`].

use std::net::IpAddr;
use std::time::Duration;

use camino::Utf8PathBuf;

use crate::parse;
use crate::{Command, GovcError, Version, VmRef};

/// A govc command together with the parser of its output.
pub trait Request: Send + Sync {
    /// What the command's output parses to.
    type Output: Send;

    /// The command to run.
    fn command(&self) -> Command;

    /// Parses the stdout of a successful run of `command`.
    fn parse(&self, command: &Command, stdout: &str) -> Result<Self::Output, GovcError>;
}

/// Default deadline for quick queries and changes.
pub const QUICK: Duration = Duration::from_secs(5 * 60);
/// Default deadline for clones and imports, which copy disks.
pub const SLOW: Duration = Duration::from_secs(60 * 60);

/// Formats a duration the way Go's `time.ParseDuration` reads it.
pub fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

macro_rules! unit_output {
    () => {
        type Output = ();
        fn parse(&self, _: &Command, _: &str) -> Result<(), GovcError> {
            Ok(())
        }
    };
}

/// `govc about -json`: what the server is.
#[derive(Clone, Debug, Default)]
pub struct About;

impl Request for About {
    type Output = parse::AboutInfo;
    fn command(&self) -> Command {
        Command::new("about").switch("json", true).timeout(QUICK)
    }
    fn parse(&self, command: &Command, stdout: &str) -> Result<Self::Output, GovcError> {
        parse::about(stdout).map_err(|e| GovcError::parse(command, e, stdout))
    }
}

/// `govc version`: the version of the govc binary.
#[derive(Clone, Debug, Default)]
pub struct GovcVersion;

impl Request for GovcVersion {
    type Output = Version;
    fn command(&self) -> Command {
        crate::locate::version_command()
    }
    fn parse(&self, command: &Command, stdout: &str) -> Result<Version, GovcError> {
        crate::locate::parse_version_output(stdout)
            .ok_or_else(|| GovcError::parse(command, "expected `govc X.Y.Z`", stdout))
    }
}

/// `govc vm.clone`: a new VM from an existing one.
///
/// The new VM is given as a [`VmRef`]: govc gets its folder as `-folder`
/// and its name as the argument, so the clone lands exactly there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmClone {
    /// The source VM.
    pub source: VmRef,
    /// Where the new VM goes: its folder and name.
    pub target: VmRef,
    /// Power the clone on (`-on`); vmw always sets it explicitly.
    pub power_on: bool,
    /// `-ds`: datastore.
    pub datastore: Option<String>,
    /// `-pool`: resource pool.
    pub pool: Option<String>,
    /// `-host`: host.
    pub host: Option<String>,
    /// `-net`: network of the first NIC.
    pub network: Option<String>,
    /// `-annotation`.
    pub annotation: Option<String>,
    /// `-c`: number of CPUs.
    pub cpus: Option<u32>,
    /// `-m`: memory in MiB.
    pub memory_mb: Option<u64>,
    /// `-link`: a linked clone.
    pub linked: bool,
    /// `-snapshot`: the snapshot to clone from.
    pub snapshot: Option<String>,
    /// `-timeout` for the backend.
    pub timeout: Duration,
}

impl VmClone {
    /// Clone `source` to `target`, powered off.
    pub fn new(source: VmRef, target: VmRef) -> Self {
        Self {
            source,
            target,
            power_on: false,
            datastore: None,
            pool: None,
            host: None,
            network: None,
            annotation: None,
            cpus: None,
            memory_mb: None,
            linked: false,
            snapshot: None,
            timeout: SLOW,
        }
    }
}

impl Request for VmClone {
    unit_output!();
    fn command(&self) -> Command {
        Command::new("vm.clone")
            .flag("vm", &self.source)
            .switch("on", self.power_on)
            .flag_opt("ds", self.datastore.as_ref())
            .flag_opt("pool", self.pool.as_ref())
            .flag("folder", self.target.folder())
            .flag_opt("host", self.host.as_ref())
            .flag_opt("net", self.network.as_ref())
            .flag_opt("annotation", self.annotation.as_ref())
            .flag_opt("c", self.cpus)
            .flag_opt("m", self.memory_mb)
            .switch("link", self.linked)
            .flag_opt("snapshot", self.snapshot.as_ref())
            .arg(self.target.name())
            .timeout(self.timeout)
    }
}

/// `govc vm.create`: a new, empty VM (used to seed simulators).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmCreate {
    /// Where the VM goes: its folder and name.
    pub target: VmRef,
    /// Power it on.
    pub power_on: bool,
    /// `-net`.
    pub network: Option<String>,
    /// `-pool`.
    pub pool: Option<String>,
    /// `-ds`.
    pub datastore: Option<String>,
    /// `-g`: guest OS identifier, e.g. `ubuntu64Guest`.
    pub guest_id: Option<String>,
    /// `-c`.
    pub cpus: Option<u32>,
    /// `-m`.
    pub memory_mb: Option<u64>,
    /// `-annotation`.
    pub annotation: Option<String>,
    /// `-disk`: a new disk of this size (e.g. `10G`).
    pub disk: Option<String>,
}

impl VmCreate {
    /// A powered-off VM at `target`.
    pub fn new(target: VmRef) -> Self {
        Self {
            target,
            power_on: false,
            network: None,
            pool: None,
            datastore: None,
            guest_id: None,
            cpus: None,
            memory_mb: None,
            annotation: None,
            disk: None,
        }
    }
}

impl Request for VmCreate {
    unit_output!();
    fn command(&self) -> Command {
        Command::new("vm.create")
            .switch("on", self.power_on)
            .flag_opt("net", self.network.as_ref())
            .flag_opt("pool", self.pool.as_ref())
            .flag("folder", self.target.folder())
            .flag_opt("ds", self.datastore.as_ref())
            .flag_opt("g", self.guest_id.as_ref())
            .flag_opt("c", self.cpus)
            .flag_opt("m", self.memory_mb)
            .flag_opt("annotation", self.annotation.as_ref())
            .flag_opt("disk", self.disk.as_ref())
            .arg(self.target.name())
            .timeout(SLOW)
    }
}

/// `govc vm.change`: extraConfig values (from text or from files), CPUs,
/// memory, annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmChange {
    /// The VM.
    pub vm: VmRef,
    /// `-e key=value` pairs.
    pub extra_config: Vec<(String, String)>,
    /// `-f key=path` pairs: govc stores the file's bytes as the value,
    /// verbatim (a trailing newline is kept). Use these for anything large
    /// or secret: argv is visible to every user of the machine and Linux
    /// limits one argument to 128 KiB.
    pub extra_config_files: Vec<(String, Utf8PathBuf)>,
    /// `-c`.
    pub cpus: Option<u32>,
    /// `-m`.
    pub memory_mb: Option<u64>,
    /// `-annotation`.
    pub annotation: Option<String>,
}

impl VmChange {
    /// A change of `vm` that changes nothing yet.
    pub fn new(vm: VmRef) -> Self {
        Self {
            vm,
            extra_config: Vec::new(),
            extra_config_files: Vec::new(),
            cpus: None,
            memory_mb: None,
            annotation: None,
        }
    }

    /// Adds an extraConfig value given as text.
    #[must_use]
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_config.push((key.into(), value.into()));
        self
    }

    /// Adds an extraConfig value read by govc from a file.
    #[must_use]
    pub fn extra_file(mut self, key: impl Into<String>, path: impl Into<Utf8PathBuf>) -> Self {
        self.extra_config_files.push((key.into(), path.into()));
        self
    }
}

/// Checks that `key` can be an extraConfig key on govc's command line: govc
/// splits `key=value` at the first `=`, so a key must be non-empty and hold
/// no `=`, and it must be one line.
pub fn check_extra_config_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("an extraConfig key must not be empty".to_owned());
    }
    if key.contains('=') || key.contains('\n') || key.contains('\r') {
        return Err(format!(
            "extraConfig key {key:?} must not contain '=' or a line break"
        ));
    }
    Ok(())
}

impl Request for VmChange {
    unit_output!();
    fn command(&self) -> Command {
        let mut c = Command::new("vm.change").flag("vm", &self.vm);
        for (k, v) in &self.extra_config {
            c = c.flag("e", format!("{k}={v}"));
        }
        for (k, p) in &self.extra_config_files {
            c = c.flag("f", format!("{k}={p}"));
        }
        c.flag_opt("c", self.cpus)
            .flag_opt("m", self.memory_mb)
            .flag_opt("annotation", self.annotation.as_ref())
            .timeout(QUICK)
    }
}

/// The operation of a [`VmPower`] request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOp {
    /// `-on`.
    On,
    /// `-off`: hard power off.
    Off,
    /// `-reset`: hard reset.
    Reset,
    /// `-s`: guest shutdown (needs VMware Tools).
    Shutdown,
    /// `-r`: guest reboot (needs VMware Tools).
    Reboot,
    /// `-suspend`.
    Suspend,
}

impl PowerOp {
    fn flag(self) -> &'static str {
        match self {
            PowerOp::On => "on",
            PowerOp::Off => "off",
            PowerOp::Reset => "reset",
            PowerOp::Shutdown => "s",
            PowerOp::Reboot => "r",
            PowerOp::Suspend => "suspend",
        }
    }
}

/// `govc vm.power`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmPower {
    /// The VMs (govc handles several one after another; vmw runs one per
    /// call and parallelises the calls).
    pub vms: Vec<VmRef>,
    /// The operation.
    pub op: PowerOp,
    /// `-force`.
    pub force: bool,
}

impl VmPower {
    /// `op` on one VM.
    pub fn new(vm: VmRef, op: PowerOp) -> Self {
        Self {
            vms: vec![vm],
            op,
            force: false,
        }
    }
}

impl Request for VmPower {
    unit_output!();
    fn command(&self) -> Command {
        let c = Command::new("vm.power").switch(self.op.flag(), true);
        let c = if self.force {
            c.switch("force", true)
        } else {
            c
        };
        c.args(self.vms.iter().map(VmRef::to_string)).timeout(QUICK)
    }
}

/// `govc vm.ip`: wait for the VM's guest IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmIp {
    /// The VM.
    pub vm: VmRef,
    /// `-wait`: how long govc waits for an address.
    pub wait: Duration,
    /// `-v4`: only IPv4 addresses.
    pub v4: bool,
    /// `-a`: wait for the addresses of all NICs (comma-separated).
    pub all: bool,
}

impl VmIp {
    /// Wait up to `wait` for an address of `vm`.
    pub fn new(vm: VmRef, wait: Duration) -> Self {
        Self {
            vm,
            wait,
            v4: false,
            all: false,
        }
    }
}

impl Request for VmIp {
    type Output = Vec<IpAddr>;
    fn command(&self) -> Command {
        let c = Command::new("vm.ip").flag("wait", go_duration(self.wait));
        let c = if self.v4 { c.switch("v4", true) } else { c };
        let c = if self.all { c.switch("a", true) } else { c };
        c.arg(self.vm.as_str())
            .timeout(self.wait + Duration::from_secs(60))
    }
    fn parse(&self, command: &Command, stdout: &str) -> Result<Vec<IpAddr>, GovcError> {
        let ips = parse::ip_list(stdout).map_err(|e| GovcError::parse(command, e, stdout))?;
        if ips.is_empty() {
            return Err(GovcError::NoIp {
                command: Box::new(command.clone()),
                vm: self.vm.to_string(),
                waited: self.wait,
            });
        }
        Ok(ips)
    }
}

/// `govc vm.destroy`: powers a running VM off and deletes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmDestroy {
    /// The VMs.
    pub vms: Vec<VmRef>,
}

impl VmDestroy {
    /// Destroy one VM.
    pub fn new(vm: VmRef) -> Self {
        Self { vms: vec![vm] }
    }
}

impl Request for VmDestroy {
    unit_output!();
    fn command(&self) -> Command {
        Command::new("vm.destroy")
            .args(self.vms.iter().map(VmRef::to_string))
            .timeout(QUICK)
    }
}

/// `govc device.serial.add`: a new serial port; the output is its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialAdd {
    /// The VM.
    pub vm: VmRef,
}

impl Request for SerialAdd {
    type Output = String;
    fn command(&self) -> Command {
        Command::new("device.serial.add")
            .flag("vm", &self.vm)
            .timeout(QUICK)
    }
    fn parse(&self, command: &Command, stdout: &str) -> Result<String, GovcError> {
        stdout
            .lines()
            .map(str::trim)
            .rfind(|l| l.starts_with("serialport-"))
            .map(str::to_owned)
            .ok_or_else(|| GovcError::parse(command, "no serial port name printed", stdout))
    }
}

/// `govc device.serial.connect`: backs a serial port with a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialConnect {
    /// The VM.
    pub vm: VmRef,
    /// The port (`serialport-KEY`); govc takes the first without it.
    pub device: Option<String>,
    /// The file: `[datastore] path`, or `-` for `<port>.log` in the VM's
    /// log directory.
    pub file: String,
}

impl Request for SerialConnect {
    unit_output!();
    fn command(&self) -> Command {
        Command::new("device.serial.connect")
            .flag("vm", &self.vm)
            .flag_opt("device", self.device.as_ref())
            .arg(self.file.clone())
            .timeout(QUICK)
    }
}

/// `govc vm.disk.change -disk.key K -size NG`: grows a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskResize {
    /// The VM.
    pub vm: VmRef,
    /// The disk's device key.
    pub key: i64,
    /// The new size in GiB.
    pub gib: u64,
}

impl Request for DiskResize {
    unit_output!();
    fn command(&self) -> Command {
        Command::new("vm.disk.change")
            .flag("vm", &self.vm)
            .flag("disk.key", self.key)
            .flag("size", format!("{}G", self.gib))
            .timeout(QUICK)
    }
}

/// `govc snapshot.create`: a snapshot of the VM's disks (not its memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotCreate {
    /// The VM.
    pub vm: VmRef,
    /// The snapshot's name.
    pub name: String,
    /// `-d`: its description.
    pub description: Option<String>,
}

impl Request for SnapshotCreate {
    unit_output!();
    fn command(&self) -> Command {
        Command::new("snapshot.create")
            .flag("vm", &self.vm)
            .switch("m", false)
            .flag_opt("d", self.description.as_ref())
            .arg(self.name.clone())
            .timeout(SLOW)
    }
}

/// `govc snapshot.tree -D -i -json`: the VM's snapshots, in tree order
/// (a parent before its children, siblings oldest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotTree {
    /// The VM.
    pub vm: VmRef,
}

impl Request for SnapshotTree {
    type Output = Vec<parse::Snapshot>;
    fn command(&self) -> Command {
        Command::new("snapshot.tree")
            .flag("vm", &self.vm)
            .switch("D", true)
            .switch("i", true)
            .switch("json", true)
            .timeout(QUICK)
    }
    fn parse(&self, command: &Command, stdout: &str) -> Result<Self::Output, GovcError> {
        parse::snapshot_tree(stdout).map_err(|e| GovcError::parse(command, e, stdout))
    }
}

/// `govc snapshot.revert`: the VM back to a snapshot (by id or name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRevert {
    /// The VM.
    pub vm: VmRef,
    /// The snapshot: its id (`snapshot-42`) or its name.
    pub snapshot: String,
}

impl Request for SnapshotRevert {
    unit_output!();
    fn command(&self) -> Command {
        Command::new("snapshot.revert")
            .flag("vm", &self.vm)
            .arg(self.snapshot.clone())
            .timeout(SLOW)
    }
}

/// `govc snapshot.remove`: one snapshot (by id or name), its children
/// kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRemove {
    /// The VM.
    pub vm: VmRef,
    /// The snapshot: its id (`snapshot-42`) or its name.
    pub snapshot: String,
}

impl Request for SnapshotRemove {
    unit_output!();
    fn command(&self) -> Command {
        Command::new("snapshot.remove")
            .flag("vm", &self.vm)
            .arg(self.snapshot.clone())
            .timeout(SLOW)
    }
}

/// `govc datastore.download PATH -`: a datastore file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatastoreDownload {
    /// The datastore.
    pub datastore: String,
    /// The file's path in it.
    pub path: String,
}

impl Request for DatastoreDownload {
    type Output = String;
    fn command(&self) -> Command {
        Command::new("datastore.download")
            .flag("ds", &self.datastore)
            .arg(self.path.clone())
            .arg("-")
            .timeout(QUICK)
    }
    fn parse(&self, _: &Command, stdout: &str) -> Result<String, GovcError> {
        Ok(stdout.to_owned())
    }
}

/// `govc vm.info -json`: the VMs' configuration, runtime and guest state.
///
/// govc exits 0 with `"virtualMachines": null` for a path that names
/// nothing; the output is then an empty list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmInfo {
    /// The VMs.
    pub vms: Vec<VmRef>,
    /// `-e`: include extraConfig.
    pub extra_config: bool,
}

impl VmInfo {
    /// Information on one VM.
    pub fn new(vm: VmRef) -> Self {
        Self {
            vms: vec![vm],
            extra_config: false,
        }
    }
}

impl Request for VmInfo {
    type Output = Vec<parse::VmInfo>;
    fn command(&self) -> Command {
        Command::new("vm.info")
            .switch("json", true)
            .switch("e", self.extra_config)
            .args(self.vms.iter().map(VmRef::to_string))
            .timeout(QUICK)
    }
    fn parse(&self, command: &Command, stdout: &str) -> Result<Self::Output, GovcError> {
        parse::vm_info(stdout).map_err(|e| GovcError::parse(command, e, stdout))
    }
}

/// An inventory object type for [`Find`]'s `-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    /// `m`: virtual machine.
    VirtualMachine,
    /// `p`: resource pool.
    ResourcePool,
    /// `f`: folder.
    Folder,
    /// `s`: datastore.
    Datastore,
    /// `n`: network.
    Network,
    /// `h`: host.
    Host,
    /// `c`: cluster.
    Cluster,
    /// `d`: datacenter.
    Datacenter,
}

impl ObjectType {
    fn letter(self) -> &'static str {
        match self {
            ObjectType::VirtualMachine => "m",
            ObjectType::ResourcePool => "p",
            ObjectType::Folder => "f",
            ObjectType::Datastore => "s",
            ObjectType::Network => "n",
            ObjectType::Host => "h",
            ObjectType::Cluster => "c",
            ObjectType::Datacenter => "d",
        }
    }
}

/// `govc find`: inventory paths of matching objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Find {
    /// Where to search from (`/` is the whole inventory).
    pub root: String,
    /// `-type`.
    pub kind: Option<ObjectType>,
    /// `-name`: a glob on the object name.
    pub name: Option<String>,
    /// `-maxdepth`.
    pub max_depth: Option<u32>,
    /// Property filters (e.g. `config.template`, `true`), passed as
    /// `-<property> <value>` after the root; the value may be a glob.
    pub properties: Vec<(String, String)>,
}

impl Find {
    /// Everything under `root`.
    pub fn new(root: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            kind: None,
            name: None,
            max_depth: None,
            properties: Vec::new(),
        }
    }

    /// Only objects of this type.
    #[must_use]
    pub fn kind(mut self, kind: ObjectType) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Only objects whose name matches this glob.
    #[must_use]
    pub fn name(mut self, glob: impl Into<String>) -> Self {
        self.name = Some(glob.into());
        self
    }

    /// Only objects at most `depth` levels below the root (`1`: the
    /// root's children).
    #[must_use]
    pub fn max_depth(mut self, depth: u32) -> Self {
        self.max_depth = Some(depth);
        self
    }

    /// Only objects whose property matches.
    #[must_use]
    pub fn property(mut self, property: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((property.into(), value.into()));
        self
    }
}

impl Request for Find {
    type Output = Vec<String>;
    fn command(&self) -> Command {
        // govc reads property filters as `KEY VAL` pairs after ROOT.
        let mut c = Command::new("find")
            .flag_opt("type", self.kind.map(ObjectType::letter))
            .flag_opt("name", self.name.as_ref())
            .flag_opt("maxdepth", self.max_depth)
            .arg(&self.root);
        for (p, v) in &self.properties {
            c = c.arg(format!("-{p}")).arg(v);
        }
        c.timeout(QUICK)
    }
    fn parse(&self, _: &Command, stdout: &str) -> Result<Vec<String>, GovcError> {
        Ok(parse::lines(stdout))
    }
}

/// `govc object.collect -json PATH PROPS...`: property values of one object
/// (of a VM: [`ObjectCollect::vm`], which takes its exact path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectCollect {
    /// Inventory path of the object.
    pub path: String,
    /// Property paths, e.g. `runtime.powerState`; empty for all.
    pub properties: Vec<String>,
}

impl ObjectCollect {
    /// The given properties of the VM at exactly `vm`.
    pub fn vm<I, S>(vm: &VmRef, properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(vm.as_str(), properties)
    }

    /// The given properties of the object at `path` (a datastore, a
    /// folder; a VM is named by [`ObjectCollect::vm`]).
    pub fn new<I, S>(path: impl Into<String>, properties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            path: path.into(),
            properties: properties.into_iter().map(Into::into).collect(),
        }
    }
}

impl Request for ObjectCollect {
    type Output = parse::Properties;
    fn command(&self) -> Command {
        Command::new("object.collect")
            .switch("json", true)
            .arg(&self.path)
            .args(self.properties.iter().cloned())
            .timeout(QUICK)
    }
    fn parse(&self, command: &Command, stdout: &str) -> Result<Self::Output, GovcError> {
        parse::properties(stdout).map_err(|e| GovcError::parse(command, e, stdout))
    }
}

/// The properties [`VmMarks`] collects: what telling vmw's VMs apart
/// needs, and no more.
pub const MARK_PROPERTIES: [&str; 7] = [
    "name",
    "summary.vm",
    "config.annotation",
    "config.createDate",
    "config.template",
    "runtime.powerState",
    "guest.ipAddress",
];

/// `govc object.collect -json -type m FOLDER` of [`MARK_PROPERTIES`]: every
/// VM in the folder and its subfolders (one container view), with name,
/// managed object id, annotation, template flag, power state and address,
/// as [`parse::VmInfo`]s with only those fields filled. Much lighter than
/// `vm.info -json`, which loads each VM's whole configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmMarks {
    /// The folder's inventory path.
    pub folder: String,
}

impl Request for VmMarks {
    type Output = Vec<parse::VmInfo>;
    fn command(&self) -> Command {
        Command::new("object.collect")
            .switch("json", true)
            .flag("type", "m")
            .arg(&self.folder)
            .args(MARK_PROPERTIES)
            .timeout(QUICK)
    }
    fn parse(&self, command: &Command, stdout: &str) -> Result<Self::Output, GovcError> {
        parse::vm_marks(stdout).map_err(|e| GovcError::parse(command, e, stdout))
    }
}

/// `govc import.spec FILE`: the import options an OVA/OVF file accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportSpec {
    /// The `.ova` or `.ovf` file.
    pub file: Utf8PathBuf,
}

impl Request for ImportSpec {
    type Output = parse::ImportOptions;
    fn command(&self) -> Command {
        Command::new("import.spec")
            .arg(self.file.as_str())
            .timeout(QUICK)
    }
    fn parse(&self, command: &Command, stdout: &str) -> Result<Self::Output, GovcError> {
        parse::import_options(stdout).map_err(|e| GovcError::parse(command, e, stdout))
    }
}

/// The format of an [`Import`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    /// `import.ova`.
    Ova,
    /// `import.ovf`.
    Ovf,
}

/// `govc import.ova` / `govc import.ovf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// OVA or OVF.
    pub format: ImportFormat,
    /// The file.
    pub file: Utf8PathBuf,
    /// `-options`: a JSON file of [`parse::ImportOptions`].
    pub options: Option<Utf8PathBuf>,
    /// `-name`.
    pub name: Option<String>,
    /// `-ds`.
    pub datastore: Option<String>,
    /// `-pool`.
    pub pool: Option<String>,
    /// `-folder`.
    pub folder: Option<String>,
    /// `-host`.
    pub host: Option<String>,
}

impl Import {
    /// Import `file`, of the format its extension says (`.ova` or else OVF).
    pub fn new(file: impl Into<Utf8PathBuf>) -> Self {
        let file = file.into();
        let format = if file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ova"))
        {
            ImportFormat::Ova
        } else {
            ImportFormat::Ovf
        };
        Self {
            format,
            file,
            options: None,
            name: None,
            datastore: None,
            pool: None,
            folder: None,
            host: None,
        }
    }
}

impl Request for Import {
    unit_output!();
    fn command(&self) -> Command {
        let name = match self.format {
            ImportFormat::Ova => "import.ova",
            ImportFormat::Ovf => "import.ovf",
        };
        Command::new(name)
            .flag_opt("options", self.options.as_ref())
            .flag_opt("name", self.name.as_ref())
            .flag_opt("ds", self.datastore.as_ref())
            .flag_opt("pool", self.pool.as_ref())
            .flag_opt("folder", self.folder.as_ref())
            .flag_opt("host", self.host.as_ref())
            .arg(self.file.as_str())
            .timeout(SLOW)
    }
}

/// `govc object.rename PATH NAME` of a VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmRename {
    /// The VM, at its exact path.
    pub vm: VmRef,
    /// Its new name (a VM name: [`crate::check_vm_name`]).
    pub name: String,
}

impl Request for VmRename {
    unit_output!();
    fn command(&self) -> Command {
        Command::new("object.rename")
            .arg(self.vm.as_str())
            .arg(&self.name)
            .timeout(QUICK)
    }
}

/// `govc vm.markastemplate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkAsTemplate {
    /// The VM.
    pub vm: VmRef,
}

impl Request for MarkAsTemplate {
    unit_output!();
    fn command(&self) -> Command {
        Command::new("vm.markastemplate")
            .arg(self.vm.as_str())
            .timeout(QUICK)
    }
}

/// `govc vm.markasvm`: turns a template back into a VM; govc needs a
/// resource pool or a host for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkAsVm {
    /// The template.
    pub vm: VmRef,
    /// `-pool`.
    pub pool: Option<String>,
    /// `-host`.
    pub host: Option<String>,
}

impl Request for MarkAsVm {
    unit_output!();
    fn command(&self) -> Command {
        Command::new("vm.markasvm")
            .flag_opt("pool", self.pool.as_ref())
            .flag_opt("host", self.host.as_ref())
            .arg(self.vm.as_str())
            .timeout(QUICK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(path: &str) -> VmRef {
        VmRef::parse(path).unwrap()
    }

    #[test]
    fn clone_argv() {
        let mut r = VmClone::new(
            vm("/DC0/vm/TEMPLATE-cloud-init-jammy"),
            vm("/DC0/vm/ci/me-1"),
        );
        r.datastore = Some("LocalDS_0".into());
        r.pool = Some("/DC0/host/DC0_C0/Resources".into());
        r.annotation = Some("made by vmw; tag=me".into());
        r.cpus = Some(2);
        r.memory_mb = Some(4096);
        assert_eq!(
            r.command().argv(),
            [
                "vm.clone",
                "-vm=/DC0/vm/TEMPLATE-cloud-init-jammy",
                "-on=false",
                "-ds=LocalDS_0",
                "-pool=/DC0/host/DC0_C0/Resources",
                "-folder=/DC0/vm/ci",
                "-annotation=made by vmw; tag=me",
                "-c=2",
                "-m=4096",
                "-link=false",
                "--",
                "me-1"
            ]
        );
    }

    #[test]
    fn change_argv_takes_values_and_files() {
        let r = VmChange::new(vm("/DC0/vm/me-1"))
            .extra("guestinfo.metadata.encoding", "base64")
            .extra_file("guestinfo.metadata", "/tmp/x/metadata");
        assert_eq!(
            r.command().argv(),
            [
                "vm.change",
                "-vm=/DC0/vm/me-1",
                "-e=guestinfo.metadata.encoding=base64",
                "-f=guestinfo.metadata=/tmp/x/metadata"
            ]
        );
        assert!(check_extra_config_key("guestinfo.x").is_ok());
        assert!(check_extra_config_key("a=b").is_err());
        assert!(check_extra_config_key("").is_err());
    }

    #[test]
    fn power_ip_destroy_info_argv() {
        assert_eq!(
            VmPower::new(vm("/DC0/vm/-odd name"), PowerOp::Off)
                .command()
                .argv(),
            ["vm.power", "-off=true", "--", "/DC0/vm/-odd name"]
        );
        let mut ip = VmIp::new(vm("/DC0/vm/a"), Duration::from_secs(300));
        ip.v4 = true;
        let c = ip.command();
        assert_eq!(
            c.argv(),
            ["vm.ip", "-wait=300s", "-v4=true", "--", "/DC0/vm/a"]
        );
        assert_eq!(c.time_limit(), Some(Duration::from_secs(360)));
        assert_eq!(
            VmIp::new(vm("/DC0/vm/a"), Duration::from_millis(1500))
                .command()
                .argv()[1],
            "-wait=1500ms"
        );
        assert_eq!(
            VmDestroy::new(vm("/DC0/vm/a")).command().argv(),
            ["vm.destroy", "--", "/DC0/vm/a"]
        );
        assert_eq!(
            VmInfo::new(vm("/DC0/vm/a")).command().argv(),
            ["vm.info", "-json=true", "-e=false", "--", "/DC0/vm/a"]
        );
    }

    #[test]
    fn find_collect_import_argv() {
        let f = Find::new("/DC0/vm")
            .kind(ObjectType::VirtualMachine)
            .name("TEMPLATE-cloud-init-*")
            .property("config.template", "false");
        assert_eq!(
            f.command().argv(),
            [
                "find",
                "-type=m",
                "-name=TEMPLATE-cloud-init-*",
                "--",
                "/DC0/vm",
                "-config.template",
                "false"
            ]
        );
        assert_eq!(
            ObjectCollect::new("/DC0/vm/x", ["runtime.powerState"])
                .command()
                .argv(),
            [
                "object.collect",
                "-json=true",
                "--",
                "/DC0/vm/x",
                "runtime.powerState"
            ]
        );
        let mut i = Import::new("/tmp/ubuntu.OVA");
        i.options = Some("/tmp/o.json".into());
        assert_eq!(
            i.command().argv(),
            [
                "import.ova",
                "-options=/tmp/o.json",
                "--",
                "/tmp/ubuntu.OVA"
            ]
        );
        assert_eq!(Import::new("a.ovf").command().name(), "import.ovf");
        let r = VmRename {
            vm: VmRef::parse("/DC0/vm/a").unwrap(),
            name: "-b c".into(),
        };
        assert_eq!(
            r.command().argv(),
            ["object.rename", "--", "/DC0/vm/a", "-b c"]
        );
    }
}
