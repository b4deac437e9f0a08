//! [`Credentials`]: what an [`SshGuest`](crate::SshGuest) authenticates
//! with — an SSH agent when there is one, else a private key file, read
//! only when it is first needed.

use std::sync::Arc;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, load_secret_key};

use crate::SshError;
use crate::known_hosts::fingerprint;

/// How long vmw waits for the agent to connect and to list its keys before
/// it uses the key file instead.
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many of the agent's identities are tried when it does not hold the
/// configured key: servers close the connection after a few refusals
/// (OpenSSH's `MaxAuthTries`, 6 by default), and the key file must still
/// get its turn.
const OTHER_IDENTITIES: usize = 3;

/// What a guest is authenticated with.
///
/// - With an agent socket ([`Credentials::with_agent`], e.g. from
///   `SSH_AUTH_SOCK`), the agent signs: its identity whose public key is
///   [`Credentials::with_public_key`]'s, else each identity it holds. The
///   agent being unreachable, holding no keys or declining to sign falls
///   back to the key file. Of an agent not holding the configured key, at
///   most three identities are tried, so that the server still lets the
///   key file have its turn. When the server refused the agent's copy of the
///   configured key, the file (the same key) is not tried.
/// - The private key file is read the first time it is needed, once: a
///   passphrase-protected key does no harm until then, and none when the
///   agent authenticates. A key that cannot be used is an
///   [`SshError::Key`], and the file is read again on the next attempt.
///
/// Clones share the loaded key.
#[derive(Clone)]
pub struct Credentials {
    agent: Option<Utf8PathBuf>,
    public_key: Option<PublicKey>,
    private_path: Option<Utf8PathBuf>,
    private_key: Arc<tokio::sync::OnceCell<Arc<PrivateKey>>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("agent", &self.agent)
            .field("public_key", &self.public_key.as_ref().map(fingerprint))
            .field("private_path", &self.private_path)
            .field("private_key_loaded", &self.private_key.initialized())
            .finish()
    }
}

impl Credentials {
    /// The private key in the file `path`, read when first needed.
    pub fn key_file(path: impl Into<Utf8PathBuf>) -> Self {
        Self {
            agent: None,
            public_key: None,
            private_path: Some(path.into()),
            private_key: Arc::default(),
        }
    }

    /// A private key already in memory (its public key is the one preferred
    /// in an agent).
    pub fn key(key: Arc<PrivateKey>) -> Self {
        let public_key = Some(key.public_key().clone());
        Self {
            agent: None,
            public_key,
            private_path: None,
            private_key: Arc::new(tokio::sync::OnceCell::new_with(Some(key))),
        }
    }

    /// Authenticates with the SSH agent listening on `socket` first
    /// (`None`: no agent).
    #[must_use]
    pub fn with_agent(mut self, socket: Option<impl Into<Utf8PathBuf>>) -> Self {
        self.agent = socket.map(Into::into);
        self
    }

    /// The public key of the private key: the agent identity to use.
    #[must_use]
    pub fn with_public_key(mut self, key: PublicKey) -> Self {
        self.public_key = Some(key);
        self
    }

    /// The agent's socket, if one is used.
    pub fn agent(&self) -> Option<&Utf8Path> {
        self.agent.as_deref()
    }

    /// The public key preferred among the agent's identities.
    pub fn public_key(&self) -> Option<&PublicKey> {
        self.public_key.as_ref()
    }

    /// The private key file, when the key comes from one.
    pub fn private_key_path(&self) -> Option<&Utf8Path> {
        self.private_path.as_deref()
    }

    /// Whether the private key has been read.
    pub fn private_key_loaded(&self) -> bool {
        self.private_key.initialized()
    }

    /// The private key, read from its file on first call and kept.
    pub async fn private_key(&self) -> Result<Arc<PrivateKey>, SshError> {
        self.private_key
            .get_or_try_init(|| async {
                match &self.private_path {
                    Some(path) => load_private_key(path),
                    None => Err(SshError::Key {
                        path: Utf8PathBuf::new(),
                        problem: "no private key was given".to_owned(),
                        hint: None,
                    }),
                }
            })
            .await
            .cloned()
    }

    /// Before connecting: without an agent, the key file must be usable, so
    /// a key that cannot work is reported at once, whether or not the guest
    /// answers yet.
    pub(crate) async fn check(&self) -> Result<(), SshError> {
        if self.agent.is_none() {
            self.private_key().await?;
        }
        Ok(())
    }

    /// Authenticates `user` on `handle`: the agent, else the key file.
    pub(crate) async fn authenticate<H>(
        &self,
        handle: &mut Handle<H>,
        user: &str,
    ) -> Result<(), AuthError>
    where
        H: client::Handler,
    {
        let mut refused_ours = false;
        if let Some(socket) = &self.agent {
            match self.with_agent_socket(handle, user, socket).await? {
                AgentOutcome::Authenticated(key) => {
                    tracing::debug!(agent = %socket, key = %fingerprint(&key), "ssh: authenticated with an agent key");
                    return Ok(());
                }
                AgentOutcome::Refused { ours } => {
                    tracing::debug!(agent = %socket, "ssh: the server refused the agent's keys");
                    refused_ours = ours;
                }
                AgentOutcome::Unavailable(reason) => {
                    tracing::debug!(agent = %socket, %reason, "ssh: agent not used");
                }
            }
        }
        if refused_ours {
            // The file holds the key the server just refused.
            return Err(AuthError::Refused);
        }
        let key = self.private_key().await.map_err(AuthError::Key)?;
        let hash = rsa_hash(handle, key.algorithm().is_rsa()).await?;
        let auth = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), hash))
            .await
            .map_err(|e| AuthError::Transport(e.to_string()))?;
        if !auth.success() {
            return Err(AuthError::Refused);
        }
        tracing::debug!(
            file = %self.private_path.as_deref().map(Utf8Path::as_str).unwrap_or("(in memory)"),
            key = %fingerprint(key.public_key()),
            "ssh: authenticated with the private key file"
        );
        Ok(())
    }

    /// Tries the agent's identities: the configured key's when the agent
    /// holds it, else each one.
    async fn with_agent_socket<H>(
        &self,
        handle: &mut Handle<H>,
        user: &str,
        socket: &Utf8Path,
    ) -> Result<AgentOutcome, AuthError>
    where
        H: client::Handler,
    {
        let mut agent =
            match tokio::time::timeout(AGENT_TIMEOUT, AgentClient::connect_uds(socket)).await {
                Ok(Ok(agent)) => agent,
                Ok(Err(e)) => return Ok(AgentOutcome::Unavailable(format!("cannot connect: {e}"))),
                Err(_) => return Ok(AgentOutcome::Unavailable("no connection".to_owned())),
            };
        let identities = match tokio::time::timeout(AGENT_TIMEOUT, agent.request_identities()).await
        {
            Ok(Ok(ids)) => ids,
            Ok(Err(e)) => {
                return Ok(AgentOutcome::Unavailable(format!(
                    "listing its keys failed: {e}"
                )));
            }
            Err(_) => return Ok(AgentOutcome::Unavailable("no list of keys".to_owned())),
        };
        let mut keys: Vec<PublicKey> = Vec::new();
        for identity in &identities {
            if let AgentIdentity::PublicKey { key, .. } = identity
                && !keys.iter().any(|k| k.key_data() == key.key_data())
            {
                keys.push(key.clone());
            }
        }
        let ours: Vec<PublicKey> = match &self.public_key {
            Some(public) => keys
                .iter()
                .filter(|k| k.key_data() == public.key_data())
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let have_ours = !ours.is_empty();
        let candidates = if have_ours {
            ours
        } else {
            if keys.len() > OTHER_IDENTITIES {
                tracing::debug!(
                    held = keys.len(),
                    tried = OTHER_IDENTITIES,
                    "ssh: the agent does not hold the configured key; trying some of its keys"
                );
            }
            keys.into_iter().take(OTHER_IDENTITIES).collect()
        };
        if candidates.is_empty() {
            return Ok(AgentOutcome::Unavailable("it holds no keys".to_owned()));
        }
        let mut refused = false;
        for key in candidates {
            let hash = rsa_hash(handle, key.algorithm().is_rsa()).await?;
            match handle
                .authenticate_publickey_with(user, key.clone(), hash, &mut agent)
                .await
            {
                Ok(auth) if auth.success() => return Ok(AgentOutcome::Authenticated(key)),
                Ok(_) => {
                    tracing::debug!(key = %fingerprint(&key), "ssh: the server refused an agent key");
                    refused = true;
                }
                Err(russh::AgentAuthError::Send(e)) => {
                    return Err(AuthError::Transport(e.to_string()));
                }
                Err(russh::AgentAuthError::Key(e)) => {
                    tracing::debug!(key = %fingerprint(&key), error = %e, "ssh: the agent did not sign");
                }
            }
        }
        if refused {
            Ok(AgentOutcome::Refused { ours: have_ours })
        } else {
            Ok(AgentOutcome::Unavailable("it signed nothing".to_owned()))
        }
    }
}

/// The signature hash of an RSA key the server supports best.
async fn rsa_hash<H>(handle: &Handle<H>, is_rsa: bool) -> Result<Option<HashAlg>, AuthError>
where
    H: client::Handler,
{
    if !is_rsa {
        return Ok(None);
    }
    Ok(handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| AuthError::Transport(e.to_string()))?
        .flatten())
}

/// What trying the agent came to.
enum AgentOutcome {
    Authenticated(PublicKey),
    /// The server refused the keys tried; `ours` when one was the
    /// configured key.
    Refused {
        ours: bool,
    },
    /// The agent could not be used: why.
    Unavailable(String),
}

/// Why authentication failed.
pub(crate) enum AuthError {
    /// The private key file cannot be used.
    Key(SshError),
    /// The server refused every key.
    Refused,
    /// The connection failed.
    Transport(String),
}

/// Loads a private key file (OpenSSH or PEM). A passphrase-protected key is
/// refused with an explanation: vmw runs unattended (an agent can hold such
/// a key instead).
pub fn load_private_key(path: &Utf8Path) -> Result<Arc<PrivateKey>, SshError> {
    let fail = |problem: String, hint: &str| SshError::Key {
        path: path.to_owned(),
        problem,
        hint: Some(hint.to_owned()),
    };
    match load_secret_key(path, None) {
        Ok(k) => Ok(Arc::new(k)),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(fail(
            "it is protected by a passphrase, which vmw cannot type".to_owned(),
            "use a key without a passphrase for test instances (ssh-keygen -t ed25519 -N '' -f <file>, then set private_key_path), or an SSH agent holding this key (ssh-add <file>, with SSH_AUTH_SOCK set)",
        )),
        Err(e) => Err(fail(
            format!("cannot read it: {e}"),
            "set private_key_path in [vmware] to a readable OpenSSH private key",
        )),
    }
}
