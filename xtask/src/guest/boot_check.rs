//! `cargo xtask guest-image --boot-check [--accel tcg|kvm]`: boots the
//! guest image once, as the guest of a vcsim VM would be booted, and checks
//! that cloud-init takes it for a VMware VM.
//!
//! QEMU runs as a child of xtask (killed at the end) with:
//! - the CPU and firmware of a VMware VM as systemd sees them: no CPUID
//!   hypervisor vendor (`-cpu max,-hypervisor`) and SMBIOS
//!   `manufacturer=VMware, Inc.`, `product=VMware Virtual Platform`;
//! - a qcow2 overlay of `base.qcow2`, and the kernel and initramfs beside it;
//! - user-mode networking without outside access (`restrict=on`), the
//!   guest's port 22 forwarded to 127.0.0.2 on a free port;
//! - the guestinfo as the fw_cfg file `opt/vmw/guestinfo`, one
//!   `KEY BASE64(VALUE)` line per key: `guestinfo.metadata` (instance id,
//!   host name) and `guestinfo.userdata` (a `#cloud-config` authorizing a
//!   key made for the check), with their `.encoding` keys, encoded by
//!   `vmw-userdata` as vmw encodes them for a vSphere VM;
//! - the serial console written to `console.log`.
//!
//! Then it waits for SSH as `debian` with that key, and checks, over SSH:
//! `cloud-init status --wait` succeeds, `cloud-id` and
//! `systemd-detect-virt` print `vmware`, ds-identify found the VMware
//! datasource, the instance id and host name are
//! the metadata's, `sudo` works without a word on stderr, no unit failed
//! at boot, and `vmware-rpctool info-set` keeps what it is given. It
//! reports the time from power-on to SSH and to cloud-init done, and the
//! slowest units of the boot (`systemd-analyze blame`). When a check fails,
//! it prints the tail of the console and keeps its directory.
//!
//! Under software emulation (`tcg`, the default) one boot takes about a
//! minute of one CPU; `kvm` needs a KVM that runs Debian's stock kernel.

use std::fmt;
use std::process::{Output, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use camino::{Utf8Path, Utf8PathBuf};
use tokio::process::{Child, Command};
use vmw_userdata::{Metadata, PublicKey, guestinfo, inject_key};

use super::Image;

/// Host programs the check needs, with their Debian packages.
pub(crate) const BOOT_NEEDS: &[(&str, &str)] = &[
    ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
    ("/usr/bin/qemu-img", "qemu-utils"),
    ("/usr/bin/ssh", "openssh-client"),
    ("/usr/bin/ssh-keygen", "openssh-client"),
];

/// The address the guest's SSH port is forwarded to.
const ADDRESS: &str = "127.0.0.2";

/// The guest's host name, from the metadata.
const HOSTNAME: &str = "vmw-boot-check";

/// The user cloud-init makes on a Debian guest.
const USER: &str = "debian";

/// From power-on to the end of the checks, at most: under emulation on a
/// busy machine one boot has taken up to three minutes.
const DEADLINE: Duration = Duration::from_secs(15 * 60);

/// How long one SSH command may take once the guest answers.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// How many console lines a failure shows.
const CONSOLE_TAIL: usize = 40;

/// How QEMU runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accel {
    /// Software emulation: slow, works everywhere.
    Tcg,
    /// The host's KVM.
    Kvm,
}

impl FromStr for Accel {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tcg" => Ok(Self::Tcg),
            "kvm" => Ok(Self::Kvm),
            other => bail!("--accel takes tcg or kvm, not {other:?}"),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcg => "tcg",
            Self::Kvm => "kvm",
        })
    }
}

impl Accel {
    /// QEMU's `-accel` value.
    fn qemu_arg(self) -> &'static str {
        match self {
            // A 128 MiB translation cache: smaller was slower, larger gained
            // nothing and cost memory.
            Self::Tcg => "tcg,tb-size=128",
            Self::Kvm => "kvm",
        }
    }
}

/// Boots `image` once and checks it; see the module documentation.
pub(crate) fn run(image: &Image, accel: Accel) -> Result<()> {
    crate::install_missing("the guest image's boot check", BOOT_NEEDS)?;
    if accel == Accel::Kvm && !Utf8Path::new("/dev/kvm").exists() {
        bail!("--accel kvm needs /dev/kvm\nhint: use --accel tcg (software emulation)");
    }
    let dir = tempfile::Builder::new()
        .prefix("vmw-boot-check-")
        .tempdir()
        .context("creating the boot check's directory")?;
    let path = Utf8PathBuf::try_from(dir.path().to_path_buf())
        .context("the temporary directory's path is not UTF-8")?;
    let rt = tokio::runtime::Runtime::new()?;
    match rt.block_on(boot(image, accel, &path)) {
        Ok(report) => {
            print!("{report}");
            Ok(())
        }
        Err(e) => {
            let qemu = tail(&path.join("qemu.log"), CONSOLE_TAIL);
            if !qemu.is_empty() {
                eprintln!("xtask: QEMU's messages:");
                for line in qemu {
                    eprintln!("  | {line}");
                }
            }
            let console = path.join("console.log");
            eprintln!("xtask: the last lines of the guest's console ({console}):");
            let lines = tail(&console, CONSOLE_TAIL);
            if lines.is_empty() {
                eprintln!("  (empty)");
            }
            for line in lines {
                eprintln!("  | {line}");
            }
            let kept = dir.keep();
            Err(e.context(format!(
                "the guest image's boot check failed; its files are kept in {}",
                kept.display()
            )))
        }
    }
}

/// What the check saw, for the report.
struct Report {
    accel: Accel,
    to_ssh: Duration,
    to_cloud_init: Duration,
    lines: Vec<(String, String)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "boot check ({}): passed", self.accel)?;
        for (command, output) in &self.lines {
            writeln!(f, "  $ {command}")?;
            for line in output.lines() {
                writeln!(f, "    {line}")?;
            }
        }
        writeln!(
            f,
            "  power-on → SSH: {:.1} s; power-on → cloud-init done: {:.1} s",
            self.to_ssh.as_secs_f64(),
            self.to_cloud_init.as_secs_f64()
        )
    }
}

async fn boot(image: &Image, accel: Accel, dir: &Utf8Path) -> Result<Report> {
    let key = dir.join("id_ed25519");
    vmw_testbed::sshd::keygen(&key, "vmw-boot-check")?;
    let public = std::fs::read_to_string(key.with_extension("pub"))
        .context("reading the check's public key")?;
    let public = PublicKey::parse(public.trim())?;
    let instance_id = format!(
        "i-vmw-boot-check-{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let metadata = Metadata::for_vm(HOSTNAME).with_instance_id(&instance_id);
    let user_data = inject_key(None, &public)?;
    let info = guestinfo::encode(&metadata, user_data.bytes(), None)?;
    let guestinfo_file = dir.join("guestinfo");
    std::fs::write(&guestinfo_file, fw_cfg_guestinfo(&info))
        .with_context(|| format!("writing {guestinfo_file}"))?;

    let overlay = dir.join("overlay.qcow2");
    super::run_logged(std::process::Command::new("qemu-img").args([
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        image.qcow2().as_str(),
        overlay.as_str(),
    ]))?;

    let port = free_port()?;
    let args = qemu_args(image, accel, dir, port);
    eprintln!("xtask: $ qemu-system-x86_64 {}", args.join(" "));
    let qemu_log = std::fs::File::create(dir.join("qemu.log"))?;
    let powered_on = Instant::now();
    let deadline = powered_on + DEADLINE;
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(qemu_log.try_clone()?)
        .stderr(qemu_log)
        .kill_on_drop(true)
        .spawn()
        .context("could not start qemu-system-x86_64")?;
    let ssh = Ssh { key, port };

    let result = check(&mut qemu, &ssh, &instance_id, powered_on, deadline).await;
    // Stop the guest whatever happened; kill() also reaps QEMU.
    let _ = qemu.kill().await;
    let (to_ssh, to_cloud_init, lines) = result?;
    Ok(Report {
        accel,
        to_ssh,
        to_cloud_init,
        lines,
    })
}

type Checked = (Duration, Duration, Vec<(String, String)>);

async fn check(
    qemu: &mut Child,
    ssh: &Ssh,
    instance_id: &str,
    powered_on: Instant,
    deadline: Instant,
) -> Result<Checked> {
    eprintln!("xtask: waiting for SSH as {USER} on {ADDRESS}:{}", ssh.port);
    loop {
        if let Some(status) = qemu.try_wait()? {
            bail!("QEMU exited before the guest answered SSH ({status})");
        }
        if Instant::now() > deadline {
            bail!(
                "the guest did not answer SSH within {} s",
                DEADLINE.as_secs()
            );
        }
        if ssh
            .run("true", COMMAND_TIMEOUT)
            .await
            .is_ok_and(|o| o.status.success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let to_ssh = powered_on.elapsed();
    eprintln!(
        "xtask: SSH answered {:.1} s after power-on; waiting for cloud-init",
        to_ssh.as_secs_f64()
    );

    let mut lines = Vec::new();
    let wait = ssh
        .expect_within(
            "cloud-init status --wait",
            None,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await;
    let to_cloud_init = powered_on.elapsed();
    // `--wait` prints a dot per poll; the report keeps the status line.
    lines.push((
        "cloud-init status --wait".to_owned(),
        wait?.trim_start_matches(['.', '\n']).to_owned(),
    ));
    for (command, expected) in [
        ("cloud-id", Some("vmware")),
        ("systemd-detect-virt", Some("vmware")),
        ("cat /var/lib/cloud/data/instance-id", Some(instance_id)),
        ("hostname", Some(HOSTNAME)),
        ("sudo -n true", Some("")),
        ("cloud-init status --long", None),
        // A unit that failed at boot (the network's, say) is a broken image
        // even when SSH answers.
        ("systemctl --failed --no-legend --plain", Some("")),
        // Where the boot's time went, for whoever changes the image.
        ("systemd-analyze blame | head -n 8", None),
    ] {
        let output = ssh.expect(command, expected).await?;
        lines.push((command.to_owned(), output));
    }
    // ds-identify writes the datasources it found: VMware, found by looking
    // at the machine rather than named in the image.
    let found = "cat /run/cloud-init/cloud.cfg";
    let output = ssh.expect(found, None).await?;
    if !output.contains("VMware") {
        bail!("ds-identify did not find the VMware datasource: {output:?}");
    }
    lines.push((found.to_owned(), output));
    // cloud-init publishes the guest's address with `info-set` only when
    // the guest has a default route, which `restrict=on` leaves out: set a
    // key by hand, then read the file the image keeps such values in.
    let set = ssh
        .expect(
            "sudo -n vmware-rpctool 'info-set guestinfo.vmw.boot-check passed' \
             && cat /run/vmw/guestinfo-set",
            None,
        )
        .await?;
    let published: Vec<String> = set.lines().filter_map(decode_line).collect();
    if !published
        .iter()
        .any(|l| l == "guestinfo.vmw.boot-check passed")
    {
        bail!("vmware-rpctool info-set did not keep its value: {set:?}");
    }
    lines.push((
        "vmware-rpctool 'info-set guestinfo.vmw.boot-check passed' (decoded)".to_owned(),
        published.join("\n"),
    ));
    Ok((to_ssh, to_cloud_init, lines))
}

/// The guestinfo in the format `vmware-rpctool` reads from fw_cfg: one line
/// per key, the key, a space, and the value in base64.
fn fw_cfg_guestinfo(info: &guestinfo::GuestInfo) -> String {
    info.entries()
        .iter()
        .map(|e| {
            format!(
                "{} {}\n",
                e.key(),
                base64::engine::general_purpose::STANDARD.encode(e.value())
            )
        })
        .collect()
}

/// A `KEY BASE64(VALUE)` line as `KEY VALUE`, if it decodes.
fn decode_line(line: &str) -> Option<String> {
    let (key, value) = line.split_once(' ')?;
    let value = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    Some(format!("{key} {}", String::from_utf8_lossy(&value)))
}

/// QEMU's arguments for the check's guest.
fn qemu_args(image: &Image, accel: Accel, dir: &Utf8Path, port: u16) -> Vec<String> {
    let escaped = |p: Utf8PathBuf| p.as_str().replace(',', ",,");
    vec![
        "-name".into(),
        "vmw-boot-check".into(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-accel".into(),
        accel.qemu_arg().into(),
        "-cpu".into(),
        "max,-hypervisor".into(),
        "-smp".into(),
        "1".into(),
        "-m".into(),
        "512".into(),
        // QEMU doubles a comma inside a value.
        "-smbios".into(),
        "type=1,manufacturer=VMware,, Inc.,product=VMware Virtual Platform".into(),
        "-kernel".into(),
        image.kernel().into_string(),
        "-initrd".into(),
        image.initrd().into_string(),
        "-append".into(),
        "root=/dev/vda console=ttyS0".into(),
        "-drive".into(),
        format!(
            "file={},format=qcow2,if=virtio",
            escaped(dir.join("overlay.qcow2"))
        ),
        "-netdev".into(),
        format!("user,id=net0,restrict=on,hostfwd=tcp:{ADDRESS}:{port}-:22"),
        // No option ROM: the guest boots from -kernel, not from the network.
        "-device".into(),
        "virtio-net-pci,netdev=net0,romfile=".into(),
        "-fw_cfg".into(),
        format!(
            "name=opt/vmw/guestinfo,file={}",
            escaped(dir.join("guestinfo"))
        ),
        "-serial".into(),
        format!("file:{}", dir.join("console.log")),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
    ]
}

/// A port on [`ADDRESS`] that nothing listens on now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind((ADDRESS, 0))
        .with_context(|| format!("finding a free port on {ADDRESS}"))?;
    Ok(listener.local_addr()?.port())
}

/// The system's ssh client, logging in as [`USER`] with the check's key.
struct Ssh {
    key: Utf8PathBuf,
    port: u16,
}

impl Ssh {
    async fn run(&self, command: &str, timeout: Duration) -> Result<Output> {
        let port = self.port.to_string();
        let mut ssh = Command::new("ssh");
        ssh.args(["-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "IdentitiesOnly=yes"])
            .args(["-o", "LogLevel=ERROR"])
            .args(["-o", "ConnectTimeout=10"])
            .args(["-i", self.key.as_str(), "-p", &port])
            .arg(format!("{USER}@{ADDRESS}"))
            .arg(command)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        tokio::time::timeout(timeout, ssh.output())
            .await
            .with_context(|| format!("`{command}` took over {} s", timeout.as_secs()))?
            .context("could not run ssh")
    }

    /// Runs `command`, failing unless it succeeds (and prints `expected`,
    /// when given, with nothing on stderr); returns its stdout.
    async fn expect(&self, command: &str, expected: Option<&str>) -> Result<String> {
        self.expect_within(command, expected, COMMAND_TIMEOUT).await
    }

    /// [`expect`](Self::expect) with its own time limit.
    async fn expect_within(
        &self,
        command: &str,
        expected: Option<&str>,
        timeout: Duration,
    ) -> Result<String> {
        let output = self.run(command, timeout).await?;
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if !output.status.success() {
            bail!("`{command}` failed ({}): {stdout}\n{stderr}", output.status);
        }
        if let Some(expected) = expected
            && (stdout != expected || !stderr.is_empty())
        {
            bail!("`{command}` printed {stdout:?} (stderr {stderr:?}), not {expected:?}");
        }
        Ok(stdout)
    }
}

/// The last `n` lines of a file, or a note that it cannot be read.
fn tail(path: &Utf8Path, n: usize) -> Vec<String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..]
                .iter()
                .map(|l| (*l).to_owned())
                .collect()
        }
        Err(e) => vec![format!("({path}: {e})")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fw_cfg_file_has_one_base64_line_per_guestinfo_key() {
        let info =
            guestinfo::encode(&Metadata::for_vm("vm-1"), b"#cloud-config\n{}\n", None).unwrap();
        let text = fw_cfg_guestinfo(&info);
        let decoded: Vec<String> = text.lines().filter_map(decode_line).collect();
        assert_eq!(
            decoded,
            [
                "guestinfo.metadata aW5zdGFuY2UtaWQ6IHZtLTEKbG9jYWwtaG9zdG5hbWU6IHZtLTEK",
                "guestinfo.metadata.encoding base64",
                "guestinfo.userdata I2Nsb3VkLWNvbmZpZwp7fQo=",
                "guestinfo.userdata.encoding base64",
            ]
        );
    }

    #[test]
    fn qemu_gets_the_vmware_identity_and_escaped_paths() {
        let image = Image {
            dir: "/cache/guest-image/k".into(),
        };
        let args = qemu_args(&image, Accel::Tcg, Utf8Path::new("/tmp/a,b"), 2222);
        let joined = args.join(" ");
        assert!(joined.contains("-accel tcg,tb-size=128 -cpu max,-hypervisor"));
        assert!(joined.contains("manufacturer=VMware,, Inc.,product=VMware Virtual Platform"));
        assert!(joined.contains("file=/tmp/a,,b/overlay.qcow2,format=qcow2"));
        assert!(joined.contains("name=opt/vmw/guestinfo,file=/tmp/a,,b/guestinfo"));
        assert!(joined.contains("restrict=on,hostfwd=tcp:127.0.0.2:2222-:22"));
        assert!(joined.contains("-kernel /cache/guest-image/k/vmlinuz"));
    }

    #[test]
    fn accel_parses_tcg_and_kvm_only() {
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert_eq!("kvm".parse::<Accel>().unwrap(), Accel::Kvm);
        assert!("hvf".parse::<Accel>().is_err());
    }
}
