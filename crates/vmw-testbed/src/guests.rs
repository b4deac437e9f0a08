//! [`RealGuests`]: real Linux guests behind the simulator's VMs.
//!
//! vcsim's VMs never boot anything. This agent watches the simulator and
//! gives each VM that powers on with guestinfo a real guest: a QEMU
//! process booting the Debian image `cargo xtask guest-image` builds, from
//! a copy-on-write overlay of its own, with the VM's guestinfo handed over
//! through QEMU's fw_cfg (the image's `vmware-rpctool` stand-in reads it,
//! so the guest's real cloud-init finds its VMware datasource). Each guest
//! gets its own loopback address (`127.0.0.N`, SSH forwarded from port
//! [`RealGuestOptions::ssh_port`]), which the agent reports as the VM's
//! guest address once the guest's sshd answers, as VMware Tools would.
//!
//! - Power-off stops the guest (the disk is kept) and clears the address;
//!   power-on boots it again (a real reboot: a new boot id). A reset, or a
//!   power cycle quicker than the agent looks, is seen in the VM's boot
//!   time and reboots the guest too.
//! - A VM destroyed loses its disk.
//! - A clone (vmw's snapshot) starts from a copy of its source's disk
//!   (a running source is paused for the copy), so an image carries the
//!   guest's state to the instances launched from it.
//! - The serial console of every boot is appended to the file the VM's
//!   serial port is backed by (vmw connects one at launch), else to
//!   `console.log` in the
//!   VM's folder of vcsim's datastore.
//! - Guests are children of the agent, reaped, and killed when the agent is
//!   dropped, or by the kernel when the process that started them dies.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use camino::{Utf8Path, Utf8PathBuf};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use vmw_govc::parse::{PowerState, VmInfo};
use vmw_govc::requests::{Find, ObjectCollect, ObjectType, VmChange};
use vmw_govc::{Govc, GovcExt, ProcessGovc, VmRef};

use crate::TestbedError;

/// The guest image: a kernel, its initramfs and a root disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestImage {
    /// The kernel (`vmlinuz`).
    pub kernel: Utf8PathBuf,
    /// The initramfs (`initrd.img`).
    pub initrd: Utf8PathBuf,
    /// The root disk (`base.qcow2`), never written to: guests boot from
    /// overlays.
    pub disk: Utf8PathBuf,
}

impl GuestImage {
    /// The image in `dir` (as `cargo xtask guest-image` leaves it).
    pub fn from_dir(dir: &Utf8Path) -> Result<Self, TestbedError> {
        let image = Self {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            disk: dir.join("base.qcow2"),
        };
        for f in [&image.kernel, &image.initrd, &image.disk] {
            if !f.is_file() {
                return Err(TestbedError::ToolMissing {
                    tool: "guest image",
                    detail: format!("{f} is missing; run `cargo xtask guest-image`"),
                });
            }
        }
        Ok(image)
    }

    /// The image named by `VMW_GUEST_IMAGE` (a directory).
    pub fn from_env() -> Result<Self, TestbedError> {
        Self::from_env_var(GUEST_IMAGE_VAR)
    }

    /// The image named by the environment variable `var` (a directory).
    pub fn from_env_var(var: &str) -> Result<Self, TestbedError> {
        let release = if var == BOOKWORM_IMAGE_VAR {
            " --release bookworm"
        } else {
            ""
        };
        match std::env::var(var) {
            Ok(dir) => Self::from_dir(Utf8Path::new(&dir)),
            Err(_) => Err(TestbedError::ToolMissing {
                tool: "guest image",
                detail: format!(
                    "{var} is not set; `cargo xtask guest-image{release}` builds the image and prints its directory"
                ),
            }),
        }
    }
}

/// Names the guest image directory for the tests: Debian trixie.
pub const GUEST_IMAGE_VAR: &str = "VMW_GUEST_IMAGE";

/// Names the directory of the Debian bookworm guest image, for the tests
/// that keep the older cloud-init (22.4) working.
pub const BOOKWORM_IMAGE_VAR: &str = "VMW_GUEST_IMAGE_BOOKWORM";

/// How QEMU runs the guests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation: works everywhere, slowly.
    #[default]
    Tcg,
    /// KVM, where it runs stock kernels.
    Kvm,
}

/// How [`RealGuests`] runs.
#[derive(Clone, Debug)]
pub struct RealGuestOptions {
    /// The image guests boot, unless [`RealGuestOptions::images`] names
    /// another.
    pub image: GuestImage,
    /// Other images, by the name of the VM (a template) whose guests boot
    /// them: a VM of that name, its clones, their clones and so on boot
    /// that image instead of [`RealGuestOptions::image`].
    pub images: BTreeMap<String, GuestImage>,
    /// The accelerator.
    pub accel: Accel,
    /// Guest memory.
    pub memory_mb: u32,
    /// The port the guests' SSH is forwarded from, on each guest's address.
    pub ssh_port: u16,
    /// The last byte of the first guest address (`127.0.0.N`).
    pub first_address: u8,
    /// How often the simulator is looked at.
    pub poll: Duration,
}

impl RealGuestOptions {
    /// The default [`RealGuestOptions::ssh_port`].
    pub const DEFAULT_SSH_PORT: u16 = 2222;

    /// Defaults: software emulation, 512 MiB, SSH on port 2222 of
    /// `127.0.0.2`, `127.0.0.3`, ...
    pub fn new(image: GuestImage) -> Self {
        Self {
            image,
            images: BTreeMap::new(),
            accel: Accel::default(),
            memory_mb: 512,
            ssh_port: Self::DEFAULT_SSH_PORT,
            first_address: 2,
            poll: Duration::from_millis(500),
        }
    }
}

/// One guest, as [`RealGuests::guests`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestState {
    /// The VM's inventory path.
    pub vm: String,
    /// Its guest address.
    pub address: Ipv4Addr,
    /// Whether its QEMU runs.
    pub running: bool,
    /// Whether its address was reported to the simulator.
    pub reported: bool,
    /// How many times it was booted.
    pub boots: u32,
    /// Its serial console log.
    pub console: Utf8PathBuf,
}

/// The real-guest agent; its guests are killed when it is dropped.
#[derive(Debug)]
pub struct RealGuests {
    task: JoinHandle<()>,
    state: Arc<Mutex<BTreeMap<String, GuestState>>>,
    _dir: tempfile::TempDir,
}

impl RealGuests {
    /// Starts the agent on `govc`'s simulator. Guest disks live in a
    /// temporary directory of the agent's.
    pub fn start(govc: ProcessGovc, options: RealGuestOptions) -> Result<Self, TestbedError> {
        for tool in ["qemu-system-x86_64", "qemu-img", "setpriv"] {
            if !on_path(tool) {
                return Err(TestbedError::ToolMissing {
                    tool: "QEMU",
                    detail: format!(
                        "{tool} is not on PATH; `cargo xtask test` installs qemu-system-x86 and qemu-utils"
                    ),
                });
            }
        }
        let dir = tempfile::Builder::new().prefix("vmw-guests-").tempdir()?;
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned())
            .map_err(|_| std::io::Error::other("temporary directory is not UTF-8"))?;
        let state = Arc::new(Mutex::new(BTreeMap::new()));
        let agent = Agent {
            govc,
            options,
            root,
            vms: HashMap::new(),
            next_address: 0,
            datastores: HashMap::new(),
            shown: state.clone(),
        };
        let task = tokio::spawn(agent.run());
        Ok(Self {
            task,
            state,
            _dir: dir,
        })
    }

    /// The guests so far, by VM path.
    pub fn guests(&self) -> Vec<GuestState> {
        self.state
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for RealGuests {
    fn drop(&mut self) {
        // Dropping the agent's future drops its children, which are killed
        // on drop (and reaped by tokio).
        self.task.abort();
    }
}

/// A VM the agent knows, by managed object id.
struct Known {
    path: String,
    /// The image its guest boots.
    image: GuestImage,
    address: Ipv4Addr,
    disk: Utf8PathBuf,
    dir: Utf8PathBuf,
    console: Utf8PathBuf,
    qemu: Option<Child>,
    /// The VM's boot time when its guest was started: a different one
    /// later means the VM was reset or power-cycled in between.
    booted_at: Option<String>,
    reported: bool,
    boots: u32,
}

struct Agent {
    govc: ProcessGovc,
    options: RealGuestOptions,
    root: Utf8PathBuf,
    vms: HashMap<String, Known>,
    next_address: u8,
    datastores: HashMap<String, Utf8PathBuf>,
    shown: Arc<Mutex<BTreeMap<String, GuestState>>>,
}

impl Agent {
    async fn run(mut self) {
        loop {
            if let Err(e) = self.tick().await {
                tracing::debug!(error = %e, "real guests: looking at the simulator failed");
            }
            self.show();
            tokio::time::sleep(self.options.poll).await;
        }
    }

    async fn tick(&mut self) -> Result<(), TestbedError> {
        let paths = self
            .govc
            .exec(&Find::new("/").kind(ObjectType::VirtualMachine))
            .await?;
        let refs: Vec<VmRef> = paths.iter().filter_map(|p| VmRef::parse(p).ok()).collect();
        if refs.is_empty() {
            return Ok(());
        }
        // vm.info does not say which path an answer is for: VMs whose name
        // is unique are asked for together and matched by name, the others
        // one by one.
        let unique = |r: &VmRef| refs.iter().filter(|o| o.name() == r.name()).count() == 1;
        let (together, alone): (Vec<VmRef>, Vec<VmRef>) =
            refs.iter().cloned().partition(|r| unique(r));
        let mut found: Vec<(String, VmInfo)> = Vec::new();
        if !together.is_empty() {
            let infos = self
                .govc
                .exec(&vmw_govc::requests::VmInfo {
                    vms: together.clone(),
                    extra_config: true,
                })
                .await?;
            for info in infos {
                if let Some(r) = together.iter().find(|r| r.name() == info.name) {
                    found.push((r.to_string(), info));
                }
            }
        }
        for r in alone {
            let mut request = vmw_govc::requests::VmInfo::new(r.clone());
            request.extra_config = true;
            if let Some(info) = self.govc.exec(&request).await?.into_iter().next() {
                found.push((r.to_string(), info));
            }
        }
        let mut seen = Vec::new();
        for (path, info) in found {
            seen.push(info.moref.clone());
            self.handle(&path, &info).await;
        }
        // Destroyed VMs: stop their guests and remove their disks.
        let gone: Vec<String> = self
            .vms
            .keys()
            .filter(|m| !seen.contains(m))
            .cloned()
            .collect();
        for moref in gone {
            if let Some(mut k) = self.vms.remove(&moref) {
                stop(&mut k).await;
                let _ = std::fs::remove_dir_all(&k.dir);
            }
        }
        Ok(())
    }

    async fn handle(&mut self, path: &str, info: &VmInfo) {
        if !self.vms.contains_key(&info.moref) {
            match self.first_sight(path, info).await {
                Ok(k) => {
                    self.vms.insert(info.moref.clone(), k);
                }
                Err(e) => {
                    tracing::warn!(vm = path, error = %e, "real guests: cannot prepare a guest");
                    return;
                }
            }
        }
        let has_guestinfo = info
            .extra_config
            .keys()
            .any(|k| k.starts_with("guestinfo.metadata") || k.starts_with("guestinfo.userdata"));
        // The console goes where the VM's serial port writes, when it has
        // one backed by a file (vmw connects one at launch).
        let booting = info.power_state == PowerState::On
            && has_guestinfo
            && self.vms.get(&info.moref).is_some_and(|k| k.qemu.is_none());
        let serial_file = match info.serial_ports.iter().find_map(|p| p.file.as_deref()) {
            Some(file) if booting => self.datastore_file(file).await,
            _ => None,
        };
        let Some(k) = self.vms.get_mut(&info.moref) else {
            return;
        };
        k.path = path.to_owned();
        if let Some(file) = serial_file {
            k.console = file;
        }
        // A guest that stopped by itself (powered off from inside, or QEMU
        // failed).
        if let Some(q) = k.qemu.as_mut()
            && let Ok(Some(status)) = q.try_wait()
        {
            let log = std::fs::read_to_string(k.dir.join(QEMU_LOG)).unwrap_or_default();
            tracing::warn!(vm = path, %status, qemu = log.trim(), "real guests: QEMU exited");
            k.qemu = None;
        }
        // Powered off and on again (or reset) between two looks: the
        // guest reboots, as a real VM's would.
        if k.qemu.is_some() && info.boot_time.is_some() && info.boot_time != k.booted_at {
            stop(k).await;
            clear_address(&self.govc, path, k).await;
        }
        match (&info.power_state, k.qemu.is_some()) {
            (PowerState::On, false) if has_guestinfo => {
                if let Err(e) = boot(&self.options, k, info).await {
                    tracing::warn!(vm = path, error = %e, "real guests: QEMU did not start");
                }
            }
            // Not reported yet, or the address was lost on the way (the
            // simulator forgets it on a power cycle).
            (PowerState::On, true)
                if !k.reported || info.ip_address != Some(k.address.to_string()) =>
            {
                let addr = SocketAddr::from((k.address, self.options.ssh_port));
                if ssh_answers(addr).await
                    && let Ok(vm) = VmRef::parse(path)
                    && self
                        .govc
                        .exec(
                            &VmChange::new(vm).extra("SET.guest.ipAddress", k.address.to_string()),
                        )
                        .await
                        .is_ok()
                {
                    k.reported = true;
                }
            }
            (PowerState::On, _) => {}
            (_, running) => {
                if running {
                    stop(k).await;
                }
                clear_address(&self.govc, path, k).await;
            }
        }
    }

    /// A VM seen for the first time: its address, its directory, and, for
    /// a clone of a VM that has a disk, a copy of that disk (otherwise an
    /// overlay of the image is made when it first boots).
    async fn first_sight(&mut self, path: &str, info: &VmInfo) -> Result<Known, TestbedError> {
        // The next address whose SSH port is free (another process may
        // have guests too).
        let address = loop {
            let candidate = Ipv4Addr::new(
                127,
                0,
                0,
                self.options.first_address.saturating_add(self.next_address),
            );
            if candidate.octets()[3] == u8::MAX {
                return Err(TestbedError::Io(std::io::Error::other(
                    "no loopback address left for a guest",
                )));
            }
            self.next_address = self.next_address.saturating_add(1);
            if std::net::TcpListener::bind((candidate, self.options.ssh_port)).is_ok() {
                break candidate;
            }
        };
        let dir = self.root.join(&info.moref);
        std::fs::create_dir_all(&dir)?;
        let disk = dir.join("disk.qcow2");
        let (source_name, source) = match self.clone_source(path).await {
            Some((name, moref)) => (Some(name), moref.and_then(|m| self.vms.get(&m))),
            None => (None, None),
        };
        let own_name = path.rsplit('/').next().unwrap_or(path);
        let image = match source {
            Some(k) => k.image.clone(),
            None => source_name
                .as_deref()
                .and_then(|n| self.options.images.get(n))
                .or_else(|| self.options.images.get(own_name))
                .unwrap_or(&self.options.image)
                .clone(),
        };
        match source.map(|k| (k.disk.clone(), k.qemu.is_some().then(|| qmp_socket(&k.dir)))) {
            Some((src, running)) if src.is_file() => {
                // A running source is paused for the copy, so that the
                // copy is a consistent disk (as a vSphere clone of a
                // running VM copies a snapshot of it).
                if let Some(socket) = &running {
                    qmp(socket, "stop").await?;
                }
                let copied = std::fs::copy(&src, &disk);
                if let Some(socket) = &running {
                    qmp(socket, "cont").await?;
                }
                copied?;
            }
            // A VM that never boots (a template, a simulator default)
            // needs no disk: the overlay of the image is made at first boot.
            _ => {}
        }
        let console = match self.vm_folder(info).await {
            Some(folder) => folder.join("console.log"),
            None => dir.join("console.log"),
        };
        Ok(Known {
            path: path.to_owned(),
            image,
            address,
            disk,
            dir,
            console,
            qemu: None,
            booted_at: None,
            reported: false,
            boots: 0,
        })
    }

    /// The name of the VM `path` was cloned from, if it was (from the
    /// simulator's "Clone of NAME completed" event), and its managed object
    /// id when the agent knows it.
    async fn clone_source(&self, path: &str) -> Option<(String, Option<String>)> {
        let out = self
            .govc
            .run(
                &vmw_govc::Command::new("events")
                    .switch("json", true)
                    .arg(path),
            )
            .await
            .ok()?;
        let source = serde_json::Deserializer::from_str(&out.stdout)
            .into_iter::<serde_json::Value>()
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.get("message")
                    .and_then(|m| m.as_str())
                    .and_then(|m| m.strip_prefix("Clone of "))
                    .and_then(|m| m.strip_suffix(" completed"))
                    .map(str::to_owned)
            })
            .last()?;
        // The source by name; in the same folder first.
        let folder = path.rsplit_once('/').map(|(f, _)| f).unwrap_or_default();
        let candidates: Vec<(&String, &Known)> = self
            .vms
            .iter()
            .filter(|(_, k)| k.path.rsplit('/').next() == Some(source.as_str()))
            .collect();
        let moref = candidates
            .iter()
            .find(|(_, k)| k.path.rsplit_once('/').map(|(f, _)| f) == Some(folder))
            .or_else(|| candidates.first())
            .map(|(m, _)| (*m).clone());
        Some((source, moref))
    }

    /// The VM's folder in vcsim's datastore directory.
    async fn vm_folder(&mut self, info: &VmInfo) -> Option<Utf8PathBuf> {
        // `[LocalDS_0] name/name.vmx`
        let folder = info.vm_path_name.rsplit_once('/').map(|(f, _)| f)?;
        let dir = self.datastore_file(folder).await?;
        std::fs::create_dir_all(&dir).ok()?;
        Some(dir)
    }

    /// The local path of a datastore path `[datastore] path` (vcsim's
    /// datastores are directories); its parent directory is made.
    async fn datastore_file(&mut self, file: &str) -> Option<Utf8PathBuf> {
        let (ds, rest) = vmw_govc::parse::datastore_path(file)?;
        if !self.datastores.contains_key(ds) {
            let ds_path = self
                .govc
                .exec(&Find::new("/").kind(ObjectType::Datastore).name(ds))
                .await
                .ok()?
                .into_iter()
                .next()?;
            let props = self
                .govc
                .exec(&ObjectCollect::new(ds_path, ["info.url"]))
                .await
                .ok()?;
            let url = props.str("info.url")?.to_owned();
            self.datastores
                .insert(ds.to_owned(), Utf8PathBuf::from(url));
        }
        let path = self.datastores.get(ds)?.join(rest);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).ok()?;
        }
        Some(path)
    }

    fn show(&self) {
        if let Ok(mut shown) = self.shown.lock() {
            shown.clear();
            for k in self.vms.values() {
                shown.insert(
                    k.path.clone(),
                    GuestState {
                        vm: k.path.clone(),
                        address: k.address,
                        running: k.qemu.is_some(),
                        reported: k.reported,
                        boots: k.boots,
                        console: k.console.clone(),
                    },
                );
            }
        }
    }
}

/// Starts QEMU for `k` with the VM's guestinfo.
async fn boot(
    options: &RealGuestOptions,
    k: &mut Known,
    info: &VmInfo,
) -> Result<(), TestbedError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut guestinfo = String::new();
    for (key, value) in &info.extra_config {
        if key.starts_with("guestinfo.") {
            guestinfo.push_str(&format!("{key} {}\n", b64.encode(value)));
        }
    }
    if !k.disk.is_file() {
        run_quiet(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                .arg(k.image.disk.as_str())
                .arg(k.disk.as_str()),
        )
        .await?;
    }
    let guestinfo_file = k.dir.join("guestinfo");
    std::fs::write(&guestinfo_file, guestinfo)?;
    let accel = match options.accel {
        Accel::Tcg => "tcg,tb-size=128",
        Accel::Kvm => "kvm",
    };
    let netdev = format!(
        "user,id=n0,restrict=on,hostfwd=tcp:{}:{}-:22",
        k.address, options.ssh_port
    );
    // setpriv (util-linux) gives QEMU a parent-death signal: a test
    // process killed outright takes its guests with it.
    let child = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--", "qemu-system-x86_64"])
        .args(["-accel", accel, "-cpu", "max,-hypervisor", "-smp", "1"])
        .args(["-m", &options.memory_mb.to_string()])
        .args([
            "-smbios",
            "type=1,manufacturer=VMware,, Inc.,product=VMware Virtual Platform",
        ])
        .args(["-kernel", k.image.kernel.as_str()])
        .args(["-initrd", k.image.initrd.as_str()])
        .args(["-append", "root=/dev/vda console=ttyS0"])
        .args([
            "-drive",
            &format!("file={},if=virtio,format=qcow2,cache=writethrough", k.disk),
        ])
        .args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0"])
        .args([
            "-fw_cfg",
            &format!("name=opt/vmw/guestinfo,file={guestinfo_file}"),
        ])
        // Appended to: the console of every boot stays in the log.
        .args([
            "-chardev",
            &format!("file,id=console,path={},append=on", k.console),
            "-serial",
            "chardev:console",
        ])
        .args([
            "-qmp",
            &format!("unix:{},server=on,wait=off", qmp_socket(&k.dir)),
        ])
        .args(["-display", "none", "-monitor", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(k.dir.join(QEMU_LOG))?)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| TestbedError::ToolMissing {
            tool: "setpriv (util-linux)",
            detail: e.to_string(),
        })?;
    k.qemu = Some(child);
    k.booted_at = info.boot_time.clone();
    k.boots += 1;
    k.reported = false;
    Ok(())
}

/// Whether an executable `tool` is on `PATH`.
fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// QEMU's own messages, in the guest's directory.
const QEMU_LOG: &str = "qemu.log";

/// The QMP socket of the guest whose files are in `dir`.
fn qmp_socket(dir: &Utf8Path) -> Utf8PathBuf {
    dir.join("qmp.sock")
}

/// Runs one QMP command without arguments (`stop`, `cont`) on a guest.
async fn qmp(socket: &Utf8Path, command: &str) -> Result<(), TestbedError> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let talk = async {
        let stream = tokio::net::UnixStream::connect(socket).await?;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        // The greeting, then one answer per command; events may come
        // in between.
        lines.next_line().await?;
        for line in [
            r#"{"execute":"qmp_capabilities"}"#.to_owned(),
            format!(r#"{{"execute":"{command}"}}"#),
        ] {
            write.write_all(line.as_bytes()).await?;
            write.write_all(b"\n").await?;
            loop {
                let Some(answer) = lines.next_line().await? else {
                    return Err(std::io::Error::other("QMP closed the connection"));
                };
                if answer.contains("\"error\"") {
                    return Err(std::io::Error::other(format!("QMP {command}: {answer}")));
                }
                if answer.contains("\"return\"") {
                    break;
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(10), talk).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(TestbedError::Io(std::io::Error::other(format!(
            "QMP {command} on {socket} timed out"
        )))),
    }
}

/// Clears the guest address reported for `k`'s VM.
async fn clear_address(govc: &ProcessGovc, path: &str, k: &mut Known) {
    if k.reported {
        if let Ok(vm) = VmRef::parse(path) {
            let _ = govc
                .exec(&VmChange::new(vm).extra("SET.guest.ipAddress", ""))
                .await;
        }
        k.reported = false;
    }
}

/// Stops `k`'s QEMU and reaps it.
async fn stop(k: &mut Known) {
    if let Some(mut q) = k.qemu.take() {
        let _ = q.kill().await;
    }
}

/// Whether an SSH server answers at `addr` (it sends its banner).
async fn ssh_answers(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut buf = [0_u8; 4];
        s.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"SSH-")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), attempt).await,
        Ok(Some(true))
    )
}

async fn run_quiet(cmd: &mut Command) -> Result<(), TestbedError> {
    let out = cmd.stdin(Stdio::null()).output().await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TestbedError::Io(std::io::Error::other(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))))
    }
}
