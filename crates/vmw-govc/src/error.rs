//! [`GovcError`] and the classification of govc's failures.
//!
//! govc reports every failure the same way: exit code 1 and one line on
//! stderr, `<program>: <message>`. The message is a Go error or a vSphere
//! fault. [`classify`] maps it to an [`ErrorKind`] by the parts that stay the
//! same across vCenter versions and locales: fault type names
//! (`InvalidPowerState`, `DuplicateName`, ...) and Go's own error texts
//! (`connection refused`, `x509:`). The raw stderr is always kept.

use std::fmt;
use std::time::Duration;

use camino::Utf8PathBuf;

use crate::Command;

/// What kind of failure a [`GovcError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// govc's finder found nothing at the path it was given
    /// (`vm '/DC0/vm/x' not found`). [`GovcError::not_found_path`] says which
    /// path; only that path is known to be absent.
    NotFound,
    /// vCenter met an object that was being deleted or created while it
    /// answered ("has already been deleted or has not been completely
    /// created", `ManagedObjectNotFound`). The object is often another one
    /// than the one asked for, so this never means "already gone".
    InventoryChanged,
    /// The VM is already in the requested power state, or in one that does
    /// not allow the operation.
    InvalidPowerState,
    /// vCenter refused the user name or password.
    Authentication,
    /// Nothing answered at the vCenter address (refused, no route, DNS):
    /// no request reached vCenter.
    Unreachable,
    /// The connection broke after it was made (EOF, reset, a deadline in
    /// the middle of a call): a request may have reached vCenter, and a
    /// task it started may still finish there.
    ConnectionLost,
    /// The TLS handshake failed, usually an untrusted certificate.
    Tls,
    /// An object of that name already exists.
    DuplicateName,
    /// govc needs a resource pool and the inventory has several.
    AmbiguousResourcePool,
    /// govc rejected the command line (a bug in the caller or in vmw).
    Usage,
    /// The command did not finish in time: our deadline, or `vm.ip`'s wait.
    Timeout,
    /// No govc binary was found.
    GovcMissing,
    /// The govc binary is of a version vmw does not support.
    UnsupportedVersion,
    /// govc could not be started or its output could not be read.
    Io,
    /// govc succeeded but its output was not what vmw expected.
    Parse,
    /// Any other failure; the stderr says what.
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::InventoryChanged => "inventory changed during the call",
            ErrorKind::InvalidPowerState => "invalid power state",
            ErrorKind::Authentication => "authentication failed",
            ErrorKind::Unreachable => "vCenter unreachable",
            ErrorKind::ConnectionLost => "connection lost",
            ErrorKind::Tls => "TLS/certificate error",
            ErrorKind::DuplicateName => "name already exists",
            ErrorKind::AmbiguousResourcePool => "ambiguous resource pool",
            ErrorKind::Usage => "invalid govc usage",
            ErrorKind::Timeout => "timed out",
            ErrorKind::GovcMissing => "govc not found",
            ErrorKind::UnsupportedVersion => "unsupported govc version",
            ErrorKind::Io => "I/O error",
            ErrorKind::Parse => "unexpected output",
            ErrorKind::Other => "failed",
        })
    }
}

/// The details of a govc run that exited with an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// The command (password-free).
    pub command: Command,
    /// govc's exit code; `None` when it was killed by a signal.
    pub exit_code: Option<i32>,
    /// govc's stderr, as printed.
    pub stderr: String,
    /// For [`ErrorKind::AmbiguousResourcePool`], the pools found, when the
    /// caller looked them up (see `ops::explain_ambiguous_pool`).
    pub resource_pools: Vec<String>,
}

impl Failure {
    /// govc's message without its `<program>: ` prefix and usage text.
    pub fn message(&self) -> String {
        govc_message(&self.stderr)
    }
}

/// An error from running a govc command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GovcError {
    /// govc ran and exited with an error.
    #[error("{}", failure_text(.0))]
    Failed(Box<Failure>),

    /// govc did not finish within the deadline and was killed.
    #[error("`{command}` did not finish within {after:?}; govc was stopped")]
    Timeout {
        /// The command.
        command: Box<Command>,
        /// The deadline.
        after: Duration,
    },

    /// `vm.ip` waited its full `-wait` time and no address came (govc exits
    /// 0 with empty output in that case).
    #[error("no IP address reported for VM {vm} within {waited:?} (`{command}`)")]
    NoIp {
        /// The command.
        command: Box<Command>,
        /// The VM.
        vm: String,
        /// How long govc waited.
        waited: Duration,
    },

    /// No govc binary was found.
    #[error("govc was not found (looked in: {})", .searched.join(", "))]
    GovcMissing {
        /// Where vmw looked.
        searched: Vec<String>,
    },

    /// The govc binary is too old (or says no version).
    #[error("{path} is govc {found}; vmw needs govc {required} or newer")]
    UnsupportedVersion {
        /// The binary.
        path: Utf8PathBuf,
        /// What `govc version` said.
        found: String,
        /// The minimum version.
        required: crate::Version,
    },

    /// govc could not be started, or its output not read.
    #[error("could not run `{command}` ({program})")]
    Io {
        /// The command.
        command: Box<Command>,
        /// The govc binary.
        program: Utf8PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// govc succeeded but printed something vmw could not understand.
    #[error("could not understand the output of `{command}`: {reason}")]
    Parse {
        /// The command.
        command: Box<Command>,
        /// What was wrong.
        reason: String,
        /// The output (truncated to 4 KiB).
        output: String,
    },
}

fn failure_text(f: &Failure) -> String {
    let code = f.exit_code.map_or_else(
        || "killed by a signal".to_owned(),
        |c| format!("exit code {c}"),
    );
    let mut s = format!(
        "`{}` failed ({}, {code}): {}",
        f.command,
        f.kind,
        f.message()
    );
    if !f.resource_pools.is_empty() {
        s.push_str("\nresource pools found: ");
        s.push_str(&f.resource_pools.join(", "));
    }
    s
}

impl GovcError {
    /// What would fix this error, where that is known: data, for the
    /// caller to render (the message states only the fact).
    pub(crate) fn hint_list(&self) -> Vec<String> {
        match self {
            GovcError::Failed(f) if !f.resource_pools.is_empty() => vec![
                "set `resource_pool` in [vmware] (or GOVC_RESOURCE_POOL) to one of them".to_owned(),
            ],
            GovcError::NoIp { .. } => vec![
                "the guest needs VMware Tools (open-vm-tools) running and a network with DHCP"
                    .to_owned(),
            ],
            GovcError::GovcMissing { .. } => vec![format!(
                "run `cargo xtask tools` in the vmw repository, install govc v{} from https://github.com/vmware/govmomi/releases, or set VMW_GOVC to its path",
                crate::TESTED_VERSION
            )],
            GovcError::UnsupportedVersion { .. } => vec![format!(
                "install govc v{} or set VMW_GOVC to a newer govc",
                crate::TESTED_VERSION
            )],
            _ => Vec::new(),
        }
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GovcError::Failed(f) => f.kind,
            GovcError::Timeout { .. } | GovcError::NoIp { .. } => ErrorKind::Timeout,
            GovcError::GovcMissing { .. } => ErrorKind::GovcMissing,
            GovcError::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            GovcError::Io { .. } => ErrorKind::Io,
            GovcError::Parse { .. } => ErrorKind::Parse,
        }
    }

    /// The command this error is about, if any.
    pub fn command(&self) -> Option<&Command> {
        match self {
            GovcError::Failed(f) => Some(&f.command),
            GovcError::Timeout { command, .. }
            | GovcError::NoIp { command, .. }
            | GovcError::Io { command, .. }
            | GovcError::Parse { command, .. } => Some(command),
            GovcError::GovcMissing { .. } | GovcError::UnsupportedVersion { .. } => None,
        }
    }

    /// govc's stderr, for a failed run.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            GovcError::Failed(f) => Some(&f.stderr),
            _ => None,
        }
    }

    /// Whether govc's finder found nothing at some path (see
    /// [`GovcError::not_found_path`] for which one).
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// For a [`ErrorKind::NotFound`] failure, the object type and path govc
    /// names: `vm '/DC0/vm/x' not found` gives `("vm", "/DC0/vm/x")`.
    pub fn not_found_path(&self) -> Option<(String, String)> {
        if self.kind() != ErrorKind::NotFound {
            return None;
        }
        not_found_object(&govc_message(self.stderr()?))
    }

    /// Whether this is govc saying that the VM at exactly `path` does not
    /// exist (not some other object, not a changing inventory).
    pub fn is_vm_not_found(&self, path: &str) -> bool {
        self.not_found_path()
            .is_some_and(|(kind, p)| kind == "vm" && p == path)
    }

    /// Whether the call may have reached vCenter although it failed
    /// without a fault from vCenter: a lost connection, a deadline, an
    /// I/O error while govc ran. A task it started may still finish.
    pub fn may_have_reached_server(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::ConnectionLost | ErrorKind::Timeout | ErrorKind::Io | ErrorKind::Other
        )
    }

    /// Whether the VM was in a power state that made the operation fail.
    pub fn is_invalid_power_state(&self) -> bool {
        self.kind() == ErrorKind::InvalidPowerState
    }

    /// A failure of `command` built from its exit code and stderr.
    pub fn failed(command: Command, exit_code: Option<i32>, stderr: impl Into<String>) -> Self {
        let stderr = stderr.into();
        GovcError::Failed(Box::new(Failure {
            kind: classify(&stderr),
            command,
            exit_code,
            stderr,
            resource_pools: Vec::new(),
        }))
    }

    /// A [`GovcError::Parse`]: `command` succeeded but printed `output`,
    /// which is not what was expected (`reason`).
    pub fn parse(command: &Command, reason: impl Into<String>, output: &str) -> Self {
        let mut output = output.to_owned();
        if output.len() > 4096 {
            let mut cut = 4096;
            while !output.is_char_boundary(cut) {
                cut -= 1;
            }
            output.truncate(cut);
        }
        GovcError::Parse {
            command: Box::new(command.clone()),
            reason: reason.into(),
            output,
        }
    }
}

/// govc's message: the stderr without the `<program>: ` prefix govc puts on
/// its error line, and without the usage text it prints after flag errors.
pub fn govc_message(stderr: &str) -> String {
    let mut lines = Vec::new();
    for line in stderr.lines() {
        // govc prints "Usage: <program> <cmd> [OPTIONS]..." after a flag error;
        // the part before it is the message.
        if line.starts_with("Usage: ") {
            break;
        }
        lines.push(strip_program(line));
    }
    let msg = lines.join("\n").trim().to_owned();
    if msg.is_empty() {
        stderr.trim().lines().next().unwrap_or_default().to_owned()
    } else {
        msg
    }
}

/// Removes a leading `govc: ` or `/path/to/govc: `.
fn strip_program(line: &str) -> &str {
    if let Some((head, rest)) = line.split_once(": ")
        && !head.contains(' ')
        && (head == "govc" || head.ends_with("/govc"))
    {
        return rest;
    }
    line
}

/// Classifies a failed govc run by its stderr.
///
/// Order matters: connection and TLS failures are recognised first, because
/// their text may contain words such as "not found" ("no such host"), and a
/// local file govc could not open is never a missing VM.
pub fn classify(stderr: &str) -> ErrorKind {
    let msg = govc_message(stderr);
    let lower = msg.to_lowercase();
    let has = |needle: &str| lower.contains(needle);

    if stderr.trim_start().starts_with("Usage: ")
        || has("flag provided but not defined")
        || has("invalid value \"")
        || has("invalid boolean value")
    {
        return ErrorKind::Usage;
    }
    if has("x509:") || has("tls: ") || has("certificate") && has("verify") {
        return ErrorKind::Tls;
    }
    // A failure to connect: nothing was sent.
    if has("connection refused")
        || has("no such host")
        || has("no route to host")
        || has("network is unreachable")
        || has("dial tcp")
    {
        return ErrorKind::Unreachable;
    }
    // A connection that broke after requests could have been sent.
    if lower == "eof"
        || lower.ends_with(": eof")
        || has("unexpected eof")
        || has("connection reset")
        || has("broken pipe")
        || has("i/o timeout")
        || has("context deadline exceeded")
        || has("server closed idle connection")
        || has("http: server closed")
    {
        return ErrorKind::ConnectionLost;
    }
    if has("login failure")
        || has("invalidlogin")
        || has("incorrect user name or password")
        || has("notauthenticated")
    {
        return ErrorKind::Authentication;
    }
    if has("resource pool resolves to multiple instances") {
        return ErrorKind::AmbiguousResourcePool;
    }
    if has("invalidpowerstate") || has("cannot be performed in the current state") {
        return ErrorKind::InvalidPowerState;
    }
    // vcsim (and a datastore holding another folder's VM of that name)
    // answers FileAlreadyExists: the name cannot be used there either.
    if has("duplicatename") || has("already exists") || has("filealreadyexists") {
        return ErrorKind::DuplicateName;
    }
    if has("no such file or directory") {
        return ErrorKind::Other;
    }
    if has("managedobjectnotfound")
        || has("has already been deleted")
        || has("has not been completely created")
    {
        return ErrorKind::InventoryChanged;
    }
    if not_found_object(&msg).is_some() {
        return ErrorKind::NotFound;
    }
    ErrorKind::Other
}

/// govc's finder's "not found" message, `<type> '<path>' not found`, as
/// (type, path). Nothing else counts: a sentence that merely contains
/// "not found" says nothing about which object is absent.
fn not_found_object(msg: &str) -> Option<(String, String)> {
    let msg = msg.lines().next()?.trim();
    // `object.collect` and `ls` say `<path> not found`.
    if let Some(path) = msg.strip_suffix(" not found")
        && path.starts_with('/')
        && !path.contains('\'')
    {
        return Some(("object".to_owned(), path.to_owned()));
    }
    let rest = msg.strip_suffix("' not found")?;
    let (kind, path) = rest.split_once(" '")?;
    if kind.is_empty() || kind.len() > 40 || kind.contains(':') {
        return None;
    }
    Some((kind.to_owned(), path.to_owned()))
}

impl vmw_hints::Hints for GovcError {
    fn hints(&self) -> Vec<String> {
        self.hint_list()
    }
}
