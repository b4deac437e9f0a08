//! [`SshGuest`]: the [`Guest`] reached over SSH with russh.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use camino::{Utf8Path, Utf8PathBuf};
use russh::client::{self, Handle};
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::credentials::AuthError;
use crate::known_hosts::{HostKeyCheck, KnownHosts, fingerprint};
use crate::{Cmd, Credentials, ExecOptions, ExecResult, Guest, SshError, Stage};

/// How a guest's SSH host key is trusted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// The key presented first is accepted and pinned in memory for the
    /// life of the [`SshGuest`]; a different key later is refused. Nothing
    /// is remembered across vmw runs.
    #[default]
    Session,
    /// The key is checked against `store` under `identity`: recorded on
    /// the identity's first contact, and required from then on, by every
    /// vmw run (see [`KnownHosts`]).
    Known {
        /// The store.
        store: KnownHosts,
        /// The VM's identity (e.g. its inventory path and instance UUID).
        identity: String,
    },
    /// As [`HostKeyPolicy::Known`], but the key presented first replaces
    /// the one recorded (a warning says so when it differs): for the first
    /// connection after the guest was booted anew by its owner, who knows
    /// it is the same VM, when the guest may have made new host keys
    /// (cloud-init does on an instance's first boot, so after `cloud-init
    /// clean`). A different key later is refused.
    Renew {
        /// The store.
        store: KnownHosts,
        /// The VM's identity.
        identity: String,
    },
}

impl HostKeyPolicy {
    /// [`HostKeyPolicy::Known`] with `identity` in `store`.
    pub fn known(store: KnownHosts, identity: impl Into<String>) -> Self {
        Self::Known {
            store,
            identity: identity.into(),
        }
    }
}

/// How to reach a guest over SSH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshConfig {
    /// The login user (default `ubuntu`, as in Ubuntu cloud images).
    pub user: String,
    /// The port (default 22).
    pub port: u16,
    /// Limit for the TCP connection to open.
    pub connect_timeout: Duration,
    /// Limit for the SSH handshake (banner, key exchange) and
    /// authentication.
    pub banner_timeout: Duration,
    /// How the guest's host key is trusted (default: pinned for the life
    /// of the [`SshGuest`]).
    pub host_key: HostKeyPolicy,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            user: "ubuntu".to_owned(),
            port: 22,
            connect_timeout: Duration::from_secs(10),
            banner_timeout: Duration::from_secs(30),
            host_key: HostKeyPolicy::Session,
        }
    }
}

/// The host key accepted on first contact with an instance, and why a
/// later key was refused.
#[derive(Default)]
struct HostKeyPin {
    key: Mutex<Option<PublicKey>>,
    /// Why, and what would fix it.
    refused: Mutex<Option<(String, Option<String>)>>,
}

impl HostKeyPin {
    fn key(&self) -> Option<PublicKey> {
        self.key.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_key(&self, key: PublicKey) {
        *self.key.lock().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    fn refuse(&self, reason: String, hint: Option<String>) {
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some((reason, hint));
    }

    fn take_refusal(&self) -> Option<(String, Option<String>)> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

struct Handler {
    pin: Arc<HostKeyPin>,
    policy: HostKeyPolicy,
    addr: SocketAddr,
}

impl client::Handler for Handler {
    type Error = russh::Error;

    /// Trust on first use: a new VM's first key is accepted and remembered
    /// (for this guest, or in the known-hosts store); a different key
    /// later means something else answers, and is refused.
    async fn check_server_key(
        &mut self,
        server: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let presented = match server {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        match &self.policy {
            HostKeyPolicy::Session => {
                let mut pinned = self.pin.key.lock().unwrap_or_else(|e| e.into_inner());
                match &*pinned {
                    None => {
                        *pinned = Some(presented);
                        Ok(true)
                    }
                    Some(known) if known.key_data() == presented.key_data() => Ok(true),
                    Some(known) => {
                        self.pin.refuse(
                            format!(
                                "the server presented the host key {}, not {} seen first; refusing to talk to it",
                                fingerprint(&presented),
                                fingerprint(known)
                            ),
                            Some(
                                "if the instance was rebuilt, get it again from the cloud"
                                    .to_owned(),
                            ),
                        );
                        Ok(false)
                    }
                }
            }
            HostKeyPolicy::Renew { store, identity } => {
                if let Some(known) = self.pin.key() {
                    if known.key_data() == presented.key_data() {
                        return Ok(true);
                    }
                    self.pin.refuse(
                        format!(
                            "the server presented the host key {}, not {} it presented first after the boot; refusing to talk to it",
                            fingerprint(&presented),
                            fingerprint(&known)
                        ),
                        None,
                    );
                    return Ok(false);
                }
                let (store, identity, addr) = (store.clone(), identity.clone(), self.addr);
                let key = presented.clone();
                let renewed = tokio::task::spawn_blocking(move || {
                    let result = store.renew(&identity, addr, &key);
                    (identity, result)
                })
                .await;
                match renewed {
                    Ok((identity, Ok(old))) => {
                        if let Some(old) = old {
                            tracing::warn!(%identity, %addr, old = %old, new = %fingerprint(&presented), "ssh: the guest presents a new host key after the boot (cloud-init makes new keys on an instance's first boot); recorded it");
                        }
                        self.pin.set_key(presented);
                        Ok(true)
                    }
                    Ok((_, Err(e))) => {
                        self.pin.refuse(e.to_string(), e.hint_text());
                        Ok(false)
                    }
                    Err(e) => {
                        self.pin
                            .refuse(format!("checking the known hosts failed: {e}"), None);
                        Ok(false)
                    }
                }
            }
            HostKeyPolicy::Known { store, identity } => {
                let (store, identity, addr) = (store.clone(), identity.clone(), self.addr);
                let key = presented.clone();
                // The store reads files and may wait for another process's
                // lock: not on the runtime's threads.
                let checked = tokio::task::spawn_blocking(move || {
                    let result = store.check(&identity, addr, &key);
                    (identity, result)
                })
                .await;
                match checked {
                    Ok((identity, Ok(outcome))) => {
                        match outcome {
                            HostKeyCheck::Recorded => {
                                tracing::info!(%identity, %addr, fingerprint = %fingerprint(&presented), "ssh: host key recorded on first contact")
                            }
                            HostKeyCheck::Moved { from } => {
                                tracing::debug!(%identity, %addr, %from, "ssh: known host key at a new address")
                            }
                            HostKeyCheck::Matched => {}
                        }
                        self.pin.set_key(presented);
                        Ok(true)
                    }
                    Ok((_, Err(e))) => {
                        self.pin.refuse(e.to_string(), e.hint_text());
                        Ok(false)
                    }
                    Err(e) => {
                        self.pin
                            .refuse(format!("checking the known hosts failed: {e}"), None);
                        Ok(false)
                    }
                }
            }
        }
    }
}

/// A guest reached over SSH: one connection, opened on first use, reused
/// by every call, and opened again when it has dropped.
pub struct SshGuest {
    instance: String,
    addr: SocketAddr,
    config: SshConfig,
    credentials: Credentials,
    pin: Arc<HostKeyPin>,
    /// Whether the next handshake renews the host key
    /// ([`SshGuest::renew_host_key`]).
    renew: AtomicBool,
    conn: tokio::sync::Mutex<Option<Arc<Handle<Handler>>>>,
}

impl std::fmt::Debug for SshGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshGuest")
            .field("instance", &self.instance)
            .field("addr", &self.addr)
            .field("user", &self.config.user)
            .finish()
    }
}

impl SshGuest {
    /// A guest `instance` at `ip`, reached with `config` and authenticated
    /// with `credentials`.
    pub fn new(
        instance: impl Into<String>,
        ip: std::net::IpAddr,
        config: SshConfig,
        credentials: Credentials,
    ) -> Self {
        let addr = SocketAddr::new(ip, config.port);
        Self {
            instance: instance.into(),
            addr,
            config,
            credentials,
            pin: Arc::default(),
            renew: AtomicBool::new(false),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The guest was booted anew by its owner, who knows it is the same
    /// VM: the next handshake accepts the host key the guest presents and
    /// pins it (and records it in place of the known one, under
    /// [`HostKeyPolicy::Known`]: see [`HostKeyPolicy::Renew`]), as a guest
    /// may make new keys on a boot (cloud-init does on an instance's first
    /// boot, so after `cloud-init clean`). Later handshakes must present
    /// that key.
    pub fn renew_host_key(&self) {
        *self.pin.key.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.renew.store(true, Ordering::SeqCst);
    }

    /// The host key accepted on this guest's first contact, as an OpenSSH
    /// line (`ssh-ed25519 AAAA…`); `None` before the first connection.
    pub fn host_key(&self) -> Option<String> {
        self.pin.key().and_then(|k| k.to_openssh().ok())
    }

    fn err(&self, stage: Stage, message: impl Into<String>) -> SshError {
        self.err_hint(stage, message, None)
    }

    fn err_hint(&self, stage: Stage, message: impl Into<String>, hint: Option<String>) -> SshError {
        SshError::Transport {
            instance: self.instance.clone(),
            address: self.addr.to_string(),
            stage,
            message: message.into(),
            hint,
        }
    }

    async fn connect(&self) -> Result<Handle<Handler>, SshError> {
        self.credentials.check().await?;
        let socket = tokio::time::timeout(
            self.config.connect_timeout,
            tokio::net::TcpStream::connect(self.addr),
        )
        .await
        .map_err(|_| {
            self.err(
                Stage::Connect,
                format!("no TCP connection within {:?}", self.config.connect_timeout),
            )
        })?
        .map_err(|e| self.err(Stage::Connect, e.to_string()))?;
        let _ = socket.set_nodelay(true);
        let ssh_config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 4,
            ..client::Config::default()
        });
        let renewing = self.renew.load(Ordering::SeqCst);
        let policy = match &self.config.host_key {
            HostKeyPolicy::Known { store, identity } | HostKeyPolicy::Renew { store, identity }
                if renewing =>
            {
                HostKeyPolicy::Renew {
                    store: store.clone(),
                    identity: identity.clone(),
                }
            }
            other => other.clone(),
        };
        let handler = Handler {
            pin: self.pin.clone(),
            policy,
            addr: self.addr,
        };
        let handshake = tokio::time::timeout(
            self.config.banner_timeout,
            client::connect_stream(ssh_config, socket, handler),
        )
        .await;
        let mut handle = match handshake {
            Err(_) => {
                return Err(self.err(
                    Stage::Connect,
                    format!("no SSH handshake within {:?}", self.config.banner_timeout),
                ));
            }
            Ok(Err(e)) => {
                if let Some((reason, hint)) = self.pin.take_refusal() {
                    return Err(self.err_hint(Stage::HostKey, reason, hint));
                }
                return Err(self.err(Stage::Connect, e.to_string()));
            }
            Ok(Ok(h)) => h,
        };
        // The key was accepted (and pinned): the renewal is done.
        self.renew.store(false, Ordering::SeqCst);

        let auth = tokio::time::timeout(
            self.config.banner_timeout,
            self.credentials
                .authenticate(&mut handle, &self.config.user),
        )
        .await
        .map_err(|_| self.err(Stage::Auth, "no answer to authentication"))?;
        match auth {
            Ok(()) => {}
            Err(AuthError::Key(e)) => return Err(e),
            Err(AuthError::Transport(e)) => return Err(self.err(Stage::Auth, e)),
            Err(AuthError::Refused) => {
                return Err(self.err_hint(
                    Stage::Auth,
                    format!("the server refused the key for user {}", self.config.user),
                    Some("the instance must have been launched with this key (it is injected into the user data), and the user must exist".to_owned()),
                ));
            }
        }
        tracing::debug!(instance = %self.instance, addr = %self.addr, "ssh: connected");
        Ok(handle)
    }

    /// The live connection, opening one when there is none or it dropped.
    async fn connection(&self) -> Result<Arc<Handle<Handler>>, SshError> {
        let mut conn = self.conn.lock().await;
        if let Some(h) = conn.as_ref()
            && !h.is_closed()
        {
            return Ok(h.clone());
        }
        let h = Arc::new(self.connect().await?);
        *conn = Some(h.clone());
        Ok(h)
    }

    /// Opens a session channel, reconnecting once if the connection turns
    /// out to have dropped.
    async fn channel(&self) -> Result<russh::Channel<client::Msg>, SshError> {
        let conn = self.connection().await?;
        match conn.channel_open_session().await {
            Ok(c) => Ok(c),
            Err(first) => {
                tracing::debug!(instance = %self.instance, error = %first, "ssh: channel failed, reconnecting");
                self.disconnect().await;
                let conn = self.connection().await?;
                conn.channel_open_session()
                    .await
                    .map_err(|e| self.err(Stage::Channel, e.to_string()))
            }
        }
    }

    /// Runs a command, writing its standard output and error to `stdout`
    /// and `stderr` as they arrive (nothing is held back), and returns its
    /// exit status or the signal that killed it.
    pub async fn execute_streaming(
        &self,
        cmd: &Cmd,
        options: &ExecOptions,
        stdout: &mut (dyn AsyncWrite + Unpin + Send),
        stderr: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<(Option<u32>, Option<String>), SshError> {
        let line = cmd.remote_line(options.sudo);
        tracing::debug!(instance = %self.instance, command = %cmd, "ssh: exec");
        let mut channel = self.channel().await?;
        channel
            .exec(true, line)
            .await
            .map_err(|e| self.err(Stage::Channel, e.to_string()))?;
        if let Some(input) = &options.stdin {
            channel
                .data(&input[..])
                .await
                .map_err(|e| self.err(Stage::Command, format!("sending standard input: {e}")))?;
        }
        channel
            .eof()
            .await
            .map_err(|e| self.err(Stage::Command, e.to_string()))?;

        let local = |e: std::io::Error| self.err(Stage::LocalFile, format!("writing output: {e}"));
        let mut status = None;
        let mut signal = None;
        // Read until the channel closes: the exit status may come after EOF.
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => stdout.write_all(&data).await.map_err(local)?,
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    stderr.write_all(&data).await.map_err(local)?;
                }
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    signal = Some(format!("{signal_name:?}"));
                }
                ChannelMsg::Failure => {
                    return Err(self.err(Stage::Channel, "the server refused to run the command"));
                }
                _ => {}
            }
        }
        stdout.flush().await.map_err(local)?;
        stderr.flush().await.map_err(local)?;
        if status.is_none() && signal.is_none() {
            return Err(self.err(
                Stage::Command,
                format!("the connection closed before `{cmd}` reported an exit status"),
            ));
        }
        Ok((status, signal))
    }

    async fn sftp(&self) -> Result<russh_sftp::client::SftpSession, SshError> {
        let channel = self.channel().await?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| self.err(Stage::Sftp, format!("no sftp subsystem: {e}")))?;
        let config = russh_sftp::client::Config {
            request_timeout_secs: 60,
            ..russh_sftp::client::Config::default()
        };
        russh_sftp::client::SftpSession::new_with_config(channel.into_stream(), config)
            .await
            .map_err(|e| self.err(Stage::Sftp, e.to_string()))
    }
}

#[async_trait]
impl Guest for SshGuest {
    fn instance(&self) -> &str {
        &self.instance
    }

    fn address(&self) -> String {
        self.addr.to_string()
    }

    fn user(&self) -> &str {
        &self.config.user
    }

    async fn execute(&self, cmd: &Cmd, options: &ExecOptions) -> Result<ExecResult, SshError> {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let (status, signal) = self
            .execute_streaming(cmd, options, &mut stdout, &mut stderr)
            .await?;
        Ok(ExecResult::from_raw(&stdout, &stderr, status, signal))
    }

    async fn push_file(&self, local: &Utf8Path, remote: &str) -> Result<(), SshError> {
        let mut source = tokio::fs::File::open(local)
            .await
            .map_err(|e| self.err(Stage::LocalFile, format!("{local}: {e}")))?;
        let sftp = self.sftp().await?;
        let mut target = sftp
            .create(remote)
            .await
            .map_err(|e| self.err(Stage::Sftp, format!("creating {remote}: {e}")))?;
        copy_stream(&mut source, &mut target)
            .await
            .map_err(|e| self.err(Stage::Sftp, format!("writing {remote}: {e}")))?;
        target
            .shutdown()
            .await
            .map_err(|e| self.err(Stage::Sftp, format!("closing {remote}: {e}")))?;
        let _ = sftp.close().await;
        Ok(())
    }

    async fn pull_file(&self, remote: &str, local: &Utf8Path) -> Result<(), SshError> {
        let sftp = self.sftp().await?;
        let mut source = sftp
            .open(remote)
            .await
            .map_err(|e| self.err(Stage::Sftp, format!("opening {remote}: {e}")))?;
        let partial = partial_path(local);
        let mut target = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| self.err(Stage::LocalFile, format!("{partial}: {e}")))?;
        let copied = copy_stream(&mut source, &mut target).await;
        let flushed = match copied {
            Ok(()) => target.sync_all().await,
            Err(e) => Err(e),
        };
        if let Err(e) = flushed {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(self.err(Stage::Sftp, format!("reading {remote}: {e}")));
        }
        tokio::fs::rename(&partial, local)
            .await
            .map_err(|e| self.err(Stage::LocalFile, format!("{local}: {e}")))?;
        let _ = sftp.close().await;
        Ok(())
    }

    async fn disconnect(&self) {
        let mut conn = self.conn.lock().await;
        if let Some(h) = conn.take() {
            let _ = h.disconnect(Disconnect::ByApplication, "", "en").await;
        }
    }
}

/// Where a download is written before it is complete.
fn partial_path(local: &Utf8Path) -> Utf8PathBuf {
    let name = local.file_name().unwrap_or("download");
    local.with_file_name(format!(".{name}.partial"))
}

/// Copies in 256 KiB pieces: the whole file is never in memory.
async fn copy_stream<R, W>(from: &mut R, to: &mut W) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).await?;
    }
    to.flush().await
}
