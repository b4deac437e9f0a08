//! A real OpenSSH `ssh-agent` per test.
//!
//! [`SshAgent::start`] runs `ssh-agent -D -a <socket>` with the socket in a
//! temporary directory of its own (nothing of the user's agent is used or
//! changed); [`SshAgent::add`] runs `ssh-add` against it, answering a
//! passphrase through an `SSH_ASKPASS` script, never a terminal. Dropping
//! the [`SshAgent`] (or [`SshAgent::stop`]) kills the agent: its socket
//! then leads nowhere.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

use crate::TestbedError;

/// How long ssh-agent may take to listen.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

fn fail(reason: impl Into<String>) -> TestbedError {
    TestbedError::SshAgent(reason.into())
}

/// A running ssh-agent, killed on drop.
#[derive(Debug)]
pub struct SshAgent {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    socket: Utf8PathBuf,
}

impl SshAgent {
    /// An agent holding no keys, listening on [`SshAgent::socket`].
    pub fn start() -> Result<Self, TestbedError> {
        let dir = tempfile::tempdir()?;
        let socket = Utf8Path::from_path(dir.path())
            .ok_or_else(|| fail("the temporary directory is not UTF-8"))?
            .join("agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(socket.as_str())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("running ssh-agent: {e}")))?;
        let start = Instant::now();
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(fail(format!("ssh-agent exited ({status})")));
            }
            if start.elapsed() > STARTUP_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "no socket {socket} within {STARTUP_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child: Some(child),
            _dir: dir,
            socket,
        })
    }

    /// The agent's socket (what `SSH_AUTH_SOCK` names).
    pub fn socket(&self) -> &Utf8Path {
        &self.socket
    }

    /// Adds the private key at `key` with `ssh-add`, typing `passphrase`
    /// through `SSH_ASKPASS` when the key asks for one.
    pub fn add(&self, key: &Utf8Path, passphrase: &str) -> Result<(), TestbedError> {
        let secret = self.socket.with_file_name("passphrase");
        let askpass = self.socket.with_file_name("askpass");
        fs::write(&secret, passphrase)?;
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600))?;
        fs::write(&askpass, format!("#!/bin/sh\ncat '{secret}'\necho\n"))?;
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700))?;
        let output = Command::new("ssh-add")
            .arg(key.as_str())
            .env("SSH_AUTH_SOCK", self.socket.as_str())
            .env("SSH_ASKPASS", askpass.as_str())
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| fail(format!("running ssh-add: {e}")))?;
        let _ = fs::remove_file(&secret);
        if output.status.success() {
            Ok(())
        } else {
            Err(fail(format!(
                "ssh-add {key} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    /// Kills the agent; the socket stays, with nobody listening.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        self.stop();
    }
}
