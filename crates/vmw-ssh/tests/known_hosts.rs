//! Host keys pinned across vmw runs ([`KnownHosts`]) against a real OpenSSH
//! server, several processes writing the store at once, and OpenSSH's own
//! `ssh` checking strictly against what vmw recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use russh::keys::ssh_key::public::{Ed25519PublicKey, KeyData};
use vmw_ssh::{
    Cmd, Credentials, ExecOptions, Guest, Hints, HostKeyPolicy, KnownHosts, PublicKey, SshConfig,
    SshGuest, Stage, fingerprint,
};
use vmw_testbed::sshd::Sshd;

/// The environment variable that turns `child_writer` into a writer.
const CHILD_ENV: &str = "VMW_KNOWN_HOSTS_CHILD";

const VM_1: &str = "/dc/vm/folder one/vm-1 4215c8a2-0000-4000-8000-000000000001";
const VM_2: &str = "/dc/vm/folder one/vm-2 4215c8a2-0000-4000-8000-000000000002";

/// An sshd, a client key it accepts, and a store in a directory whose name
/// has a space (as a home directory may).
struct Bed {
    sshd: Sshd,
    _dir: tempfile::TempDir,
    key_path: Utf8PathBuf,
    store: KnownHosts,
}

fn bed() -> Bed {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    let key_path = root.join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "vmw-test", "-f"])
        .arg(key_path.as_str())
        .status()
        .unwrap();
    assert!(status.success());
    sshd.authorize(&std::fs::read_to_string(format!("{key_path}.pub")).unwrap())
        .unwrap();
    let store = KnownHosts::new(root.join("state dir/vmw/known_hosts"));
    Bed {
        sshd,
        _dir: dir,
        key_path,
        store,
    }
}

impl Bed {
    /// A guest of `identity`, as a new vmw run would make it.
    fn guest(&self, identity: &str) -> SshGuest {
        SshGuest::new(
            "vm",
            self.sshd.address().ip(),
            SshConfig {
                user: self.sshd.user(),
                port: self.sshd.port(),
                connect_timeout: Duration::from_secs(5),
                banner_timeout: Duration::from_secs(10),
                host_key: HostKeyPolicy::known(self.store.clone(), identity),
            },
            Credentials::key_file(self.key_path.clone()),
        )
    }

    fn host_key(&self) -> PublicKey {
        PublicKey::from_openssh(&self.sshd.host_public_key()).unwrap()
    }

    /// Runs OpenSSH's `ssh` against the sshd with `options`: its status and
    /// standard error.
    fn openssh(&self, options: &[String]) -> (bool, String) {
        let out = Command::new("/usr/bin/ssh")
            .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o"])
            .arg("IdentitiesOnly=yes")
            .arg("-i")
            .arg(self.key_path.as_str())
            .arg("-p")
            .arg(self.sshd.port().to_string())
            .args(options)
            .arg(format!("{}@127.0.0.1", self.sshd.user()))
            .arg("echo reached")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let ok = out.status.success() && stdout.trim() == "reached";
        (ok, stderr)
    }
}

async fn reach(guest: &SshGuest) -> Result<(), vmw_ssh::SshError> {
    let r = guest
        .execute(&Cmd::from("true"), &ExecOptions::default())
        .await?;
    assert!(r.ok(), "{r:?}");
    Ok(())
}

#[tokio::test]
async fn the_first_key_is_recorded_and_a_later_run_requires_it() {
    let b = bed();
    assert!(!b.store.path().exists());
    let first = b.guest(VM_1);
    reach(&first).await.unwrap();
    let entry = b.store.get(VM_1).unwrap().expect("recorded on first use");
    assert_eq!(entry.key.key_data(), b.host_key().key_data());
    assert_eq!(entry.address, b.sshd.address());
    let written = std::fs::read(b.store.path()).unwrap();
    first.disconnect().await;
    drop(first);

    // A second run: a new guest, the same store.
    let second = b.guest(VM_1);
    reach(&second).await.unwrap();
    assert_eq!(
        std::fs::read(b.store.path()).unwrap(),
        written,
        "a matching key changes nothing"
    );
    assert_eq!(b.store.entries().unwrap().len(), 1);
}

#[tokio::test]
async fn a_changed_key_is_refused_naming_identity_address_and_fingerprints() {
    let mut b = bed();
    reach(&b.guest(VM_1)).await.unwrap();
    let old = fingerprint(&b.host_key());
    let written = std::fs::read(b.store.path()).unwrap();

    b.sshd.restart_with_new_host_key().unwrap();
    let new = fingerprint(&b.host_key());
    assert_ne!(old, new);
    let err = reach(&b.guest(VM_1)).await.unwrap_err();
    assert_eq!(err.stage(), Some(Stage::HostKey), "{err}");
    let text = err.to_string();
    assert!(
        err.hints().iter().any(|h| h.contains("identity=")),
        "{:?}",
        err.hints()
    );
    for part in [
        VM_1,
        &b.sshd.address().to_string(),
        &old,
        &new,
        b.store.path().as_str(),
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    assert!(!err.is_transient(), "waiting cannot cure a changed key");
    assert_eq!(
        std::fs::read(b.store.path()).unwrap(),
        written,
        "the refused key recorded nothing"
    );

    // A new VM that got the old one's address is not the old one.
    reach(&b.guest(VM_2)).await.unwrap();
    let entries = b.store.entries().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        b.store.get(VM_2).unwrap().unwrap().fingerprint(),
        new,
        "its own entry"
    );
    assert_eq!(
        b.store.get(VM_1).unwrap().unwrap().fingerprint(),
        old,
        "the old entry stays"
    );
    assert_eq!(
        reach(&b.guest(VM_1)).await.unwrap_err().stage(),
        Some(Stage::HostKey),
        "and still refuses the old identity"
    );

    // Once the old VM is deleted, its identity starts over.
    assert!(b.store.forget(VM_1).unwrap());
    assert_eq!(b.store.get(VM_1).unwrap(), None);
    assert!(b.store.get(VM_2).unwrap().is_some(), "others are kept");
    reach(&b.guest(VM_1)).await.unwrap();
    assert_eq!(b.store.get(VM_1).unwrap().unwrap().fingerprint(), new);
}

#[tokio::test]
async fn a_guest_booted_anew_may_bring_a_new_key_once_and_it_is_recorded() {
    let mut b = bed();
    let guest = b.guest(VM_1);
    reach(&guest).await.unwrap();
    let old = b.host_key();
    // The guest makes new host keys (as cloud-init does on an instance's
    // first boot) and comes back.
    b.sshd.restart_with_new_host_key().unwrap();
    let new = b.host_key();
    assert_ne!(old.key_data(), new.key_data());
    guest.disconnect().await;

    // Without a word from the guest's owner, the new key is refused.
    let err = reach(&guest).await.unwrap_err();
    assert_eq!(err.stage(), Some(Stage::HostKey), "{err}");
    assert_eq!(
        b.store.get(VM_1).unwrap().unwrap().key.key_data(),
        old.key_data()
    );

    // Its owner booted it anew: the key met next is recorded, for this
    // run and the next ones.
    guest.renew_host_key();
    reach(&guest).await.unwrap();
    assert_eq!(
        b.store.get(VM_1).unwrap().unwrap().key.key_data(),
        new.key_data()
    );
    assert_eq!(
        guest.host_key().unwrap().split_whitespace().nth(1),
        b.sshd.host_public_key().split_whitespace().nth(1)
    );
    let later = b.guest(VM_1);
    reach(&later).await.unwrap();

    // Only once: another key after that is refused again.
    b.sshd.restart_with_new_host_key().unwrap();
    guest.disconnect().await;
    let err = reach(&guest).await.unwrap_err();
    assert_eq!(err.stage(), Some(Stage::HostKey), "{err}");
    assert_eq!(
        b.store.get(VM_1).unwrap().unwrap().key.key_data(),
        new.key_data()
    );
    // The other entries of the store are left alone.
    assert_eq!(b.store.entries().unwrap().len(), 1);
}

#[tokio::test]
async fn guests_connecting_at_once_record_one_entry() {
    let b = bed();
    let guests: Vec<SshGuest> = (0..6).map(|_| b.guest(VM_1)).collect();
    let results = futures_util::future::join_all(guests.iter().map(reach)).await;
    for r in results {
        r.unwrap();
    }
    let entries = b.store.entries().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].key.key_data(), b.host_key().key_data());
}

/// A made-up ed25519 host key, different for every `n`.
fn made_up_key(n: u32) -> PublicKey {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_le_bytes());
    bytes[31] = 0x5a;
    PublicKey::from(KeyData::Ed25519(Ed25519PublicKey(bytes)))
}

/// Records `count` identities `<prefix>-<i>` with made-up keys.
fn write_entries(store: &KnownHosts, prefix: &str, seed: u32, count: u32) {
    for i in 0..count {
        let address: SocketAddr = format!("10.1.{}.{}:22", seed % 250, i % 250)
            .parse()
            .unwrap();
        store
            .check(
                &format!("{prefix}-{i}"),
                address,
                &made_up_key(seed * 1000 + i),
            )
            .unwrap();
    }
}

/// Not a test on its own: a writer process of
/// `concurrent_writers_lose_no_entries`, which runs this test binary again
/// with `CHILD_ENV` set to `<store path>|<prefix>|<seed>`.
#[test]
fn child_writer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, '|');
    let (path, prefix, seed) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse().unwrap(),
    );
    write_entries(&KnownHosts::new(path), prefix, seed, 25);
}

#[test]
fn concurrent_writers_lose_no_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8Path::from_path(dir.path()).unwrap().join("known_hosts");
    let store = KnownHosts::new(&path);
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3u32)
        .map(|c| {
            Command::new(&exe)
                .args(["--exact", "child_writer", "--test-threads", "1"])
                .env(CHILD_ENV, format!("{path}|process-{c}|{}", 100 + c))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::scope(|scope| {
        for t in 0..6u32 {
            let store = store.clone();
            scope.spawn(move || write_entries(&store, &format!("thread-{t}"), t, 25));
        }
    });
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let entries = store.entries().unwrap();
    assert_eq!(entries.len(), (6 + 3) * 25);
    for (prefix, seed) in (0..6u32)
        .map(|t| (format!("thread-{t}"), t))
        .chain((0..3u32).map(|c| (format!("process-{c}"), 100 + c)))
    {
        for i in 0..25 {
            let entry = store.get(&format!("{prefix}-{i}")).unwrap().unwrap();
            assert_eq!(entry.key, made_up_key(seed * 1000 + i));
        }
    }
    // Nothing left behind but the store and its lock file.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["known_hosts", "known_hosts.lock"]);
}

#[tokio::test]
async fn openssh_checks_strictly_against_what_vmw_recorded() {
    let mut b = bed();
    // Never contacted: strict ssh refuses, whatever way it is asked.
    let (ok, stderr) = b.openssh(&b.store.openssh_options(VM_1));
    assert!(!ok, "an unrecorded identity must be refused: {stderr}");

    reach(&b.guest(VM_1)).await.unwrap();
    // The store itself, through the identity's alias.
    let (ok, stderr) = b.openssh(&b.store.openssh_options(VM_1));
    assert!(ok, "{stderr}");
    // Another identity's alias has no key in the store.
    let (ok, _) = b.openssh(&b.store.openssh_options(VM_2));
    assert!(!ok);

    // The address-keyed line, in a file of its own.
    let line = b
        .store
        .openssh_line(VM_1, b.sshd.address())
        .unwrap()
        .unwrap();
    assert!(
        line.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", b.sshd.port())),
        "{line}"
    );
    let file = b.store.path().with_file_name("openssh_known_hosts");
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let by_address = [
        "-o".to_owned(),
        // Quoted: the directory name has a space.
        format!("UserKnownHostsFile=\"{file}\""),
        "-o".to_owned(),
        "StrictHostKeyChecking=yes".to_owned(),
    ];
    let (ok, stderr) = b.openssh(&by_address);
    assert!(ok, "{stderr}");

    // A new host key: both ways refuse it.
    b.sshd.restart_with_new_host_key().unwrap();
    let (ok, stderr) = b.openssh(&b.store.openssh_options(VM_1));
    assert!(!ok);
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
    let (ok, stderr) = b.openssh(&by_address);
    assert!(!ok);
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
    assert_eq!(
        b.store.entries().unwrap().len(),
        1,
        "ssh wrote nothing into the store"
    );
}
