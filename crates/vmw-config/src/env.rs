//! Every environment variable vmw reads, in one place, and a snapshot of the
//! environment that the rest of the crate reads instead of the process's.
//!
//! Taking a snapshot (rather than calling `std::env::var` all over) keeps the
//! loader deterministic and lets tests describe an environment without
//! touching the real one.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};

/// Names a configuration file to use instead of the default locations
/// (pycloudlib's variable).
pub const PYCLOUDLIB_CONFIG: &str = "PYCLOUDLIB_CONFIG";
/// The user's home directory: `~/.config/pycloudlib.toml`, `~/.ssh`, caches.
pub const HOME: &str = "HOME";
/// Base directory for per-user caches (default `~/.cache`).
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
/// Base directory for per-user state (default `~/.local/state`): vmw keeps
/// the SSH host keys it pinned there.
pub const XDG_STATE_HOME: &str = "XDG_STATE_HOME";
/// The program search path, used to find `govc`.
pub const PATH: &str = "PATH";
/// Path of the govc binary to use, ahead of `PATH`.
pub const VMW_GOVC: &str = "VMW_GOVC";
/// The socket of the user's SSH agent: when set, SSH to instances
/// authenticates with the agent first, and the private key file is read
/// only if the agent cannot be used.
pub const SSH_AUTH_SOCK: &str = "SSH_AUTH_SOCK";

/// The default tag of the command line (`--tag`).
pub const VMW_TAG: &str = "VMW_TAG";
/// The SSH user of the command line (`--ssh-user`).
pub const VMW_SSH_USER: &str = "VMW_SSH_USER";
/// The SSH port of the command line (`--ssh-port`).
pub const VMW_SSH_PORT: &str = "VMW_SSH_PORT";
/// How long a stopped launch waits for a clone in flight
/// (`--clone-grace`).
pub const VMW_CLONE_GRACE: &str = "VMW_CLONE_GRACE";
/// The OpenSSH client `vmw ssh` runs (default `ssh` on `PATH`).
pub const VMW_SSH: &str = "VMW_SSH";
/// Log filter of the command line (tracing's `EnvFilter` syntax).
pub const RUST_LOG: &str = "RUST_LOG";
/// The terminal type: `dumb` turns progress bars off.
pub const TERM: &str = "TERM";
/// Set and not empty: no colors (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";

/// govc: the vCenter URL or host name (`server`).
pub const GOVC_URL: &str = "GOVC_URL";
/// govc: the user name (`username`).
pub const GOVC_USERNAME: &str = "GOVC_USERNAME";
/// govc: the password (`password`).
pub const GOVC_PASSWORD: &str = "GOVC_PASSWORD";
/// govc: the datacenter (`datacenter`).
pub const GOVC_DATACENTER: &str = "GOVC_DATACENTER";
/// govc: the default datastore (`datastore`).
pub const GOVC_DATASTORE: &str = "GOVC_DATASTORE";
/// govc: the VM folder (`folder`).
pub const GOVC_FOLDER: &str = "GOVC_FOLDER";
/// govc: skip TLS certificate verification (`insecure_transport`).
pub const GOVC_INSECURE: &str = "GOVC_INSECURE";
/// govc: the resource pool new VMs go to (`resource_pool`).
pub const GOVC_RESOURCE_POOL: &str = "GOVC_RESOURCE_POOL";
/// govc: the default network (`network`).
pub const GOVC_NETWORK: &str = "GOVC_NETWORK";
/// govc: where govc keeps its session cache (default `~/.govmomi`).
pub const GOVMOMI_HOME: &str = "GOVMOMI_HOME";
/// govc: keep the session between calls (on by default in govc).
pub const GOVC_PERSIST_SESSION: &str = "GOVC_PERSIST_SESSION";

/// Variables passed from vmw's environment to govc unchanged when set: TLS
/// trust settings (Go's and govc's own) and proxy settings. Nothing else
/// of the caller's environment reaches govc.
pub const GOVC_PASSTHROUGH: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GOVC_TLS_CA_CERTS",
    "GOVC_TLS_KNOWN_HOSTS",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// One variable of the process's environment, when it is set and UTF-8.
/// The only place outside [`Environment::from_process`] that reads the
/// process's environment; `key` is one of this module's constants.
pub fn var(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// A snapshot of environment variables. `Debug` hides `GOVC_PASSWORD` and
/// user info in `GOVC_URL`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.vars {
            if k == GOVC_PASSWORD {
                map.entry(k, &"<redacted>");
            } else if k == GOVC_URL {
                map.entry(k, &crate::server::redact(v));
            } else {
                map.entry(k, v);
            }
        }
        map.finish()
    }
}

impl Environment {
    /// The current process's environment (variables that are not UTF-8 are
    /// left out).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment holding exactly the given variables.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Sets a variable (builder style).
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(key.into(), value.into());
        self
    }

    /// Removes a variable (builder style).
    #[must_use]
    pub fn without(mut self, key: &str) -> Self {
        self.vars.remove(key);
        self
    }

    /// The value of a variable; an empty value counts as unset.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The home directory, from `HOME`.
    pub fn home(&self) -> Option<&Utf8Path> {
        self.get(HOME).map(Utf8Path::new)
    }

    /// vmw's per-user cache directory: `$XDG_CACHE_HOME/vmw`, else
    /// `~/.cache/vmw`; `None` when neither variable is set.
    pub fn cache_dir(&self) -> Option<Utf8PathBuf> {
        if let Some(xdg) = self.get(XDG_CACHE_HOME) {
            return Some(Utf8Path::new(xdg).join("vmw"));
        }
        self.home().map(|h| h.join(".cache").join("vmw"))
    }

    /// Where govc keeps its sessions for vmw: `<cache dir>/govmomi`. Keeping
    /// them apart from `~/.govmomi` means vmw neither reuses nor disturbs
    /// sessions of the user's own govc use.
    pub fn govc_session_dir(&self) -> Option<Utf8PathBuf> {
        self.cache_dir().map(|d| d.join("govmomi"))
    }
}
