//! The SSH test peer, reached with the system's OpenSSH client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vmw_testbed::{CloudInitMode, Sshd, SshdOptions};

/// A client key pair in a temporary directory of its own.
struct ClientKey {
    dir: tempfile::TempDir,
}

impl ClientKey {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vmw-sshd-client-")
            .tempdir()
            .unwrap();
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test-client", "-f"])
            .arg(dir.path().join("id"))
            .status()
            .unwrap();
        assert!(status.success());
        Self { dir }
    }

    fn private(&self) -> PathBuf {
        self.dir.path().join("id")
    }

    fn public_line(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("id.pub"))
            .unwrap()
            .trim()
            .to_owned()
    }
}

fn ssh_command(sshd: &Sshd, key: &ClientKey, known_hosts: Option<&Path>, cmd: &str) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-i")
        .arg(key.private())
        .args(["-p", &sshd.port().to_string()])
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
        .args(["-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"]);
    match known_hosts {
        Some(path) => c
            .args(["-o", "StrictHostKeyChecking=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", path.display())),
        None => c.args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ]),
    };
    c.arg(format!("{}@127.0.0.1", sshd.user()))
        .arg(cmd)
        .stdin(Stdio::null());
    c
}

fn ssh(sshd: &Sshd, key: &ClientKey, cmd: &str) -> Output {
    ssh_command(sshd, key, None, cmd).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A peer with `key` authorized.
fn peer_for(key: &ClientKey, options: SshdOptions) -> Sshd {
    let sshd = Sshd::start_with(options).unwrap();
    sshd.authorize(&key.public_line()).unwrap();
    sshd
}

#[test]
fn a_command_runs_and_its_output_and_exit_status_come_back() {
    let key = ClientKey::new();
    let sshd = peer_for(&key, SshdOptions::default());
    assert_eq!(
        sshd.address().to_string(),
        format!("127.0.0.1:{}", sshd.port())
    );

    let out = ssh(&sshd, &key, "echo hello; echo oops >&2; exit 7");
    assert_eq!(out.status.code(), Some(7), "{}", sshd.log());
    assert_eq!(stdout(&out), "hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");

    let out = ssh(&sshd, &key, "id -un; command -v cloud-init");
    assert!(out.status.success(), "{}", sshd.log());
    assert_eq!(
        stdout(&out),
        format!("{}\n{}/bin/cloud-init\n", sshd.user(), sshd.dir())
    );
}

#[test]
fn keys_are_refused_until_authorized() {
    let key = ClientKey::new();
    let sshd = Sshd::start().unwrap();

    let out = ssh(&sshd, &key, "true");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );

    sshd.authorize(&key.public_line()).unwrap();
    assert!(ssh(&sshd, &key, "true").status.success(), "{}", sshd.log());

    sshd.set_authorized_keys(&[]).unwrap();
    assert_eq!(ssh(&sshd, &key, "true").status.code(), Some(255));

    let other = ClientKey::new();
    let (a, b) = (other.public_line(), key.public_line());
    sshd.set_authorized_keys(&[&a, &b]).unwrap();
    assert!(ssh(&sshd, &key, "true").status.success());
    assert!(ssh(&sshd, &other, "true").status.success());
}

#[test]
fn cloud_init_status_wait_honours_the_delay() {
    let key = ClientKey::new();
    let sshd = peer_for(
        &key,
        SshdOptions {
            cloud_init_delay: Duration::from_millis(1500),
            cloud_init_mode: CloudInitMode::Done,
        },
    );

    // Without --wait: the final status at once. The stand-in prints its
    // progress dot right before it sleeps, so no dot means no wait.
    let out = ssh(&sshd, &key, "cloud-init status");
    assert_eq!(out.status.code(), Some(0), "{}", sshd.log());
    assert_eq!(stdout(&out), "status: done\n", "no dot: it did not wait");

    // With --wait: the dot, and the delay. The upper bound is 40 times the
    // delay, far beyond what load adds to one SSH command; it only tells a
    // delay from a much longer one (read in the wrong unit, say).
    let started = Instant::now();
    let out = ssh(&sshd, &key, "cloud-init status --wait --long");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "took {took:?}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.starts_with(".\nstatus: done\n"), "waited: {text}");
    assert!(text.contains("\nextended_status: done\n"), "{text}");
    assert!(text.contains("\nboot_status_code: enabled-by-generator\n"));
    assert!(text.contains("\ndetail:\nDataSourceVMware\n"), "{text}");

    // Changed while running: no delay any more.
    sshd.set_cloud_init(Duration::ZERO, CloudInitMode::Done)
        .unwrap();
    let out = ssh(&sshd, &key, "cloud-init status --wait");
    assert_eq!(stdout(&out), "\nstatus: done\n", "no dot: it did not wait");

    assert_eq!(
        sshd.cloud_init_calls(),
        ["status", "status --wait --long", "status --wait"]
    );
}

#[test]
fn cloud_init_modes_set_the_exit_status_and_calls_are_logged() {
    let key = ClientKey::new();
    let sshd = peer_for(
        &key,
        SshdOptions {
            cloud_init_mode: CloudInitMode::Error,
            ..SshdOptions::default()
        },
    );

    let out = ssh(&sshd, &key, "cloud-init status --wait --long");
    assert_eq!(out.status.code(), Some(1), "{}", sshd.log());
    let text = stdout(&out);
    assert!(text.contains("\nstatus: error\n"), "{text}");
    assert!(text.contains("\nerrors:\n"), "{text}");

    sshd.set_cloud_init(Duration::ZERO, CloudInitMode::Degraded)
        .unwrap();
    let out = ssh(&sshd, &key, "cloud-init status --long");
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(text.starts_with("status: done\n"), "{text}");
    assert!(
        text.contains("\nextended_status: degraded done\n"),
        "{text}"
    );

    sshd.set_cloud_init(Duration::ZERO, CloudInitMode::Done)
        .unwrap();
    let out = ssh(&sshd, &key, "cloud-init status --long");
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("\nextended_status: done\n"));

    let out = ssh(&sshd, &key, "cloud-init clean --logs");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "");

    assert_eq!(
        sshd.cloud_init_calls(),
        [
            "status --wait --long",
            "status --long",
            "status --long",
            "clean --logs"
        ]
    );
}

#[test]
fn guest_commands_change_the_fake_files_not_the_host() {
    let real_before = std::fs::read("/etc/machine-id").unwrap();
    let real_syslog = Path::new("/var/log/syslog").exists();

    let key = ClientKey::new();
    let sshd = peer_for(&key, SshdOptions::default());
    let id = sshd.machine_id();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_ne!(id.as_bytes(), real_before.trim_ascii_end());
    assert!(sshd.syslog_exists());

    let out = ssh(&sshd, &key, "cat /etc/machine-id; ls /var/log");
    assert_eq!(stdout(&out), format!("{id}\nsyslog\n"), "{}", sshd.log());

    let out = ssh(
        &sshd,
        &key,
        "cloud-init clean --logs && echo uninitialized > /etc/machine-id && rm /var/log/syslog",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sshd.machine_id(), "uninitialized");
    assert!(!sshd.syslog_exists());

    assert_eq!(std::fs::read("/etc/machine-id").unwrap(), real_before);
    assert_eq!(Path::new("/var/log/syslog").exists(), real_syslog);
}

#[test]
fn drop_connections_ends_sessions_and_the_listener_stays() {
    let key = ClientKey::new();
    let sshd = peer_for(&key, SshdOptions::default());

    let mut session = ssh_command(&sshd, &key, None, "echo started; exec sleep 30")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(session.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n", "{}", sshd.log());

    // The client sees the connection cut (255), not the remote command
    // ending (`sleep 30` would exit 0).
    sshd.drop_connections();
    let status = session.wait().unwrap();
    assert_eq!(status.code(), Some(255), "{}", sshd.log());

    let out = ssh(&sshd, &key, "echo again");
    assert_eq!(stdout(&out), "again\n", "{}", sshd.log());
}

#[test]
fn restart_with_new_host_key_presents_the_new_key() {
    let key = ClientKey::new();
    let mut sshd = peer_for(&key, SshdOptions::default());
    let scratch = tempfile::tempdir().unwrap();
    let known_hosts = scratch.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line())).unwrap();

    let out = ssh_command(&sshd, &key, Some(&known_hosts), "true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let old = sshd.host_public_key();
    let port = sshd.port();
    sshd.restart_with_new_host_key().unwrap();
    let new = sshd.host_public_key();
    assert_ne!(old, new);
    assert!(new.starts_with("ssh-ed25519 "), "{new}");
    assert_eq!(sshd.port(), port);

    if let Ok(scan) = Command::new("ssh-keyscan")
        .args(["-p", &port.to_string(), "-t", "ed25519", "127.0.0.1"])
        .stderr(Stdio::null())
        .output()
    {
        let presented = String::from_utf8_lossy(&scan.stdout);
        let new_key = new.split_whitespace().nth(1).unwrap();
        let old_key = old.split_whitespace().nth(1).unwrap();
        assert!(presented.contains(new_key), "{presented}");
        assert!(!presented.contains(old_key), "{presented}");
    }

    let out = ssh_command(&sshd, &key, Some(&known_hosts), "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"),
        "{out:?}"
    );

    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let out = ssh_command(&sshd, &key, Some(&known_hosts), "echo ok")
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "ok\n", "{}", sshd.log());
}

/// Processes whose command line contains `needle`.
fn processes_matching(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = state
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !zombie && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

#[test]
fn drop_leaves_nothing_running() {
    let key = ClientKey::new();
    let sshd = peer_for(&key, SshdOptions::default());
    let config = sshd.config_path().to_string();
    let dir = sshd.dir().to_owned();
    assert!(!processes_matching(&config).is_empty());

    // A remote command still running at drop time dies too.
    let mut session = ssh_command(&sshd, &key, None, "echo started; exec sleep 987")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(session.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n");
    // `sleep` replaces the shell right after the echo, within
    // milliseconds; the generous deadline only turns a command that never
    // starts into a failure rather than a hang.
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes_matching("sleep\u{0}987").is_empty() {
        assert!(Instant::now() < deadline, "the remote sleep never started");
        std::thread::sleep(Duration::from_millis(20));
    }

    drop(sshd);
    assert!(processes_matching(&config).is_empty());
    assert!(processes_matching("sleep\u{0}987").is_empty());
    assert!(!dir.exists());
    assert_eq!(session.wait().unwrap().code(), Some(255));
}

#[test]
fn many_sessions_at_once() {
    let key = ClientKey::new();
    let sshd = peer_for(&key, SshdOptions::default());
    let sessions: Vec<_> = (0..20)
        .map(|i| {
            ssh_command(&sshd, &key, None, &format!("sleep 0.5; echo {i}"))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, session) in sessions.into_iter().enumerate() {
        let out = session.wait_with_output().unwrap();
        assert_eq!(stdout(&out), format!("{i}\n"), "{}", sshd.log());
    }
}
