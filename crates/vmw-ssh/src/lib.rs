//! Guest access for vmw instances over SSH, in pure Rust (russh).
//!
//! - [`Guest`] is what the rest of vmw needs from a guest: run a command,
//!   push and pull files, drop the connection. [`SshGuest`] implements it
//!   over SSH; tests can implement it with a script.
//! - [`GuestExt`] builds on any [`Guest`]: [`GuestExt::run_script`],
//!   [`GuestExt::install`], [`GuestExt::update`], [`GuestExt::boot_id`],
//!   [`GuestExt::wait_ready`] (a command succeeds, then cloud-init is done),
//!   [`GuestExt::clean`] (prepare for a snapshot) and
//!   [`GuestExt::restart_with`] (restart and wait for a new boot id).
//!
//! Commands: a string runs as `sh -c <string>`; an argument vector is quoted
//! for the remote shell, so spaces, quotes and Unicode pass as they are.
//! `sudo` runs `sudo -n` (never prompts). A non-zero exit is an
//! [`ExecResult`], not an error; errors are transport failures, naming the
//! instance, the address and the [`Stage`], or a private key that cannot be
//! used ([`SshError::Key`], naming the file).
//!
//! Authentication: [`Credentials`] say how. With an SSH agent's socket
//! ([`Credentials::with_agent`], vmw passes `SSH_AUTH_SOCK`), the agent
//! signs with the identity whose public key is the configured one, else
//! with each identity it holds; an agent that is unreachable or does not
//! sign falls back to the private key file. That file is read only when it
//! is first needed, once, so a passphrase-protected key held by an agent is
//! never read at all.
//!
//! Host keys: the key an instance presents on first contact is accepted (new
//! VMs have new keys that no `known_hosts` can hold beforehand) and a
//! different key later is refused. [`HostKeyPolicy::Session`] pins it for
//! the life of the [`SshGuest`]; [`HostKeyPolicy::Known`] records it in a
//! [`KnownHosts`] store under the VM's identity, so every later vmw run, and
//! OpenSSH's `ssh` ([`KnownHosts::openssh_options`]), requires the same key.
//!
//! Readiness survives a reboot during cloud-init: [`GuestExt::wait_ready`]
//! reconnects and starts over when the connection drops
//! ([`SshError::is_transient`]), until its deadline.
//!
//! One connection per guest is opened on first use, reused by every call,
//! and opened again when it has dropped. Files move over SFTP in pieces, so
//! large files are never held in memory.
//!
//! ```no_run
//! use vmw_ssh::{Cmd, Credentials, ExecOptions, Guest, GuestExt, ReadyTimeouts, SshConfig, SshGuest};
//!
//! # async fn demo() -> Result<(), vmw_ssh::SshError> {
//! let credentials = Credentials::key_file("/home/me/.ssh/id_ed25519")
//!     .with_agent(Some("/run/user/1000/ssh-agent.socket"));
//! let guest = SshGuest::new("me-1", "10.0.0.5".parse().unwrap(), SshConfig::default(), credentials);
//! guest.wait_ready(ReadyTimeouts::default()).await?;
//! let r = guest.execute(&Cmd::from("cloud-init status --long"), &ExecOptions::default()).await?;
//! println!("{} (exit {:?})", r.stdout, r.exit_status);
//! # Ok(()) }
//! ```

mod client;
mod command;
mod credentials;
mod error;
mod guest;
mod known_hosts;

pub use client::{HostKeyPolicy, SshConfig, SshGuest};
pub use command::{Cmd, ExecOptions, ExecResult, shell_quote};
pub use credentials::{Credentials, load_private_key};
pub use error::{SshError, Stage, WaitFor};
pub use guest::{BOOT_ID_PATH, CLEAN_STEPS, CloudInitErrors, Guest, GuestExt, ReadyTimeouts};
pub use known_hosts::{
    HostKeyChange, HostKeyCheck, HostKeyEntry, KnownHosts, KnownHostsError, fingerprint,
};
/// The private key type [`SshGuest`] authenticates with.
pub use russh::keys::PrivateKey;
/// The public key type of host keys ([`HostKeyEntry::key`]).
pub use russh::keys::PublicKey;
/// What would fix an error of this crate (the trait every vmw error implements).
pub use vmw_hints::Hints;
