//! How errors leave the program: the exit status of each kind, the hints
//! added where a fact is known, and the text on stderr.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::OnceLock;

use vmw_cloud::CloudError;
use vmw_cloud::{ErrorKind, GovcError};
use vmw_config::ConfigError;

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
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
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

static TARGET: OnceLock<Target> = OnceLock::new();

/// Remembers the vCenter and user for later hints.
pub(crate) fn set_target(target: Target) {
    let _ = TARGET.set(target);
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

/// The exit status for an error.
pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return e.code;
        }
        if cause.downcast_ref::<ConfigError>().is_some() {
            return EXIT_USAGE;
        }
        if let Some(e) = cause.downcast_ref::<CloudError>() {
            return match e {
                CloudError::InvalidTag { .. }
                | CloudError::InvalidOption { .. }
                | CloudError::Config(_)
                | CloudError::UserData(_)
                | CloudError::UnknownRelease { .. } => EXIT_USAGE,
                _ => EXIT_FAILED,
            };
        }
    }
    EXIT_FAILED
}

/// The govc error at the root of `err`, if any.
fn govc_error(err: &anyhow::Error) -> Option<&GovcError> {
    err.chain().find_map(|cause| {
        cause.downcast_ref::<GovcError>().or_else(|| {
            cause
                .downcast_ref::<CloudError>()
                .and_then(CloudError::govc)
        })
    })
}

/// A hint for a govc failure whose message has none, from what vmw knows
/// about the configuration.
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

/// The complete text of an error: every cause once, then the hints.
pub(crate) fn render(err: &anyhow::Error) -> String {
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
    if !text.contains("hint:")
        && let Some(g) = govc_error(err)
        && let Some(h) = govc_hint(g, TARGET.get())
    {
        text.push_str("\nhint: ");
        text.push_str(&h);
    }
    let missing_config = err.chain().any(|c| {
        matches!(
            c.downcast_ref::<ConfigError>()
                .or_else(|| match c.downcast_ref::<CloudError>() {
                    Some(CloudError::Config(e)) => Some(e),
                    _ => None,
                }),
            Some(ConfigError::Missing { .. })
        )
    });
    if missing_config {
        text.push_str("\nhint: a config file holds them like this (e.g. ~/.config/pycloudlib.toml, or the file given with --config):\n");
        for line in CONFIG_TEMPLATE.lines() {
            text.push_str("    ");
            text.push_str(line);
            text.push('\n');
        }
        text.pop();
    }
    text
}

/// Whether stderr gets colors: a terminal, and `NO_COLOR` unset.
pub(crate) fn stderr_color() -> bool {
    std::io::stderr().is_terminal()
        && vmw_config::env::var(vmw_config::env::NO_COLOR).is_none_or(|v| v.is_empty())
}

/// Prints `error: ...` (with its hints) on stderr and gives the exit status.
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    let code = exit_code(err);
    let text = render(err);
    if !text.is_empty() {
        let color = stderr_color();
        let mut out = String::new();
        for (i, line) in text.lines().enumerate() {
            if i == 0 {
                out.push_str(&paint("error", "1;31", color));
                out.push_str(": ");
                out.push_str(line);
            } else if let Some(rest) = line.strip_prefix("hint:") {
                out.push_str(&paint("hint", "1;36", color));
                out.push(':');
                out.push_str(rest);
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        crate::progress::suspend(|| {
            let _ = std::io::stderr().write_all(out.as_bytes());
        });
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
