//! How errors leave the program: the exit status of each error category,
//! the hints (the libraries' own, as data, plus the CLI's, which name `vmw`
//! commands and options), and the text on stderr.

use std::fmt;
use std::io::IsTerminal;
use std::process::ExitCode;

use vmw_cloud::{CleanError, CloudError, ErrorCategory, ErrorKind, GovcError, Hints};
use vmw_config::ConfigError;

use crate::output::Output;

/// The operation failed.
pub(crate) const EXIT_FAILED: u8 = 1;
/// Usage or configuration error.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Interrupted with Ctrl-C (128 + SIGINT).
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

/// An error of the command line itself, with its exit status and an
/// optional hint.
#[derive(Debug)]
pub(crate) struct CliError {
    /// What went wrong.
    pub(crate) message: String,
    /// What would fix it.
    pub(crate) hint: Option<String>,
    /// The exit status.
    pub(crate) code: u8,
}

impl CliError {
    /// A usage error (exit 2).
    pub(crate) fn usage(message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            message: message.into(),
            hint,
            code: EXIT_USAGE,
        }
    }

    /// A failed operation (exit 1).
    pub(crate) fn failed(message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            message: message.into(),
            hint,
            code: EXIT_FAILED,
        }
    }

    /// An exit with `code` and nothing more to say (the details were
    /// printed already).
    pub(crate) fn silent(code: u8) -> Self {
        Self {
            message: String::new(),
            hint: None,
            code,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The vCenter and user of the configuration in use, for hints about
/// failed logins.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// `server`.
    pub(crate) server: String,
    /// `username`.
    pub(crate) username: String,
    /// Where the password came from.
    pub(crate) password_origin: String,
}

/// What a config file looks like, for the "no config" hint.
pub(crate) const CONFIG_TEMPLATE: &str = "\
[vmware]
server = \"vcenter.example.com\"
username = \"me@vsphere.local\"
password = \"...\"
datacenter = \"DC1\"
datastore = \"datastore1\"
folder = \"/DC1/vm/ci\"
insecure_transport = false
# needed when the vCenter has several clusters or hosts:
resource_pool = \"/DC1/host/Cluster1/Resources\"";

/// The library error at the root of `err`: the outermost one, whose hints
/// cover those it wraps.
enum Root<'a> {
    Cli(&'a CliError),
    Config(&'a ConfigError),
    Cloud(&'a CloudError),
    Clean(&'a CleanError),
    Govc(&'a GovcError),
}

fn root(err: &anyhow::Error) -> Option<Root<'_>> {
    err.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            Some(Root::Cli(e))
        } else if let Some(e) = cause.downcast_ref::<ConfigError>() {
            Some(Root::Config(e))
        } else if let Some(e) = cause.downcast_ref::<CloudError>() {
            Some(Root::Cloud(e))
        } else if let Some(e) = cause.downcast_ref::<CleanError>() {
            Some(Root::Clean(e))
        } else {
            cause.downcast_ref::<GovcError>().map(Root::Govc)
        }
    })
}

/// The exit status for a category of library error.
fn category_code(category: ErrorCategory) -> u8 {
    match category {
        ErrorCategory::Input => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

/// The exit status for an error.
pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    match root(err) {
        Some(Root::Cli(e)) => e.code,
        Some(Root::Config(_)) => EXIT_USAGE,
        Some(Root::Cloud(e)) => category_code(e.category()),
        Some(Root::Clean(_) | Root::Govc(_)) | None => EXIT_FAILED,
    }
}

/// A library error's hints as the CLI gives them: where the library's
/// hint names a library call, the `vmw` command or option instead; where
/// a `vmw` command helps further, that command too.
fn cloud_hints(e: &CloudError) -> Vec<String> {
    match e {
        CloudError::BadSource { image, .. } => vec![format!(
            "`vmw image check {image}` lists every requirement and how to meet it"
        )],
        CloudError::NotOurs { .. } => vec![
            "vmw destroys only VMs carrying its marker (the annotation `made by vmw (...)`); `--force` deletes one that really is to go"
                .to_owned(),
        ],
        CloudError::MayExist { .. } => vec![
            "`vmw clean --all-tags` removes it once it is there (it carries vmw's marker)"
                .to_owned(),
        ],
        CloudError::Kept { vm, source, .. } => {
            let mut h = cloud_hints(source);
            let name = vm.rsplit('/').next().unwrap_or(vm);
            h.push(format!(
                "`vmw ssh {name}` reaches it, `vmw logs {name}` collects the evidence again, `vmw delete {name}` removes it"
            ));
            h
        }
        CloudError::Step {
            vm,
            rollback: Some(_),
            ..
        } => {
            let mut h = e.hints();
            h.push(format!("`vmw clean` or `vmw delete {vm}` removes it later"));
            h
        }
        _ => e.hints(),
    }
}

/// A hint for a govc failure, from what vmw knows about the configuration.
pub(crate) fn govc_hint(e: &GovcError, target: Option<&Target>) -> Option<String> {
    let (server, user, origin) = match target {
        Some(t) => (
            t.server.as_str(),
            t.username.as_str(),
            t.password_origin.as_str(),
        ),
        None => ("the vCenter", "the configured user", "the configuration"),
    };
    match e.kind() {
        ErrorKind::Authentication => Some(format!(
            "vCenter {server} refused user {user:?}; check `username` and `password` (the password came from {origin})"
        )),
        ErrorKind::Unreachable => Some(format!(
            "nothing answers at {server}; check `server` (GOVC_URL) and that the vCenter is reachable from here"
        )),
        ErrorKind::Tls => Some(format!(
            "the TLS certificate of {server} is not trusted: point SSL_CERT_FILE at its CA, or set insecure_transport = true (GOVC_INSECURE=1) for a test vCenter"
        )),
        _ => None,
    }
}

/// Every hint for `err`, once each: the library's, then the CLI's.
pub(crate) fn hints(err: &anyhow::Error, target: Option<&Target>) -> Vec<String> {
    let mut hints = match root(err) {
        Some(Root::Cli(e)) => e.hint.iter().cloned().collect(),
        Some(Root::Config(e)) => config_hints(e),
        Some(Root::Cloud(e)) => {
            let mut h = cloud_hints(e);
            if let Some(g) = e.govc()
                && let Some(extra) = govc_hint(g, target)
            {
                h.push(extra);
            }
            if let CloudError::Config(c) = e {
                h.extend(config_hints(c));
            }
            h
        }
        Some(Root::Clean(e)) => e.errors.iter().flat_map(cloud_hints).collect(),
        Some(Root::Govc(e)) => {
            let mut h = e.hints();
            h.extend(govc_hint(e, target));
            h
        }
        None => Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    hints.retain(|h| seen.insert(h.clone()));
    hints
}

/// A configuration error's hints; a missing value adds what a config file
/// looks like.
fn config_hints(e: &ConfigError) -> Vec<String> {
    let mut h = e.hints();
    if matches!(e, ConfigError::Missing { .. }) {
        let mut example = "a config file holds them like this (e.g. ~/.config/pycloudlib.toml, or the file given with --config):".to_owned();
        for line in CONFIG_TEMPLATE.lines() {
            example.push_str("\n    ");
            example.push_str(line);
        }
        h.push(example);
    }
    h
}

/// The complete text of an error: every cause once, then the hints.
pub(crate) fn render(err: &anyhow::Error, target: Option<&Target>) -> String {
    let mut text = String::new();
    let mut last = String::new();
    for cause in err.chain() {
        let s = cause.to_string();
        // thiserror's `transparent` and our wrappers may repeat a cause.
        if s.is_empty() || last.contains(&s) {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\ncaused by: ");
        }
        text.push_str(&s);
        last = s;
    }
    for h in hints(err, target) {
        text.push_str("\nhint: ");
        text.push_str(&h);
    }
    text
}

/// Whether stderr gets colors: a terminal, and `NO_COLOR` unset.
pub(crate) fn stderr_color() -> bool {
    std::io::stderr().is_terminal()
        && vmw_config::env::var(vmw_config::env::NO_COLOR).is_none_or(|v| v.is_empty())
}

/// Prints `error: ...` (with its hints) on stderr and gives the exit status.
pub(crate) fn report(out: &Output, err: &anyhow::Error, target: Option<&Target>) -> ExitCode {
    let code = exit_code(err);
    let text = render(err, target);
    if !text.is_empty() {
        let color = out.color();
        let mut painted = String::new();
        for (i, line) in text.lines().enumerate() {
            if i == 0 {
                painted.push_str(&paint("error", "1;31", color));
                painted.push_str(": ");
                painted.push_str(line);
            } else if let Some(rest) = line.strip_prefix("hint:") {
                painted.push_str(&paint("hint", "1;36", color));
                painted.push(':');
                painted.push_str(rest);
            } else {
                painted.push_str(line);
            }
            painted.push('\n');
        }
        out.note(&painted);
    }
    ExitCode::from(code)
}

/// `text` in an ANSI style when `color`.
pub(crate) fn paint(text: &str, style: &str, color: bool) -> String {
    if color {
        format!("\x1b[{style}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}
