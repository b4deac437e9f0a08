//! The SSH key pair injected into instances.
//!
//! In order: the paths of the configuration (`public_key_path`, and
//! `private_key_path` or the public path without `.pub`; a configured path
//! that does not exist is an error); else `~/.ssh/id_rsa.pub`, then
//! `~/.ssh/id_ed25519.pub`; else an ed25519 pair that vmw generates once in
//! its cache directory (`~/.cache/vmw/ssh/id_ed25519`, private key mode
//! 0600) and reuses afterwards, so that launching and SSH work out of the box.
//!
//! Several vmw processes may need the generated pair at once. Generation
//! happens under an exclusive advisory lock on `id_ed25519.lock` beside the
//! pair, and only when the pair is still missing once the lock is held, so
//! one process generates and the others use its pair. Both halves are
//! written to unique temporary names, synced, and renamed into place: a
//! leftover public half is removed first, then the private half lands, then
//! the public half. The pair counts as present only when both files exist,
//! so nobody ever sees a public key without its private key or halves of two
//! different pairs.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

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
pub(crate) fn expand_home(path: &Utf8Path, env: &Environment) -> Utf8PathBuf {
    match (path.as_str().strip_prefix("~/"), env.home()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => path.to_owned(),
    }
}

fn key_err(path: &Utf8Path, problem: impl Into<String>, hint: Option<String>) -> CloudError {
    CloudError::Key {
        path: path.to_owned(),
        problem: problem.into(),
        hint,
    }
}

/// The hint of most key errors.
fn set_key(key: &str) -> Option<String> {
    Some(format!("set {key} in [vmware]"))
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
        let dir = env.cache_dir().map(|d| d.join("ssh")).ok_or_else(|| {
            key_err(
                Utf8Path::new("~/.ssh"),
                "no key configured, none in ~/.ssh, and no HOME to keep a generated one in",
                set_key("public_key_path"),
            )
        })?;
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
                format!("cannot read the public key: {e}"),
                Some("fix public_key_path in [vmware]".to_owned()),
            )
        })?;
        let public_key = PublicKey::parse(&text).map_err(|e| {
            key_err(
                public,
                e.to_string(),
                vmw_hints::Hints::hints(&e).into_iter().next(),
            )
        })?;
        let private_path = match private {
            Some(p) => p.to_owned(),
            None => match public.as_str().strip_suffix(".pub") {
                Some(stem) => Utf8PathBuf::from(stem),
                None => {
                    return Err(key_err(
                        public,
                        "the public key file does not end in .pub, so the private key path cannot be derived",
                        set_key("private_key_path"),
                    ));
                }
            },
        };
        if !private_path.is_file() {
            return Err(key_err(
                &private_path,
                "the private key does not exist",
                set_key("private_key_path"),
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

    /// The ed25519 pair in `dir`, generated when absent (see the module
    /// docs: safe with several processes at once).
    pub fn generated_in(dir: &Utf8Path, name: String) -> Result<Self, CloudError> {
        let private_path = dir.join(PRIVATE_NAME);
        let public_path = dir.join(format!("{PRIVATE_NAME}.pub"));
        let present = || private_path.is_file() && public_path.is_file();
        if !present() {
            let _lock = lock_dir(dir)?;
            // Another process may have made the pair while this one waited.
            if !present() {
                generate(dir, &private_path, &public_path, &name)?;
                tracing::info!(key = %public_path, "generated an SSH key pair for vmw instances");
            }
        }
        let mut pair = Self::from_files(&public_path, Some(&private_path), name)?;
        pair.generated = true;
        Ok(pair)
    }
}

/// The file name of the generated private key.
const PRIVATE_NAME: &str = "id_ed25519";

fn io_err(what: String, source: std::io::Error) -> CloudError {
    CloudError::Io { what, source }
}

/// Creates `dir` (mode 0700) and takes the exclusive generation lock in it;
/// the lock lasts as long as the returned file is open.
fn lock_dir(dir: &Utf8Path) -> Result<File, CloudError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err(format!("creating {dir}"), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io_err(format!("securing {dir}"), e))?;
    let path = dir.join(format!("{PRIVATE_NAME}.lock"));
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_err(format!("opening the lock file {path}"), e))?;
    lock.lock()
        .map_err(|e| io_err(format!("locking {path}"), e))?;
    Ok(lock)
}

/// Writes a new pair; the caller holds the lock.
fn generate(
    dir: &Utf8Path,
    private_path: &Utf8Path,
    public_path: &Utf8Path,
    name: &str,
) -> Result<(), CloudError> {
    let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| key_err(private_path, format!("generating a key failed: {e}"), None))?;
    key.set_comment(format!("vmw-{name}"));
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| key_err(private_path, format!("encoding the key failed: {e}"), None))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| key_err(public_path, format!("encoding the key failed: {e}"), None))?;

    // Both halves complete under unique names first.
    let tmp_private = write_temporary(dir, private.as_bytes(), 0o600)?;
    let tmp_public = write_temporary(dir, format!("{public}\n").as_bytes(), 0o644)?;
    // A public half left without its private half (a crash, a user) must
    // not pair with the new private half, even for a moment.
    match std::fs::remove_file(public_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_err(format!("removing the stale {public_path}"), e));
        }
        _ => {}
    }
    tmp_private
        .persist(private_path)
        .map_err(|e| io_err(format!("writing {private_path}"), e.error))?;
    tmp_public
        .persist(public_path)
        .map_err(|e| io_err(format!("writing {public_path}"), e.error))?;
    // The renames themselves survive a crash once the directory is synced.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(format!("syncing {dir}"), e))?;
    Ok(())
}

/// `data` in a new file of `dir` with a unique name and `mode`, synced.
fn write_temporary(
    dir: &Utf8Path,
    data: &[u8],
    mode: u32,
) -> Result<tempfile::NamedTempFile, CloudError> {
    let io = |e| io_err(format!("writing a key into {dir}"), e);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{PRIVATE_NAME}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(data).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmw_hints::Hints;

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
            ..VmwareConfig::default()
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

    /// The environment variable that makes `child_generator` generate, set
    /// by its parent test: `<base dir>|<rounds>`.
    const CHILD_ENV: &str = "VMW_KEYS_CHILD";

    /// What a child prints once it is up, before it waits for `GO`.
    const READY: &str = "READY";

    /// Gets the pair of `base/round-N` for each round: the public key each
    /// one returned.
    fn generate_rounds(base: &Utf8Path, rounds: usize) -> Vec<String> {
        (0..rounds)
            .map(|r| {
                KeyPair::generated_in(&base.join(format!("round-{r}")), "me".into())
                    .unwrap()
                    .public_key
                    .to_string()
            })
            .collect()
    }

    /// Not a test of its own, hence ignored: a generating process of
    /// `processes_and_threads_at_once_end_with_one_consistent_pair`, which
    /// runs this test binary again with `--ignored` and `CHILD_ENV` set.
    /// Prints `READY`, waits for `GO` on its standard input, then prints
    /// one public key per round.
    #[test]
    #[ignore = "a child process of processes_and_threads_at_once_end_with_one_consistent_pair, which runs it"]
    fn child_generator() {
        let spec = std::env::var(CHILD_ENV).unwrap_or_else(|_| {
            panic!(
                "{CHILD_ENV} is not set: this is a child process of \
                 processes_and_threads_at_once_end_with_one_consistent_pair, not a test on its own"
            )
        });
        let (base, rounds) = spec.split_once('|').unwrap();
        println!("{READY}");
        std::io::stdout().flush().unwrap();
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        assert_eq!(go, "GO\n", "the parent starts everyone at once");
        for key in generate_rounds(Utf8Path::new(base), rounds.parse().unwrap()) {
            println!("KEY {key}");
        }
    }

    /// How many lock requests wait behind another one on the file
    /// `inode`, from `/proc/locks` (a waiter's line has `->` after its
    /// number, and the file as `major:minor:inode`).
    fn lock_waiters(inode: u64) -> usize {
        std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(1) == Some(&"->")
                    && fields.get(6).and_then(|f| f.rsplit(':').next()) == Some(&*inode.to_string())
            })
            .count()
    }

    /// The pair on disk: the public key derived from the private file must
    /// be the public file's.
    fn assert_consistent(dir: &Utf8Path) -> String {
        let private = std::fs::read_to_string(dir.join("id_ed25519")).unwrap();
        let derived = PrivateKey::from_openssh(&private)
            .unwrap()
            .public_key()
            .to_openssh()
            .unwrap();
        let public = std::fs::read_to_string(dir.join("id_ed25519.pub")).unwrap();
        assert_eq!(derived, public.trim(), "mismatched halves in {dir}");
        let mode = std::fs::metadata(dir.join("id_ed25519"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["id_ed25519", "id_ed25519.lock", "id_ed25519.pub"],
            "no temporary file is left"
        );
        derived
    }

    /// Six threads and three processes get the pairs of 30 directories,
    /// in the same order, at the same time. The first round is made a
    /// certain race: the test holds its generation lock while everyone
    /// starts, and lets go only once all nine wait for it, so one of them
    /// generates and the eight others take the lock after it and must use
    /// its pair. The later rounds race as they come.
    #[test]
    fn processes_and_threads_at_once_end_with_one_consistent_pair() {
        use std::io::BufRead as _;

        const ROUNDS: usize = 30;
        const THREADS: usize = 6;
        const PROCESSES: usize = 3;
        let tmp = tempfile::tempdir().unwrap();
        let base = utf8(tmp.path());
        let first = base.join("round-0");
        let gate = lock_dir(&first).unwrap();
        let gate_inode = std::os::unix::fs::MetadataExt::ino(&gate.metadata().unwrap());
        assert_eq!(lock_waiters(gate_inode), 0);

        let exe = std::env::current_exe().unwrap();
        let mut children: Vec<_> = (0..PROCESSES)
            .map(|_| {
                let mut child = std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "keys::tests::child_generator",
                        "--ignored",
                        "--nocapture",
                        "--test-threads",
                        "1",
                    ])
                    .env(CHILD_ENV, format!("{base}|{ROUNDS}"))
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
                (child, stdout)
            })
            .collect();
        // Every child is up before anyone starts.
        for (_, stdout) in &mut children {
            let mut seen = String::new();
            while !seen.lines().any(|l| l.ends_with(READY)) {
                let before = seen.len();
                stdout.read_line(&mut seen).unwrap();
                assert!(
                    seen.len() > before,
                    "a child ended before it was ready: {seen}"
                );
            }
        }
        assert!(!first.join(PRIVATE_NAME).exists(), "nobody started early");

        let mut seen: Vec<Vec<String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| scope.spawn(|| generate_rounds(&base, ROUNDS)))
                .collect();
            for (child, _) in &mut children {
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(b"GO\n").unwrap();
            }
            // Generous: everyone reaches the lock within milliseconds; the
            // deadline only turns a participant that never comes into a
            // failure rather than a hang.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while lock_waiters(gate_inode) < THREADS + PROCESSES {
                assert!(
                    std::time::Instant::now() < deadline,
                    "only {} of {} wait for the first round's lock",
                    lock_waiters(gate_inode),
                    THREADS + PROCESSES
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert_eq!(
                lock_waiters(gate_inode),
                THREADS + PROCESSES,
                "every thread and process waits for the first round's lock at once"
            );
            assert!(!first.join(PRIVATE_NAME).exists());
            drop(gate);
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (child, mut stdout) in children {
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
            let status = child.wait_with_output().unwrap().status;
            assert!(status.success(), "{status}: {rest}");
            let keys: Vec<String> = rest
                .lines()
                // The test harness's own "test … ... " may precede the first.
                .filter_map(|l| l.split_once("KEY ").map(|(_, key)| key.to_owned()))
                .collect();
            assert_eq!(keys.len(), ROUNDS, "the child generated every round");
            seen.push(keys);
        }
        assert_eq!(seen.len(), THREADS + PROCESSES);
        for round in 0..ROUNDS {
            let on_disk = assert_consistent(&base.join(format!("round-{round}")));
            for keys in &seen {
                assert_eq!(
                    keys[round].split_whitespace().nth(1),
                    on_disk.split_whitespace().nth(1),
                    "round {round}: everyone uses the pair on disk"
                );
            }
        }
    }

    #[test]
    fn a_public_half_without_its_private_half_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = utf8(tmp.path()).join("ssh");
        let first = KeyPair::generated_in(&dir, "me".into()).unwrap();
        std::fs::remove_file(&first.private_path).unwrap();
        let again = KeyPair::generated_in(&dir, "me".into()).unwrap();
        assert_ne!(again.public_key, first.public_key, "a new pair");
        assert_consistent(&dir);
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
        assert!(
            err.hints().iter().any(|h| h.contains("public_key_path")),
            "{:?}",
            err.hints()
        );
    }
}
