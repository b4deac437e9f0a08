//! Parsers of govc's output, and the typed values they produce.
//!
//! Each parser takes the stdout of a successful govc run and returns a value
//! or a short reason; the requests wrap the reason into
//! [`crate::GovcError::Parse`] together with the command and the output.
//! The shapes are those printed by govc v0.56.0 (tested against outputs
//! captured from it).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Non-empty lines, trimmed (`find`, `ls`).
pub fn lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Addresses printed by `vm.ip`: one line per VM, several addresses on a line
/// separated by commas (with `-a`). Empty output gives an empty list.
pub fn ip_list(stdout: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for line in stdout.lines() {
        for item in line.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let ip = item
                .parse::<IpAddr>()
                .map_err(|_| format!("{item:?} is not an IP address"))?;
            out.push(ip);
        }
    }
    Ok(out)
}

/// Whether an address is IPv6 link-local (`fe80::/10`): unusable for SSH
/// without an interface scope.
pub fn is_link_local_v6(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

/// What `about -json` says about the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AboutInfo {
    /// e.g. `VMware vCenter Server`.
    pub name: String,
    /// e.g. `VMware vCenter Server 8.0.2 build-...`.
    pub full_name: String,
    /// e.g. `VMware, Inc.`.
    pub vendor: String,
    /// Product version.
    pub version: String,
    /// Build number.
    pub build: String,
    /// `VirtualCenter` or `HostAgent`.
    pub api_type: String,
    /// API version.
    pub api_version: String,
    /// The server's OS type.
    pub os_type: String,
    /// The vCenter instance UUID.
    pub instance_uuid: String,
}

impl AboutInfo {
    /// Whether the server is a vCenter (not a lone ESXi host).
    pub fn is_vcenter(&self) -> bool {
        self.api_type == "VirtualCenter"
    }
}

/// Parses `about -json`.
pub fn about(stdout: &str) -> Result<AboutInfo, String> {
    #[derive(Deserialize)]
    struct Wrapper {
        about: AboutInfo,
    }
    serde_json::from_str::<Wrapper>(stdout)
        .map(|w| w.about)
        .map_err(|e| format!("invalid about JSON: {e}"))
}

/// A VM's power state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// `poweredOn`.
    On,
    /// `poweredOff`.
    Off,
    /// `suspended`.
    Suspended,
    /// Anything else govc reported.
    Other(String),
}

impl PowerState {
    /// Reads vSphere's spelling (`poweredOn`, ...).
    pub fn from_vsphere(s: &str) -> Self {
        match s {
            "poweredOn" => PowerState::On,
            "poweredOff" => PowerState::Off,
            "suspended" => PowerState::Suspended,
            other => PowerState::Other(other.to_owned()),
        }
    }
}

/// The parts of `vm.info -json` that vmw uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmInfo {
    /// The VM's name.
    pub name: String,
    /// Its managed object id, e.g. `vm-42`.
    pub moref: String,
    /// Its power state.
    pub power_state: PowerState,
    /// Whether it is a vSphere template.
    pub template: bool,
    /// Its annotation (notes).
    pub annotation: String,
    /// Number of virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// Guest OS identifier.
    pub guest_id: String,
    /// BIOS UUID.
    pub uuid: String,
    /// The guest's primary IP address, as VMware Tools reports it.
    pub ip_address: Option<String>,
    /// extraConfig (only filled with `vm.info -e`); string values only.
    pub extra_config: BTreeMap<String, String>,
    /// Where its configuration file lives: `[datastore] NAME/NAME.vmx`.
    pub vm_path_name: String,
    /// When it was last powered on (RFC 3339, as vSphere gives it); a
    /// reset or a power cycle changes it.
    pub boot_time: Option<String>,
    /// When it was created (`config.createDate`, RFC 3339, vCenter's
    /// clock), when vSphere tells.
    pub create_date: Option<String>,
    /// Where its log files go: `[datastore] NAME`.
    pub log_directory: String,
    /// Its serial ports.
    pub serial_ports: Vec<SerialPort>,
    /// Its virtual disks, in device order.
    pub disks: Vec<Disk>,
}

/// A virtual disk of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Its device key (`vm.disk.change -disk.key`).
    pub key: i64,
    /// Its size in bytes.
    pub capacity_bytes: u64,
}

/// The virtual disks among a VM's devices: those with a capacity.
fn disks(devices: &[Value]) -> Vec<Disk> {
    devices
        .iter()
        .filter_map(|d| {
            Some(Disk {
                key: d.get("key")?.as_i64()?,
                capacity_bytes: d.get("capacityInBytes")?.as_u64()?,
            })
        })
        .collect()
}

/// A serial port of a VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialPort {
    /// govc's name for it (`serialport-KEY`), as `-device` takes it.
    pub name: String,
    /// The datastore file it writes to (`[datastore] path`), when it is
    /// backed by a file.
    pub file: Option<String>,
}

/// A snapshot of a VM, from `snapshot.tree -D -i -json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Its managed object id, e.g. `snapshot-42` (names need not be unique).
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was taken (RFC 3339).
    pub created: Option<String>,
    /// Whether the VM runs on it now.
    pub current: bool,
    /// Its parent's id.
    pub parent: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSnapshot {
    #[serde(default)]
    id: String,
    name: String,
    #[serde(default)]
    create_time: Option<String>,
    #[serde(default)]
    current: bool,
    #[serde(default)]
    child_snapshot_list: Option<Vec<RawSnapshot>>,
}

/// Parses `snapshot.tree -D -i -json` (no output: no snapshots) into a
/// flat list in tree order.
pub fn snapshot_tree(stdout: &str) -> Result<Vec<Snapshot>, String> {
    if stdout.trim().is_empty() {
        return Ok(Vec::new());
    }
    let roots: Option<Vec<RawSnapshot>> =
        serde_json::from_str(stdout).map_err(|e| format!("invalid snapshot.tree JSON: {e}"))?;
    fn walk(nodes: Vec<RawSnapshot>, parent: Option<&str>, out: &mut Vec<Snapshot>) {
        for n in nodes {
            out.push(Snapshot {
                id: n.id.clone(),
                name: n.name,
                created: n.create_time,
                current: n.current,
                parent: parent.map(str::to_owned),
            });
            walk(n.child_snapshot_list.unwrap_or_default(), Some(&n.id), out);
        }
    }
    let mut out = Vec::new();
    walk(roots.unwrap_or_default(), None, &mut out);
    Ok(out)
}

/// A datastore path `[datastore] path/in/it` as the datastore and the path.
pub fn datastore_path(text: &str) -> Option<(&str, &str)> {
    let (ds, path) = text.strip_prefix('[')?.split_once(']')?;
    let path = path.trim_start();
    (!ds.is_empty() && !path.is_empty()).then_some((ds, path))
}

/// The serial ports among a VM's devices. govc's JSON has no type names:
/// a serial port is the device with `yieldOnPoll`, which only
/// `VirtualSerialPort` has; govc names it `serialport-KEY`.
fn serial_ports(devices: &[Value]) -> Vec<SerialPort> {
    devices
        .iter()
        .filter(|d| d.get("yieldOnPoll").is_some())
        .filter_map(|d| {
            let key = d.get("key")?.as_i64()?;
            Some(SerialPort {
                name: format!("serialport-{key}"),
                file: d
                    .get("backing")
                    .and_then(|b| b.get("fileName"))
                    .and_then(Value::as_str)
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned),
            })
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVmInfoList {
    virtual_machines: Option<Vec<RawVm>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawVm {
    name: String,
    #[serde(rename = "self")]
    this: RawRef,
    config: Option<RawConfig>,
    runtime: Option<RawRuntime>,
    summary: Option<RawSummary>,
    guest: Option<RawGuest>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSummary {
    runtime: Option<RawRuntime>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawRef {
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawConfig {
    template: bool,
    create_date: Option<String>,
    annotation: Option<String>,
    uuid: String,
    guest_id: String,
    hardware: RawHardware,
    extra_config: Option<Vec<RawOption>>,
    files: RawFiles,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawFiles {
    vm_path_name: String,
    log_directory: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawHardware {
    #[serde(rename = "numCPU")]
    num_cpu: u32,
    #[serde(rename = "memoryMB")]
    memory_mb: u64,
    device: Vec<Value>,
}

#[derive(Deserialize)]
struct RawOption {
    key: String,
    value: Value,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawRuntime {
    power_state: String,
    boot_time: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawGuest {
    ip_address: Option<String>,
}

/// Parses `vm.info -json`. `"virtualMachines": null` (no match) gives an
/// empty list.
pub fn vm_info(stdout: &str) -> Result<Vec<VmInfo>, String> {
    let raw: RawVmInfoList =
        serde_json::from_str(stdout).map_err(|e| format!("invalid vm.info JSON: {e}"))?;
    Ok(raw
        .virtual_machines
        .unwrap_or_default()
        .into_iter()
        .map(|vm| {
            let config = vm.config.unwrap_or_default();
            let runtime = vm.runtime.unwrap_or_default();
            VmInfo {
                name: vm.name,
                moref: vm.this.value,
                power_state: PowerState::from_vsphere(&runtime.power_state),
                // vcsim fills only the summary's copy.
                boot_time: runtime
                    .boot_time
                    .or_else(|| vm.summary.and_then(|s| s.runtime).and_then(|r| r.boot_time)),
                template: config.template,
                create_date: config.create_date,
                annotation: config.annotation.unwrap_or_default(),
                cpus: config.hardware.num_cpu,
                memory_mb: config.hardware.memory_mb,
                guest_id: config.guest_id,
                uuid: config.uuid,
                vm_path_name: config.files.vm_path_name,
                log_directory: config.files.log_directory,
                serial_ports: serial_ports(&config.hardware.device),
                disks: disks(&config.hardware.device),
                ip_address: vm
                    .guest
                    .and_then(|g| g.ip_address)
                    .filter(|s| !s.is_empty()),
                extra_config: config
                    .extra_config
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| match o.value {
                        Value::String(s) => Some((o.key, s)),
                        _ => None,
                    })
                    .collect(),
            }
        })
        .collect())
}

/// Property values from `object.collect -json`, by property path.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Properties {
    values: BTreeMap<String, Value>,
}

impl Properties {
    /// The raw JSON value of a property (`None` when govc did not print it).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// A property as a string (`None` when absent, null or not a string).
    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// A property as a bool.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(Value::as_bool)
    }

    /// The names of the properties printed.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// `runtime.powerState` as a [`PowerState`].
    pub fn power_state(&self) -> Option<PowerState> {
        self.str("runtime.powerState").map(PowerState::from_vsphere)
    }
}

impl VmInfo {
    /// A VM known by the properties of
    /// [`MARK_PROPERTIES`](crate::requests::MARK_PROPERTIES) only: name,
    /// id, annotation, template flag, power state and address; the other
    /// fields are empty. `None` without a name or an id.
    pub fn from_marks(moref: String, p: &Properties) -> Option<Self> {
        let name = p.str("name")?.to_owned();
        if moref.is_empty() {
            return None;
        }
        Some(VmInfo {
            name,
            moref,
            power_state: p
                .power_state()
                .unwrap_or_else(|| PowerState::Other(String::new())),
            template: p.bool("config.template").unwrap_or(false),
            annotation: p.str("config.annotation").unwrap_or_default().to_owned(),
            cpus: 0,
            memory_mb: 0,
            guest_id: String::new(),
            uuid: String::new(),
            ip_address: p
                .str("guest.ipAddress")
                .filter(|ip| !ip.is_empty())
                .map(str::to_owned),
            extra_config: BTreeMap::new(),
            vm_path_name: String::new(),
            boot_time: None,
            create_date: p.str("config.createDate").map(str::to_owned),
            log_directory: String::new(),
            serial_ports: Vec::new(),
            disks: Vec::new(),
        })
    }
}

/// Parses `object.collect -json -type m ROOT PROPS...`: one JSON object per
/// VM, `{"obj": {"value": ID}, "changeSet": [{name, val}...]}`, one after
/// the other (not an array), as slim [`VmInfo`]s
/// ([`VmInfo::from_marks`]).
pub fn vm_marks(stdout: &str) -> Result<Vec<VmInfo>, String> {
    #[derive(Deserialize)]
    struct Obj {
        value: String,
    }
    #[derive(Deserialize)]
    struct Update {
        obj: Obj,
        #[serde(rename = "changeSet", default)]
        change_set: Option<Value>,
    }
    let mut vms = Vec::new();
    for update in serde_json::Deserializer::from_str(stdout).into_iter::<Update>() {
        let update = update.map_err(|e| format!("invalid object.collect JSON: {e}"))?;
        let changes = update.change_set.unwrap_or(Value::Null).to_string();
        let props = properties(&changes)?;
        if let Some(vm) = VmInfo::from_marks(update.obj.value, &props) {
            // An object reported twice counts once, as last reported.
            vms.retain(|v: &VmInfo| v.moref != vm.moref);
            vms.push(vm);
        }
    }
    Ok(vms)
}

/// Parses `object.collect -json` (an array of `{name, op, val}`). govc wraps
/// array values as `{"_value": [...]}`; they are unwrapped here.
pub fn properties(stdout: &str) -> Result<Properties, String> {
    #[derive(Deserialize)]
    struct Change {
        name: String,
        #[serde(default)]
        val: Value,
    }
    let changes: Option<Vec<Change>> =
        serde_json::from_str(stdout).map_err(|e| format!("invalid object.collect JSON: {e}"))?;
    Ok(Properties {
        values: changes
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                let val = match c.val {
                    Value::Object(mut m) if m.len() == 1 && m.contains_key("_value") => {
                        m.remove("_value").unwrap_or_default()
                    }
                    other => other,
                };
                (c.name, val)
            })
            .collect(),
    })
}

/// A `PropertyMapping` entry of the import options.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct KeyValue {
    /// OVF property key.
    #[serde(rename = "Key")]
    pub key: String,
    /// Its value.
    #[serde(rename = "Value")]
    pub value: String,
}

/// A `NetworkMapping` entry of the import options.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct NetworkMapping {
    /// The network name in the OVF.
    #[serde(rename = "Name")]
    pub name: String,
    /// The vSphere network to connect it to.
    #[serde(rename = "Network")]
    pub network: String,
}

/// The import options of `import.spec` / `import.ova -options`. Fields vmw
/// does not know are kept as they are, so a spec read and written back
/// loses nothing.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportOptions {
    /// `thin`, `flat`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_provisioning: Option<String>,
    /// e.g. `dhcpPolicy`.
    #[serde(
        rename = "IPAllocationPolicy",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_allocation_policy: Option<String>,
    /// e.g. `IPv4`.
    #[serde(
        rename = "IPProtocol",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_protocol: Option<String>,
    /// OVF properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_mapping: Option<Vec<KeyValue>>,
    /// OVF networks to vSphere networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mapping: Option<Vec<NetworkMapping>>,
    /// Mark the result as a vSphere template.
    #[serde(default)]
    pub mark_as_template: bool,
    /// Power on after import.
    #[serde(default)]
    pub power_on: bool,
    /// Inject an OVF environment (must be `false` for vmw's templates).
    #[serde(default)]
    pub inject_ovf_env: bool,
    /// Wait for an IP after power-on.
    #[serde(rename = "WaitForIP", default)]
    pub wait_for_ip: bool,
    /// Name of the imported VM.
    #[serde(default)]
    pub name: Option<String>,
    /// The imported VM's annotation (notes).
    #[serde(
        rename = "Annotation",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub annotation: Option<String>,
    /// Everything else govc printed.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// Parses `import.spec` output.
pub fn import_options(stdout: &str) -> Result<ImportOptions, String> {
    serde_json::from_str(stdout).map_err(|e| format!("invalid import.spec JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_trees_flatten_in_order() {
        let json = r#"[{"createTime":"2026-11-24T23:25:02Z","id":"snapshot-95","name":"base","current":false,
            "childSnapshotList":[{"id":"snapshot-97","name":"two","current":true,"childSnapshotList":null}]}]"#;
        let all = snapshot_tree(json).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, "snapshot-95");
        assert_eq!(all[0].parent, None);
        assert_eq!(all[1].parent.as_deref(), Some("snapshot-95"));
        assert!(all[1].current);
        assert!(snapshot_tree("").unwrap().is_empty());
        assert!(snapshot_tree("{").is_err());
    }

    #[test]
    fn datastore_paths_split() {
        assert_eq!(
            datastore_path("[LocalDS_0] vm-1/serialport-9000.log"),
            Some(("LocalDS_0", "vm-1/serialport-9000.log"))
        );
        assert_eq!(datastore_path("vm-1/x.log"), None);
        assert_eq!(datastore_path("[] x"), None);
    }

    #[test]
    fn ip_lists() {
        assert_eq!(ip_list("").unwrap(), Vec::<IpAddr>::new());
        assert_eq!(ip_list("\n").unwrap(), Vec::<IpAddr>::new());
        let ips = ip_list("127.0.0.1\n").unwrap();
        assert_eq!(ips, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
        let ips = ip_list("fe80::1,10.0.0.5\n192.168.1.2\n").unwrap();
        assert_eq!(ips.len(), 3);
        assert!(is_link_local_v6(&ips[0]));
        assert!(!is_link_local_v6(&ips[1]));
        assert!(!is_link_local_v6(&"2001:db8::1".parse().unwrap()));
        assert!(is_link_local_v6(&"febf::1".parse().unwrap()));
        assert!(ip_list("not-an-ip").unwrap_err().contains("not-an-ip"));
    }

    #[test]
    fn lines_skip_blanks() {
        assert_eq!(lines("/a\n\n /b \n"), ["/a", "/b"]);
    }
}

#[cfg(test)]
mod marks_tests {
    use super::*;

    const TWO: &str = r#"{
  "kind": "enter",
  "obj": {"type": "VirtualMachine", "value": "vm-62"},
  "changeSet": [
    {"name": "name", "op": "assign", "val": "DC0_H0_VM0"},
    {"name": "summary.vm", "op": "assign", "val": {"type": "VirtualMachine", "value": "vm-62"}},
    {"name": "config.annotation", "op": "assign", "val": null},
    {"name": "config.template", "op": "assign", "val": false},
    {"name": "runtime.powerState", "op": "assign", "val": "poweredOn"},
    {"name": "guest.ipAddress", "op": "assign", "val": null}
  ]
}
{
  "kind": "enter",
  "obj": {"type": "VirtualMachine", "value": "vm-70"},
  "changeSet": [
    {"name": "name", "op": "assign", "val": "me-1"},
    {"name": "config.annotation", "op": "assign", "val": "made by vmw (tag: me, kind: instance)"},
    {"name": "config.template", "op": "assign", "val": true},
    {"name": "runtime.powerState", "op": "assign", "val": "poweredOff"},
    {"name": "guest.ipAddress", "op": "assign", "val": "10.0.0.7"}
  ]
}
{
  "kind": "enter",
  "obj": {"type": "VirtualMachine", "value": "vm-62"},
  "changeSet": [
    {"name": "name", "op": "assign", "val": "DC0_H0_VM0"}
  ]
}
"#;

    #[test]
    fn a_folder_of_marks_reads_each_vm_once() {
        let vms = vm_marks(TWO).unwrap();
        assert_eq!(vms.len(), 2, "{vms:#?}");
        let me = vms.iter().find(|v| v.name == "me-1").unwrap();
        assert_eq!(me.moref, "vm-70");
        assert!(me.template);
        assert_eq!(me.power_state, PowerState::Off);
        assert_eq!(me.annotation, "made by vmw (tag: me, kind: instance)");
        assert_eq!(me.ip_address.as_deref(), Some("10.0.0.7"));
        let other = vms.iter().find(|v| v.moref == "vm-62").unwrap();
        assert_eq!(other.annotation, "");
        assert_eq!(other.ip_address, None);
        assert!(vm_marks("{ not json").is_err());
        assert!(vm_marks("").unwrap().is_empty());
    }

    #[test]
    fn marks_need_a_name_and_an_id() {
        let p = properties(
            r#"[{"name":"name","op":"assign","val":"me-2"},
                {"name":"summary.vm","op":"assign","val":{"type":"VirtualMachine","value":"vm-9"}},
                {"name":"config.template","op":"assign","val":false}]"#,
        )
        .unwrap();
        let vm = VmInfo::from_marks("vm-9".to_owned(), &p).unwrap();
        assert_eq!((vm.name.as_str(), vm.moref.as_str()), ("me-2", "vm-9"));
        assert!(VmInfo::from_marks(String::new(), &p).is_none());
    }
}
