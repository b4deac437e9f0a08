//! A real OpenSSH server per test, standing in for a freshly launched guest.
//!
//! [`Sshd::start`] runs the system's `/usr/sbin/sshd` on `127.0.0.1` with a
//! free port, its own host key, configuration and `authorized_keys` in a
//! temporary directory, as the current user. Nothing of the system's SSH
//! configuration is read or changed.
//!
//! The guest-side commands vmw runs (`cloud-init clean --logs`, resetting
//! `/etc/machine-id`, removing `/var/log/syslog`) must never reach the
//! machine running the tests, so sshd lives in a private mount namespace
//! (`unshare --mount --propagation private`) where a file of the temporary
//! directory is bind-mounted over `/etc/machine-id` and a directory over
//! `/var/log`. This needs root. A copy of `/etc/passwd` whose only change
//! is the login shell of every user, `/bin/sh`, is bind-mounted too: sshd
//! runs remote commands through the login shell, and the test user's
//! shell start-up files (a bash `~/.bashrc` of the machine) must neither
//! slow down nor block the commands of a simulated guest. [`Sshd::machine_id`] and
//! [`Sshd::syslog_exists`] show what the remote side did to them.
//!
//! A `cloud-init` stand-in comes first on the remote `PATH`; its behaviour
//! ([`CloudInitMode`], how long `status --wait` takes) can be changed at
//! any time with [`Sshd::set_cloud_init`], and every call is recorded
//! ([`Sshd::cloud_init_calls`]). Like cloud-init 23.x, `status --wait`
//! prints progress dots (one here, if it waits at all) and a newline before
//! `status: …`; `--long` adds `extended_status:`, `boot_status_code:`,
//! `detail:` and `errors:` lines; `clean` succeeds.
//!
//! `apt-get` is a stand-in too, bind-mounted over `/usr/bin/apt-get` in the
//! namespace (so `sudo`'s own `PATH` finds it as well): a guest's package
//! installs and upgrades never reach this machine; each call is recorded
//! ([`Sshd::apt_get_calls`]) and printed back.
//!
//! Dropping the [`Sshd`] kills sshd and every process of its namespace (the
//! per-connection servers and the remote commands), then removes the
//! directory.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

use std::path::Path;

use crate::TestbedError;

/// The OpenSSH server the test peer runs (an absolute path: sshd re-executes
/// itself for every connection).
const SSHD: &str = "/usr/sbin/sshd";
/// sshd's privilege separation directory.
const PRIVSEP_DIR: &str = "/run/sshd";
/// How long sshd may take to listen.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many free ports [`Sshd::start`] tries when another process takes
/// the one it picked first.
const PORT_ATTEMPTS: usize = 5;
/// The files the test peer fakes, in the private mount namespace.
const MACHINE_ID: &str = "/etc/machine-id";
/// The user database, whose login shells the namespace replaces.
const PASSWD: &str = "/etc/passwd";
const VAR_LOG: &str = "/var/log";
/// The package tool the `apt-get` stand-in is mounted over.
const APT_GET: &str = "/usr/bin/apt-get";

/// What the `cloud-init` stand-in reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CloudInitMode {
    /// `status: done`, exit status 0.
    #[default]
    Done,
    /// `status: error`, exit status 1.
    Error,
    /// `status: done` with `extended_status: degraded done`, exit status 2.
    Degraded,
}

impl CloudInitMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Error => "error",
            Self::Degraded => "degraded",
        }
    }
}

/// How to start an [`Sshd`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SshdOptions {
    /// How long `cloud-init status --wait` waits before answering.
    pub cloud_init_delay: Duration,
    /// What `cloud-init status` answers.
    pub cloud_init_mode: CloudInitMode,
}

/// A running sshd in a private mount namespace, killed on drop.
#[derive(Debug)]
pub struct Sshd {
    /// The listener: `unshare` execs `sh`, which execs sshd, so this is
    /// sshd's own pid.
    child: Child,
    /// Keeps sshd's mount namespace alive, so its identity (the inode in
    /// `mnt:[…]`) cannot be reused by another namespace while processes
    /// are matched against it.
    namespace: Namespace,
    dir: tempfile::TempDir,
    dir_path: Utf8PathBuf,
    port: u16,
    user: String,
    host_public_key: String,
}

impl Sshd {
    /// An sshd whose `cloud-init` reports `done` at once.
    pub fn start() -> Result<Self, TestbedError> {
        Self::start_with(SshdOptions::default())
    }

    /// An sshd started with `options`.
    pub fn start_with(options: SshdOptions) -> Result<Self, TestbedError> {
        let uid = effective_uid().map_err(|e| startup(format!("reading the user id: {e}")))?;
        if uid != 0 {
            return Err(TestbedError::SshdNeedsRoot { uid });
        }
        if !Path::new(MACHINE_ID).is_file() || !Path::new(VAR_LOG).is_dir() {
            return Err(startup(format!(
                "{MACHINE_ID} (a file) and {VAR_LOG} (a directory) must exist: \
                 the test peer mounts its own copies over them"
            )));
        }
        ensure_privsep_dir().map_err(|e| startup(format!("creating {PRIVSEP_DIR}: {e}")))?;
        let user = user_name(uid);

        let dir = tempfile::Builder::new()
            .prefix("vmw-sshd-")
            .tempdir()
            .map_err(|e| startup(format!("creating a temporary directory: {e}")))?;
        let dir_path = Utf8PathBuf::from_path_buf(dir.path().to_owned())
            .map_err(|p| startup(format!("temporary directory {} is not UTF-8", p.display())))?;
        if !dir_path
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
        {
            return Err(startup(format!(
                "temporary directory {dir_path} has characters sshd_config cannot hold"
            )));
        }
        let files = Files::new(&dir_path);
        files
            .seed(options)
            .map_err(|e| startup(format!("preparing {dir_path}: {e}")))?;
        let host_public_key = files.new_host_key()?;

        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port().map_err(|e| startup(format!("finding a free port: {e}")))?;
            match launch(&files, port) {
                Ok((child, namespace)) => {
                    return Ok(Self {
                        child,
                        namespace,
                        dir,
                        dir_path,
                        port,
                        user,
                        host_public_key,
                    });
                }
                Err(Launch::PortTaken(e)) => last_error = Some(e),
                Err(Launch::Failed(e)) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| startup("no free port".to_owned())))
    }

    /// The port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The login name sshd accepts: the current user's (root).
    pub fn user(&self) -> String {
        self.user.clone()
    }

    /// The host key's public line, `ssh-ed25519 AAAA… comment`.
    pub fn host_public_key(&self) -> String {
        self.host_public_key.clone()
    }

    /// A `known_hosts` line for the host key: `[127.0.0.1]:PORT ssh-ed25519 AAAA…`.
    pub fn known_hosts_line(&self) -> String {
        let mut fields = self.host_public_key.split_whitespace();
        let kind = fields.next().unwrap_or_default();
        let key = fields.next().unwrap_or_default();
        format!("[127.0.0.1]:{} {kind} {key}", self.port)
    }

    /// Appends a public key line (`ssh-ed25519 AAAA… comment`) to
    /// `authorized_keys`; new connections accept it at once.
    pub fn authorize(&self, public_key_line: &str) -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.files().authorized_keys)?;
        file.write_all(format!("{}\n", public_key_line.trim_end()).as_bytes())
    }

    /// Replaces `authorized_keys` with `lines` (none: every key is refused).
    pub fn set_authorized_keys(&self, lines: &[&str]) -> std::io::Result<()> {
        let text: String = lines
            .iter()
            .map(|line| format!("{}\n", line.trim_end()))
            .collect();
        write_atomically(&self.files().authorized_keys, &text)
    }

    /// Changes what the `cloud-init` stand-in does from its next call on.
    pub fn set_cloud_init(&self, delay: Duration, mode: CloudInitMode) -> std::io::Result<()> {
        self.files().write_cloud_init_control(delay, mode)
    }

    /// The file the `cloud-init` stand-in reads its delay and mode from
    /// (`delay=S.MMM` and `mode=done|error|degraded` lines), for a client
    /// in another process (a Python test) to change them: write it whole,
    /// by renaming a file into place.
    pub fn cloud_init_control(&self) -> Utf8PathBuf {
        self.files().cloud_init_control.clone()
    }

    /// The arguments of every `apt-get` call so far, one line per call.
    pub fn apt_get_calls(&self) -> Vec<String> {
        fs::read_to_string(self.files().apt_get_calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The arguments of every `cloud-init` call so far, one line per call
    /// (`status --wait --long`, `clean --logs`, …).
    pub fn cloud_init_calls(&self) -> Vec<String> {
        fs::read_to_string(self.files().cloud_init_calls)
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// What the remote side sees as `/etc/machine-id`, without the trailing
    /// newline: a random 32-hex-digit id at first.
    pub fn machine_id(&self) -> String {
        fs::read_to_string(self.files().machine_id)
            .map(|text| text.trim_end().to_owned())
            .unwrap_or_default()
    }

    /// Whether the remote side's `/var/log/syslog` still exists (it does at
    /// first).
    pub fn syslog_exists(&self) -> bool {
        self.files().var_log.join("syslog").exists()
    }

    /// Kills every SSH connection (the per-connection sshd processes and
    /// the remote commands) while the listener keeps accepting new ones.
    /// Returns once they are gone.
    pub fn drop_connections(&self) {
        self.namespace.kill_members(Some(self.child.id()));
    }

    /// Restarts sshd on the same port with a newly generated host key;
    /// open connections are dropped.
    pub fn restart_with_new_host_key(&mut self) -> Result<(), TestbedError> {
        stop(&mut self.child, &self.namespace);
        let files = self.files();
        self.host_public_key = files.new_host_key()?;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match launch(&files, self.port) {
                Ok((child, namespace)) => {
                    self.child = child;
                    self.namespace = namespace;
                    return Ok(());
                }
                // The port is briefly someone else's: wait for it a little.
                Err(Launch::PortTaken(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(Launch::PortTaken(e) | Launch::Failed(e)) => return Err(e),
            }
        }
    }

    /// What sshd has logged so far (its stderr, `LogLevel VERBOSE`), across
    /// restarts.
    pub fn log(&self) -> String {
        read_lossy(&self.files().log)
    }

    /// The test peer's temporary directory (removed on drop).
    pub fn dir(&self) -> &Utf8Path {
        &self.dir_path
    }

    /// sshd's configuration file.
    pub fn config_path(&self) -> Utf8PathBuf {
        self.files().config
    }

    fn files(&self) -> Files {
        Files::new(&self.dir_path)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // The listener first, so it forks nothing more; then whatever is
        // left in its namespace (connections, remote commands, their
        // orphans). The temporary directory goes last.
        stop(&mut self.child, &self.namespace);
        let _ = &self.dir;
    }
}

/// Where everything lives in the temporary directory.
struct Files {
    dir: Utf8PathBuf,
    config: Utf8PathBuf,
    host_key: Utf8PathBuf,
    authorized_keys: Utf8PathBuf,
    pid_file: Utf8PathBuf,
    log: Utf8PathBuf,
    bin: Utf8PathBuf,
    cloud_init_control: Utf8PathBuf,
    cloud_init_calls: Utf8PathBuf,
    apt_get: Utf8PathBuf,
    apt_get_calls: Utf8PathBuf,
    machine_id: Utf8PathBuf,
    var_log: Utf8PathBuf,
    passwd: Utf8PathBuf,
}

impl Files {
    fn new(dir: &Utf8Path) -> Self {
        Self {
            dir: dir.to_owned(),
            config: dir.join("sshd_config"),
            host_key: dir.join("host_key"),
            authorized_keys: dir.join("authorized_keys"),
            pid_file: dir.join("sshd.pid"),
            log: dir.join("sshd.log"),
            bin: dir.join("bin"),
            cloud_init_control: dir.join("cloud-init.control"),
            cloud_init_calls: dir.join("cloud-init.calls"),
            apt_get: dir.join("apt-get"),
            apt_get_calls: dir.join("apt-get.calls"),
            machine_id: dir.join("machine-id"),
            var_log: dir.join("var-log"),
            passwd: dir.join("passwd"),
        }
    }

    /// Writes everything but the host key.
    fn seed(&self, options: SshdOptions) -> std::io::Result<()> {
        fs::write(&self.authorized_keys, "")?;
        fs::write(&self.log, "")?;
        fs::write(&self.cloud_init_calls, "")?;
        fs::write(&self.machine_id, format!("{}\n", random_machine_id()))?;
        fs::write(&self.passwd, passwd_with_sh(&fs::read_to_string(PASSWD)?))?;
        fs::create_dir(&self.var_log)?;
        fs::write(
            self.var_log.join("syslog"),
            "vmw-testbed: the SSH test peer's stand-in for /var/log/syslog\n",
        )?;
        fs::create_dir(&self.bin)?;
        let cloud_init = self.bin.join("cloud-init");
        fs::write(&cloud_init, cloud_init_script(&self.dir))?;
        fs::set_permissions(&cloud_init, fs::Permissions::from_mode(0o755))?;
        fs::write(&self.apt_get_calls, "")?;
        fs::write(
            &self.apt_get,
            format!(
                "#!/bin/sh\n# apt-get stand-in of the vmw SSH test peer.\nprintf '%s\\n' \"$*\" >> {}\necho \"apt-get (vmw test peer): $*\"\n",
                shell_quote(self.apt_get_calls.as_str())
            ),
        )?;
        fs::set_permissions(&self.apt_get, fs::Permissions::from_mode(0o755))?;
        self.write_cloud_init_control(options.cloud_init_delay, options.cloud_init_mode)
    }

    fn write_cloud_init_control(
        &self,
        delay: Duration,
        mode: CloudInitMode,
    ) -> std::io::Result<()> {
        let text = format!(
            "delay={}.{:03}\nmode={}\n",
            delay.as_secs(),
            delay.subsec_millis(),
            mode.as_str()
        );
        write_atomically(&self.cloud_init_control, &text)
    }

    /// sshd's configuration, listening on `port`.
    fn sshd_config(&self, port: u16) -> String {
        let mut config = String::new();
        let lines = [
            "ListenAddress 127.0.0.1".to_owned(),
            format!("Port {port}"),
            format!("HostKey {}", self.host_key),
            format!("PidFile {}", self.pid_file),
            format!("AuthorizedKeysFile {}", self.authorized_keys),
            "PubkeyAuthentication yes".to_owned(),
            "PasswordAuthentication no".to_owned(),
            "KbdInteractiveAuthentication no".to_owned(),
            "PermitRootLogin prohibit-password".to_owned(),
            "StrictModes no".to_owned(),
            "UsePAM no".to_owned(),
            "Subsystem sftp internal-sftp".to_owned(),
            format!(
                "SetEnv PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                self.bin
            ),
            "LogLevel VERBOSE".to_owned(),
            "MaxStartups 100".to_owned(),
            "MaxSessions 100".to_owned(),
        ];
        for line in lines {
            let _ = writeln!(config, "{line}");
        }
        config
    }

    /// Generates a new ed25519 host key (replacing any) and returns its
    /// public line.
    fn new_host_key(&self) -> Result<String, TestbedError> {
        let public = self.host_key.with_extension("pub");
        for path in [&self.host_key, &public] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(startup(format!("removing {path}: {e}")));
                }
                _ => {}
            }
        }
        keygen(&self.host_key, "vmw-testbed-sshd")?;
        fs::read_to_string(&public)
            .map(|line| line.trim().to_owned())
            .map_err(|e| startup(format!("reading {public}: {e}")))
    }

    /// The script `sh -c` runs inside the new mount namespace: the bind
    /// mounts, then sshd in its place (same pid). `set -e`: sshd never runs
    /// unless both mounts are in place.
    fn namespace_script(&self) -> String {
        [
            "set -e".to_owned(),
            format!(
                "mount --bind {} {MACHINE_ID}",
                shell_quote(self.machine_id.as_str())
            ),
            format!(
                "mount --bind {} {VAR_LOG}",
                shell_quote(self.var_log.as_str())
            ),
            format!(
                "mount --bind {} {PASSWD}",
                shell_quote(self.passwd.as_str())
            ),
            format!(
                "mount --bind {} {APT_GET}",
                shell_quote(self.apt_get.as_str())
            ),
            format!("exec {SSHD} -D -e -f {}", shell_quote(self.config.as_str())),
        ]
        .join("\n")
    }
}

/// Why one attempt to run sshd failed.
enum Launch {
    /// The port was taken before sshd could bind it.
    PortTaken(TestbedError),
    /// Anything else.
    Failed(TestbedError),
}

/// Starts sshd on `port` in a new private mount namespace and waits until it
/// listens.
fn launch(files: &Files, port: u16) -> Result<(Child, Namespace), Launch> {
    let fail = |reason: String| Launch::Failed(startup_with_log(reason, &files.log, 0));
    fs::write(&files.config, files.sshd_config(port))
        .map_err(|e| fail(format!("writing {}: {e}", files.config)))?;
    let log_start = fs::metadata(&files.log).map(|m| m.len()).unwrap_or(0);
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&files.log)
        .map_err(|e| fail(format!("opening {}: {e}", files.log)))?;
    let log_err = log
        .try_clone()
        .map_err(|e| fail(format!("opening {}: {e}", files.log)))?;
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(files.namespace_script())
        .current_dir(&files.dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| fail(format!("running unshare: {e}")))?;

    let listening = format!("Server listening on 127.0.0.1 port {port}.");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        let new_log = read_log_since(&files.log, log_start);
        match child.try_wait() {
            Ok(Some(status)) => {
                let error = startup_with_log(
                    format!("sshd (in unshare) exited with {status}"),
                    &files.log,
                    log_start,
                );
                return Err(if new_log.contains("Address already in use") {
                    Launch::PortTaken(error)
                } else {
                    Launch::Failed(error)
                });
            }
            Ok(None) => {}
            Err(e) => {
                kill_and_reap(&mut child);
                return Err(fail(format!("waiting for sshd: {e}")));
            }
        }
        if new_log.contains(&listening) {
            break;
        }
        if Instant::now() >= deadline {
            kill_and_reap(&mut child);
            return Err(Launch::Failed(startup_with_log(
                format!("sshd did not listen on port {port} within {STARTUP_TIMEOUT:?}"),
                &files.log,
                log_start,
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    match Namespace::of(child.id()) {
        Ok(namespace) => Ok((child, namespace)),
        Err(reason) => {
            kill_and_reap(&mut child);
            Err(Launch::Failed(startup_with_log(
                reason, &files.log, log_start,
            )))
        }
    }
}

/// Kills the listener, then everything else in its namespace.
fn stop(child: &mut Child, namespace: &Namespace) {
    kill_and_reap(child);
    namespace.kill_members(None);
}

fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// sshd's private mount namespace, held open.
#[derive(Debug)]
struct Namespace {
    /// `mnt:[INODE]`, as `/proc/PID/ns/mnt` links read.
    id: String,
    /// Holding the namespace file keeps the namespace (and its id) alive.
    _handle: File,
}

impl Namespace {
    /// The mount namespace of `pid`, which must not be ours.
    fn of(pid: u32) -> Result<Self, String> {
        let path = format!("/proc/{pid}/ns/mnt");
        let handle = File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
        let id = fs::read_link(&path)
            .map_err(|e| format!("reading {path}: {e}"))?
            .to_string_lossy()
            .into_owned();
        let ours = fs::read_link("/proc/self/ns/mnt")
            .map_err(|e| format!("reading /proc/self/ns/mnt: {e}"))?
            .to_string_lossy()
            .into_owned();
        if id == ours {
            return Err(format!(
                "sshd runs in this process's mount namespace ({id}), not a private one"
            ));
        }
        Ok(Self {
            id,
            _handle: handle,
        })
    }

    /// Live processes in the namespace, except `spare`.
    fn members(&self, spare: Option<u32>) -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| Some(pid) != spare)
            .filter(|pid| {
                // Zombies have no namespace link any more.
                fs::read_link(format!("/proc/{pid}/ns/mnt"))
                    .is_ok_and(|link| link.as_os_str() == self.id.as_str())
            })
            .collect()
    }

    /// SIGKILLs every process of the namespace but `spare`, until none is
    /// left (new ones may be forking meanwhile), for at most a few seconds.
    fn kill_members(&self, spare: Option<u32>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.members(spare);
            if pids.is_empty() || Instant::now() >= deadline {
                return;
            }
            // The shell's `kill` builtin: no libc binding needed.
            let _ = Command::new("sh")
                .args(["-c", "kill -KILL \"$@\" 2>/dev/null", "kill"])
                .args(pids.iter().map(u32::to_string))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The `cloud-init` stand-in: reads the control file on every call.
fn cloud_init_script(dir: &Utf8Path) -> String {
    const BODY: &str = r#"
printf '%s\n' "$*" >> "$dir/cloud-init.calls"

delay=0
mode=done
if [ -r "$dir/cloud-init.control" ]; then
    while IFS='=' read -r key value; do
        case $key in
            delay) delay=$value ;;
            mode) mode=$value ;;
        esac
    done < "$dir/cloud-init.control"
fi

command=${1-}
[ "$#" -gt 0 ] && shift
case $command in
status)
    wait=no
    long=no
    for arg in "$@"; do
        case $arg in
            --wait | -w) wait=yes ;;
            --long | -l) long=yes ;;
        esac
    done
    # Like cloud-init: dots while waiting, then a newline.
    if [ "$wait" = yes ]; then
        case $delay in
            0 | 0.000) ;;
            *) printf '.'; sleep "$delay" ;;
        esac
        printf '\n'
    fi
    case $mode in
    error)
        echo 'status: error'
        if [ "$long" = yes ]; then
            echo 'extended_status: error - done'
            echo 'boot_status_code: enabled-by-generator'
            echo 'last_update: Thu, 01 Jan 1970 00:00:42 +0000'
            echo 'detail:'
            echo 'DataSourceVMware'
            echo 'errors:'
            printf '\t%s\n' "- ('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))"
            echo 'recoverable_errors: {}'
        fi
        exit 1
        ;;
    degraded)
        echo 'status: done'
        if [ "$long" = yes ]; then
            echo 'extended_status: degraded done'
            echo 'boot_status_code: enabled-by-generator'
            echo 'last_update: Thu, 01 Jan 1970 00:00:42 +0000'
            echo 'detail:'
            echo 'DataSourceVMware'
            echo 'errors: []'
            echo 'recoverable_errors:'
            echo 'WARNING:'
            printf '\t%s\n' '- Unable to find a matching network for this instance'
        fi
        exit 2
        ;;
    *)
        echo 'status: done'
        if [ "$long" = yes ]; then
            echo 'extended_status: done'
            echo 'boot_status_code: enabled-by-generator'
            echo 'last_update: Thu, 01 Jan 1970 00:00:42 +0000'
            echo 'detail:'
            echo 'DataSourceVMware'
            echo 'errors: []'
            echo 'recoverable_errors: {}'
        fi
        exit 0
        ;;
    esac
    ;;
clean)
    exit 0
    ;;
--version)
    echo '/usr/bin/cloud-init 23.4.4'
    exit 0
    ;;
*)
    echo "cloud-init (vmw test peer): unsupported command: $command" >&2
    exit 2
    ;;
esac
"#;
    format!(
        "#!/bin/sh\n# cloud-init stand-in of the vmw SSH test peer.\ndir={}\n{BODY}",
        shell_quote(dir.as_str())
    )
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Writes `text` to `path` through a rename, so readers never see half of it.
fn write_atomically(path: &Utf8Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}

fn read_lossy(path: &Utf8Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn read_log_since(path: &Utf8Path, start: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(start).unwrap_or(0).min(bytes.len());
    bytes
        .get(start..)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn startup(reason: String) -> TestbedError {
    TestbedError::Sshd {
        reason,
        log: String::new(),
    }
}

fn startup_with_log(reason: String, log: &Utf8Path, start: u64) -> TestbedError {
    TestbedError::Sshd {
        reason,
        log: read_log_since(log, start),
    }
}

/// A port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// This process's effective user id, from `/proc/self/status`.
fn effective_uid() -> std::io::Result<u32> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| std::io::Error::other("no Uid line in /proc/self/status"))
}

/// `/etc/passwd` with every login shell set to `/bin/sh`.
fn passwd_with_sh(passwd: &str) -> String {
    let mut out = String::with_capacity(passwd.len());
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() == 7 {
            out.push_str(&fields[..6].join(":"));
            out.push_str(":/bin/sh");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The login name of `uid`, from `/etc/passwd`.
fn user_name(uid: u32) -> String {
    let from_passwd = fs::read_to_string("/etc/passwd").ok().and_then(|passwd| {
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?;
            (id.parse() == Ok(uid)).then(|| name.to_owned())
        })
    });
    from_passwd.unwrap_or_else(|| "root".to_owned())
}

/// Creates sshd's privilege separation directory if it is missing.
fn ensure_privsep_dir() -> std::io::Result<()> {
    match fs::DirBuilder::new().mode(0o755).create(PRIVSEP_DIR) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// 32 random hex digits, like a real machine id.
fn random_machine_id() -> String {
    let half = || {
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        hasher.finish()
    };
    format!("{:016x}{:016x}", half(), half())
}

/// Makes an ed25519 key pair without a passphrase with OpenSSH's
/// `ssh-keygen`: the private key at `path`, the public one at `path.pub`.
pub fn keygen(path: &Utf8Path, comment: &str) -> Result<(), TestbedError> {
    keygen_with_passphrase(path, comment, "")
}

/// [`keygen`], the private key protected by `passphrase`.
pub fn keygen_with_passphrase(
    path: &Utf8Path,
    comment: &str,
    passphrase: &str,
) -> Result<(), TestbedError> {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| startup(format!("running ssh-keygen: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(startup(format!(
            "ssh-keygen failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn passwd_copies_change_only_the_shells() {
        let p =
            "root:x:0:0:root:/root:/bin/bash\nme:x:1000:1000:Me,,,:/home/me:/usr/bin/zsh\n# odd\n";
        assert_eq!(
            passwd_with_sh(p),
            "root:x:0:0:root:/root:/bin/sh\nme:x:1000:1000:Me,,,:/home/me:/bin/sh\n# odd\n"
        );
    }

    #[test]
    fn machine_ids_are_32_hex_digits() {
        let id = random_machine_id();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, random_machine_id());
    }

    #[test]
    fn namespace_script_mounts_before_sshd() {
        let files = Files::new(Utf8Path::new("/tmp/vmw-sshd-x"));
        let script = files.namespace_script();
        assert_eq!(
            script,
            "set -e\n\
             mount --bind '/tmp/vmw-sshd-x/machine-id' /etc/machine-id\n\
             mount --bind '/tmp/vmw-sshd-x/var-log' /var/log\n\
             mount --bind '/tmp/vmw-sshd-x/passwd' /etc/passwd\n\
             mount --bind '/tmp/vmw-sshd-x/apt-get' /usr/bin/apt-get\n\
             exec /usr/sbin/sshd -D -e -f '/tmp/vmw-sshd-x/sshd_config'"
        );
    }
}
