//! What every command starts from: the global options, the environment,
//! the configuration and the cloud built from them.

use std::sync::OnceLock;
use std::time::Duration;

use vmw_cloud::{Cloud, CloudBuilder, Scope, Settings, Tag};
use vmw_cloud::{ProcessGovc, SshConfig};
use vmw_config::{Environment, Loaded, Loader};

use crate::cli::Global;
use crate::error::Target;
use crate::output::Output;

/// The global options, the environment (read once), where results go, and
/// the vCenter in use once the configuration is loaded.
#[derive(Debug)]
pub(crate) struct Context {
    /// The global options.
    pub(crate) global: Global,
    /// The process environment.
    pub(crate) env: Environment,
    /// Text or JSON, and the progress display.
    pub(crate) out: Output,
    /// The vCenter and user of the loaded configuration, for hints.
    target: OnceLock<Target>,
}

impl Context {
    /// A context for `global`, the process environment and `out`.
    pub(crate) fn new(global: Global, out: Output) -> Self {
        Self {
            global,
            env: Environment::from_process(),
            out,
            target: OnceLock::new(),
        }
    }

    /// The vCenter and user of the configuration, once it was loaded.
    pub(crate) fn target(&self) -> Option<&Target> {
        self.target.get()
    }

    /// The configuration loader: `--config`, else the search order.
    pub(crate) fn loader(&self) -> Loader {
        let loader = Loader::with_environment(self.env.clone());
        match &self.global.config {
            Some(path) => loader.file(path.clone()),
            None => loader,
        }
    }

    /// Resolves the configuration and remembers the vCenter for hints.
    pub(crate) fn load(&self) -> Result<Loaded, vmw_config::ConfigError> {
        let loaded = self.loader().load()?;
        let _ = self.target.set(Target {
            server: loaded.config.server_display(),
            username: loaded.config.username.clone(),
            password_origin: loaded
                .origin("password")
                .map_or_else(|| "nowhere".to_owned(), ToString::to_string),
        });
        for key in &loaded.unknown_keys {
            tracing::warn!(
                "unknown key `{key}` in [vmware] of {} (a typo?); known keys: {}",
                loaded
                    .file
                    .as_ref()
                    .map_or("the config file", |f| f.as_str()),
                vmw_config::known_keys().collect::<Vec<_>>().join(", ")
            );
        }
        Ok(loaded)
    }

    /// The base tag: `--tag`, else the login name made into a valid tag.
    pub(crate) fn base_tag(&self) -> String {
        if let Some(t) = &self.global.tag {
            return t.clone();
        }
        let login = self
            .env
            .get("USER")
            .or_else(|| self.env.get("LOGNAME"))
            .unwrap_or("vmw");
        login_tag(login)
    }

    /// The VMs `list` and `clean` look at: every tag with `all_tags`; the
    /// exact tag with `--tag T --no-timestamp`; else the base tag and every
    /// timestamped tag made from it.
    pub(crate) fn scope(&self, all_tags: bool) -> Result<Scope, vmw_cloud::CloudError> {
        if all_tags {
            return Ok(Scope::AllTags);
        }
        let base = self.base_tag();
        let tag = Tag::parse(&base)?;
        if self.global.no_timestamp && self.global.tag.is_some() {
            Ok(Scope::Tag(tag))
        } else {
            Ok(Scope::Family(base))
        }
    }

    /// The cloud's tuning: SSH user and port, concurrency, and the wait
    /// limit.
    pub(crate) fn settings(&self, wait_timeout: Option<Duration>) -> Settings {
        let mut settings = Settings {
            ssh: SshConfig {
                user: self.global.ssh_user.clone(),
                port: self.global.ssh_port,
                ..SshConfig::default()
            },
            ..Settings::default()
        };
        if let Some(n) = self.global.concurrency {
            settings.concurrency = n as usize;
        }
        if let Some(limit) = wait_timeout {
            settings.ready.ready = limit;
            settings.ip_wait = limit;
        }
        settings
    }

    /// The cloud: configuration, tag (timestamped unless
    /// `--no-timestamp`), key pair, and govc (found and version-checked).
    pub(crate) async fn cloud(
        &self,
        wait_timeout: Option<Duration>,
    ) -> anyhow::Result<Cloud<ProcessGovc>> {
        self.cloud_with(self.settings(wait_timeout)).await
    }

    /// The cloud, with `settings`.
    pub(crate) async fn cloud_with(
        &self,
        settings: Settings,
    ) -> anyhow::Result<Cloud<ProcessGovc>> {
        let loaded = self.load()?;
        Ok(CloudBuilder::new(self.base_tag())
            .timestamp(!self.global.no_timestamp)
            .config(loaded.config)
            .environment(self.env.clone())
            .settings(settings)
            .build()
            .await?)
    }
}

/// A login name as a tag: lowercase, characters other than a-z, 0-9 and
/// `-` replaced by `-`, short enough for the timestamp; `vmw` when nothing
/// is left.
pub(crate) fn login_tag(login: &str) -> String {
    let mapped: String = login
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    // Room for "-MMDD-HHMMSS".
    let limit = vmw_cloud::MAX_TAG_LEN - 12;
    let cut: String = mapped.chars().take(limit).collect();
    let trimmed = cut.trim_matches('-');
    if trimmed.is_empty() {
        "vmw".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names_become_tags() {
        assert_eq!(login_tag("alice"), "alice");
        assert_eq!(login_tag("Bob.Smith"), "bob-smith");
        assert_eq!(login_tag("_svc_"), "svc");
        assert_eq!(login_tag("..."), "vmw");
        assert_eq!(login_tag(&"x".repeat(80)).len(), 51);
    }
}
