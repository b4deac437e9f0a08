//! The configuration as pycloudlib reads it — the `[vmware]` section of
//! `config_file`, `$PYCLOUDLIB_CONFIG`, `~/.config/pycloudlib.toml` or
//! `/etc/pycloudlib.toml`, keyword arguments winning — plus vmw's own keys
//! (`resource_pool`, `network`), the `GOVC_*` variables, and vmw's
//! variables for the guests' SSH user and port (`VMW_SSH_USER`,
//! `VMW_SSH_PORT`).

use std::time::Duration;

use vmw_cloud::{
    CloudError, CloudInitErrors, Environment, Loader, Overrides, Secret, Settings, SshConfig,
};

/// What `VMWare(...)` was given beside its tag.
#[derive(Default)]
pub(crate) struct Given {
    pub(crate) config_file: Option<String>,
    pub(crate) overrides: Overrides,
    pub(crate) concurrency: Option<usize>,
    pub(crate) ssh_user: Option<String>,
    pub(crate) ssh_port: Option<u16>,
}

impl Given {
    /// The password, kept as vmw keeps secrets.
    pub(crate) fn password(&mut self, password: Option<String>) {
        self.overrides.password = password.map(Secret::new);
    }
}

/// The configuration loader for `given`, in `env`.
pub(crate) fn loader(given: &Given, env: &Environment) -> Loader {
    let mut loader = Loader::with_environment(env.clone()).overrides(given.overrides.clone());
    if let Some(file) = &given.config_file {
        loader = loader.file(file.as_str());
    }
    loader
}

/// The cloud's tuning: the SSH user and port from the arguments, else from
/// `VMW_SSH_USER` and `VMW_SSH_PORT`, else pycloudlib's (`ubuntu`, 22).
pub(crate) fn settings(given: &Given, env: &Environment) -> Result<Settings, CloudError> {
    let mut ssh = SshConfig::default();
    if let Some(user) = given
        .ssh_user
        .clone()
        .or_else(|| env.get(vmw_cloud::env::VMW_SSH_USER).map(str::to_owned))
    {
        ssh.user = user;
    }
    let port = match given.ssh_port {
        Some(p) => Some(p),
        None => match env.get(vmw_cloud::env::VMW_SSH_PORT) {
            Some(text) => Some(text.parse::<u16>().map_err(|_| CloudError::InvalidOption {
                option: "SSH port",
                value: text.to_owned(),
                problem: format!(
                    "{} must be a port number, 1 to 65535",
                    vmw_cloud::env::VMW_SSH_PORT
                ),
            })?),
            None => None,
        },
    };
    if let Some(port) = port {
        ssh.port = port;
    }
    let mut settings = Settings {
        ssh,
        ..Settings::default()
    };
    // As pycloudlib's waits: cloud-init finished, with errors or not, is
    // ready; the caller judges what it did (the warning logs its status).
    settings.ready.cloud_init_errors = CloudInitErrors::Accept;
    if let Some(n) = given.concurrency {
        settings.concurrency = n;
    }
    Ok(settings)
}

/// A wait given in minutes, as pycloudlib takes `ready_timeout`.
pub(crate) fn minutes(m: f64) -> Option<Duration> {
    (m.is_finite() && m > 0.0).then(|| Duration::from_secs_f64(m * 60.0))
}
