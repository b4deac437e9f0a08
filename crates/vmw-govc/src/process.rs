//! [`ProcessGovc`]: the backend that runs the real govc binary.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use camino::{Utf8Path, Utf8PathBuf};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;
use vmw_config::{Environment, GovcEnv, VmwareConfig, env};

use crate::requests::GovcVersion;
use crate::{Command, ErrorKind, Govc, GovcError, GovcExt, MIN_VERSION, Output, Version};

/// Runs govc as a child process.
///
/// - argv only, never a shell; no stdin;
/// - the environment is exactly the [`GovcEnv`] (built by vmw-config from the
///   configuration): the caller's other variables do not reach govc, and the
///   password is only ever in the child's environment;
/// - stdout and stderr are captured in full;
/// - each call has a deadline (the command's own, else the default); when it
///   passes the child is killed and reaped, and [`GovcError::Timeout`]
///   returned. A call whose future is dropped kills its child too;
/// - govc runs in its own process group, so a Ctrl-C meant for vmw does not
///   kill a govc call half-way: vmw decides what to do;
/// - govc keeps its login in the session directory of the environment
///   (`GOVMOMI_HOME`), so one login serves many calls.
#[derive(Clone, Debug)]
pub struct ProcessGovc {
    program: Utf8PathBuf,
    env: GovcEnv,
    default_timeout: Duration,
    session_dir: std::sync::Arc<OnceCell<()>>,
}

/// The deadline of commands that set none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl ProcessGovc {
    /// A backend running `program` with exactly `env`.
    pub fn new(program: impl Into<Utf8PathBuf>, env: GovcEnv) -> Self {
        Self {
            program: program.into(),
            env,
            default_timeout: DEFAULT_TIMEOUT,
            session_dir: std::sync::Arc::new(OnceCell::new()),
        }
    }

    /// Finds govc (`explicit`, else `VMW_GOVC`, else `PATH`), checks that its
    /// version is at least [`MIN_VERSION`], and builds the environment from
    /// `config` with vmw's session directory.
    pub async fn discover(
        config: &VmwareConfig,
        explicit: Option<&Utf8Path>,
        caller: &Environment,
    ) -> Result<Self, GovcError> {
        let program = crate::find_govc(explicit, caller)?;
        let govc = Self::new(program, config.govc_env(caller.govc_session_dir(), caller));
        govc.check_version().await?;
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

    /// The govc binary.
    pub fn program(&self) -> &Utf8Path {
        &self.program
    }

    /// The environment govc runs with.
    pub fn env(&self) -> &GovcEnv {
        &self.env
    }

    /// Creates the session directory (mode 0700) once.
    async fn ensure_session_dir(&self) -> std::io::Result<()> {
        let Some(dir) = self.env.get(env::GOVMOMI_HOME) else {
            return Ok(());
        };
        let dir = Utf8PathBuf::from(dir);
        self.session_dir
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&dir)
                })
                .await
                .map_err(std::io::Error::other)?
            })
            .await
            .map(|_| ())
    }
}

/// One gate per govc session (session directory, URL, user, TLS mode): until
/// a call has succeeded, calls wait for each other. govc writes its session
/// file on login and other govc processes read it; several processes
/// logging in at once can read a half-written file and fail with `EOF`. The
/// gate makes the first call log in alone; once the session exists, calls
/// run concurrently.
type Gate = Arc<tokio::sync::Mutex<bool>>;

static SESSION_GATES: LazyLock<Mutex<HashMap<String, Gate>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl ProcessGovc {
    fn session_gate(&self) -> Option<Gate> {
        let home = self.env.get(env::GOVMOMI_HOME)?;
        let key = format!(
            "{home}\0{}\0{}\0{}",
            self.env.get(env::GOVC_URL).unwrap_or_default(),
            self.env.get(env::GOVC_USERNAME).unwrap_or_default(),
            self.env.get(env::GOVC_INSECURE).unwrap_or_default()
        );
        let mut gates = SESSION_GATES.lock().unwrap_or_else(|e| e.into_inner());
        Some(gates.entry(key).or_default().clone())
    }
}

#[async_trait]
impl Govc for ProcessGovc {
    async fn run(&self, command: &Command) -> Result<Output, GovcError> {
        if let Some(gate) = self.session_gate() {
            let mut logged_in = gate.lock().await;
            if !*logged_in {
                let result = self.run_process(command).await;
                // Any answer from vCenter means govc got a session.
                *logged_in = match &result {
                    Ok(_) => true,
                    Err(e) => !matches!(
                        e.kind(),
                        ErrorKind::Authentication
                            | ErrorKind::Unreachable
                            | ErrorKind::Tls
                            | ErrorKind::Timeout
                            | ErrorKind::GovcMissing
                            | ErrorKind::Io
                            | ErrorKind::Other
                    ),
                };
                return result;
            }
        }
        self.run_process(command).await
    }
}

impl ProcessGovc {
    async fn run_process(&self, command: &Command) -> Result<Output, GovcError> {
        let io_error = |source: std::io::Error| GovcError::Io {
            command: Box::new(command.clone()),
            program: self.program.clone(),
            source,
        };
        self.ensure_session_dir().await.map_err(io_error)?;

        let deadline = command.time_limit().unwrap_or(self.default_timeout);
        let started = Instant::now();
        tracing::debug!(command = %command, "govc: start");

        let mut child = tokio::process::Command::new(&self.program)
            .args(command.argv())
            .env_clear()
            .envs(self.env.expose_all())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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
        let finished = tokio::time::timeout(deadline, async {
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

        let (status, stdout, stderr) = match finished {
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
