//! [`ProcessGovc`]: the backend that runs the real govc binary, and how it
//! shares govc's session cache between calls and processes.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use async_trait::async_trait;
use camino::{Utf8Path, Utf8PathBuf};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;
use vmw_config::{Environment, VmwareConfig};

use crate::requests::GovcVersion;
use crate::session;
use crate::{
    Command, ErrorKind, Govc, GovcError, GovcExt, GovcTarget, MIN_VERSION, Output, Version,
};

/// Runs govc as a child process.
///
/// - argv only, never a shell; no stdin;
/// - the environment is exactly the one rendered from the [`GovcTarget`]
///   at each spawn: the caller's other variables do not reach govc, and the
///   password is only ever in the child's environment;
/// - stdout and stderr are captured in full: a read's through pipes, a
///   change's through unnamed temporary files, so that a change vCenter
///   received is finished by govc even when vmw is killed outright (govc
///   dies on a write to a pipe nobody reads);
/// - each call has a deadline (the command's own, else the default); when it
///   passes the child is killed and reaped, and [`GovcError::Timeout`]
///   returned. A call whose future is dropped kills its child too;
/// - govc runs in its own process group, so a Ctrl-C meant for vmw does not
///   kill a govc call half-way: vmw decides what to do;
/// - govc keeps its login in the session directory of the target
///   ([`GovcTarget::session_dir`], handed to govc as `GOVMOMI_HOME`), so
///   one login serves many calls;
/// - the first call of a process that logs in runs alone, holding the lock
///   file [`LOGIN_LOCK_FILE`] of the session directory, until one such call
///   has succeeded: govc writes its session file in place, and concurrent
///   first logins (of this process or of other vmw processes) could read it
///   half-written. `govc version`, which never logs in, does not count;
/// - a read (`about`, `find`, `vm.info`, `object.collect`, `vm.ip`, ...)
///   that lost its connection (`EOF`, connection reset) runs once more,
///   within the same deadline; a change (`vm.clone`, `vm.power`,
///   `vm.destroy`, ...) never runs twice;
/// - once per process, session directories of the session root not used
///   for [`SESSION_STALE_AFTER`] are removed (best effort); the one in use
///   is marked used.
#[derive(Clone, Debug)]
pub struct ProcessGovc {
    program: Utf8PathBuf,
    target: GovcTarget,
    default_timeout: Duration,
    retry_reads: bool,
    session_dir: std::sync::Arc<OnceCell<()>>,
}

/// The file in the session root that remembers which govc binaries had
/// their version checked (path, size, modification time, version).
pub const VERSIONS_FILE: &str = "govc-versions";

/// What identifies a govc binary for [`VERSIONS_FILE`]: its path, size and
/// modification time.
fn binary_stamp(program: &Utf8Path) -> Option<String> {
    let meta = std::fs::metadata(program).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{program}\t{}\t{modified}", meta.len()))
}

/// Whether `stamp`'s binary was found new enough before.
fn checked_before(file: &Utf8Path, stamp: &str) -> bool {
    std::fs::read_to_string(file).is_ok_and(|text| {
        text.lines().any(|l| {
            l.rsplit_once('\t').is_some_and(|(s, version)| {
                s == stamp && version.parse::<Version>().is_ok_and(|v| v >= MIN_VERSION)
            })
        })
    })
}

/// Remembers that `stamp`'s binary is `version` (best effort: a file that
/// cannot be written only means the check runs again next time).
fn remember_checked(file: &Utf8Path, stamp: &str, version: &Version) {
    let path = stamp.split('\t').next().unwrap_or_default();
    let mut lines: Vec<String> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split('\t').next() != Some(path))
        .map(str::to_owned)
        .collect();
    lines.push(format!("{stamp}\t{version}"));
    let Some(dir) = file.parent() else { return };
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let tmp = dir.join(format!(".{VERSIONS_FILE}.{}", std::process::id()));
        std::fs::write(&tmp, lines.join("\n") + "\n")?;
        std::fs::rename(&tmp, file)
    });
    if let Err(e) = written {
        tracing::debug!(file = %file, error = %e, "could not remember the govc version");
    }
}

/// The deadline of commands that set none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The file in the session directory that vmw processes lock while they
/// log in for the first time.
pub const LOGIN_LOCK_FILE: &str = "login.lock";

/// Session directories not used for this long are removed.
pub const SESSION_STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 60 * 60);

impl ProcessGovc {
    /// A backend running `program` against `target`, with exactly the
    /// environment rendered from it.
    pub fn new(program: impl Into<Utf8PathBuf>, target: GovcTarget) -> Self {
        Self {
            program: program.into(),
            target,
            default_timeout: DEFAULT_TIMEOUT,
            retry_reads: true,
            session_dir: std::sync::Arc::new(OnceCell::new()),
        }
    }

    /// Finds govc (`explicit`, else `VMW_GOVC`, else `PATH`), checks that its
    /// version is at least [`MIN_VERSION`], and targets `config` with vmw's
    /// session root ([`Environment::govc_session_dir`]) and the
    /// pass-through variables of `caller`. A binary whose version was
    /// checked before (same path, size and modification time, remembered
    /// in [`VERSIONS_FILE`] in the session root) is not run again for it.
    pub async fn discover(
        config: &VmwareConfig,
        explicit: Option<&Utf8Path>,
        caller: &Environment,
    ) -> Result<Self, GovcError> {
        let program = crate::find_govc(explicit, caller)?;
        let target = GovcTarget::new(config, caller.govc_session_dir(), caller);
        let govc = Self::new(program, target);
        let known = govc.target.session_root().map(|r| r.join(VERSIONS_FILE));
        let stamp = binary_stamp(&govc.program);
        if let (Some(file), Some(stamp)) = (&known, &stamp)
            && checked_before(file, stamp)
        {
            return Ok(govc);
        }
        let version = govc.check_version().await?;
        if let (Some(file), Some(stamp)) = (known, stamp) {
            remember_checked(&file, &stamp, &version);
        }
        Ok(govc)
    }

    /// Runs `govc version` and fails unless it is at least [`MIN_VERSION`].
    pub async fn check_version(&self) -> Result<Version, GovcError> {
        let unsupported = |found: String| GovcError::UnsupportedVersion {
            path: self.program.clone(),
            found,
            required: MIN_VERSION,
        };
        match self.exec(&GovcVersion).await {
            Ok(v) if v >= MIN_VERSION => Ok(v),
            Ok(v) => Err(unsupported(v.to_string())),
            Err(GovcError::Parse { output, .. }) => Err(unsupported(format!(
                "of unknown version (`govc version` printed {:?})",
                output.trim()
            ))),
            Err(e) => Err(e),
        }
    }

    /// Sets the deadline of commands that set none.
    #[must_use]
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Whether a read that lost its connection runs once more (the
    /// default); `false` reports the first failure as it is.
    #[must_use]
    pub fn retry_reads(mut self, retry: bool) -> Self {
        self.retry_reads = retry;
        self
    }

    /// The govc binary.
    pub fn program(&self) -> &Utf8Path {
        &self.program
    }

    /// The vCenter, login and session directory govc runs with.
    pub fn target(&self) -> &GovcTarget {
        &self.target
    }

    /// Once per backend (and its clones): creates the session directory
    /// (mode 0700) and marks it used; once per process and session root,
    /// removes stale session directories.
    async fn ensure_session_dir(&self) -> std::io::Result<()> {
        let Some(dir) = self.target.session_dir() else {
            return Ok(());
        };
        let root = self.target.session_root().map(Utf8Path::to_owned);
        self.session_dir
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&dir)?;
                    let now = SystemTime::now();
                    if let Err(e) = mark_used(&dir, now) {
                        tracing::debug!(dir = %dir, error = %e, "govc: could not mark the session directory used");
                    }
                    if let Some(root) = root {
                        let first = PRUNED_ROOTS
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(root.clone());
                        if first {
                            prune_stale_sessions(&root, &dir, now);
                        }
                    }
                    Ok(())
                })
                .await
                .map_err(std::io::Error::other)?
            })
            .await
            .map(|_| ())
    }
}

/// Sets the modification time of `dir` to `now`.
fn mark_used(dir: &Utf8Path, now: SystemTime) -> std::io::Result<()> {
    std::fs::File::open(dir)?.set_modified(now)
}

/// Removes the session directories in `root` (named by
/// [`session::key`]) other than `keep` that were last used more than
/// [`SESSION_STALE_AFTER`] before `now`. Best effort: what cannot be read
/// or removed stays. Returns how many were removed.
pub(crate) fn prune_stale_sessions(root: &Utf8Path, keep: &Utf8Path, now: SystemTime) -> usize {
    let entries = match root.read_dir_utf8() {
        Ok(entries) => entries,
        Err(e) => {
            tracing::debug!(root = %root, error = %e, "govc: cannot list session directories");
            return 0;
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if !session::is_key(entry.file_name()) || path == keep {
            continue;
        }
        // symlink_metadata: a link is never followed, nor removed.
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        let stale = meta.is_dir()
            && meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > SESSION_STALE_AFTER);
        if !stale {
            continue;
        }
        match std::fs::remove_dir_all(path) {
            Ok(()) => {
                tracing::debug!(dir = %path, "govc: removed a stale session directory");
                removed += 1;
            }
            Err(e) => {
                tracing::debug!(dir = %path, error = %e, "govc: could not remove a stale session directory");
            }
        }
    }
    removed
}

/// One gate per govc session (session directory, URL, user, TLS mode):
/// until a call that logs in has succeeded, such calls wait for each other.
/// govc writes its session file in place on login and other govc processes
/// read it; several processes logging in at once can read a half-written
/// file and fail with `EOF`. The gate makes the first login of this process
/// run alone (and, with the lock file of [`LOGIN_LOCK_FILE`], apart from
/// the first logins of other vmw processes); once a session exists, calls
/// run concurrently.
type Gate = Arc<tokio::sync::Mutex<bool>>;

static SESSION_GATES: LazyLock<Mutex<HashMap<String, Gate>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Session roots already pruned by this process.
static PRUNED_ROOTS: LazyLock<Mutex<HashSet<Utf8PathBuf>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

impl ProcessGovc {
    fn session_gate(&self) -> Option<Gate> {
        let key = self.target.session_identity()?;
        let mut gates = SESSION_GATES.lock().unwrap_or_else(|e| e.into_inner());
        Some(gates.entry(key).or_default().clone())
    }

    /// Takes the login lock of the session directory, waiting (without
    /// blocking a thread) until `until`. `Ok(None)` when there is no
    /// session directory, or when the file system cannot lock: the lock is
    /// advisory, and the in-process gate still holds.
    async fn lock_login(&self, until: Instant) -> Result<Option<std::fs::File>, LockWait> {
        let Some(home) = self.target.session_dir() else {
            return Ok(None);
        };
        let path = home.join(LOGIN_LOCK_FILE);
        let file = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .mode(0o600)
                    .open(&path)
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
        };
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "govc: cannot open the login lock; logging in without it");
                return Ok(None);
            }
        };
        let mut pause = Duration::from_millis(10);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    tracing::warn!(path = %path, error = %e, "govc: cannot take the login lock; logging in without it");
                    return Ok(None);
                }
            }
            let now = Instant::now();
            if now >= until {
                return Err(LockWait);
            }
            tokio::time::sleep(pause.min(until - now)).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

/// The login lock was still taken when the deadline passed.
struct LockWait;

#[async_trait]
impl Govc for ProcessGovc {
    async fn run(&self, command: &Command) -> Result<Output, GovcError> {
        let deadline = command.time_limit().unwrap_or(self.default_timeout);
        let until = Instant::now() + deadline;
        let timeout = || GovcError::Timeout {
            command: Box::new(command.clone()),
            after: deadline,
        };
        self.ensure_session_dir()
            .await
            .map_err(|e| self.io_error(command, e))?;

        let gate = if logs_in(command) {
            self.session_gate()
        } else {
            None
        };
        let Some(gate) = gate else {
            return self.run_retrying(command, deadline, until).await;
        };
        let mut logged_in = tokio::time::timeout_at(until, gate.lock())
            .await
            .map_err(|_| timeout())?;
        if *logged_in {
            drop(logged_in);
            return self.run_retrying(command, deadline, until).await;
        }
        let lock = self.lock_login(until).await.map_err(|LockWait| {
            tracing::warn!(command = %command, "govc: another vmw process kept the login lock until the deadline");
            timeout()
        })?;
        let result = self.run_retrying(command, deadline, until).await;
        *logged_in = proves_session(&result);
        drop(lock);
        result
    }
}

/// govc subcommands that only read: running one twice has the effect of
/// running it once, so a read that lost its connection may run again.
/// Everything else (clone, power, change, destroy, import, ...) never runs
/// twice: vCenter may have done it already.
const READS: &[&str] = &[
    "about",
    "datacenter.info",
    "datastore.info",
    "datastore.ls",
    "device.info",
    "device.ls",
    "events",
    "find",
    "folder.info",
    "host.info",
    "import.spec",
    "library.info",
    "library.ls",
    "ls",
    "object.collect",
    "pool.info",
    "session.ls",
    "tags.info",
    "tags.ls",
    "tree",
    "version",
    "vm.info",
    "vm.ip",
];

/// Whether the govc subcommand `name` only reads (see [`READS`]).
pub(crate) fn is_read(name: &str) -> bool {
    READS.contains(&name)
}

/// Whether govc's failure says the connection to vCenter, or govc's
/// session file, ended early: `EOF` or `unexpected EOF` (alone, when the
/// session file was read half-written; after `Post "<url>": ` when the
/// connection closed), or a reset connection.
pub(crate) fn lost_connection(err: &GovcError) -> bool {
    let GovcError::Failed(f) = err else {
        return false;
    };
    let msg = f.message().to_lowercase();
    let msg = msg.trim();
    msg == "eof"
        || msg == "unexpected eof"
        || msg.ends_with(": eof")
        || msg.ends_with(": unexpected eof")
        || msg.contains("connection reset by peer")
        || msg.contains("server closed idle connection")
}

/// Whether `command` makes govc log in. `version` does not, nor does
/// `import.spec` of a local file; every other command does.
pub(crate) fn logs_in(command: &Command) -> bool {
    match command.name() {
        "version" => false,
        "import.spec" => command
            .positional()
            .first()
            .is_some_and(|p| p.starts_with("https://") || p.starts_with("http://")),
        _ => true,
    }
}

/// Whether the result of a command that logs in shows that govc holds a
/// session now: it succeeded, or vCenter answered it with a fault only a
/// logged-in client gets. Failures before or at the login (refused, TLS,
/// wrong password, usage, timeout, anything unknown) do not.
fn proves_session(result: &Result<Output, GovcError>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::NotFound
                | ErrorKind::InventoryChanged
                | ErrorKind::InvalidPowerState
                | ErrorKind::DuplicateName
                | ErrorKind::AmbiguousResourcePool
        ),
    }
}

/// Everything written to `file` (an output file of a finished child).
fn read_back(mut file: std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek};
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// How long to wait before running a read again.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

impl ProcessGovc {
    fn io_error(&self, command: &Command, source: std::io::Error) -> GovcError {
        GovcError::Io {
            command: Box::new(command.clone()),
            program: self.program.clone(),
            source,
        }
    }

    /// Runs `command`, and once more when it is a read that lost its
    /// connection and time is left.
    async fn run_retrying(
        &self,
        command: &Command,
        deadline: Duration,
        until: Instant,
    ) -> Result<Output, GovcError> {
        let first = self.run_process(command, deadline, until).await;
        match first {
            Err(e)
                if self.retry_reads
                    && is_read(command.name())
                    && lost_connection(&e)
                    && until.saturating_duration_since(Instant::now()) > RETRY_PAUSE =>
            {
                tracing::info!(command = %command, error = %e, "govc: a read lost its connection; running it once more");
                tokio::time::sleep(RETRY_PAUSE).await;
                self.run_process(command, deadline, until).await
            }
            other => other,
        }
    }
    /// Runs govc once. `deadline` is the command's time limit (for the
    /// error); the child is killed at `until`.
    async fn run_process(
        &self,
        command: &Command,
        deadline: Duration,
        until: Instant,
    ) -> Result<Output, GovcError> {
        let io_error = |source: std::io::Error| self.io_error(command, source);
        let started = Instant::now();
        tracing::debug!(command = %command, "govc: start");

        // A change writes its output to files, not pipes: should vmw die
        // outright (SIGKILL, OOM), govc goes on with nothing to die on (a
        // write to a pipe whose reader is gone kills it), so a clone that
        // reached vCenter ends with its marker written.
        let files = if is_read(command.name()) {
            None
        } else {
            Some((
                tempfile::tempfile().map_err(io_error)?,
                tempfile::tempfile().map_err(io_error)?,
            ))
        };
        let (out, err) = match &files {
            Some((out, err)) => (
                Stdio::from(out.try_clone().map_err(io_error)?),
                Stdio::from(err.try_clone().map_err(io_error)?),
            ),
            None => (Stdio::piped(), Stdio::piped()),
        };
        let mut child = tokio::process::Command::new(&self.program)
            .args(command.argv())
            .env_clear()
            .envs(self.target.child_env())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    GovcError::GovcMissing {
                        searched: vec![self.program.to_string()],
                    }
                } else {
                    io_error(e)
                }
            })?;

        let mut stdout_pipe = child.stdout.take();
        let mut stderr_pipe = child.stderr.take();
        let finished = tokio::time::timeout_at(until, async {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let read_out = async {
                match stdout_pipe.as_mut() {
                    Some(p) => p.read_to_end(&mut stdout).await.map(|_| ()),
                    None => Ok(()),
                }
            };
            let read_err = async {
                match stderr_pipe.as_mut() {
                    Some(p) => p.read_to_end(&mut stderr).await.map(|_| ()),
                    None => Ok(()),
                }
            };
            let (o, e, status) = tokio::join!(read_out, read_err, child.wait());
            o?;
            e?;
            Ok::<_, std::io::Error>((status?, stdout, stderr))
        })
        .await;

        let (status, mut stdout, mut stderr) = match finished {
            Ok(result) => result.map_err(io_error)?,
            Err(_elapsed) => {
                // Kill and reap: no zombie is left behind.
                if let Err(e) = child.kill().await {
                    tracing::warn!(command = %command, error = %e, "govc: could not kill timed-out process");
                }
                tracing::warn!(command = %command, ?deadline, "govc: deadline passed, killed");
                return Err(GovcError::Timeout {
                    command: Box::new(command.clone()),
                    after: deadline,
                });
            }
        };
        if let Some((out, err)) = files {
            (stdout, stderr) = tokio::task::spawn_blocking(move || {
                Ok::<_, std::io::Error>((read_back(out)?, read_back(err)?))
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(io_error)?;
        }

        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        if status.success() {
            tracing::debug!(command = %command, ?elapsed, "govc: ok");
            Ok(Output { stdout, stderr })
        } else {
            let err = GovcError::failed(command.clone(), status.code(), stderr);
            tracing::debug!(command = %command, ?elapsed, kind = %err.kind(), "govc: failed");
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(name: &str, stderr: &str) -> GovcError {
        GovcError::failed(Command::new(name), Some(1), stderr)
    }

    #[test]
    fn reads_are_retried_changes_never() {
        for read in [
            "about",
            "version",
            "find",
            "ls",
            "vm.info",
            "vm.ip",
            "object.collect",
            "import.spec",
            "datastore.ls",
        ] {
            assert!(is_read(read), "{read}");
        }
        for change in [
            "vm.clone",
            "vm.create",
            "vm.destroy",
            "vm.power",
            "vm.change",
            "vm.markastemplate",
            "vm.markasvm",
            "object.rename",
            "import.ova",
            "import.ovf",
            "folder.create",
            "vm.question",
            "",
            "VM.INFO",
        ] {
            assert!(!is_read(change), "{change}");
        }
    }

    #[test]
    fn lost_connections_are_recognised_by_their_messages() {
        for stderr in [
            "govc: EOF\n",
            "/usr/bin/govc: unexpected EOF\n",
            "govc: Post \"https://127.0.0.1:47001/sdk\": EOF\n",
            "govc: Post \"https://vc/sdk\": unexpected EOF\n",
            "govc: Post \"https://vc/sdk\": read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer\n",
            "govc: Post \"https://vc/sdk\": http: server closed idle connection\n",
        ] {
            assert!(lost_connection(&failed("about", stderr)), "{stderr}");
        }
        for stderr in [
            "govc: ServerFaultCode: Login failure\n",
            "govc: vm 'x' not found\n",
            "govc: Post \"https://vc/sdk\": dial tcp 127.0.0.1:1: connect: connection refused\n",
            "govc: the EOF marker of the archive\n",
            "",
        ] {
            assert!(!lost_connection(&failed("about", stderr)), "{stderr}");
        }
        let timeout = GovcError::Timeout {
            command: Box::new(Command::new("about")),
            after: Duration::from_secs(1),
        };
        assert!(!lost_connection(&timeout));
    }

    #[test]
    fn version_and_local_import_spec_do_not_log_in() {
        assert!(!logs_in(&Command::new("version")));
        assert!(!logs_in(&Command::new("import.spec").arg("/tmp/a.ova")));
        assert!(logs_in(
            &Command::new("import.spec").arg("https://example.com/a.ova")
        ));
        for name in ["about", "find", "vm.info", "vm.clone", "object.collect"] {
            assert!(logs_in(&Command::new(name)), "{name}");
        }
    }

    #[test]
    fn only_success_or_a_server_fault_proves_a_session() {
        assert!(proves_session(&Ok(Output::default())));
        assert!(proves_session(&Err(failed(
            "vm.info",
            "govc: vm 'x' not found\n"
        ))));
        assert!(proves_session(&Err(failed(
            "vm.clone",
            "govc: ServerFaultCode: DuplicateName\n"
        ))));
        for stderr in [
            "govc: ServerFaultCode: Login failure\n",
            "govc: Post \"https://vc/sdk\": dial tcp 127.0.0.1:1: connect: connection refused\n",
            "govc: Post \"https://vc/sdk\": x509: certificate signed by unknown authority\n",
            "govc: EOF\n",
            "flag provided but not defined: -x\nUsage: govc about [OPTIONS]\n",
        ] {
            assert!(!proves_session(&Err(failed("about", stderr))), "{stderr}");
        }
    }

    #[test]
    fn stale_session_directories_are_pruned_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        let now = SystemTime::now();
        let old = now - SESSION_STALE_AFTER - Duration::from_secs(60);
        let recent = now - SESSION_STALE_AFTER + Duration::from_secs(3600);
        let key = |n: u8| format!("{:032x}", u128::from(n) + 0xabc);
        let make = |name: &str, mtime: SystemTime| {
            let dir = root.join(name);
            std::fs::create_dir_all(dir.join("sessions")).unwrap();
            std::fs::write(dir.join("sessions").join("x"), "{}").unwrap();
            mark_used(&dir, mtime).unwrap();
            dir
        };
        let stale = make(&key(1), old);
        let fresh = make(&key(2), recent);
        let in_use = make(&key(3), old);
        let not_ours = make("sessions", old);
        let file_named_like_a_key = root.join(key(4));
        std::fs::write(&file_named_like_a_key, "").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file_named_like_a_key)
            .unwrap()
            .set_modified(old)
            .unwrap();

        assert_eq!(prune_stale_sessions(root, &in_use, now), 1);
        assert!(!stale.exists());
        for kept in [&fresh, &in_use, &not_ours, &file_named_like_a_key] {
            assert!(kept.exists(), "{kept}");
        }
        // A missing root is not an error.
        assert_eq!(prune_stale_sessions(&root.join("nope"), &in_use, now), 0);
    }

    #[test]
    fn mark_used_sets_the_directory_time() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        mark_used(dir, then).unwrap();
        assert_eq!(dir.metadata().unwrap().modified().unwrap(), then);
    }
}
