//! [`GovcTarget`]: the vCenter a govc process talks to, and how: the URL
//! (never with user info), the login, the placement defaults, the TLS mode,
//! where govc keeps its session, and the caller's variables that govc may
//! see ([`env::GOVC_PASSTHROUGH`]).
//!
//! The target is typed data. [`ProcessGovc`](crate::ProcessGovc) renders
//! it into govc's environment each time it spawns govc, and reads its
//! session directory, URL, user and TLS mode from the typed fields; nothing
//! reads the environment back. The variable names come from
//! [`vmw_config::env`].
//!
//! The password is a [`Secret`]: it is in the environment of the govc
//! child and nowhere else — not in `Debug`, not in [`GovcTarget::vars`],
//! not in errors or logs.

use std::fmt;

use camino::{Utf8Path, Utf8PathBuf};
use vmw_config::{Environment, Login, Secret, VmwareConfig, env};

use crate::session;

/// Where and as whom govc works: everything a govc process gets, as typed
/// values. `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct GovcTarget {
    url: String,
    username: String,
    password: Secret,
    datacenter: String,
    datastore: String,
    folder: String,
    insecure: bool,
    resource_pool: Option<String>,
    network: Option<String>,
    session_root: Option<Utf8PathBuf>,
    /// Replaces the keyed directory under `session_root` when set.
    session_dir: Option<Utf8PathBuf>,
    passthrough: Vec<(&'static str, String)>,
}

impl fmt::Debug for GovcTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GovcTarget")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("datacenter", &self.datacenter)
            .field("datastore", &self.datastore)
            .field("folder", &self.folder)
            .field("insecure", &self.insecure)
            .field("resource_pool", &self.resource_pool)
            .field("network", &self.network)
            .field("session_root", &self.session_root)
            .field("session_dir", &self.session_dir())
            .field("passthrough", &self.passthrough)
            .finish()
    }
}

impl GovcTarget {
    /// The target of `config`.
    ///
    /// The URL, user name and password are those of
    /// [`VmwareConfig::login`]: the URL never holds user info. `session_root`
    /// is vmw's session root (see
    /// [`Environment::govc_session_dir`]): govc keeps its session cache in
    /// the directory of this server, user and password in it (see
    /// [`session`]), so that consecutive calls reuse one login; without it,
    /// govc is told not to persist sessions. The variables of
    /// [`env::GOVC_PASSTHROUGH`] set in `caller` are copied; nothing else
    /// of `caller` is.
    pub fn new(
        config: &VmwareConfig,
        session_root: Option<Utf8PathBuf>,
        caller: &Environment,
    ) -> Self {
        let Login {
            address,
            username,
            password,
        } = config.login();
        let passthrough = env::GOVC_PASSTHROUGH
            .iter()
            .filter_map(|var| Some((*var, caller.get(var)?.to_owned())))
            .collect();
        Self {
            url: address,
            username,
            password,
            datacenter: config.datacenter.clone(),
            datastore: config.datastore.clone(),
            folder: config.folder.clone(),
            insecure: config.insecure_transport,
            resource_pool: config.resource_pool.clone(),
            network: config.network.clone(),
            session_root,
            session_dir: None,
            passthrough,
        }
    }

    /// Uses `dir` as govc's session directory instead of the one of this
    /// server, user and password under the session root. Another login's
    /// directory lets govc reuse that login's session whatever the password
    /// (which is what the keyed layout prevents); tests show it.
    #[must_use]
    pub fn with_session_dir(mut self, dir: impl Into<Utf8PathBuf>) -> Self {
        self.session_dir = Some(dir.into());
        self
    }

    /// The vCenter URL or host name, without user info (`GOVC_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The user name (`GOVC_USERNAME`).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Whether TLS certificates go unverified (`GOVC_INSECURE`).
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// The datacenter (`GOVC_DATACENTER`).
    pub fn datacenter(&self) -> &str {
        &self.datacenter
    }

    /// The default datastore (`GOVC_DATASTORE`).
    pub fn datastore(&self) -> &str {
        &self.datastore
    }

    /// The VM folder (`GOVC_FOLDER`).
    pub fn folder(&self) -> &str {
        &self.folder
    }

    /// The resource pool of new VMs (`GOVC_RESOURCE_POOL`), if any.
    pub fn resource_pool(&self) -> Option<&str> {
        self.resource_pool.as_deref()
    }

    /// The network of new VMs (`GOVC_NETWORK`), if any.
    pub fn network(&self) -> Option<&str> {
        self.network.as_deref()
    }

    /// The directory holding the session directories of every server, user
    /// and password; [`GovcTarget::session_dir`] is one directory in it.
    pub fn session_root(&self) -> Option<&Utf8Path> {
        self.session_root.as_deref()
    }

    /// govc's session directory (`GOVMOMI_HOME`): the session root joined
    /// with the [`session::key`] of the URL, user and password (or the
    /// directory of [`GovcTarget::with_session_dir`]). `None` when sessions
    /// are not kept.
    pub fn session_dir(&self) -> Option<Utf8PathBuf> {
        if let Some(dir) = &self.session_dir {
            return Some(dir.clone());
        }
        self.session_root
            .as_ref()
            .map(|root| root.join(session::key(&self.url, &self.username, &self.password)))
    }

    /// The variables copied from the caller, in the order of
    /// [`env::GOVC_PASSTHROUGH`].
    pub fn passthrough(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.passthrough.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// govc's environment without the password, in the order govc gets it:
    /// for display. The child gets these and then `GOVC_PASSWORD`.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            (env::GOVC_URL, self.url.clone()),
            (env::GOVC_USERNAME, self.username.clone()),
            (env::GOVC_DATACENTER, self.datacenter.clone()),
            (env::GOVC_DATASTORE, self.datastore.clone()),
            (env::GOVC_FOLDER, self.folder.clone()),
            (
                env::GOVC_INSECURE,
                if self.insecure { "1" } else { "0" }.to_owned(),
            ),
        ];
        if let Some(pool) = &self.resource_pool {
            vars.push((env::GOVC_RESOURCE_POOL, pool.clone()));
        }
        if let Some(net) = &self.network {
            vars.push((env::GOVC_NETWORK, net.clone()));
        }
        match self.session_dir() {
            Some(dir) => {
                vars.push((env::GOVMOMI_HOME, dir.into_string()));
                vars.push((env::GOVC_PERSIST_SESSION, "true".to_owned()));
            }
            None => vars.push((env::GOVC_PERSIST_SESSION, "false".to_owned())),
        }
        vars.extend(self.passthrough.iter().cloned());
        vars
    }

    /// The whole environment of the govc child, the password last: only
    /// for handing to the process (after clearing its environment).
    pub(crate) fn child_env(&self) -> Vec<(&'static str, String)> {
        let mut vars = self.vars();
        vars.push((env::GOVC_PASSWORD, self.password.expose().to_owned()));
        vars
    }

    /// What tells one govc session from another: the session directory,
    /// URL, user and TLS mode. `None` when sessions are not kept.
    pub(crate) fn session_identity(&self) -> Option<String> {
        let home = self.session_dir()?;
        Some(format!(
            "{home}\0{}\0{}\0{}",
            self.url,
            self.username,
            if self.insecure { "1" } else { "0" }
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vmw_config::{Loaded, Loader, Overrides};

    use super::*;

    /// A loader reading only `vars`: no home, and a system file that does
    /// not exist, so the machine's files never interfere.
    fn load(vars: &[(&str, &str)], overrides: Overrides) -> Loaded {
        Loader::with_environment(Environment::from_pairs(vars.iter().copied()))
            .system_file("/nonexistent/vmw-test/pycloudlib.toml")
            .overrides(overrides)
            .load()
            .unwrap()
    }

    fn all_overrides() -> Overrides {
        Overrides {
            server: Some("o-server".into()),
            username: Some("o-user".into()),
            password: Some(Secret::new("o-pass")),
            datacenter: Some("o-dc".into()),
            datastore: Some("o-ds".into()),
            folder: Some("o-folder".into()),
            ..Overrides::default()
        }
    }

    /// The configuration keys other than server, user and password.
    fn placement_overrides() -> Overrides {
        Overrides {
            datacenter: Some("DC0".into()),
            datastore: Some("LocalDS_0".into()),
            folder: Some("/DC0/vm".into()),
            ..Overrides::default()
        }
    }

    fn exposed(target: &GovcTarget) -> BTreeMap<&'static str, String> {
        target.child_env().into_iter().collect()
    }

    fn var(target: &GovcTarget, key: &str) -> Option<String> {
        target
            .vars()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    #[test]
    fn holds_the_config_and_hides_the_password() {
        let loaded = load(
            &[],
            Overrides {
                insecure_transport: Some(true),
                resource_pool: Some("/DC0/host/DC0_C0/Resources".into()),
                ..all_overrides()
            },
        );
        let caller = Environment::from_pairs([
            ("SSL_CERT_FILE", "/etc/ca.pem"),
            ("AWS_SECRET_ACCESS_KEY", "nope"),
        ]);
        let target = GovcTarget::new(
            &loaded.config,
            Some(Utf8PathBuf::from("/c/govmomi")),
            &caller,
        );
        let exposed = exposed(&target);
        assert_eq!(exposed["GOVC_URL"], "o-server");
        assert_eq!(exposed["GOVC_USERNAME"], "o-user");
        assert_eq!(exposed["GOVC_PASSWORD"], "o-pass");
        assert_eq!(exposed["GOVC_INSECURE"], "1");
        assert_eq!(exposed["GOVC_RESOURCE_POOL"], "/DC0/host/DC0_C0/Resources");
        let home = format!(
            "/c/govmomi/{}",
            session::key("o-server", "o-user", &Secret::new("o-pass"))
        );
        assert_eq!(exposed["GOVMOMI_HOME"], home);
        assert_eq!(exposed["GOVC_PERSIST_SESSION"], "true");
        assert_eq!(target.session_dir(), Some(Utf8PathBuf::from(&home)));
        assert_eq!(target.session_root(), Some(Utf8Path::new("/c/govmomi")));
        assert_eq!(target.url(), "o-server");
        assert_eq!(target.username(), "o-user");
        assert!(target.insecure());
        assert_eq!(exposed["SSL_CERT_FILE"], "/etc/ca.pem");
        assert_eq!(
            target.passthrough().collect::<Vec<_>>(),
            [("SSL_CERT_FILE", "/etc/ca.pem")]
        );
        assert!(!exposed.contains_key("AWS_SECRET_ACCESS_KEY"));
        assert!(!exposed.contains_key("GOVC_NETWORK"));
        assert_eq!(var(&target, "GOVC_PASSWORD"), None);
        assert!(target.vars().iter().all(|(_, v)| v != "o-pass"));
        let debug = format!("{target:?} {target:#?} {:?}", loaded.config);
        assert!(!debug.contains("o-pass"), "{debug}");
        assert!(debug.contains("<redacted>"));

        let no_cache = GovcTarget::new(&loaded.config, None, &Environment::default());
        assert_eq!(
            var(&no_cache, "GOVC_PERSIST_SESSION").as_deref(),
            Some("false")
        );
        assert_eq!(var(&no_cache, "GOVMOMI_HOME"), None);
        assert_eq!(no_cache.session_dir(), None);
        assert_eq!(no_cache.session_identity(), None);
    }

    #[test]
    fn the_environment_is_rendered_in_a_fixed_order_with_the_password_last() {
        let config = VmwareConfig {
            network: Some("VM Network".into()),
            resource_pool: Some("/DC0/host/DC0_C0/Resources".into()),
            ..load(&[], all_overrides()).config
        };
        // Every pass-through variable, and others that must stay behind.
        let mut caller = Environment::from_pairs([
            ("PATH", "/usr/bin"),
            ("HOME", "/home/u"),
            ("GOVC_PASSWORD", "callers-own"),
            ("GOVC_URL", "elsewhere"),
        ]);
        for var in env::GOVC_PASSTHROUGH.iter().rev() {
            caller = caller.with(*var, format!("v-{var}"));
        }
        let target = GovcTarget::new(&config, Some("/c".into()), &caller);
        let keys: Vec<&str> = target.child_env().iter().map(|(k, _)| *k).collect();
        let mut expected = vec![
            "GOVC_URL",
            "GOVC_USERNAME",
            "GOVC_DATACENTER",
            "GOVC_DATASTORE",
            "GOVC_FOLDER",
            "GOVC_INSECURE",
            "GOVC_RESOURCE_POOL",
            "GOVC_NETWORK",
            "GOVMOMI_HOME",
            "GOVC_PERSIST_SESSION",
        ];
        expected.extend(env::GOVC_PASSTHROUGH);
        expected.push("GOVC_PASSWORD");
        assert_eq!(keys, expected);
        let exposed = exposed(&target);
        assert_eq!(exposed["GOVC_INSECURE"], "0");
        assert_eq!(exposed["GOVC_NETWORK"], "VM Network");
        assert_eq!(exposed["GOVC_URL"], "o-server");
        assert_eq!(exposed["GOVC_PASSWORD"], "o-pass");
        for var in env::GOVC_PASSTHROUGH {
            assert_eq!(exposed[var], format!("v-{var}"));
        }
        // vars() is child_env() without the password.
        let mut shown = target.vars();
        shown.push(("GOVC_PASSWORD", "o-pass".to_owned()));
        assert_eq!(shown, target.child_env());
    }

    #[test]
    fn credentials_in_the_server_url_reach_govc_apart_from_it() {
        let loaded = load(
            &[(
                "GOVC_URL",
                "https://administrator%40vsphere.local:p%40ss%3Aw%2F%25rd@vc.example.com/sdk",
            )],
            placement_overrides(),
        );
        let c = &loaded.config;
        let target = GovcTarget::new(c, Some("/c".into()), &Environment::default());
        let exposed = exposed(&target);
        assert_eq!(exposed["GOVC_URL"], "https://vc.example.com/sdk");
        assert_eq!(exposed["GOVC_USERNAME"], "administrator@vsphere.local");
        assert_eq!(exposed["GOVC_PASSWORD"], "p@ss:w/%rd");
        let shown = format!(
            "{loaded:?} {target:?} {:?} {}",
            target.vars(),
            c.server_display()
        );
        for secret in ["p@ss", "p%40ss", "%25rd"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn a_hand_made_config_with_user_info_is_cleaned_too() {
        let config = VmwareConfig {
            server: "https://alice:hunter2@vc/sdk".into(),
            ..VmwareConfig::default()
        };
        let target = GovcTarget::new(&config, Some("/c".into()), &Environment::default());
        let exposed = exposed(&target);
        assert_eq!(exposed["GOVC_URL"], "https://vc/sdk");
        assert_eq!(exposed["GOVC_USERNAME"], "alice");
        assert_eq!(exposed["GOVC_PASSWORD"], "hunter2");
        // The session directory is that of the URL's user and password.
        let same = VmwareConfig {
            server: "https://vc/sdk".into(),
            username: "alice".into(),
            password: Secret::new("hunter2"),
            ..config.clone()
        };
        let same = GovcTarget::new(&same, Some("/c".into()), &Environment::default());
        assert!(target.session_dir().is_some());
        assert_eq!(target.session_dir(), same.session_dir());
        assert_eq!(var(&target, "GOVMOMI_HOME"), var(&same, "GOVMOMI_HOME"));
        // Explicit fields win over the URL, as in the loader.
        let explicit = VmwareConfig {
            username: "bob".into(),
            password: Secret::new("other"),
            ..config.clone()
        };
        let e = GovcTarget::new(&explicit, None, &Environment::default());
        let exposed = self::exposed(&e);
        assert_eq!(exposed["GOVC_USERNAME"], "bob");
        assert_eq!(exposed["GOVC_PASSWORD"], "other");
        assert_eq!(exposed["GOVC_URL"], "https://vc/sdk");

        let shown = format!(
            "{config:?} {config:#?} {target:?} {target:#?} {:?}",
            target.vars()
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("https://vc/sdk"), "{shown}");
    }

    #[test]
    fn each_password_gets_its_own_session_directory() {
        let home = |password: &str| {
            let config = load(
                &[],
                Overrides {
                    password: Some(Secret::new(password)),
                    ..all_overrides()
                },
            )
            .config;
            let target = GovcTarget::new(&config, Some("/c".into()), &Environment::default());
            var(&target, "GOVMOMI_HOME").unwrap()
        };
        assert_eq!(home("right"), home("right"));
        assert_ne!(home("right"), home("wrong"));
        let right = home("right");
        let name = Utf8Path::new(&right).file_name().unwrap();
        assert!(session::is_key(name), "{right}");
        assert!(right.starts_with("/c/"), "{right}");
    }

    #[test]
    fn a_chosen_session_directory_replaces_the_keyed_one() {
        let config = load(&[], all_overrides()).config;
        let target = GovcTarget::new(&config, Some("/c".into()), &Environment::default())
            .with_session_dir("/elsewhere/s");
        assert_eq!(
            target.session_dir(),
            Some(Utf8PathBuf::from("/elsewhere/s"))
        );
        assert_eq!(target.session_root(), Some(Utf8Path::new("/c")));
        assert_eq!(
            var(&target, "GOVMOMI_HOME").as_deref(),
            Some("/elsewhere/s")
        );
        assert_eq!(
            var(&target, "GOVC_PERSIST_SESSION").as_deref(),
            Some("true")
        );
        // Even without a session root.
        let target = GovcTarget::new(&config, None, &Environment::default())
            .with_session_dir("/elsewhere/s");
        assert_eq!(
            var(&target, "GOVMOMI_HOME").as_deref(),
            Some("/elsewhere/s")
        );
    }

    #[test]
    fn sessions_differ_by_directory_url_user_and_tls_mode() {
        let config = load(&[], all_overrides()).config;
        let target = |config: &VmwareConfig| {
            GovcTarget::new(config, Some("/c".into()), &Environment::default())
                .session_identity()
                .unwrap()
        };
        let base = target(&config);
        assert!(base.starts_with("/c/"), "{base}");
        assert!(!base.contains("o-pass"));
        assert_eq!(base, target(&config.clone()));
        let insecure = VmwareConfig {
            insecure_transport: true,
            ..config.clone()
        };
        let other_user = VmwareConfig {
            username: "someone".into(),
            ..config.clone()
        };
        for other in [&insecure, &other_user] {
            assert_ne!(target(other), base);
        }
    }
}
