//! `SshGuest` against a real OpenSSH server (Debian's sshd, one per test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read as _;
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use vmw_ssh::{
    Cmd, Credentials, ExecOptions, Guest, GuestExt, Hints, PublicKey, ReadyTimeouts, SshConfig,
    SshError, SshGuest, Stage, WaitFor, load_private_key,
};
use vmw_testbed::SshAgent;
use vmw_testbed::sshd::{CloudInitMode, Sshd};

/// A key pair made by ssh-keygen.
struct ClientKey {
    _dir: tempfile::TempDir,
    path: Utf8PathBuf,
    public: String,
}

fn keygen(passphrase: &str) -> ClientKey {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().join("id_ed25519")).unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .args([
            "-q", "-t", "ed25519", "-N", passphrase, "-C", "vmw-test", "-f",
        ])
        .arg(path.as_str())
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(format!("{path}.pub")).unwrap();
    ClientKey {
        _dir: dir,
        path,
        public: public.trim().to_owned(),
    }
}

/// An sshd that accepts a fresh key, and a guest connected to it.
struct Peer {
    sshd: Sshd,
    key: ClientKey,
    guest: SshGuest,
}

fn config_for(sshd: &Sshd) -> SshConfig {
    SshConfig {
        user: sshd.user(),
        port: sshd.port(),
        connect_timeout: Duration::from_secs(5),
        banner_timeout: Duration::from_secs(10),
        ..SshConfig::default()
    }
}

fn guest_for(sshd: &Sshd, credentials: Credentials) -> SshGuest {
    SshGuest::new("vm-1", sshd.address().ip(), config_for(sshd), credentials)
}

fn peer() -> Peer {
    let sshd = Sshd::start().unwrap();
    let key = keygen("");
    sshd.authorize(&key.public).unwrap();
    let guest = guest_for(&sshd, Credentials::key_file(key.path.clone()));
    Peer { sshd, key, guest }
}

fn run(cmd: impl Into<Cmd>) -> (Cmd, ExecOptions) {
    (cmd.into(), ExecOptions::default())
}

#[tokio::test]
async fn strings_and_argv_run_with_their_output_and_status() {
    let p = peer();
    let (c, o) = run("echo out; echo err >&2; exit 3");
    let r = p.guest.execute(&c, &o).await.unwrap();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out", "err"));
    assert_eq!(r.exit_status, Some(3));
    assert!(r.failed());

    let odd = ["a b", "it's", "\"dq\"", "ünïcødé €", "$HOME", "-n", ""];
    let mut argv = vec!["printf", "[%s]"];
    argv.extend(odd);
    let (c, o) = run(argv);
    let r = p.guest.execute(&c, &o).await.unwrap();
    assert!(r.ok());
    assert_eq!(r.stdout, "[a b][it's][\"dq\"][ünïcødé €][$HOME][-n][]");

    let (c, o) = run("printf 'two\\n\\n'");
    assert_eq!(
        p.guest.execute(&c, &o).await.unwrap().stdout,
        "two\n",
        "one newline trimmed"
    );
}

#[tokio::test]
async fn output_streams_while_the_command_runs() {
    let p = peer();
    let (mut ours, theirs) = tokio::io::duplex(64);
    let mut err = Vec::new();
    let guest = &p.guest;
    let run = async move {
        let mut theirs = theirs;
        guest
            .execute_streaming(
                &Cmd::from("echo first; sleep 2; echo second; echo oops >&2; exit 4"),
                &ExecOptions::default(),
                &mut theirs,
                &mut err,
            )
            .await
            .map(|status| (status, err))
    };
    let watch = async {
        use tokio::io::AsyncReadExt as _;
        let started = Instant::now();
        let mut first = [0u8; 6];
        ours.read_exact(&mut first).await.unwrap();
        let first_at = started.elapsed();
        let mut rest = Vec::new();
        ours.read_to_end(&mut rest).await.unwrap();
        (first, first_at, rest)
    };
    let (result, (first, first_at, rest)) = tokio::join!(run, watch);
    let ((status, signal), err) = result.unwrap();
    assert_eq!(&first, b"first\n");
    assert!(
        first_at < Duration::from_millis(1500),
        "the first line came before the command ended: {first_at:?}"
    );
    assert_eq!(rest, b"second\n");
    assert_eq!(err, b"oops\n");
    assert_eq!((status, signal), (Some(4), None));
}

#[tokio::test]
async fn stdin_reaches_the_command() {
    let p = peer();
    let input: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let r = p
        .guest
        .execute(
            &Cmd::from("wc -c"),
            &ExecOptions {
                sudo: false,
                stdin: Some(input.clone()),
            },
        )
        .await
        .unwrap();
    assert_eq!(r.stdout.trim(), input.len().to_string());
}

#[tokio::test]
async fn ten_mebibytes_of_output_arrive_whole() {
    let p = peer();
    let (c, o) = run("head -c 10485760 /dev/zero | tr '\\0' 'a'; echo done >&2");
    let r = p.guest.execute(&c, &o).await.unwrap();
    assert!(r.ok());
    assert_eq!(r.stdout.len(), 10 * 1024 * 1024);
    assert!(r.stdout.bytes().all(|b| b == b'a'));
    assert_eq!(r.stderr, "done");
}

#[tokio::test]
async fn sudo_runs_as_root_without_prompting() {
    let p = peer();
    let r = p
        .guest
        .execute(&Cmd::from(["id", "-u"]), &ExecOptions::sudo())
        .await
        .unwrap();
    // The test user is root (the sshd peer needs it), whom sudo allows.
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.stdout, "0");
    // sudo -n never prompts: a command that needs a password fails fast
    // instead of hanging (here: an unknown target user).
    let started = Instant::now();
    let r = p
        .guest
        .execute(
            &Cmd::from("sudo -n -u no-such-user-vmw true"),
            &ExecOptions::default(),
        )
        .await
        .unwrap();
    assert!(r.failed());
    assert!(r.stderr.contains("no-such-user-vmw"), "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn fifty_mebibytes_go_up_and_come_back_intact() {
    let p = peer();
    let dir = tempfile::tempdir().unwrap();
    let local = Utf8PathBuf::from_path_buf(dir.path().join("big.bin")).unwrap();
    let mut data = vec![0u8; 50 * 1024 * 1024];
    let mut state = 0x2545_f491_u32;
    for chunk in data.chunks_mut(4) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&local, &data).unwrap();
    let remote = format!("{}/uploaded.bin", p.sshd.dir());

    let started = Instant::now();
    p.guest.push_file(&local, &remote).await.unwrap();
    let up = started.elapsed();
    let mut on_server = Vec::new();
    std::fs::File::open(&remote)
        .unwrap()
        .read_to_end(&mut on_server)
        .unwrap();
    assert!(on_server == data, "pushed content differs");

    let back = Utf8PathBuf::from_path_buf(dir.path().join("back.bin")).unwrap();
    let started = Instant::now();
    p.guest.pull_file(&remote, &back).await.unwrap();
    let down = started.elapsed();
    assert!(
        std::fs::read(&back).unwrap() == data,
        "pulled content differs"
    );
    eprintln!("50 MiB over SFTP: push {up:?}, pull {down:?}");

    let err = p
        .guest
        .pull_file("/nonexistent/file", &back)
        .await
        .unwrap_err();
    assert_eq!(err.stage(), Some(Stage::Sftp), "{err}");
    assert!(
        std::fs::read(&back).unwrap() == data,
        "a failed pull leaves the old file"
    );
}

#[tokio::test]
async fn scripts_run_with_their_interpreter() {
    let p = peer();
    let r = p
        .guest
        .run_script(
            "#!/bin/bash\nset -e\narr=(a b c)\necho \"${#arr[@]} $0\"\n",
            false,
        )
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    assert!(r.stdout.starts_with("3 /tmp/"), "{}", r.stdout);
    let r = p.guest.run_script("exit 7", false).await.unwrap();
    assert_eq!(r.exit_status, Some(7));
}

#[tokio::test]
async fn ready_waits_for_cloud_init_and_reports_failures() {
    let p = peer();
    p.sshd
        .set_cloud_init(Duration::from_millis(800), CloudInitMode::Done)
        .unwrap();
    let started = Instant::now();
    p.guest.wait_ready(ReadyTimeouts::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert!(
        p.sshd
            .cloud_init_calls()
            .iter()
            .any(|c| c.contains("status --wait --long")),
        "{:?}",
        p.sshd.cloud_init_calls()
    );

    p.sshd
        .set_cloud_init(Duration::ZERO, CloudInitMode::Error)
        .unwrap();
    let err = p
        .guest
        .wait_ready(ReadyTimeouts::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SshError::Failed { what, .. } if what == "cloud-init"),
        "{err}"
    );
    assert!(err.to_string().contains("status: error"), "{err}");

    p.sshd
        .set_cloud_init(Duration::ZERO, CloudInitMode::Degraded)
        .unwrap();
    p.guest.wait_ready(ReadyTimeouts::default()).await.unwrap();

    p.sshd
        .set_cloud_init(Duration::from_secs(30), CloudInitMode::Done)
        .unwrap();
    let err = p
        .guest
        .wait_ready(ReadyTimeouts {
            ready: Duration::from_secs(5),
            poll: Duration::from_millis(100),
            ..ReadyTimeouts::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.waiting_for(), Some(WaitFor::CloudInit), "{err}");
}

/// The guest drops every connection while `cloud-init status --wait` runs
/// (as a reboot during cloud-init does): the wait connects again, asks
/// cloud-init again, and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_survives_connections_dropped_during_the_cloud_init_wait() {
    let p = peer();
    p.sshd
        .set_cloud_init(Duration::from_secs(2), CloudInitMode::Done)
        .unwrap();
    let status_calls = || {
        p.sshd
            .cloud_init_calls()
            .iter()
            .filter(|c| c.contains("status --wait --long"))
            .count()
    };
    let timeouts = ReadyTimeouts {
        ready: Duration::from_secs(30),
        poll: Duration::from_millis(200),
        ..ReadyTimeouts::default()
    };
    let dropper = async {
        while status_calls() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // cloud-init is waiting: cut everything, the command included.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| p.sshd.drop_connections());
    };
    let (ready, ()) = tokio::join!(p.guest.wait_ready(timeouts), dropper);
    ready.unwrap();
    assert_eq!(status_calls(), 2, "{:?}", p.sshd.cloud_init_calls());
    assert_eq!(
        p.sshd.log().matches("Accepted publickey").count(),
        2,
        "one login before the drop, one after"
    );

    // An error cloud-init reports after such a drop is still an error.
    p.sshd
        .set_cloud_init(Duration::from_secs(2), CloudInitMode::Error)
        .unwrap();
    let dropper = async {
        while status_calls() == 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| p.sshd.drop_connections());
    };
    let (ready, ()) = tokio::join!(p.guest.wait_ready(timeouts), dropper);
    let err = ready.unwrap_err();
    assert!(
        matches!(&err, SshError::Failed { what, .. } if what == "cloud-init"),
        "{err}"
    );
    assert_eq!(status_calls(), 4);
}

#[tokio::test]
async fn ready_times_out_at_the_ssh_stage_when_the_key_is_refused() {
    let sshd = Sshd::start().unwrap();
    let key = keygen("");
    let guest = guest_for(&sshd, Credentials::key_file(key.path.clone()));
    let err = guest
        .wait_ready(ReadyTimeouts {
            ready: Duration::from_secs(2),
            poll: Duration::from_millis(200),
            ..ReadyTimeouts::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.waiting_for(), Some(WaitFor::Ssh), "{err}");
    assert!(err.to_string().contains("refused the key"), "{err}");
}

#[tokio::test]
async fn a_dropped_connection_is_made_again() {
    let p = peer();
    let (c, o) = run("echo $PPID");
    let first = p.guest.execute(&c, &o).await.unwrap();
    assert!(first.ok());
    p.sshd.drop_connections();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = p.guest.execute(&c, &o).await.unwrap();
    assert!(again.ok(), "{again:?}");
}

#[tokio::test]
async fn one_connection_serves_many_commands() {
    let p = peer();
    let (c, o) = run("true");
    p.guest.execute(&c, &o).await.unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        assert!(p.guest.execute(&c, &o).await.unwrap().ok());
    }
    let per_command = started.elapsed() / 20;
    let log = p.sshd.log();
    assert_eq!(
        log.matches("Accepted publickey").count(),
        1,
        "one login for 21 commands:\n{log}"
    );
    eprintln!("per command on a reused connection: {per_command:?}");
}

#[tokio::test]
async fn a_changed_host_key_is_refused() {
    let mut p = peer();
    let (c, o) = run("true");
    p.guest.execute(&c, &o).await.unwrap();
    let pinned = p.guest.host_key().unwrap();
    assert_eq!(
        pinned.split_whitespace().nth(1),
        p.sshd.host_public_key().split_whitespace().nth(1)
    );
    p.sshd.restart_with_new_host_key().unwrap();
    p.guest.disconnect().await;
    let err = p.guest.execute(&c, &o).await.unwrap_err();
    assert_eq!(err.stage(), Some(Stage::HostKey), "{err}");
    assert!(err.to_string().contains("vm-1"), "{err}");
}

#[tokio::test]
async fn transport_errors_name_the_stage() {
    // Nothing listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let key = keygen("");
    let guest = SshGuest::new(
        "vm-9",
        "127.0.0.1".parse().unwrap(),
        SshConfig {
            port,
            ..SshConfig::default()
        },
        Credentials::key_file(key.path.clone()),
    );
    let err = guest
        .execute(&Cmd::from("true"), &ExecOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.stage(), Some(Stage::Connect), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("vm-9 (127.0.0.1:{port}): connect")),
        "{err}"
    );

    // A key the server does not know.
    let sshd = Sshd::start().unwrap();
    let guest = guest_for(&sshd, Credentials::key_file(key.path.clone()));
    let err = guest
        .execute(&Cmd::from("true"), &ExecOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.stage(), Some(Stage::Auth), "{err}");
    assert!(err.to_string().contains(&sshd.user()), "{err}");

    // A missing key file: the error names it, not an instance.
    let missing = key.path.with_file_name("missing");
    let err = load_private_key(&missing).unwrap_err();
    assert_eq!(err.stage(), Some(Stage::Key), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("private key {missing}: ")),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_passphrase_protected_key_is_a_key_error_naming_the_file() {
    let locked = keygen("secret passphrase");
    let err = load_private_key(&locked.path).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, SshError::Key { path, .. } if *path == locked.path),
        "{err:?}"
    );
    assert!(
        text.starts_with(&format!("private key {}: ", locked.path)),
        "{text}"
    );
    assert!(text.contains("passphrase"), "{text}");
    assert!(!text.contains("hint"), "{text}");
    assert_eq!(err.stage(), Some(Stage::Key));
    assert!(!err.is_transient());
    let hints = err.hints().join("\n");
    assert!(hints.contains("without a passphrase"), "{hints}");
    assert!(hints.contains("SSH agent"), "{hints}");
    assert!(hints.contains("SSH_AUTH_SOCK"), "{hints}");

    // Used by a guest, without an agent: the same error, at first use.
    let sshd = Sshd::start().unwrap();
    sshd.authorize(&locked.public).unwrap();
    let credentials = Credentials::key_file(locked.path.clone());
    let guest = guest_for(&sshd, credentials.clone());
    let err = guest
        .execute(&Cmd::from("true"), &ExecOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SshError::Key { path, .. } if *path == locked.path),
        "{err:?}"
    );
    assert!(!credentials.private_key_loaded());
    // Readiness ends at once rather than retrying.
    let started = Instant::now();
    let err = guest
        .wait_ready(ReadyTimeouts {
            ready: Duration::from_secs(20),
            poll: Duration::from_millis(200),
            ..ReadyTimeouts::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Key { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

fn public_key(line: &str) -> PublicKey {
    PublicKey::from_openssh(line).unwrap()
}

#[tokio::test]
async fn the_agent_signs_for_a_key_whose_file_cannot_be_loaded() {
    let sshd = Sshd::start().unwrap();
    let locked = keygen("secret");
    sshd.authorize(&locked.public).unwrap();
    let other = keygen("");
    let agent = SshAgent::start().unwrap();
    // The agent holds another key first: the configured one is preferred.
    agent.add(&other.path, "").unwrap();
    agent.add(&locked.path, "secret").unwrap();
    assert!(matches!(
        load_private_key(&locked.path),
        Err(SshError::Key { .. })
    ));

    let credentials = Credentials::key_file(locked.path.clone())
        .with_agent(Some(agent.socket()))
        .with_public_key(public_key(&locked.public));
    let guest = guest_for(&sshd, credentials.clone());
    let r = guest
        .execute(&Cmd::from("echo via-agent"), &ExecOptions::default())
        .await
        .unwrap();
    assert_eq!(r.stdout, "via-agent");
    assert!(
        !credentials.private_key_loaded(),
        "the key file is never read when the agent authenticates"
    );

    // Without the public key to prefer, each identity is tried.
    let guest = guest_for(
        &sshd,
        Credentials::key_file(locked.path.clone()).with_agent(Some(agent.socket())),
    );
    let r = guest
        .execute(&Cmd::from("echo each"), &ExecOptions::default())
        .await
        .unwrap();
    assert_eq!(r.stdout, "each");
}

#[tokio::test]
async fn the_key_file_is_used_when_the_agent_cannot_help() {
    let sshd = Sshd::start().unwrap();
    let key = keygen("");
    sshd.authorize(&key.public).unwrap();
    let run = async |credentials: Credentials| {
        let guest = guest_for(&sshd, credentials.clone());
        let r = guest
            .execute(&Cmd::from("echo via-file"), &ExecOptions::default())
            .await
            .unwrap();
        assert_eq!(r.stdout, "via-file");
        assert!(credentials.private_key_loaded());
    };
    let with = |socket: &camino::Utf8Path| {
        Credentials::key_file(key.path.clone())
            .with_agent(Some(socket))
            .with_public_key(public_key(&key.public))
    };

    // A dead agent: its socket is left, nobody listens.
    let mut agent = SshAgent::start().unwrap();
    agent.add(&key.path, "").unwrap();
    agent.stop();
    assert!(agent.socket().exists());
    run(with(agent.socket())).await;

    // No socket at all.
    run(with(&key.path.with_file_name("no-agent.sock"))).await;

    // An agent holding no keys.
    let empty = SshAgent::start().unwrap();
    run(with(empty.socket())).await;

    // An agent holding only keys the server refuses.
    let stranger = keygen("");
    let other = SshAgent::start().unwrap();
    other.add(&stranger.path, "").unwrap();
    run(with(other.socket())).await;
}

#[tokio::test]
async fn a_refused_agent_key_is_an_authentication_error_not_a_key_error() {
    // The server does not (yet) know the key the agent holds: the file,
    // the same key, is not read, and the error is one that may pass.
    let sshd = Sshd::start().unwrap();
    let locked = keygen("secret");
    let agent = SshAgent::start().unwrap();
    agent.add(&locked.path, "secret").unwrap();
    let credentials = Credentials::key_file(locked.path.clone())
        .with_agent(Some(agent.socket()))
        .with_public_key(public_key(&locked.public));
    let guest = guest_for(&sshd, credentials.clone());
    let err = guest
        .execute(&Cmd::from("true"), &ExecOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.stage(), Some(Stage::Auth), "{err}");
    assert!(err.is_transient());
    assert!(!credentials.private_key_loaded());
}

#[tokio::test]
async fn clean_resets_cloud_init_machine_id_and_syslog() {
    let p = peer();
    let host_machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    assert_ne!(p.sshd.machine_id().trim(), "");
    assert!(p.sshd.syslog_exists());
    p.guest.clean().await.unwrap();
    assert_eq!(p.sshd.machine_id(), "");
    assert!(!p.sshd.syslog_exists());
    assert!(
        p.sshd
            .cloud_init_calls()
            .iter()
            .any(|c| c.contains("clean --logs")),
        "{:?}",
        p.sshd.cloud_init_calls()
    );
    assert_eq!(
        std::fs::read_to_string("/etc/machine-id").unwrap_or_default(),
        host_machine_id,
        "the machine's own id is untouched"
    );
}

#[tokio::test]
async fn boot_id_is_the_guests() {
    let p = peer();
    let id = p.guest.boot_id().await.unwrap();
    let local = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(id, local.trim());
    assert_eq!(p.key.public.split_whitespace().next(), Some("ssh-ed25519"));
}
