//! The SSH key pair injected into instances.
//!
//! In order: the paths of the configuration (`public_key_path`, and
//! `private_key_path` or the public path without `.pub`; a configured path
//! that does not exist is an error); else `~/.ssh/id_rsa.pub`, then
//! `~/.ssh/id_ed25519.pub`; else an ed25519 pair that vmw generates once in
//! its cache directory (`~/.cache/vmw/ssh/id_ed25519`, private key mode
//! 0600) and reuses afterwards, so that launching and SSH work out of the box.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use camino::{Utf8Path, Utf8PathBuf};
use russh::keys::ssh_key::{Algorithm, LineEnding, PrivateKey};
use vmw_config::{Environment, VmwareConfig};
use vmw_userdata::PublicKey;

use crate::CloudError;

/// An SSH key pair on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPair {
    /// The public key file.
    pub public_path: Utf8PathBuf,
    /// The private key file.
    pub private_path: Utf8PathBuf,
    /// The public key.
    pub public_key: PublicKey,
    /// The key pair's name (`key_name`, else the login name).
    pub name: String,
    /// Whether vmw generated it.
    pub generated: bool,
}

/// Expands a leading `~/` with `HOME`.
pub fn expand_home(path: &Utf8Path, env: &Environment) -> Utf8PathBuf {
    match (path.as_str().strip_prefix("~/"), env.home()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => path.to_owned(),
    }
}

fn key_err(path: &Utf8Path, problem: impl Into<String>) -> CloudError {
    CloudError::Key {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

impl KeyPair {
    /// Finds or makes the key pair for `config` (see the module docs).
    pub fn resolve(config: &VmwareConfig, env: &Environment) -> Result<Self, CloudError> {
        let name = config
            .key_name
            .clone()
            .or_else(|| {
                env.get("USER")
                    .or_else(|| env.get("LOGNAME"))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "vmw".to_owned());
        if let Some(public) = &config.public_key_path {
            let public = expand_home(public, env);
            let private = config
                .private_key_path
                .as_deref()
                .map(|p| expand_home(p, env));
            return Self::from_files(&public, private.as_deref(), name);
        }
        if let Some(home) = env.home() {
            for candidate in ["id_rsa.pub", "id_ed25519.pub"] {
                let public = home.join(".ssh").join(candidate);
                if public.is_file() {
                    return Self::from_files(&public, None, name);
                }
            }
        }
        let dir = env
            .cache_dir()
            .map(|d| d.join("ssh"))
            .ok_or_else(|| key_err(Utf8Path::new("~/.ssh"), "no key configured, none in ~/.ssh, and no HOME to keep a generated one in\nhint: set public_key_path in [vmware]"))?;
        Self::generated_in(&dir, name)
    }

    /// A pair from existing files; `private` defaults to `public` without
    /// `.pub`.
    pub fn from_files(
        public: &Utf8Path,
        private: Option<&Utf8Path>,
        name: String,
    ) -> Result<Self, CloudError> {
        let text = std::fs::read_to_string(public).map_err(|e| {
            key_err(
                public,
                format!("cannot read the public key: {e}\nhint: fix public_key_path in [vmware]"),
            )
        })?;
        let public_key = PublicKey::parse(&text).map_err(|e| key_err(public, e.to_string()))?;
        let private_path = match private {
            Some(p) => p.to_owned(),
            None => match public.as_str().strip_suffix(".pub") {
                Some(stem) => Utf8PathBuf::from(stem),
                None => {
                    return Err(key_err(
                        public,
                        "the public key file does not end in .pub, so the private key path cannot be derived\nhint: set private_key_path in [vmware]",
                    ));
                }
            },
        };
        if !private_path.is_file() {
            return Err(key_err(
                &private_path,
                "the private key does not exist\nhint: set private_key_path in [vmware]",
            ));
        }
        Ok(Self {
            public_path: public.to_owned(),
            private_path,
            public_key,
            name,
            generated: false,
        })
    }

    /// The ed25519 pair in `dir`, generated when absent.
    pub fn generated_in(dir: &Utf8Path, name: String) -> Result<Self, CloudError> {
        let private_path = dir.join("id_ed25519");
        let public_path = dir.join("id_ed25519.pub");
        if !(private_path.is_file() && public_path.is_file()) {
            generate(dir, &private_path, &public_path, &name)?;
            tracing::info!(key = %public_path, "generated an SSH key pair for vmw instances");
        }
        let mut pair = Self::from_files(&public_path, Some(&private_path), name)?;
        pair.generated = true;
        Ok(pair)
    }
}

fn generate(
    dir: &Utf8Path,
    private_path: &Utf8Path,
    public_path: &Utf8Path,
    name: &str,
) -> Result<(), CloudError> {
    let io = |what: &str, source: std::io::Error| CloudError::Io {
        what: format!("{what} {dir}"),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io("creating", e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io("securing", e))?;
    let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| key_err(private_path, format!("generating a key failed: {e}")))?;
    key.set_comment(format!("vmw-{name}"));
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| key_err(private_path, format!("encoding the key failed: {e}")))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| key_err(public_path, format!("encoding the key failed: {e}")))?;
    // Write to temporary names, then rename: a crash leaves no half pair.
    let tmp_private = dir.join(".id_ed25519.tmp");
    let tmp_public = dir.join(".id_ed25519.pub.tmp");
    let write = |path: &Utf8Path, data: &[u8], mode: u32| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        f.write_all(data)?;
        f.sync_all()
    };
    write(&tmp_private, private.as_bytes(), 0o600).map_err(|e| io("writing a key into", e))?;
    write(&tmp_public, format!("{public}\n").as_bytes(), 0o644)
        .map_err(|e| io("writing a key into", e))?;
    std::fs::rename(&tmp_private, private_path).map_err(|e| io("writing a key into", e))?;
    std::fs::rename(&tmp_public, public_path).map_err(|e| io("writing a key into", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf8(p: &std::path::Path) -> Utf8PathBuf {
        Utf8PathBuf::from_path_buf(p.to_owned()).unwrap()
    }

    fn config() -> VmwareConfig {
        VmwareConfig {
            server: "s".into(),
            username: "u".into(),
            password: vmw_config::Secret::new("p"),
            datacenter: "dc".into(),
            datastore: "ds".into(),
            folder: "f".into(),
            insecure_transport: false,
            resource_pool: None,
            network: None,
            public_key_path: None,
            private_key_path: None,
            key_name: None,
        }
    }

    #[test]
    fn generates_once_with_private_mode_0600_then_reuses() {
        let home = tempfile::tempdir().unwrap();
        let env = Environment::from_pairs([("HOME", utf8(home.path()).as_str()), ("USER", "me")]);
        let pair = KeyPair::resolve(&config(), &env).unwrap();
        assert!(pair.generated);
        assert_eq!(pair.name, "me");
        assert_eq!(
            pair.private_path,
            utf8(home.path()).join(".cache/vmw/ssh/id_ed25519")
        );
        let mode = std::fs::metadata(&pair.private_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(pair.public_key.algorithm(), "ssh-ed25519");
        let private = std::fs::read_to_string(&pair.private_path).unwrap();
        let parsed = PrivateKey::from_openssh(&private).unwrap();
        assert_eq!(
            parsed.public_key().to_openssh().unwrap(),
            pair.public_key.to_string(),
            "the private key matches the public one"
        );
        let again = KeyPair::resolve(&config(), &env).unwrap();
        assert_eq!(again.public_key, pair.public_key, "reused, not regenerated");
    }

    #[test]
    fn home_ssh_keys_come_first_rsa_before_ed25519() {
        let home = tempfile::tempdir().unwrap();
        let h = utf8(home.path());
        let ssh = h.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let ed = KeyPair::generated_in(&h.join("gen"), "x".into()).unwrap();
        std::fs::copy(&ed.public_path, ssh.join("id_ed25519.pub")).unwrap();
        std::fs::copy(&ed.private_path, ssh.join("id_ed25519")).unwrap();
        let env = Environment::from_pairs([("HOME", h.as_str())]);
        let pair = KeyPair::resolve(&config(), &env).unwrap();
        assert_eq!(pair.public_path, ssh.join("id_ed25519.pub"));
        assert!(!pair.generated);

        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDhgkYhs5Uwr2x1lNULXTu9eTc5NToRX2vm7Cb2XmviGbSB/yONtVfJx7z+5sVtwNWEAvwmWAe4/cRFj0aQr695Ps6XXhArp3E3H6RqPYy8aZ87sLyIiIr/GsZa3vMtwfLsxjam1ctiY58+wzzBbCSWvs5w6Gg5If7FLqkoKtskBzIHBEUwdmI0s8BBhPYWHPSgk2cOAF4g9BRr6JD4oJNYgzjnNzQbK3bQl40q2gCuOH18HRNIJzGEou2mYQbQ2v3cjpzBwExXHuNiK7nRHRjFWx3ocRQgaGfwlmMox8eKCFFMUTX1l/SnGVpuGfLrCoIk2g/I5oiAEL5SOj51wQd3 rsa@vmw\n";
        std::fs::write(ssh.join("id_rsa.pub"), rsa).unwrap();
        std::fs::write(ssh.join("id_rsa"), "private").unwrap();
        let pair = KeyPair::resolve(&config(), &env).unwrap();
        assert_eq!(pair.public_path, ssh.join("id_rsa.pub"));
        assert_eq!(pair.private_path, ssh.join("id_rsa"));
        assert_eq!(pair.public_key.algorithm(), "ssh-rsa");
    }

    #[test]
    fn a_configured_key_that_does_not_exist_is_an_error() {
        let home = tempfile::tempdir().unwrap();
        let env = Environment::from_pairs([("HOME", utf8(home.path()).as_str())]);
        let mut c = config();
        c.public_key_path = Some("~/nope/key.pub".into());
        let err = KeyPair::resolve(&c, &env).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{}/nope/key.pub", utf8(home.path()))),
            "{msg}"
        );
        assert!(msg.contains("public_key_path"), "{msg}");
    }
}
