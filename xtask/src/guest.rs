//! `cargo xtask guest-image`: the Linux guest that can stand behind a vcsim
//! VM, built from Debian packages only and prepared as a VMware template is.
//!
//! `cargo xtask guest-image [--force] [--boot-check [--accel tcg|kvm]]`
//! makes sure the image of the current inputs is in the cache (building it
//! when it is not, or always with `--force`) and prints its directory on
//! stdout; the build's progress and its time go to stderr.
//!
//! # What the image is
//!
//! Debian trixie or bookworm (amd64, `--release`, trixie by default) made by
//! `mmdebstrap --variant=apt` with the packages listed in `xtask/guest/packages`
//! and `xtask/guest/packages.<release>` (no Recommends), the dpkg path
//! filters of `xtask/guest/dpkg.cfg` (no documentation, no drivers for
//! hardware QEMU never shows), and the customize hook
//! `xtask/guest/customize.sh`, which copies in `xtask/guest/rootfs/` and
//! prepares the guest as a template: empty machine id, no resolver of the
//! build host's (systemd-resolved's stub where the image has netplan), no
//! SSH host keys, networkd and resolved enabled where netplan is, sshd
//! enabled, apt's timers masked, a small initramfs (`MODULES=list`). The files under `rootfs/` hold the rest:
//! `/usr/bin/vmware-rpctool`, a shell script that answers cloud-init's
//! guestinfo requests from the QEMU fw_cfg file `opt/vmw/guestinfo`
//! (one `KEY BASE64(VALUE)` line per guestinfo key); `qemu_fw_cfg` loaded at
//! boot; `LANG=C.UTF-8`; `manage_etc_hosts: localhost`. cloud-init keeps
//! Debian's datasource list (VMware is in it), its default user `debian`
//! with sudo, and its fallback network: DHCP on the first NIC, rendered for
//! the release's network stack (`packages.<release>`): netplan,
//! systemd-networkd and systemd-resolved on trixie, as Debian's own cloud
//! images have them; ifupdown and ISC's dhclient on bookworm.
//!
//! There is no boot loader: the root file system fills the whole disk
//! (`mkfs.ext4 -d`, label `vmw-root`, 2 GiB virtual), and QEMU boots the
//! kernel and initramfs copied out beside it with
//! `-append "root=/dev/vda console=ttyS0"`.
//!
//! # The cache
//!
//! The image lives in `$XDG_CACHE_HOME/vmw/guest-image/<key>/` (by default
//! `~/.cache/vmw/guest-image/<key>/`): `base.qcow2`, `vmlinuz`,
//! `initrd.img`, `packages.txt` (`dpkg-query` name and version of every
//! installed package) and `manifest.json`. The key is the first 16 hex
//! digits of the SHA-256 of the build's inputs as JSON: [`FORMAT`], suite,
//! architecture, mirrors, package list, the `mmdebstrap`, `mkfs.ext4` and
//! `qemu-img` arguments, and the SHA-256 and executable bit of every file
//! under `xtask/guest/`. A change to any of them builds a new image; a run
//! with the same inputs only prints the directory. The manifest holds
//! `key`, `inputs_sha256`, `inputs`, `kernel` (its version),
//! `built_at_unix`, `build_seconds` and `files` (the size in bytes of each
//! file, and the disk's virtual size).
//!
//! A build runs in a `.build-*` directory beside the others and is renamed
//! to its key when complete, so a directory named by a key is always a whole
//! image. Packages come from deb.debian.org at build time: two builds with
//! the same key may hold different point releases (`packages.txt` tells).
//!
//! Building needs root (mmdebstrap's root mode and `mkfs.ext4 -d` keep file
//! ownership) and installs mmdebstrap, qemu-utils and e2fsprogs with apt-get
//! when they are missing.
//!
//! # The boot check
//!
//! `--boot-check` boots the image once with QEMU, as a vcsim VM's guest
//! would be booted (see [`boot_check`]).

mod boot_check;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;
use sha2::{Digest, Sha256};

use boot_check::Accel;

/// The version of the build steps in this file: bump it when a change here
/// changes the image, so cached images are rebuilt.
const FORMAT: u32 = 1;

/// The Debian release of a guest image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Release {
    /// Debian 12, cloud-init 22.4.
    Bookworm,
    /// Debian 13, cloud-init 25.1.4: the default.
    #[default]
    Trixie,
}

impl Release {
    /// Every release an image can be built for, oldest first.
    pub(crate) const ALL: [Release; 2] = [Release::Bookworm, Release::Trixie];

    /// The suite's code name.
    pub(crate) fn suite(self) -> &'static str {
        match self {
            Release::Bookworm => "bookworm",
            Release::Trixie => "trixie",
        }
    }

    /// The release's version number, as `/etc/debian_version` starts.
    pub(crate) fn version(self) -> &'static str {
        match self {
            Release::Bookworm => "12",
            Release::Trixie => "13",
        }
    }

    /// Where the packages come from: the release, its updates and security.
    fn mirrors(self) -> Vec<String> {
        let suite = self.suite();
        vec![
            format!("deb http://deb.debian.org/debian {suite} main"),
            format!("deb http://deb.debian.org/debian {suite}-updates main"),
            format!("deb http://deb.debian.org/debian-security {suite}-security main"),
        ]
    }
}

impl std::str::FromStr for Release {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Release::ALL
            .into_iter()
            .find(|r| r.suite() == s)
            .with_context(|| {
                format!("unknown Debian release {s:?}: the guest image is bookworm or trixie")
            })
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.suite())
    }
}

/// The guest's architecture: the one `qemu-system-x86_64` runs.
const ARCHITECTURE: &str = "amd64";

/// The directory of the guest's files, relative to the workspace root.
const GUEST_DIR: &str = "xtask/guest";

/// The disk's virtual size, as `mkfs.ext4` takes it.
const DISK_SIZE: &str = "2G";

/// The same size in bytes, for the manifest.
const DISK_BYTES: u64 = 2 << 30;

/// The label of the root file system, which the guest's fstab names.
const ROOT_LABEL: &str = "vmw-root";

// The files of a built image.
const QCOW2: &str = "base.qcow2";
const KERNEL: &str = "vmlinuz";
const INITRD: &str = "initrd.img";
const PACKAGES: &str = "packages.txt";
const MANIFEST: &str = "manifest.json";

/// Host programs a build needs, with their Debian packages.
const BUILD_NEEDS: &[(&str, &str)] = &[
    ("/usr/bin/mmdebstrap", "mmdebstrap"),
    ("/usr/sbin/mkfs.ext4", "e2fsprogs"),
    ("/usr/bin/qemu-img", "qemu-utils"),
];

/// A build directory left behind this long ago belongs to a build that was
/// killed, not to one still running.
const STALE_BUILD: Duration = Duration::from_secs(24 * 60 * 60);

/// A built image in the cache.
pub(crate) struct Image {
    dir: Utf8PathBuf,
}

impl Image {
    /// The image's directory (what `VMW_GUEST_IMAGE` names).
    pub(crate) fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// The disk, to use as the backing file of a per-VM overlay.
    pub(crate) fn qcow2(&self) -> Utf8PathBuf {
        self.dir.join(QCOW2)
    }

    /// The kernel, for QEMU's `-kernel`.
    pub(crate) fn kernel(&self) -> Utf8PathBuf {
        self.dir.join(KERNEL)
    }

    /// The initramfs, for QEMU's `-initrd`.
    pub(crate) fn initrd(&self) -> Utf8PathBuf {
        self.dir.join(INITRD)
    }
}

/// `cargo xtask guest-image [--release R] [--force] [--boot-check] [--accel tcg|kvm]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut release = Release::default();
    let mut force = false;
    let mut check = false;
    let mut accel = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--force" => force = true,
            "--release" => {
                release = it
                    .next()
                    .context("--release needs bookworm or trixie")?
                    .parse()?;
            }
            "--boot-check" => check = true,
            "--accel" => {
                accel = Some(it.next().context("--accel needs tcg or kvm")?.parse()?);
            }
            other => bail!("unknown guest-image option {other:?}"),
        }
    }
    if accel.is_some() && !check {
        bail!("--accel applies to --boot-check");
    }
    let image = ensure(release, force)?;
    println!("{}", image.dir);
    if check {
        boot_check::run(&image, accel.unwrap_or(Accel::Tcg))?;
    }
    Ok(())
}

/// The image of `release` and the current inputs, built when the cache
/// lacks it (or when `force` is set).
pub(crate) fn ensure(release: Release, force: bool) -> Result<Image> {
    let recipe = Recipe::load(&crate::root(), release)?;
    let cache = cache_root()?;
    let dir = cache.join(&recipe.key);
    if !force && dir.join(MANIFEST).is_file() {
        eprintln!("xtask: the {release} guest image {} is cached", recipe.key);
        return Ok(Image { dir });
    }
    build(&recipe, &cache, &dir)?;
    Ok(Image { dir })
}

/// The image of `release` (built when missing) and QEMU to run it, for the
/// real-guest suites and demo.
pub(crate) fn for_real_guests(release: Release) -> Result<Image> {
    let image = ensure(release, false)?;
    crate::install_missing("the real guests", boot_check::BOOT_NEEDS)?;
    Ok(image)
}

/// `$XDG_CACHE_HOME/vmw/guest-image`, else `~/.cache/vmw/guest-image`.
fn cache_root() -> Result<Utf8PathBuf> {
    vmw_config::env::Environment::from_process()
        .cache_dir()
        .map(|d| d.join("guest-image"))
        .context("neither XDG_CACHE_HOME nor HOME is set, so the guest image has no cache")
}

/// Everything a build depends on, and the key derived from it.
struct Recipe {
    release: Release,
    packages: Vec<String>,
    inputs: serde_json::Value,
    inputs_sha256: String,
    key: String,
}

impl Recipe {
    /// Reads the guest's files under `root` and derives the key.
    fn load(root: &Utf8Path, release: Release) -> Result<Self> {
        let guest = root.join(GUEST_DIR);
        let list = guest.join("packages");
        let mut packages = package_list(&list)?;
        if packages.is_empty() {
            bail!("{list} names no package");
        }
        // The release's own packages, when it has some.
        let own = guest.join(format!("packages.{release}"));
        if own.is_file() {
            packages.extend(package_list(&own)?);
        }
        let mut files = BTreeMap::new();
        hash_tree(&guest, &guest, &mut files)?;
        // Another release's package list is not an input of this one.
        files.retain(|name, _| {
            name.strip_prefix("packages.")
                .is_none_or(|suite| suite == release.suite())
        });
        let inputs = json!({
            "format": FORMAT,
            "suite": release.suite(),
            "architecture": ARCHITECTURE,
            "mirrors": release.mirrors(),
            "packages": packages,
            "mmdebstrap": mmdebstrap_args(release, &packages, "ROOTFS"),
            "mkfs": mkfs_args("ROOTFS", "base.raw"),
            "qemu-img": convert_args("base.raw", QCOW2),
            "files": files,
        });
        // Equal inputs give equal text: the keys come in a fixed order and
        // `files` is sorted.
        let inputs_sha256 = hex(&Sha256::digest(inputs.to_string().as_bytes()));
        let key = inputs_sha256[..16].to_owned();
        Ok(Self {
            release,
            packages,
            inputs,
            inputs_sha256,
            key,
        })
    }
}

/// The package names of a list file: one a line, `#` starting a comment.
fn package_list(list: &Utf8Path) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(list)
        .with_context(|| format!("reading {list}"))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// Adds `path/to/file` → `"<sha256> <mode>"` for every file under `dir`,
/// relative to `base`, where mode is `755` for executables and `644` else.
fn hash_tree(base: &Utf8Path, dir: &Utf8Path, files: &mut BTreeMap<String, String>) -> Result<()> {
    for entry in dir
        .read_dir_utf8()
        .with_context(|| format!("reading {dir}"))?
    {
        let entry = entry.with_context(|| format!("reading {dir}"))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(path).with_context(|| format!("reading {path}"))?;
        if meta.is_dir() {
            hash_tree(base, path, files)?;
        } else if meta.is_file() {
            let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                "755"
            } else {
                "644"
            };
            let name = path.strip_prefix(base).unwrap_or(path).to_string();
            files.insert(name, format!("{} {mode}", hex(&Sha256::digest(&bytes))));
        } else {
            bail!("{path} is neither a file nor a directory; the guest's files must be plain");
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// mmdebstrap's arguments, run in the workspace root, building into
/// `rootfs`. The guest's files are named relative to the root, so the key
/// does not depend on where the checkout is.
fn mmdebstrap_args(release: Release, packages: &[String], rootfs: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--mode=root",
        "--variant=apt",
        "--format=directory",
        &format!("--architectures={ARCHITECTURE}"),
        &format!("--include={}", packages.join(",")),
        &format!("--dpkgopt={GUEST_DIR}/dpkg.cfg"),
        &format!("--customize-hook={GUEST_DIR}/customize.sh"),
        release.suite(),
        rootfs,
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(release.mirrors());
    args
}

/// mkfs.ext4's arguments: a file system holding `rootfs`, written to the
/// new file `disk`. The inode tables and journal are written here rather
/// than by each guest in the background.
fn mkfs_args(rootfs: &str, disk: &str) -> Vec<String> {
    [
        "-q",
        "-F",
        "-L",
        ROOT_LABEL,
        "-E",
        "lazy_itable_init=0,lazy_journal_init=0",
        "-d",
        rootfs,
        disk,
        DISK_SIZE,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// qemu-img's arguments to turn the raw disk into the qcow2 base image.
fn convert_args(raw: &str, qcow2: &str) -> Vec<String> {
    ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2]
        .map(str::to_owned)
        .to_vec()
}

/// Builds the image of `recipe` into `dir`, by way of a build directory in
/// `cache`.
fn build(recipe: &Recipe, cache: &Utf8Path, dir: &Utf8Path) -> Result<()> {
    crate::install_missing("the guest image build", BUILD_NEEDS)?;
    if !crate::is_root() {
        bail!(
            "building the guest image needs root: mmdebstrap's root mode and mkfs.ext4 -d \
             keep the ownership of the guest's files\nhint: run `cargo xtask guest-image` as root"
        );
    }
    std::fs::create_dir_all(cache).with_context(|| format!("creating {cache}"))?;
    remove_stale_builds(cache);
    eprintln!(
        "xtask: building the guest image {} (Debian {}, {} packages)",
        recipe.key,
        recipe.release,
        recipe.packages.len()
    );
    let started = Instant::now();
    let work = BuildDir::create(cache)?;
    let out = work.path();
    let rootfs = out.join("rootfs");
    let raw = out.join("base.raw");

    run_logged(
        Command::new("mmdebstrap")
            .current_dir(crate::root())
            .args(mmdebstrap_args(
                recipe.release,
                &recipe.packages,
                rootfs.as_str(),
            )),
    )?;
    let kernel = kernel_version(&rootfs)?;
    let boot = rootfs.join("boot");
    for (from, to) in [
        (format!("vmlinuz-{kernel}"), KERNEL),
        (format!("initrd.img-{kernel}"), INITRD),
    ] {
        std::fs::copy(boot.join(&from), out.join(to))
            .with_context(|| format!("copying {from} out of the guest"))?;
    }
    let packages = Command::new("dpkg-query")
        .arg(format!("--admindir={rootfs}/var/lib/dpkg"))
        .args(["--show", "--showformat=${Package} ${Version}\\n"])
        .output()
        .context("could not run dpkg-query")?;
    if !packages.status.success() {
        bail!(
            "dpkg-query could not list the guest's packages ({})",
            packages.status
        );
    }
    std::fs::write(out.join(PACKAGES), &packages.stdout)?;

    run_logged(Command::new("mkfs.ext4").args(mkfs_args(rootfs.as_str(), raw.as_str())))?;
    run_logged(
        Command::new("qemu-img")
            .current_dir(out)
            .args(convert_args(raw.as_str(), QCOW2)),
    )?;
    remove_tree(&rootfs)?;
    std::fs::remove_file(&raw).with_context(|| format!("removing {raw}"))?;

    let took = started.elapsed();
    let size = |name: &str| -> Result<u64> {
        Ok(std::fs::metadata(out.join(name))
            .with_context(|| format!("reading {name}"))?
            .len())
    };
    let (qcow2, kernel_bytes, initrd) = (size(QCOW2)?, size(KERNEL)?, size(INITRD)?);
    let manifest = json!({
        "key": recipe.key,
        "inputs_sha256": recipe.inputs_sha256,
        "inputs": recipe.inputs,
        "kernel": kernel,
        "built_at_unix": SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "build_seconds": (took.as_secs_f64() * 10.0).round() / 10.0,
        "files": {
            QCOW2: { "bytes": qcow2, "virtual_bytes": DISK_BYTES },
            KERNEL: { "bytes": kernel_bytes },
            INITRD: { "bytes": initrd },
            PACKAGES: { "bytes": size(PACKAGES)? },
        },
    });
    std::fs::write(
        out.join(MANIFEST),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    work.publish(dir)?;
    eprintln!(
        "xtask: built the guest image in {:.0} s: {QCOW2} {}, {KERNEL} {}, {INITRD} {}",
        took.as_secs_f64(),
        mib(qcow2),
        mib(kernel_bytes),
        mib(initrd),
    );
    Ok(())
}

/// Runs a command as [`crate::run`] does, its output going to stderr: stdout
/// holds only the image's directory.
fn run_logged(cmd: &mut Command) -> Result<()> {
    crate::run(cmd.stdout(std::io::stderr()))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// The version of the one kernel in the guest's `/boot`.
fn kernel_version(rootfs: &Utf8Path) -> Result<String> {
    let boot = rootfs.join("boot");
    let mut versions: Vec<String> = boot
        .read_dir_utf8()
        .with_context(|| format!("reading {boot}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().strip_prefix("vmlinuz-").map(str::to_owned))
        .collect();
    match versions.len() {
        1 => Ok(versions.remove(0)),
        0 => bail!("the guest has no kernel in /boot"),
        _ => bail!("the guest has more than one kernel in /boot: {versions:?}"),
    }
}

/// A build directory in the cache: removed on drop unless published.
struct BuildDir {
    path: Utf8PathBuf,
    published: bool,
}

impl BuildDir {
    fn create(cache: &Utf8Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(".build-")
            .tempdir_in(cache)
            .with_context(|| format!("creating a build directory in {cache}"))?
            .keep();
        let path = Utf8PathBuf::try_from(dir).context("the cache path is not UTF-8")?;
        Ok(Self {
            path,
            published: false,
        })
    }

    fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// Renames the build directory to `dir`, replacing an older image there
    /// (`--force`).
    fn publish(mut self, dir: &Utf8Path) -> Result<()> {
        if dir.exists() {
            let old = self
                .path
                .with_file_name(format!(".old-{}", dir.file_name().unwrap_or("image")));
            std::fs::rename(dir, &old).with_context(|| format!("moving {dir} aside"))?;
            remove_tree(&old)?;
        }
        std::fs::rename(&self.path, dir)
            .with_context(|| format!("renaming {} to {dir}", self.path))?;
        self.published = true;
        Ok(())
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if !self.published
            && let Err(e) = remove_tree(&self.path)
        {
            eprintln!("xtask: warning: {e:#}");
        }
    }
}

/// Removes the directories of builds killed long ago.
fn remove_stale_builds(cache: &Utf8Path) {
    let Ok(entries) = cache.read_dir_utf8() else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_BUILD);
        let name = entry.file_name();
        if (name.starts_with(".build-") || name.starts_with(".old-"))
            && old
            && let Err(e) = remove_tree(entry.path())
        {
            eprintln!("xtask: warning: {e:#}");
        }
    }
}

/// Removes a directory tree that held a guest's root file system, unless
/// something is still mounted in it (a bind mount of the host's /dev would
/// take the host's files with it).
fn remove_tree(path: &Utf8Path) -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let inside: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| Utf8Path::new(m).starts_with(path))
        .collect();
    if !inside.is_empty() {
        bail!(
            "{path} is kept: {} still mounted there\nhint: unmount it and remove {path}",
            inside.join(", ")
        );
    }
    std::fs::remove_dir_all(path).with_context(|| format!("removing {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_every_guest_file_and_nothing_else() {
        let root = crate::root();
        let a = Recipe::load(&root, Release::Trixie).unwrap();
        let b = Recipe::load(&root, Release::Trixie).unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.key.len(), 16);

        let files = a.inputs["files"].as_object().unwrap();
        for name in [
            "packages",
            "dpkg.cfg",
            "customize.sh",
            "rootfs/usr/bin/vmware-rpctool",
            "rootfs/etc/cloud/cloud.cfg.d/90_vmw.cfg",
        ] {
            assert!(files.contains_key(name), "{name} is not in the key");
        }
        assert!(files["customize.sh"].as_str().unwrap().ends_with(" 755"));
        assert!(files["packages"].as_str().unwrap().ends_with(" 644"));
    }

    #[test]
    fn the_build_arguments_name_no_path_of_this_checkout() {
        let root = crate::root();
        let recipe = Recipe::load(&root, Release::Trixie).unwrap();
        let text = recipe.inputs.to_string();
        assert!(!text.contains(root.as_str()), "{text}");
        let args = mmdebstrap_args(recipe.release, &recipe.packages, "ROOTFS");
        assert!(args.contains(&"--variant=apt".to_owned()));
        assert!(
            args.iter()
                .any(|a| a.starts_with("--include=") && a.contains("cloud-init"))
        );
    }

    /// Runs the guest's vmware-rpctool on the host, with its guestinfo in
    /// `dir`.
    fn rpctool(dir: &Utf8Path, args: &[&str]) -> std::process::Output {
        Command::new("sh")
            .arg(
                crate::root()
                    .join(GUEST_DIR)
                    .join("rootfs/usr/bin/vmware-rpctool"),
            )
            .args(args)
            .env("VMW_GUESTINFO_FILE", dir.join("guestinfo"))
            .env("VMW_GUESTINFO_SET_FILE", dir.join("set/guestinfo-set"))
            .output()
            .unwrap()
    }

    #[test]
    fn vmware_rpctool_answers_info_get_from_the_fw_cfg_file() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        // "hello world" and "a\nb", the last line without its newline.
        std::fs::write(
            dir.join("guestinfo"),
            "guestinfo.metadata aGVsbG8gd29ybGQ=\nguestinfo.userdata YQpi",
        )
        .unwrap();

        let out = rpctool(dir, &["info-get guestinfo.metadata"]);
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hello world");
        let out = rpctool(dir, &["info-get", "guestinfo.userdata"]);
        assert_eq!(out.stdout, b"a\nb");

        // cloud-init compares stderr with this exact text.
        let out = rpctool(dir, &["info-get guestinfo.vendordata"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(out.stderr, b"No value found");
        std::fs::remove_file(dir.join("guestinfo")).unwrap();
        let out = rpctool(dir, &["info-get guestinfo.metadata"]);
        assert_eq!(
            (out.status.code(), &out.stderr[..]),
            (Some(1), &b"No value found"[..])
        );
    }

    #[test]
    fn vmware_rpctool_keeps_info_set_values_in_the_same_format() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let out = rpctool(dir, &["info-set guestinfo.local-ipv4 10.0.2.15"]);
        assert!(out.status.success(), "{out:?}");
        let out = rpctool(dir, &["info-set guestinfo.note two words"]);
        assert!(out.status.success(), "{out:?}");
        let set = std::fs::read_to_string(dir.join("set/guestinfo-set")).unwrap();
        assert_eq!(
            set,
            "guestinfo.local-ipv4 MTAuMC4yLjE1\nguestinfo.note dHdvIHdvcmRz\n"
        );
        let out = rpctool(dir, &["log hello"]);
        assert_eq!(out.status.code(), Some(1));
    }
}
