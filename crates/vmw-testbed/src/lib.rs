//! Test support for vmw: a real vCenter simulator per test.
//!
//! [`Vcsim::start`] runs VMware's vcsim (govmomi v0.56.0) on `127.0.0.1` with
//! a free port, in a temporary directory of its own, and seeds it with the
//! source VMs vmw launches from: `TEMPLATE-cloud-init-focal` and
//! `TEMPLATE-cloud-init-jammy`, standard (non-template) powered-off VMs
//! with a NIC on `VM Network` in `/DC0/vm`. Dropping the [`Vcsim`] kills
//! the simulator and removes its directory. Every test starts its own, so
//! tests running in parallel never share one.
//!
//! vcsim's default model is kept: a cluster `DC0_C0` and a standalone host
//! `DC0_H0`, hence two resource pools, like a real multi-cluster vCenter;
//! [`Vcsim::config`] therefore sets `resource_pool`. [`VcsimOptions`] can
//! ask for a single-pool model, for required credentials, for method
//! delays, and for sessions that expire when idle.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vmw_govc::{GovcExt, requests::Find};
//!
//! let sim = vmw_testbed::Vcsim::start().await?;
//! let vms = sim.govc().exec(&Find::new("/DC0/vm").name("TEMPLATE-*")).await?;
//! assert_eq!(vms.len(), 2);
//! # Ok(()) }
//! ```
//!
//! [`Vcsim::guest_agent`] plays VMware Tools: it reports a guest IP address
//! for every VM that powers on.
//!
//! [`Sshd::start`] runs a real OpenSSH server (`/usr/sbin/sshd`) for a test
//! to reach over SSH, as a freshly launched guest: `127.0.0.1`, a free
//! port, its own host key and `authorized_keys`, a controllable `cloud-init`
//! stand-in on the remote `PATH`, and a private mount namespace with fake
//! `/etc/machine-id` and `/var/log`, so guest-side commands never touch the
//! machine running the tests (hence it needs root).
//!
//! [`SshAgent::start`] runs a real OpenSSH `ssh-agent` on a socket of its
//! own, and [`SshAgent::add`] gives it a key, passphrase-protected ones
//! included.
//!
//! [`FaultProxy`] sits between govc and a simulator serving plain http
//! ([`VcsimOptions::plain_http`], [`Vcsim::config_via`]) and drops a
//! connection right after a chosen request has reached the server, so tests
//! can see what happens when vCenter executes a call whose answer never
//! arrives.
//!
//! [`config_toml`] and [`write_config`] (or [`Vcsim::write_config`]) make
//! the pycloudlib.toml of a configuration, for tests and tools that run vmw
//! as a user would.
//!
//! The binaries are found by [`tools::locate`]; `cargo xtask tools`
//! installs them.
//!
//! [`tidy`] checks the rules of the code base that the compiler does not
//! check; `cargo xtask tidy` and this crate's `tidy` test run it.

pub mod agent;
pub mod guests;
pub mod ova;
pub mod proxy;
pub mod ssh_agent;
pub mod sshd;
pub mod tidy;
pub mod tools;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use vmw_config::{Secret, VmwareConfig};
use vmw_govc::requests::VmCreate;
use vmw_govc::{GovcError, GovcExt, GovcTarget, ProcessGovc, VmRef};

pub use agent::{AgentOptions, GuestAgent};
pub use guests::{
    Accel, BOOKWORM_IMAGE_VAR, GUEST_IMAGE_VAR, GuestImage, GuestState, RealGuestOptions,
    RealGuests,
};
pub use proxy::{ClientClose, FaultProxy, FaultRule};
pub use ssh_agent::SshAgent;
pub use sshd::{CloudInitMode, Sshd, SshdOptions};
pub use tools::{GOVMOMI_VERSION, Tool};

/// Datacenter of vcsim's default model.
pub const DATACENTER: &str = "DC0";
/// VM folder of vcsim's default model.
pub const VM_FOLDER: &str = "/DC0/vm";
/// Datastore of vcsim's default model.
pub const DATASTORE: &str = "LocalDS_0";
/// Network of vcsim's default model.
pub const NETWORK: &str = "VM Network";
/// The cluster's resource pool, present in every model the test bed starts.
pub const CLUSTER_POOL: &str = "/DC0/host/DC0_C0/Resources";
/// The standalone host's resource pool (absent with `standalone_hosts(0)`).
pub const HOST_POOL: &str = "/DC0/host/DC0_H0/Resources";
/// The templates seeded into every simulator.
pub const TEMPLATES: [&str; 2] = ["TEMPLATE-cloud-init-focal", "TEMPLATE-cloud-init-jammy"];

/// The disk of each seeded template: 10 GiB, the size of an Ubuntu cloud
/// image's disk.
pub const TEMPLATE_DISK: &str = "10G";

/// User name the test config uses when vcsim accepts any.
const ANY_USER: &str = "vmw";
/// Password the test config uses when vcsim accepts any.
const ANY_PASSWORD: &str = "vmw-test-password";

/// What can go wrong starting the test bed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestbedError {
    /// govc or vcsim is not installed.
    #[error(
        "{tool} {} is not available: {detail}\nhint: run `cargo xtask tools` (needs Go) or set VMW_GOVC / VMW_VCSIM",
        tools::GOVMOMI_VERSION
    )]
    ToolMissing {
        /// `govc` or `vcsim`.
        tool: &'static str,
        /// Where it was looked for.
        detail: String,
    },
    /// The temporary directory could not be made, or vcsim not started.
    #[error("could not start vcsim")]
    Io(#[from] std::io::Error),
    /// vcsim started but did not say where it listens.
    #[error("vcsim did not start: {reason}\nvcsim stderr:\n{stderr}")]
    Startup {
        /// What went wrong.
        reason: String,
        /// What vcsim printed on stderr.
        stderr: String,
    },
    /// A govc call of the test bed failed.
    #[error(transparent)]
    Govc(#[from] GovcError),

    /// Seeding the simulator through govc failed.
    #[error("seeding vcsim failed (vcsim stderr:\n{stderr})")]
    Seed {
        /// The govc error.
        #[source]
        source: GovcError,
        /// What vcsim printed on stderr.
        stderr: String,
    },
    /// The SSH test peer was started without root.
    #[error(
        "the SSH test peer needs root (running as uid {uid}): sshd runs in a private mount namespace (unshare, mount --bind) so guest-side commands cannot touch this machine"
    )]
    SshdNeedsRoot {
        /// The effective user id.
        uid: u32,
    },
    /// The fault-injecting proxy could not listen.
    #[error("could not start the fault proxy")]
    Proxy(#[source] std::io::Error),
    /// ssh-agent could not be started, or did not take a key.
    #[error("ssh-agent: {0}")]
    SshAgent(String),
    /// sshd could not be started.
    #[error("sshd did not start: {reason}\nsshd log:\n{log}")]
    Sshd {
        /// What went wrong.
        reason: String,
        /// What sshd logged.
        log: String,
    },
}

/// How to start a [`Vcsim`].
#[derive(Clone, Debug, Default)]
pub struct VcsimOptions {
    standalone_hosts: Option<u32>,
    credentials: Option<(String, String)>,
    method_delays: Vec<(String, u32)>,
    session_idle_timeout: Option<Duration>,
    no_templates: bool,
    datastores: Option<u32>,
    datacenters: Option<u32>,
    plain_http: bool,
}

impl VcsimOptions {
    /// vcsim's default model (two resource pools), templates seeded.
    pub fn new() -> Self {
        Self::default()
    }

    /// `-standalone-host N`; `0` leaves the cluster's pool as the only one.
    #[must_use]
    pub fn standalone_hosts(mut self, n: u32) -> Self {
        self.standalone_hosts = Some(n);
        self
    }

    /// `-username U -password P`: vcsim then refuses other credentials.
    #[must_use]
    pub fn credentials(mut self, username: &str, password: &str) -> Self {
        self.credentials = Some((username.to_owned(), password.to_owned()));
        self
    }

    /// `-method-delay Method:ms`: slows one vSphere method down.
    #[must_use]
    pub fn method_delay(mut self, method: &str, millis: u32) -> Self {
        self.method_delays.push((method.to_owned(), millis));
        self
    }

    /// `-ds N`: N local datastores (`LocalDS_0` ...). vcsim keeps a VM's
    /// files at `[datastore] NAME/`, so two VMs of one name in different
    /// folders need different datastores.
    #[must_use]
    pub fn datastores(mut self, n: u32) -> Self {
        self.datastores = Some(n);
        self
    }

    /// `-dc N`: N datacenters (`DC0`, `DC1`, ...).
    #[must_use]
    pub fn datacenters(mut self, n: u32) -> Self {
        self.datacenters = Some(n);
        self
    }

    /// `-session-idle-timeout`: the simulator drops sessions idle for longer
    /// than `timeout` (checked every `timeout`, so a session ends between
    /// one and two timeouts after its last call), as vCenter does after its
    /// own idle timeout. Without it, sessions never expire.
    #[must_use]
    pub fn session_idle_timeout(mut self, timeout: Duration) -> Self {
        self.session_idle_timeout = Some(timeout);
        self
    }

    /// Do not seed the templates.
    #[must_use]
    pub fn without_templates(mut self) -> Self {
        self.no_templates = true;
        self
    }

    /// `-tls=false`: serve plain http instead of https, so that a
    /// [`FaultProxy`] in between can read the requests. [`Vcsim::config`]
    /// then names the server by an `http://` URL.
    #[must_use]
    pub fn plain_http(mut self) -> Self {
        self.plain_http = true;
        self
    }

    fn argv(&self) -> Vec<String> {
        let mut argv = vec!["-l".to_owned(), "127.0.0.1:0".to_owned()];
        if let Some(n) = self.standalone_hosts {
            argv.push(format!("-standalone-host={n}"));
        }
        if let Some(n) = self.datastores {
            argv.push(format!("-ds={n}"));
        }
        if let Some(n) = self.datacenters {
            argv.push(format!("-dc={n}"));
        }
        if let Some((u, p)) = &self.credentials {
            argv.push(format!("-username={u}"));
            argv.push(format!("-password={p}"));
        }
        if !self.method_delays.is_empty() {
            let spec: Vec<String> = self
                .method_delays
                .iter()
                .map(|(m, ms)| format!("{m}:{ms}"))
                .collect();
            argv.push(format!("-method-delay={}", spec.join(",")));
        }
        if self.plain_http {
            argv.push("-tls=false".to_owned());
        }
        if let Some(t) = self.session_idle_timeout {
            // A Go duration.
            argv.push(format!("-session-idle-timeout={}ms", t.as_millis().max(1)));
        }
        argv
    }
}

/// The name of pycloudlib's config file, as [`write_config`] names it.
pub const CONFIG_FILE: &str = "pycloudlib.toml";

/// `config` as the `[vmware]` section of a pycloudlib.toml, every value
/// quoted as TOML demands. An empty user name or password, and options
/// that are not set, are left out (the loader then takes them from
/// elsewhere, e.g. from the user info of `server`).
pub fn config_toml(config: &VmwareConfig) -> String {
    let mut vmware = toml::Table::new();
    let mut text = |key: &str, value: &str| {
        vmware.insert(key.to_owned(), toml::Value::String(value.to_owned()));
    };
    text("server", &config.server);
    if !config.username.is_empty() {
        text("username", &config.username);
    }
    if !config.password.expose().is_empty() {
        text("password", config.password.expose());
    }
    text("datacenter", &config.datacenter);
    text("datastore", &config.datastore);
    text("folder", &config.folder);
    let optional = [
        ("resource_pool", config.resource_pool.as_deref()),
        ("network", config.network.as_deref()),
        (
            "public_key_path",
            config.public_key_path.as_ref().map(|p| p.as_str()),
        ),
        (
            "private_key_path",
            config.private_key_path.as_ref().map(|p| p.as_str()),
        ),
        ("key_name", config.key_name.as_deref()),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            text(key, value);
        }
    }
    vmware.insert(
        "insecure_transport".to_owned(),
        toml::Value::Boolean(config.insecure_transport),
    );
    let mut doc = toml::Table::new();
    doc.insert("vmware".to_owned(), toml::Value::Table(vmware));
    doc.to_string()
}

/// Writes [`config_toml`] of `config` to [`CONFIG_FILE`] in `dir`
/// (replacing one there); returns the file's path.
pub fn write_config(config: &VmwareConfig, dir: &Utf8Path) -> std::io::Result<Utf8PathBuf> {
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, config_toml(config))?;
    Ok(path)
}

/// A running vcsim, killed on drop.
#[derive(Debug)]
pub struct Vcsim {
    child: Child,
    // Kept open so vcsim never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    dir: tempfile::TempDir,
    dir_path: Utf8PathBuf,
    address: String,
    socket_addr: SocketAddr,
    url: String,
    options: VcsimOptions,
    govc_path: Utf8PathBuf,
}

impl Vcsim {
    /// A simulator with the default model and the templates.
    pub async fn start() -> Result<Self, TestbedError> {
        Self::start_with(VcsimOptions::new()).await
    }

    /// A simulator started with `options`.
    pub async fn start_with(options: VcsimOptions) -> Result<Self, TestbedError> {
        let govc_path = tools::locate(Tool::Govc)?;
        let vcsim_path = tools::locate(Tool::Vcsim)?;
        if options.session_idle_timeout.is_some()
            && tools::vcsim_front_end(&vcsim_path).is_none_or(|r| r < tools::VCSIM_FRONT_END)
        {
            return Err(TestbedError::ToolMissing {
                tool: "vcsim",
                detail: format!(
                    "{vcsim_path} is an older build of vmw's vcsim front end, without -session-idle-timeout"
                ),
            });
        }
        let sim = tokio::task::spawn_blocking(move || spawn(&vcsim_path, govc_path, options))
            .await
            .map_err(std::io::Error::other)??;
        if !sim.options.no_templates {
            sim.seed_templates().await?;
        }
        Ok(sim)
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// [`Vcsim::address`] as a socket address (e.g. the upstream of a
    /// [`FaultProxy`]).
    pub fn socket_addr(&self) -> SocketAddr {
        self.socket_addr
    }

    /// The URL vcsim printed, user name and password included
    /// (`https://user:pass@127.0.0.1:PORT/sdk`, percent-encoded).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The simulator's own temporary directory (removed on drop).
    pub fn dir(&self) -> &Utf8Path {
        &self.dir_path
    }

    /// The govc binary the test bed uses.
    pub fn govc_path(&self) -> &Utf8Path {
        &self.govc_path
    }

    /// A `[vmware]` configuration pointing at this simulator, with
    /// `resource_pool` set to the cluster's pool. `server` is the bare
    /// `127.0.0.1:PORT` (govc reads it as `https://127.0.0.1:PORT/sdk`), or
    /// `http://127.0.0.1:PORT/sdk` with [`VcsimOptions::plain_http`].
    pub fn config(&self) -> VmwareConfig {
        self.config_with_server(self.server_url(&self.address))
    }

    /// Writes [`Vcsim::config`] as a pycloudlib.toml into `dir`
    /// ([`write_config`]); returns the file's path.
    pub fn write_config(&self, dir: &Utf8Path) -> std::io::Result<Utf8PathBuf> {
        write_config(&self.config(), dir)
    }

    /// [`Vcsim::config`] with the server at `address` instead, e.g. a
    /// [`FaultProxy`] relaying to this simulator: same scheme, same `/sdk`
    /// path, same credentials.
    pub fn config_via(&self, address: SocketAddr) -> VmwareConfig {
        self.config_with_server(self.server_url(&address.to_string()))
    }

    /// The `server` naming `host_port` the way this simulator is served.
    fn server_url(&self, host_port: &str) -> String {
        if self.options.plain_http {
            format!("http://{host_port}/sdk")
        } else {
            host_port.to_owned()
        }
    }

    fn config_with_server(&self, server: String) -> VmwareConfig {
        let (username, password) = self
            .options
            .credentials
            .clone()
            .unwrap_or_else(|| (ANY_USER.to_owned(), ANY_PASSWORD.to_owned()));
        VmwareConfig {
            server,
            username,
            password: Secret::new(password),
            datacenter: DATACENTER.to_owned(),
            datastore: DATASTORE.to_owned(),
            folder: VM_FOLDER.to_owned(),
            insecure_transport: true,
            resource_pool: Some(CLUSTER_POOL.to_owned()),
            network: None,
            public_key_path: None,
            private_key_path: None,
            key_name: None,
        }
    }

    /// Where govc keeps its session for this simulator.
    pub fn session_dir(&self) -> Utf8PathBuf {
        self.dir_path.join("govmomi")
    }

    /// A govc backend for [`Vcsim::config`].
    pub fn govc(&self) -> ProcessGovc {
        self.govc_for(&self.config())
    }

    /// A govc backend for [`Vcsim::config_via`]`(address)`.
    pub fn govc_via(&self, address: SocketAddr) -> ProcessGovc {
        self.govc_for(&self.config_via(address))
    }

    /// A govc backend for another configuration of this simulator (e.g. a
    /// wrong password).
    pub fn govc_for(&self, config: &VmwareConfig) -> ProcessGovc {
        ProcessGovc::new(
            self.govc_path.clone(),
            GovcTarget::new(
                config,
                Some(self.session_dir()),
                &vmw_config::Environment::default(),
            ),
        )
    }

    /// Starts the VMware Tools stand-in: VMs that power on get an address
    /// (127.0.0.1 by default) after a short delay.
    pub fn guest_agent(&self, options: AgentOptions) -> GuestAgent {
        GuestAgent::start(self.govc(), options)
    }

    /// Adds source VMs named `names` (e.g. `TEMPLATE-cloud-init-noble`)
    /// to the VM folder, made as the seeded ones are.
    pub async fn add_templates(&self, names: &[&str]) -> Result<(), TestbedError> {
        self.create_templates(names).await
    }

    async fn seed_templates(&self) -> Result<(), TestbedError> {
        self.create_templates(&TEMPLATES).await
    }

    async fn create_templates(&self, names: &[&str]) -> Result<(), TestbedError> {
        let govc = self.govc();
        let mut creates = Vec::new();
        for name in names {
            let target = VmRef::in_folder(VM_FOLDER, name)
                .map_err(|e| TestbedError::Io(std::io::Error::other(e.to_string())))?;
            let mut r = VmCreate::new(target);
            r.network = Some(NETWORK.to_owned());
            r.pool = Some(CLUSTER_POOL.to_owned());
            r.datastore = Some(DATASTORE.to_owned());
            r.guest_id = Some("ubuntu64Guest".to_owned());
            // A disk as cloud images have (vcsim keeps its files empty).
            r.disk = Some(TEMPLATE_DISK.to_owned());
            creates.push(r);
        }
        futures_util::future::try_join_all(creates.iter().map(|r| govc.exec(r)))
            .await
            .map_err(|source| TestbedError::Seed {
                source,
                stderr: std::fs::read_to_string(self.dir_path.join("vcsim.stderr"))
                    .unwrap_or_default(),
            })?;
        Ok(())
    }
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        // SIGKILL and reap: no vcsim outlives its test, no zombie stays.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

fn spawn(
    vcsim: &Utf8Path,
    govc_path: Utf8PathBuf,
    options: VcsimOptions,
) -> Result<Vcsim, TestbedError> {
    let dir = tempfile::Builder::new().prefix("vmw-vcsim-").tempdir()?;
    let dir_path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).map_err(|p| {
        std::io::Error::other(format!("temporary directory {} is not UTF-8", p.display()))
    })?;
    let stderr_path = dir_path.join("vcsim.stderr");
    let stderr_file = std::fs::File::create(&stderr_path)?;
    let mut child = std::process::Command::new(vcsim)
        .args(options.argv())
        .current_dir(&dir_path)
        .env("HOME", dir_path.as_str())
        .env("TMPDIR", dir_path.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr_file)
        .spawn()?;
    let read_stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(TestbedError::Startup {
            reason: "no stdout pipe".to_owned(),
            stderr: read_stderr(),
        });
    };

    // Read the `export GOVC_URL=...` line, with a deadline.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let result = reader.read_line(&mut line).map(|_| line);
        let _ = tx.send((result, reader));
    });
    let fail = |child: &mut Child, reason: String| {
        let _ = child.kill();
        let _ = child.wait();
        TestbedError::Startup {
            reason,
            stderr: read_stderr(),
        }
    };
    let (line, reader) = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok((Ok(line), reader)) => (line, reader),
        Ok((Err(e), _)) => return Err(fail(&mut child, format!("reading its stdout: {e}"))),
        Err(_) => {
            return Err(fail(
                &mut child,
                "it printed no GOVC_URL within 60 s".to_owned(),
            ));
        }
    };
    let Some(url) = export_line_url(&line) else {
        return Err(fail(
            &mut child,
            format!("unexpected first line {:?}", line.trim()),
        ));
    };
    let Some((scheme, address)) = parse_export(&line) else {
        return Err(fail(
            &mut child,
            format!("unexpected first line {:?}", line.trim()),
        ));
    };
    let wanted = if options.plain_http { "http" } else { "https" };
    if scheme != wanted {
        return Err(fail(
            &mut child,
            format!("it serves {scheme}, not {wanted}: {:?}", line.trim()),
        ));
    }
    let Ok(socket_addr) = address.parse::<SocketAddr>() else {
        return Err(fail(
            &mut child,
            format!("{address:?} is not an IP address and port"),
        ));
    };
    Ok(Vcsim {
        child,
        _stdout: reader,
        dir,
        dir_path,
        address,
        socket_addr,
        url: url.to_owned(),
        options,
        govc_path,
    })
}

/// The URL of vcsim's `export GOVC_URL=https://u:p@host:port/sdk ...` line.
fn export_line_url(line: &str) -> Option<&str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("GOVC_URL="))
}

/// The `host:port` of vcsim's `export GOVC_URL=https://u:p@host:port/sdk ...`
/// line.
pub fn parse_export_line(line: &str) -> Option<String> {
    parse_export(line).map(|(_, host_port)| host_port)
}

/// The scheme (`https` or `http`) and `host:port` of vcsim's export line.
fn parse_export(line: &str) -> Option<(&'static str, String)> {
    let url = export_line_url(line)?;
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        ("https", rest)
    } else {
        ("http", url.strip_prefix("http://")?)
    };
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit('@').next()?;
    (!host_port.is_empty()).then(|| (scheme, host_port.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration with characters TOML must escape.
    fn awkward_config() -> VmwareConfig {
        VmwareConfig {
            server: "127.0.0.1:8989".to_owned(),
            username: "al\"ice\\".to_owned(),
            password: Secret::new("p@ss:w/rd%x #1 \"quoted\" \\ 'single'\n"),
            datacenter: "DC0".to_owned(),
            datastore: "Local DS".to_owned(),
            folder: "/DC0/vm/a \"b\"".to_owned(),
            insecure_transport: true,
            resource_pool: Some(CLUSTER_POOL.to_owned()),
            network: Some("VM Network".to_owned()),
            public_key_path: None,
            private_key_path: None,
            key_name: Some("k".to_owned()),
        }
    }

    #[test]
    fn a_config_file_reads_back_as_the_same_config() {
        let config = awkward_config();
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let path = write_config(&config, dir).unwrap();
        assert_eq!(path, dir.join(CONFIG_FILE));
        let loaded = vmw_config::Loader::with_environment(vmw_config::Environment::default())
            .file(path)
            .load()
            .unwrap();
        assert_eq!(loaded.config, config);
        assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
    }

    #[test]
    fn an_empty_user_and_password_are_left_out() {
        let config = VmwareConfig {
            server: "https://u:p@127.0.0.1:1/sdk".to_owned(),
            username: String::new(),
            password: Secret::new(""),
            ..awkward_config()
        };
        let text = config_toml(&config);
        assert!(text.starts_with("[vmware]\n"), "{text}");
        assert!(
            !text.contains("username") && !text.contains("password"),
            "{text}"
        );
    }

    #[test]
    fn export_line() {
        assert_eq!(
            parse_export_line(
                "export GOVC_URL=https://user:pass@127.0.0.1:38863/sdk GOVC_SIM_PID=6046\n"
            )
            .as_deref(),
            Some("127.0.0.1:38863")
        );
        assert_eq!(
            parse_export_line("export GOVC_URL=https://127.0.0.1:1/sdk").as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(parse_export_line("hello"), None);
        assert_eq!(
            parse_export("export GOVC_URL=http://user:pass@127.0.0.1:39559/sdk GOVC_SIM_PID=1"),
            Some(("http", "127.0.0.1:39559".to_owned()))
        );
        assert_eq!(
            parse_export("export GOVC_URL=https://127.0.0.1:1/sdk"),
            Some(("https", "127.0.0.1:1".to_owned()))
        );
    }

    #[test]
    fn options_argv() {
        let o = VcsimOptions::new()
            .standalone_hosts(0)
            .credentials("alice", "pw")
            .method_delay("PowerOnVM_Task", 2000)
            .method_delay("CloneVM_Task", 10)
            .plain_http()
            .session_idle_timeout(Duration::from_millis(1500));
        assert_eq!(
            o.argv(),
            [
                "-l",
                "127.0.0.1:0",
                "-standalone-host=0",
                "-username=alice",
                "-password=pw",
                "-method-delay=PowerOnVM_Task:2000,CloneVM_Task:10",
                "-tls=false",
                "-session-idle-timeout=1500ms"
            ]
        );
    }
}
