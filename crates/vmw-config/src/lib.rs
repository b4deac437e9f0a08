//! The vCenter configuration of vmw, compatible with pycloudlib's
//! `[vmware]` TOML section: plain data, and the names of every environment
//! variable vmw reads ([`env`](mod@env)). What a govc process gets of it is
//! decided by vmw-govc (`vmw_govc::GovcTarget`).
//!
//! # Where values come from
//!
//! Each value is taken from the first source that has it:
//!
//! 1. **Overrides** given by the caller ([`Overrides`], e.g. CLI flags).
//! 2. **The config file**, section `[vmware]`. The file is the first that
//!    exists of: the path given by the caller ([`Loader::file`]), the path in
//!    `PYCLOUDLIB_CONFIG`, `~/.config/pycloudlib.toml`,
//!    `/etc/pycloudlib.toml`. A path the user *named* (the first two) must
//!    exist: a typo must not silently select another vCenter. When the
//!    overrides already hold every required value, no file is read at all.
//! 3. **govc's environment variables**: `GOVC_URL`, `GOVC_USERNAME`,
//!    `GOVC_PASSWORD`, `GOVC_DATACENTER`, `GOVC_DATASTORE`, `GOVC_FOLDER`,
//!    `GOVC_INSECURE`, `GOVC_RESOURCE_POOL`, `GOVC_NETWORK` fill what is
//!    still missing, so an environment already set up for govc works as is.
//!
//! Required: `server`, `username`, `password`, `datacenter`, `datastore`,
//! `folder`. Optional: `insecure_transport` (default `false`: certificates
//! are verified), `resource_pool`, `network`, `public_key_path`,
//! `private_key_path`, `key_name`.
//!
//! `resource_pool` and `network` go beyond pycloudlib: on a vCenter with more
//! than one cluster or host, `govc vm.clone` cannot pick a resource pool by
//! itself, and `resource_pool` tells it which one to use.
//!
//! # Credentials inside `server`
//!
//! Like govc, vmw accepts a URL with user info as `server`
//! (`https://user:password@host/sdk`, percent-encoded as in any URL; see
//! [`server`]). The loader takes the user name and password out of it:
//! each fills `username` or `password` only when no source above gives
//! that key (an explicit key wins over the URL, as `GOVC_USERNAME` and
//! `GOVC_PASSWORD` win over `GOVC_URL` in govc), and its origin is then
//! [`Origin::ServerUrl`]. The `server` the loader returns never holds user
//! info, and neither does anything vmw shows or hands govc:
//! [`VmwareConfig::server_display`], `Debug`, and the
//! [`address`](Login::address) of [`VmwareConfig::login`], which holds the
//! user name and password apart (vmw-govc hands them to govc in
//! `GOVC_USERNAME` and `GOVC_PASSWORD`), so not even govc's error messages
//! can echo the password. [`VmwareConfig::login`] also takes the user info
//! out of a `server` set by hand, with the same precedence as the loader.
//!
//! # Locations
//!
//! [`Environment::govc_session_dir`] is where vmw keeps govc's sessions
//! (`~/.cache/vmw/govmomi`); vmw-govc gives each server, user and password a
//! directory of its own in it.
//!
//! # Example
//!
//! ```
//! use vmw_config::{Environment, Loader, Origin, Overrides, Secret};
//!
//! let env = Environment::from_pairs([
//!     ("HOME", "/home/me"),
//!     ("GOVC_URL", "vcenter.example.com"),
//!     ("GOVC_PASSWORD", "s3cret"),
//! ]);
//! let loaded = Loader::with_environment(env)
//!     .overrides(Overrides {
//!         username: Some("me@vsphere.local".into()),
//!         datacenter: Some("DC0".into()),
//!         datastore: Some("LocalDS_0".into()),
//!         folder: Some("/DC0/vm".into()),
//!         ..Overrides::default()
//!     })
//!     .system_file("/nonexistent/pycloudlib.toml")
//!     .load()?;
//! assert_eq!(loaded.config.server, "vcenter.example.com");
//! assert_eq!(loaded.origin("server"), Some(&Origin::Env("GOVC_URL")));
//! assert!(!format!("{:?}", loaded.config).contains("s3cret"));
//!
//! let login = loaded.config.login();
//! assert_eq!(login.address, "vcenter.example.com");
//! assert_eq!(login.username, "me@vsphere.local");
//! assert_eq!(login.password, Secret::new("s3cret"));
//! assert!(!format!("{login:?}").contains("s3cret"));
//! # Ok::<(), vmw_config::ConfigError>(())
//! ```
//!
//! This crate does no I/O beyond reading the config file.

pub mod env;
mod error;
mod secret;
pub mod server;

use std::collections::BTreeMap;
use std::fmt;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

pub use env::Environment;
pub use error::{ConfigError, MissingKey, PathList, ProblemList};
pub use secret::Secret;
pub use server::{ServerUrl, ServerUrlError};
/// What would fix an error of this crate (the trait every vmw error implements).
pub use vmw_hints::Hints;

/// The system-wide config file pycloudlib reads last.
pub const SYSTEM_CONFIG_FILE: &str = "/etc/pycloudlib.toml";

/// The resolved `[vmware]` configuration.
///
/// `Debug` shows neither the password nor user info in `server`. The
/// default is empty: plain data for a caller to fill (the loader is what
/// checks that the required keys are set).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct VmwareConfig {
    /// vCenter host name or URL (`GOVC_URL`). The loader removes user info
    /// from it; a value set by hand may still hold some, which
    /// [`VmwareConfig::server_display`] and [`VmwareConfig::login`]
    /// take out.
    pub server: String,
    /// vCenter user.
    pub username: String,
    /// vCenter password; shown as `<redacted>`.
    pub password: Secret,
    /// Datacenter name or path.
    pub datacenter: String,
    /// Datastore for new VMs.
    pub datastore: String,
    /// Inventory folder of the templates and of new VMs.
    pub folder: String,
    /// Skip TLS certificate verification.
    pub insecure_transport: bool,
    /// Resource pool for new VMs (needed when the vCenter has several).
    pub resource_pool: Option<String>,
    /// Network for new VMs' NICs, when not the template's.
    pub network: Option<String>,
    /// SSH public key to inject into instances.
    pub public_key_path: Option<Utf8PathBuf>,
    /// SSH private key matching `public_key_path`.
    pub private_key_path: Option<Utf8PathBuf>,
    /// Name of the key pair (pycloudlib's `key_name`).
    pub key_name: Option<String>,
}

/// `Debug` of a struct with every key of `[vmware]` (a [`VmwareConfig`] or
/// [`Overrides`]), `server` shown as `$server` (redacted) and the password
/// through [`Secret`]'s own redacting `Debug`.
macro_rules! debug_keys {
    ($f:expr, $name:literal, $this:expr, $server:expr) => {
        $f.debug_struct($name)
            .field("server", &$server)
            .field("username", &$this.username)
            .field("password", &$this.password)
            .field("datacenter", &$this.datacenter)
            .field("datastore", &$this.datastore)
            .field("folder", &$this.folder)
            .field("insecure_transport", &$this.insecure_transport)
            .field("resource_pool", &$this.resource_pool)
            .field("network", &$this.network)
            .field("public_key_path", &$this.public_key_path)
            .field("private_key_path", &$this.private_key_path)
            .field("key_name", &$this.key_name)
            .finish()
    };
}

impl fmt::Debug for VmwareConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_keys!(f, "VmwareConfig", self, self.server_display())
    }
}

/// Values given by the caller; each one set here wins over every other
/// source. `Debug` redacts the password and user info in `server`.
#[derive(Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)] // one field per key of `VmwareConfig`, documented there
pub struct Overrides {
    pub server: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub datacenter: Option<String>,
    pub datastore: Option<String>,
    pub folder: Option<String>,
    pub insecure_transport: Option<bool>,
    pub resource_pool: Option<String>,
    pub network: Option<String>,
    pub public_key_path: Option<Utf8PathBuf>,
    pub private_key_path: Option<Utf8PathBuf>,
    pub key_name: Option<String>,
}

impl fmt::Debug for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_keys!(
            f,
            "Overrides",
            self,
            self.server.as_deref().map(server::redact)
        )
    }
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Given by the caller.
    Override,
    /// Read from this config file.
    File(Utf8PathBuf),
    /// Read from this environment variable.
    Env(&'static str),
    /// Not given anywhere; the documented default applies.
    Default,
    /// Taken from the user info of `server`, which came from this origin.
    ServerUrl(Box<Origin>),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Override => f.write_str("given by the caller"),
            Origin::File(p) => write!(f, "{p}"),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::Default => f.write_str("default"),
            Origin::ServerUrl(o) => write!(f, "the URL in `server` ({o})"),
        }
    }
}

/// The result of [`Loader::load`]: the configuration, where each value came
/// from, and which file (if any) was read.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: VmwareConfig,
    /// The origin of each key that has a value, by key name.
    pub origins: BTreeMap<&'static str, Origin>,
    /// The config file read, if one was.
    pub file: Option<Utf8PathBuf>,
    /// Keys of `[vmware]` that vmw does not know (probably typos).
    pub unknown_keys: Vec<String>,
}

impl Loaded {
    /// Where the value of `key` came from.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.origins.get(key)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Bool,
}

struct KeySpec {
    key: &'static str,
    env: Option<&'static str>,
    required: bool,
    kind: Kind,
}

const fn spec(key: &'static str, env: Option<&'static str>, required: bool, kind: Kind) -> KeySpec {
    KeySpec {
        key,
        env,
        required,
        kind,
    }
}

/// Every key of `[vmware]`, in the order errors list them.
const KEYS: &[KeySpec] = &[
    spec("server", Some(env::GOVC_URL), true, Kind::Text),
    spec("username", Some(env::GOVC_USERNAME), true, Kind::Text),
    spec("password", Some(env::GOVC_PASSWORD), true, Kind::Text),
    spec("datacenter", Some(env::GOVC_DATACENTER), true, Kind::Text),
    spec("datastore", Some(env::GOVC_DATASTORE), true, Kind::Text),
    spec("folder", Some(env::GOVC_FOLDER), true, Kind::Text),
    spec(
        "insecure_transport",
        Some(env::GOVC_INSECURE),
        false,
        Kind::Bool,
    ),
    spec(
        "resource_pool",
        Some(env::GOVC_RESOURCE_POOL),
        false,
        Kind::Text,
    ),
    spec("network", Some(env::GOVC_NETWORK), false, Kind::Text),
    spec("public_key_path", None, false, Kind::Text),
    spec("private_key_path", None, false, Kind::Text),
    spec("key_name", None, false, Kind::Text),
];

/// The names of every key vmw reads from `[vmware]`.
pub fn known_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|k| k.key)
}

#[derive(Clone, Debug)]
enum Value {
    Text(String),
    Bool(bool),
}

/// Resolves a [`VmwareConfig`] from overrides, a config file and the
/// environment (see the crate docs for the precedence).
#[derive(Clone, Debug)]
pub struct Loader {
    file: Option<Utf8PathBuf>,
    overrides: Overrides,
    env: Environment,
    system_file: Utf8PathBuf,
}

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

impl Loader {
    /// A loader reading the current process's environment.
    pub fn new() -> Self {
        Self::with_environment(Environment::from_process())
    }

    /// A loader reading the given environment instead of the process's.
    pub fn with_environment(env: Environment) -> Self {
        Self {
            file: None,
            overrides: Overrides::default(),
            env,
            system_file: Utf8PathBuf::from(SYSTEM_CONFIG_FILE),
        }
    }

    /// Reads this file instead of searching; it must exist.
    #[must_use]
    pub fn file(mut self, path: impl Into<Utf8PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Values that win over the file and the environment.
    #[must_use]
    pub fn overrides(mut self, overrides: Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// Replaces `/etc/pycloudlib.toml` as the last place searched.
    #[must_use]
    pub fn system_file(mut self, path: impl Into<Utf8PathBuf>) -> Self {
        self.system_file = path.into();
        self
    }

    /// The environment this loader reads.
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// The config file locations in search order, each with who named it
    /// (`None` for the default locations, which may be absent).
    pub fn search_paths(&self) -> Vec<(Utf8PathBuf, Option<String>)> {
        if let Some(p) = &self.file {
            return vec![(p.clone(), Some("given by the caller".to_owned()))];
        }
        if let Some(p) = self.env.get(env::PYCLOUDLIB_CONFIG) {
            return vec![(
                Utf8PathBuf::from(p),
                Some(format!("from {}", env::PYCLOUDLIB_CONFIG)),
            )];
        }
        self.default_paths()
            .into_iter()
            .map(|p| (p, None))
            .collect()
    }

    fn default_paths(&self) -> Vec<Utf8PathBuf> {
        let mut paths = Vec::new();
        if let Some(home) = self.env.home() {
            paths.push(home.join(".config").join("pycloudlib.toml"));
        }
        paths.push(self.system_file.clone());
        paths
    }

    /// Finds the config file to read: `Ok(None)` when none of the default
    /// locations exists.
    fn find_file(&self) -> Result<Option<Utf8PathBuf>, ConfigError> {
        for (path, named_by) in self.search_paths() {
            if path.exists() {
                return Ok(Some(path));
            }
            if let Some(named_by) = named_by {
                return Err(ConfigError::NamedFileMissing {
                    path,
                    named_by,
                    defaults: PathList(self.default_paths()),
                });
            }
        }
        Ok(None)
    }

    /// Resolves the configuration.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let mut values: BTreeMap<&'static str, (Value, Origin)> = BTreeMap::new();
        for (key, value) in override_values(&self.overrides) {
            values.insert(key, (value, Origin::Override));
        }

        let all_required_given = KEYS
            .iter()
            .filter(|k| k.required)
            .all(|k| values.contains_key(k.key));
        let (file, unknown_keys) = if all_required_given {
            (None, Vec::new())
        } else {
            match self.find_file()? {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                            path: path.clone(),
                            source,
                        })?;
                    let parsed = parse_file(&path, &text)?;
                    for (key, value) in parsed.values {
                        values
                            .entry(key)
                            .or_insert((value, Origin::File(path.clone())));
                    }
                    (Some(path), parsed.unknown_keys)
                }
                None => (None, Vec::new()),
            }
        };

        for spec in KEYS {
            let Some(var) = spec.env else { continue };
            if values.contains_key(spec.key) {
                continue;
            }
            let Some(raw) = self.env.get(var) else {
                continue;
            };
            let value = match spec.kind {
                Kind::Text => Value::Text(raw.to_owned()),
                Kind::Bool => Value::Bool(parse_env_bool(var, raw)?),
            };
            values.insert(spec.key, (value, Origin::Env(var)));
        }

        take_credentials_from_server(&mut values)?;

        let missing: Vec<MissingKey> = KEYS
            .iter()
            .filter(|k| k.required && !values.contains_key(k.key))
            .map(|k| MissingKey {
                key: k.key,
                env: k.env.unwrap_or_default(),
            })
            .collect();
        if !missing.is_empty() {
            let tried = if file.is_none() {
                self.search_paths().into_iter().map(|(p, _)| p).collect()
            } else {
                Vec::new()
            };
            return Err(ConfigError::Missing {
                keys: missing,
                file,
                tried,
            });
        }

        let mut origins = BTreeMap::new();
        let mut text = |key: &'static str| -> Option<String> {
            let (value, origin) = values.remove(key)?;
            origins.insert(key, origin);
            match value {
                Value::Text(s) => Some(s),
                Value::Bool(b) => Some(b.to_string()),
            }
        };
        let config = VmwareConfig {
            server: text("server").unwrap_or_default(),
            username: text("username").unwrap_or_default(),
            password: Secret::new(text("password").unwrap_or_default()),
            datacenter: text("datacenter").unwrap_or_default(),
            datastore: text("datastore").unwrap_or_default(),
            folder: text("folder").unwrap_or_default(),
            insecure_transport: false,
            resource_pool: text("resource_pool"),
            network: text("network"),
            public_key_path: text("public_key_path").map(Utf8PathBuf::from),
            private_key_path: text("private_key_path").map(Utf8PathBuf::from),
            key_name: text("key_name"),
        };
        let insecure_transport = match values.remove("insecure_transport") {
            Some((Value::Bool(b), origin)) => {
                origins.insert("insecure_transport", origin);
                b
            }
            _ => {
                origins.insert("insecure_transport", Origin::Default);
                false
            }
        };
        Ok(Loaded {
            config: VmwareConfig {
                insecure_transport,
                ..config
            },
            origins,
            file,
            unknown_keys,
        })
    }
}

/// Removes the user info from `server` and lets it fill `username` and
/// `password` where nothing else did.
fn take_credentials_from_server(
    values: &mut BTreeMap<&'static str, (Value, Origin)>,
) -> Result<(), ConfigError> {
    let Some((Value::Text(raw), origin)) = values.get("server") else {
        return Ok(());
    };
    let origin = origin.clone();
    let url = ServerUrl::parse(raw).map_err(|problem| ConfigError::BadServer {
        origin: origin.clone(),
        problem,
    })?;
    let from_url = Origin::ServerUrl(Box::new(origin.clone()));
    if let Some(user) = url.username() {
        values
            .entry("username")
            .or_insert_with(|| (Value::Text(user.to_owned()), from_url.clone()));
    }
    if let Some(password) = url.password() {
        values
            .entry("password")
            .or_insert_with(|| (Value::Text(password.expose().to_owned()), from_url));
    }
    values.insert("server", (Value::Text(url.address().to_owned()), origin));
    Ok(())
}

fn override_values(o: &Overrides) -> Vec<(&'static str, Value)> {
    let texts = [
        ("server", o.server.clone()),
        ("username", o.username.clone()),
        (
            "password",
            o.password.as_ref().map(|p| p.expose().to_owned()),
        ),
        ("datacenter", o.datacenter.clone()),
        ("datastore", o.datastore.clone()),
        ("folder", o.folder.clone()),
        ("resource_pool", o.resource_pool.clone()),
        ("network", o.network.clone()),
        (
            "public_key_path",
            o.public_key_path.as_ref().map(|p| p.to_string()),
        ),
        (
            "private_key_path",
            o.private_key_path.as_ref().map(|p| p.to_string()),
        ),
        ("key_name", o.key_name.clone()),
    ];
    let mut out: Vec<(&'static str, Value)> = texts
        .into_iter()
        .filter_map(|(k, v)| Some((k, Value::Text(v.filter(|s| !s.is_empty())?))))
        .collect();
    if let Some(b) = o.insecure_transport {
        out.push(("insecure_transport", Value::Bool(b)));
    }
    out
}

/// govc reads booleans with Go's `strconv.ParseBool`; accept the same words.
fn parse_env_bool(var: &'static str, raw: &str) -> Result<bool, ConfigError> {
    match raw {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ConfigError::BadEnv {
            var,
            value: raw.to_owned(),
            expected: "1, true, 0 or false",
        }),
    }
}

struct ParsedFile {
    values: Vec<(&'static str, Value)>,
    unknown_keys: Vec<String>,
}

#[derive(Deserialize)]
struct TopLevel {
    vmware: Option<BTreeMap<String, toml::Spanned<toml::Value>>>,
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn type_name(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(x) => format!("the float {x}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        toml::Value::Datetime(d) => format!("the date-time {d}"),
        toml::Value::Array(_) => "an array".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

fn parse_file(path: &Utf8Path, text: &str) -> Result<ParsedFile, ConfigError> {
    let top: TopLevel = toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map_or((1, 1), |span| line_column(text, span.start));
        ConfigError::Toml {
            path: path.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })?;
    let Some(section) = top.vmware else {
        return Ok(ParsedFile {
            values: Vec::new(),
            unknown_keys: Vec::new(),
        });
    };

    let mut values = Vec::new();
    let mut problems = Vec::new();
    let mut unknown_keys = Vec::new();
    for (key, spanned) in section {
        let Some(spec) = KEYS.iter().find(|k| k.key == key) else {
            unknown_keys.push(key);
            continue;
        };
        let (line, column) = line_column(text, spanned.span().start);
        let value = spanned.into_inner();
        match (spec.kind, value) {
            (Kind::Text, toml::Value::String(s)) => {
                if !s.is_empty() {
                    values.push((spec.key, Value::Text(s)));
                }
            }
            (Kind::Bool, toml::Value::Boolean(b)) => values.push((spec.key, Value::Bool(b))),
            (kind, other) => {
                let expected = match kind {
                    Kind::Text => "a string (in quotes)",
                    Kind::Bool => "true or false (without quotes)",
                };
                // Never echo a password, even a mistyped one.
                let found = if spec.key == "password" {
                    "a value that is not a string".to_owned()
                } else {
                    type_name(&other)
                };
                problems.push((
                    line,
                    format!(
                        "`{key}` (line {line}, column {column}) must be {expected}, found {found}"
                    ),
                ));
            }
        }
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(ConfigError::WrongTypes {
            path: path.to_owned(),
            problems: ProblemList(problems.into_iter().map(|(_, p)| p).collect()),
        });
    }
    Ok(ParsedFile {
        values,
        unknown_keys,
    })
}

/// The login of a configuration, as govc gets it: the server's address
/// without user info, the user name and the password (see
/// [`VmwareConfig::login`]). `Debug` redacts the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// `server` without user info (as given, or normalised by
    /// [`ServerUrl::address`] when it parses).
    pub address: String,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret,
}

impl VmwareConfig {
    /// `server` without user info: the form to show (see [`server::redact`]).
    pub fn server_display(&self) -> String {
        server::redact(&self.server)
    }

    /// The address, user name and password to log in with: `server`
    /// without user info, and `username` and `password`, each taken from
    /// the user info of `server` when empty (explicit values win, as in the
    /// loader). A `server` that does not parse is shown redacted (see
    /// [`server::redact`]) and gives no credentials.
    pub fn login(&self) -> Login {
        match ServerUrl::parse(&self.server) {
            Ok(url) => {
                let username = if self.username.is_empty() {
                    url.username().unwrap_or_default().to_owned()
                } else {
                    self.username.clone()
                };
                let password = match url.password() {
                    Some(p) if self.password.is_empty() => p.clone(),
                    _ => self.password.clone(),
                };
                Login {
                    address: url.address().to_owned(),
                    username,
                    password,
                }
            }
            Err(_) => Login {
                address: self.server_display(),
                username: self.username.clone(),
                password: self.password.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests;
