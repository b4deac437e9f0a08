//! [`CloudBuilder`]: a [`Cloud`] from a configuration, a tag, a key pair
//! and settings, every input checked before anything is touched.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use camino::{Utf8Path, Utf8PathBuf};
use vmw_config::{Environment, VmwareConfig};
use vmw_govc::{Govc, ProcessGovc};
use vmw_ssh::Credentials;

use crate::cloud::Cloud;
use crate::inner::Inner;
use crate::settings::Settings;
use crate::{CloudError, KeyPair, Tag};

/// What a [`CloudBuilder`] resolved.
pub(crate) struct Resolved {
    pub(crate) tag: Tag,
    /// The tag was timestamped now: no VM can carry its names yet.
    pub(crate) tag_is_new: bool,
    pub(crate) config: VmwareConfig,
    pub(crate) key: KeyPair,
    pub(crate) credentials: Credentials,
    pub(crate) agent: Option<String>,
    pub(crate) env: Environment,
    pub(crate) settings: Settings,
    pub(crate) govc_path: Option<Utf8PathBuf>,
}

/// Builds a [`Cloud`].
#[derive(Clone, Debug)]
pub struct CloudBuilder {
    tag: String,
    timestamp: bool,
    config: Option<VmwareConfig>,
    env: Option<Environment>,
    govc_path: Option<Utf8PathBuf>,
    key: Option<KeyPair>,
    settings: Settings,
}

impl CloudBuilder {
    /// A cloud whose VMs are named after `tag` (with a `-MMDD-HHMMSS`
    /// suffix unless [`CloudBuilder::timestamp`] turns it off).
    pub fn new(tag: impl Into<String>) -> Self {
        Self {
            tag: tag.into(),
            timestamp: true,
            config: None,
            env: None,
            govc_path: None,
            key: None,
            settings: Settings::default(),
        }
    }

    /// Whether to append `-MMDD-HHMMSS` to the tag.
    #[must_use]
    pub fn timestamp(mut self, on: bool) -> Self {
        self.timestamp = on;
        self
    }

    /// The configuration (default: `vmw_config::Loader::new().load()`).
    #[must_use]
    pub fn config(mut self, config: VmwareConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// The environment (default: the process's).
    #[must_use]
    pub fn environment(mut self, env: Environment) -> Self {
        self.env = Some(env);
        self
    }

    /// The govc binary (default: `VMW_GOVC`, else `PATH`).
    #[must_use]
    pub fn govc_path(mut self, path: impl Into<Utf8PathBuf>) -> Self {
        self.govc_path = Some(path.into());
        self
    }

    /// The key pair (default: see [`KeyPair::resolve`]).
    #[must_use]
    pub fn key_pair(mut self, key: KeyPair) -> Self {
        self.key = Some(key);
        self
    }

    /// Tuning.
    #[must_use]
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    fn resolve(self) -> Result<Resolved, CloudError> {
        let tag = Tag::new(&self.tag, self.timestamp)?;
        let env = self.env.unwrap_or_else(Environment::from_process);
        let config = match self.config {
            Some(c) => c,
            None => {
                vmw_config::Loader::with_environment(env.clone())
                    .load()?
                    .config
            }
        };
        let key = match self.key {
            Some(k) => k,
            None => KeyPair::resolve(&config, &env)?,
        };
        vmw_govc::check_folder(&config.folder)?;
        let agent = env.get(vmw_config::env::SSH_AUTH_SOCK).map(str::to_owned);
        let credentials = credentials(&key, agent.as_deref());
        let mut settings = self.settings;
        if settings.known_hosts.is_none() {
            settings.known_hosts = vmw_ssh::KnownHosts::default_path(
                env.get(vmw_config::env::XDG_STATE_HOME).map(Utf8Path::new),
                env.home(),
            )
            .map(vmw_ssh::KnownHosts::new);
        }
        if settings.journal.is_none() {
            settings.journal = crate::journal::default_dir(
                env.get(vmw_config::env::XDG_STATE_HOME).map(Utf8Path::new),
                env.home(),
            );
        }
        if settings.concurrency == 0 {
            return Err(CloudError::InvalidOption {
                option: "concurrency",
                value: "0".to_owned(),
                problem: "at least 1 is needed".to_owned(),
            });
        }
        Ok(Resolved {
            tag,
            tag_is_new: self.timestamp,
            config,
            key,
            credentials,
            agent,
            env,
            settings,
            govc_path: self.govc_path,
        })
    }

    /// A cloud driving the real govc, found and version-checked now.
    pub async fn build(self) -> Result<Cloud<ProcessGovc>, CloudError> {
        let r = self.resolve()?;
        let govc = ProcessGovc::discover(&r.config, r.govc_path.as_deref(), &r.env).await?;
        Ok(Cloud::from_parts(govc, r))
    }

    /// A cloud driving `govc` (another backend, or a mock).
    pub fn build_with<G: Govc + 'static>(self, govc: G) -> Result<Cloud<G>, CloudError> {
        let r = self.resolve()?;
        Ok(Cloud::from_parts(govc, r))
    }
}

/// How the cloud's SSH connections authenticate: the agent of
/// `SSH_AUTH_SOCK` with the key pair's public key, else the private key
/// file, read when SSH is first used.
pub(crate) fn credentials(key: &KeyPair, agent: Option<&str>) -> Credentials {
    let line = format!("{} {}", key.public_key.algorithm(), key.public_key.data());
    let credentials = Credentials::key_file(key.private_path.clone()).with_agent(agent);
    match vmw_ssh::PublicKey::from_openssh(&line) {
        Ok(public) => credentials.with_public_key(public),
        Err(e) => {
            tracing::debug!(path = %key.public_path, error = %e, "ssh: the public key is not one the agent can be asked for");
            credentials
        }
    }
}

impl<G: Govc + 'static> Cloud<G> {
    pub(crate) fn from_parts(govc: G, r: Resolved) -> Self {
        let journal = r.settings.journal.clone().map(crate::journal::Journal::new);
        Self {
            cancel: None,
            inner: Arc::new(Inner {
                govc,
                config: r.config,
                tag: r.tag,
                keys: RwLock::new((r.key, r.credentials)),
                agent: r.agent,
                settings: r.settings,
                templates: Mutex::new(None),
                sources: Mutex::new(BTreeMap::new()),
                linked_bases: tokio::sync::Mutex::new(BTreeMap::new()),
                tracker: Mutex::new(Vec::new()),
                lookups: crate::lookups::Lookups::default(),
                next_number: tokio::sync::Mutex::new(None),
                searched_at: Mutex::new(None),
                tag_is_new: r.tag_is_new,
                journal,
                open_records: Mutex::new(BTreeMap::new()),
                recovered: tokio::sync::OnceCell::new(),
            }),
        }
    }
}
