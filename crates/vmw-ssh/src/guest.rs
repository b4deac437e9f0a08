//! [`Guest`]: the transport-neutral view of a guest, and everything built
//! on it ([`GuestExt`]): scripts, packages, boot ids, readiness, cleaning
//! and restarts. [`crate::SshGuest`] is the real transport; tests plug in a
//! scripted one.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use camino::Utf8Path;
use tokio::time::Instant;

use crate::{Cmd, ExecOptions, ExecResult, SshError, WaitFor};

/// A guest that runs commands and moves files.
#[async_trait]
pub trait Guest: Send + Sync {
    /// The instance's name, for errors.
    fn instance(&self) -> &str;

    /// `host:port`, for errors.
    fn address(&self) -> String;

    /// The user commands run as.
    fn user(&self) -> &str;

    /// Runs a command. A non-zero exit is a result; transport failures are
    /// errors.
    async fn execute(&self, cmd: &Cmd, options: &ExecOptions) -> Result<ExecResult, SshError>;

    /// Copies a local file to the guest, streaming it.
    async fn push_file(&self, local: &Utf8Path, remote: &str) -> Result<(), SshError>;

    /// Copies a file of the guest to a local path, streaming it.
    async fn pull_file(&self, remote: &str, local: &Utf8Path) -> Result<(), SshError>;

    /// Drops the connection (the next call connects again).
    async fn disconnect(&self);
}

/// How long readiness waits take, how often they retry, and what they make
/// of cloud-init's errors.
#[derive(Clone, Copy, Debug)]
pub struct ReadyTimeouts {
    /// The whole of [`GuestExt::wait_ready`] (and of a reboot wait).
    pub ready: Duration,
    /// Pause between attempts.
    pub poll: Duration,
    /// What a cloud-init that finished with errors means to the wait.
    pub cloud_init_errors: CloudInitErrors,
}

impl Default for ReadyTimeouts {
    fn default() -> Self {
        Self {
            ready: Duration::from_secs(10 * 60),
            poll: Duration::from_secs(2),
            cloud_init_errors: CloudInitErrors::default(),
        }
    }
}

/// What a readiness wait makes of a cloud-init that finished with errors
/// (`cloud-init status` says `error`, exit 1). Recoverable errors
/// (`degraded done`, exit 2) are logged and never fail a wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CloudInitErrors {
    /// The wait fails ([`SshError::Failed`], cloud-init's status in its
    /// detail): the guest is not what the user data asked for.
    #[default]
    Fail,
    /// The wait ends, as for a guest that is ready, and cloud-init's status
    /// is logged as a warning: the caller judges cloud-init's result, as
    /// pycloudlib's callers do (a test of user data meant to fail).
    Accept,
}

/// The guest file holding the id of the current boot.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// What [`GuestExt::clean`] runs, in order, as root: cloud-init's own
/// cleanup (so the next boot runs cloud-init again), an empty machine id
/// (systemd makes a new one on the next boot), no old syslog, and the
/// guest's writes flushed to its disk. The machine id is emptied, not set
/// to `uninitialized`: that word means "first boot" to systemd, whose
/// first-boot wizard (Debian enables it) then waits on the console for
/// an answer and the boot never finishes. A snapshot clones the disk of the running
/// VM: without the flush, the cleanup may still sit in the guest's page
/// cache and the image would carry the old state.
pub const CLEAN_STEPS: [(&str, &str); 4] = [
    ("cloud-init clean --logs", "cloud-init clean --logs"),
    ("empty /etc/machine-id", "truncate -s 0 /etc/machine-id"),
    ("remove /var/log/syslog", "rm -f /var/log/syslog"),
    ("flush writes to disk", "sync"),
];

/// Operations built on [`Guest`], for every guest.
#[async_trait]
pub trait GuestExt: Guest {
    /// Runs a command that must succeed; a non-zero exit becomes
    /// [`SshError::Failed`] naming `what`.
    async fn check(
        &self,
        what: &str,
        cmd: &Cmd,
        options: &ExecOptions,
    ) -> Result<ExecResult, SshError> {
        let result = self.execute(cmd, options).await?;
        if result.ok() {
            Ok(result)
        } else {
            Err(SshError::Failed {
                instance: self.instance().to_owned(),
                address: self.address(),
                what: what.to_owned(),
                detail: result.describe(),
            })
        }
    }

    /// Whether commands need `sudo` to run as root.
    fn needs_sudo(&self) -> bool {
        self.user() != "root"
    }

    /// Runs `script` (any interpreter its `#!` line names, else `sh`): it is
    /// sent on standard input, stored in a temporary file, made executable,
    /// run, and removed.
    async fn run_script(&self, script: &str, sudo: bool) -> Result<ExecResult, SshError> {
        let runner = "f=$(mktemp) || exit 1; cat > \"$f\"; chmod +x \"$f\"; \
                      if head -n 1 \"$f\" | grep -q '^#!'; then \"$f\"; else sh \"$f\"; fi; \
                      rc=$?; rm -f \"$f\"; exit $rc";
        self.execute(
            &Cmd::from(runner),
            &ExecOptions {
                sudo,
                stdin: Some(script.as_bytes().to_vec()),
            },
        )
        .await
    }

    /// `apt-get install` of `packages`, as root.
    async fn install(&self, packages: &[&str]) -> Result<ExecResult, SshError> {
        let mut argv = vec![
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "--yes",
            "--quiet",
        ];
        argv.extend_from_slice(packages);
        self.check(
            &format!("installing {}", packages.join(" ")),
            &Cmd::from(argv),
            &ExecOptions {
                sudo: self.needs_sudo(),
                stdin: None,
            },
        )
        .await
    }

    /// Refreshes the package index and upgrades everything, as root.
    async fn update(&self) -> Result<ExecResult, SshError> {
        self.check(
            "updating packages",
            &Cmd::from(
                "DEBIAN_FRONTEND=noninteractive apt-get update --quiet && \
                 DEBIAN_FRONTEND=noninteractive apt-get dist-upgrade --yes --quiet",
            ),
            &ExecOptions {
                sudo: self.needs_sudo(),
                stdin: None,
            },
        )
        .await
    }

    /// The id of the current boot.
    async fn boot_id(&self) -> Result<String, SshError> {
        let r = self
            .check(
                "reading the boot id",
                &Cmd::from(["cat", BOOT_ID_PATH]),
                &ExecOptions::default(),
            )
            .await?;
        Ok(r.stdout.trim().to_owned())
    }

    /// Cleans the guest for a snapshot ([`CLEAN_STEPS`]), as root; stops at
    /// the first step that fails, naming it.
    async fn clean(&self) -> Result<(), SshError> {
        let options = ExecOptions {
            sudo: self.needs_sudo(),
            stdin: None,
        };
        for (what, line) in CLEAN_STEPS {
            self.check(what, &Cmd::from(line), &options).await?;
        }
        Ok(())
    }

    /// Waits until a command succeeds over SSH (connection refused, reset,
    /// authentication failures while the guest boots are retried), within
    /// `timeouts.ready`. Errors that waiting cannot cure (a changed host
    /// key, an unusable private key) end the wait at once.
    async fn wait_ssh(&self, timeouts: ReadyTimeouts) -> Result<(), SshError> {
        ssh_until(self, Instant::now(), timeouts).await
    }

    /// A [`SshError::Timeout`] of this guest.
    fn timed_out(&self, waiting_for: WaitFor, waited: Duration, last: Option<String>) -> SshError {
        SshError::Timeout {
            instance: self.instance().to_owned(),
            address: self.address(),
            waiting_for,
            waited,
            last,
        }
    }

    /// Waits until a command succeeds over SSH, then until cloud-init has
    /// finished: `systemctl is-active cloud-init.target` is polled while
    /// systemd runs, then `cloud-init status --wait --long` must report
    /// done (exit 0; exit 2, "degraded", is done with recoverable errors
    /// and is logged).
    ///
    /// The guest may reboot meanwhile (cloud-init's `power_state`, or
    /// `package_reboot_if_required`): when the connection drops, is
    /// refused or times out, or `cloud-init status` is killed by a signal,
    /// the wait reconnects and starts over from the SSH stage. A
    /// `cloud-init status` that reports an error is still an error, and
    /// so are a changed host key and an unusable private key.
    ///
    /// The whole wait is bounded by `timeouts.ready`; a timeout says which
    /// stage did not finish, and what was seen last.
    async fn wait_ready(&self, timeouts: ReadyTimeouts) -> Result<(), SshError> {
        self.wait_ready_with(timeouts, &|| {}).await
    }

    /// [`GuestExt::wait_ready`], calling `on_ssh` each time SSH accepts a
    /// command and the wait for cloud-init begins (again after a reboot).
    async fn wait_ready_with(
        &self,
        timeouts: ReadyTimeouts,
        on_ssh: &(dyn Fn() + Send + Sync),
    ) -> Result<(), SshError> {
        let started = Instant::now();
        let remaining = || timeouts.ready.saturating_sub(started.elapsed());
        // The stage the guest went away at, and how, when it did.
        let mut dropped: Option<(WaitFor, String)> = None;
        loop {
            match ready_pass(self, started, timeouts, on_ssh).await {
                Ok(()) => return Ok(()),
                Err(Halt::Stop(SshError::Timeout {
                    waiting_for,
                    last: None,
                    ..
                })) if dropped.is_some() => {
                    // Out of time before the guest said anything new: the
                    // drop is the last news, and when SSH never answered
                    // again, the stage it interrupted is what did not
                    // finish.
                    let (stage, why) = dropped.unwrap_or((waiting_for, String::new()));
                    let stage = if waiting_for == WaitFor::Ssh {
                        stage
                    } else {
                        waiting_for
                    };
                    return Err(self.timed_out(stage, timeouts.ready, Some(why)));
                }
                Err(Halt::Stop(e)) => return Err(e),
                Err(Halt::Retry { stage, why }) => {
                    tracing::info!(
                        instance = self.instance(),
                        waiting_for = %stage,
                        error = %why,
                        "guest went away while waiting (rebooting?); reconnecting"
                    );
                    self.disconnect().await;
                    if remaining().is_zero() {
                        return Err(self.timed_out(stage, timeouts.ready, Some(why)));
                    }
                    tokio::time::sleep(timeouts.poll.min(remaining())).await;
                    dropped = Some((stage, why));
                }
            }
        }
    }

    /// Restarts the guest through `power_cycle` (which stops and starts the
    /// VM) and waits until it is back. When the guest answers before the
    /// restart, its boot id is read first and the wait lasts until a
    /// different boot id is read (the same one means the guest never went
    /// down); when it does not answer, the restart is done and the guest
    /// waited for.
    async fn restart_with<F, Fut, E>(
        &self,
        power_cycle: F,
        timeouts: ReadyTimeouts,
    ) -> Result<(), E>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<(), E>> + Send,
        E: From<SshError> + Send,
    {
        let before =
            match tokio::time::timeout(timeouts.poll.max(Duration::from_secs(5)), self.boot_id())
                .await
            {
                Ok(Ok(id)) => Some(id),
                _ => None,
            };
        self.disconnect().await;
        power_cycle().await?;
        let Some(before) = before else {
            return Ok(self.wait_ready(timeouts).await?);
        };
        let started = Instant::now();
        let mut last = None;
        loop {
            let remaining = timeouts.ready.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Err(SshError::Timeout {
                    instance: self.instance().to_owned(),
                    address: self.address(),
                    waiting_for: WaitFor::Reboot,
                    waited: timeouts.ready,
                    last,
                }
                .into());
            }
            match tokio::time::timeout(remaining, self.boot_id()).await {
                Ok(Ok(id)) if id != before => break,
                Ok(Ok(id)) => last = Some(format!("boot id still {id}")),
                Ok(Err(e @ (SshError::Transport { .. } | SshError::Key { .. })))
                    if !e.is_transient() =>
                {
                    return Err(e.into());
                }
                Ok(Err(e)) => last = Some(e.to_string()),
                Err(_) => continue,
            }
            tokio::time::sleep(timeouts.poll.min(remaining)).await;
        }
        let left = ReadyTimeouts {
            ready: timeouts.ready.saturating_sub(started.elapsed()),
            ..timeouts
        };
        Ok(self.wait_ready(left).await?)
    }
}

impl<G: Guest + ?Sized> GuestExt for G {}

/// Why one pass of [`GuestExt::wait_ready`] ended early.
enum Halt {
    /// The guest went away at `stage` (it may be rebooting): try again.
    Retry {
        /// The stage that was interrupted.
        stage: WaitFor,
        /// What happened.
        why: String,
    },
    /// The wait is over: this is its outcome.
    Stop(SshError),
}

/// Retries a command until it succeeds over SSH, until `timeouts.ready`
/// after `started`.
async fn ssh_until<G: Guest + ?Sized>(
    guest: &G,
    started: Instant,
    timeouts: ReadyTimeouts,
) -> Result<(), SshError> {
    let remaining = || timeouts.ready.saturating_sub(started.elapsed());
    let mut last = None;
    loop {
        if remaining().is_zero() {
            return Err(guest.timed_out(WaitFor::Ssh, timeouts.ready, last));
        }
        match tokio::time::timeout(
            remaining(),
            guest.execute(&Cmd::from("true"), &ExecOptions::default()),
        )
        .await
        {
            Ok(Ok(r)) if r.ok() => return Ok(()),
            Ok(Ok(r)) => last = Some(r.describe()),
            Ok(Err(e)) if !e.is_transient() => return Err(e),
            Ok(Err(e)) => last = Some(e.to_string()),
            Err(_) => return Err(guest.timed_out(WaitFor::Ssh, timeouts.ready, last)),
        }
        tokio::time::sleep(timeouts.poll.min(remaining())).await;
    }
}

/// One pass of the readiness wait, from the SSH stage to cloud-init's
/// answer, within `timeouts.ready` after `started`.
async fn ready_pass<G: Guest + ?Sized>(
    guest: &G,
    started: Instant,
    timeouts: ReadyTimeouts,
    on_ssh: &(dyn Fn() + Send + Sync),
) -> Result<(), Halt> {
    let remaining = || timeouts.ready.saturating_sub(started.elapsed());
    // A command of `stage`, bounded by what is left of the wait; transport
    // failures that may pass are retried by the caller.
    let run = |stage: WaitFor, cmd: Cmd| async move {
        match tokio::time::timeout(remaining(), guest.execute(&cmd, &ExecOptions::default())).await
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) if e.is_transient() => Err(Halt::Retry {
                stage,
                why: e.to_string(),
            }),
            Ok(Err(e)) => Err(Halt::Stop(e)),
            Err(_) => Err(Halt::Stop(guest.timed_out(stage, timeouts.ready, None))),
        }
    };

    // 1. A command succeeds.
    ssh_until(guest, started, timeouts)
        .await
        .map_err(Halt::Stop)?;
    on_ssh();

    // 2. systemd's view, when systemd runs.
    let systemd = run(
        WaitFor::CloudInitTarget,
        Cmd::from("test -d /run/systemd/system"),
    )
    .await?
    .ok();
    if systemd {
        loop {
            let r = run(
                WaitFor::CloudInitTarget,
                Cmd::from(["systemctl", "is-active", "cloud-init.target"]),
            )
            .await?;
            if r.stdout.trim() == "active" {
                break;
            }
            if remaining().is_zero() {
                return Err(Halt::Stop(guest.timed_out(
                    WaitFor::CloudInitTarget,
                    timeouts.ready,
                    Some(r.stdout),
                )));
            }
            tokio::time::sleep(timeouts.poll.min(remaining())).await;
        }
    }

    // 3. cloud-init itself.
    let status = run(
        WaitFor::CloudInit,
        Cmd::from(["cloud-init", "status", "--wait", "--long"]),
    )
    .await?;
    match (status.exit_status, &status.signal) {
        (Some(0), _) => Ok(()),
        (Some(2), _) => {
            tracing::warn!(instance = guest.instance(), output = %status.stdout, "cloud-init finished with recoverable errors");
            Ok(())
        }
        (Some(1), _) if timeouts.cloud_init_errors == CloudInitErrors::Accept => {
            tracing::warn!(instance = guest.instance(), output = %status.stdout, "cloud-init finished with errors");
            Ok(())
        }
        // Killed, as processes are when the guest shuts down to reboot.
        (None, Some(_)) => Err(Halt::Retry {
            stage: WaitFor::CloudInit,
            why: format!("cloud-init status: {}", status.describe()),
        }),
        _ => Err(Halt::Stop(SshError::Failed {
            instance: guest.instance().to_owned(),
            address: guest.address(),
            what: "cloud-init".to_owned(),
            detail: format!("{}\n{}", status.describe(), status.stdout),
        })),
    }
}
