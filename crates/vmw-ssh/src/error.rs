//! [`SshError`]: what can go wrong reaching or using a guest.

use std::fmt;
use std::time::Duration;

use camino::Utf8PathBuf;

/// Where in the guest access something went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Loading the private key.
    Key,
    /// Opening the TCP connection or the SSH handshake.
    Connect,
    /// The server presented a host key other than the one pinned.
    HostKey,
    /// The server refused the key.
    Auth,
    /// Opening a channel or starting a command on it.
    Channel,
    /// While a command ran (e.g. the connection dropped).
    Command,
    /// A file transfer.
    Sftp,
    /// A local file.
    LocalFile,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Key => "private key",
            Stage::Connect => "connect",
            Stage::HostKey => "host key",
            Stage::Auth => "authentication",
            Stage::Channel => "channel",
            Stage::Command => "command",
            Stage::Sftp => "sftp",
            Stage::LocalFile => "local file",
        })
    }
}

/// What a readiness wait was waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitFor {
    /// A command to succeed over SSH.
    Ssh,
    /// systemd's `cloud-init.target` to be active.
    CloudInitTarget,
    /// `cloud-init status --wait` to finish.
    CloudInit,
    /// The boot id to change after a restart.
    Reboot,
}

impl fmt::Display for WaitFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitFor::Ssh => "SSH to accept a command",
            WaitFor::CloudInitTarget => "cloud-init.target to become active",
            WaitFor::CloudInit => "cloud-init to finish",
            WaitFor::Reboot => "the guest to reboot (a new boot id)",
        })
    }
}

/// An error of guest access. Every message starts with what failed: the
/// instance and address, or the private key file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// The private key file could not be used (unreadable, not a key, or
    /// protected by a passphrase).
    #[error("private key {path}: {problem}")]
    Key {
        /// The key file.
        path: Utf8PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What would fix it, where that is known.
        hint: Option<String>,
    },

    /// Reaching or talking to the SSH server failed.
    #[error("{instance} ({address}): {stage}: {message}")]
    Transport {
        /// The instance.
        instance: String,
        /// `host:port`.
        address: String,
        /// Where it failed.
        stage: Stage,
        /// What happened.
        message: String,
        /// What would fix it, where that is known.
        hint: Option<String>,
    },

    /// A wait ran out of time.
    #[error("{instance} ({address}): timed out after {waited:?} waiting for {waiting_for}{}", .last.as_ref().map(|l| format!(" (last: {l})")).unwrap_or_default())]
    Timeout {
        /// The instance.
        instance: String,
        /// `host:port`.
        address: String,
        /// What did not happen in time.
        waiting_for: WaitFor,
        /// How long vmw waited.
        waited: Duration,
        /// The last error or answer seen.
        last: Option<String>,
    },

    /// A command that had to succeed did not.
    #[error("{instance} ({address}): {what} failed: {detail}")]
    Failed {
        /// The instance.
        instance: String,
        /// `host:port`.
        address: String,
        /// What was being done.
        what: String,
        /// Exit status and the end of stderr.
        detail: String,
    },
}

impl SshError {
    /// What would fix this error, where that is known: data, for the
    /// caller to render (the message states only the fact).
    pub(crate) fn hint_list(&self) -> Vec<String> {
        match self {
            SshError::Transport { hint, .. } | SshError::Key { hint, .. } => {
                hint.iter().cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// The stage of a transport error; [`Stage::Key`] for a private key
    /// that cannot be used.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            SshError::Transport { stage, .. } => Some(*stage),
            SshError::Key { .. } => Some(Stage::Key),
            _ => None,
        }
    }

    /// Whether trying again later may help: the guest may be booting,
    /// rebooting or have dropped the connection (connection and handshake
    /// failures, refused authentication while cloud-init installs the key,
    /// channels, commands and transfers cut off, waits that timed out).
    /// A host key other than the pinned one, an unusable private key, a
    /// local file and a command that failed are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            SshError::Transport { stage, .. } => {
                !matches!(stage, Stage::HostKey | Stage::Key | Stage::LocalFile)
            }
            SshError::Timeout { .. } => true,
            SshError::Failed { .. } | SshError::Key { .. } => false,
        }
    }

    /// What a timed-out wait was waiting for.
    pub fn waiting_for(&self) -> Option<WaitFor> {
        match self {
            SshError::Timeout { waiting_for, .. } => Some(*waiting_for),
            _ => None,
        }
    }
}

impl vmw_hints::Hints for SshError {
    fn hints(&self) -> Vec<String> {
        self.hint_list()
    }
}
