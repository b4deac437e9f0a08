//! govc's session cache as vmw uses it, against a real vcsim: one session
//! directory per server, user and password; first logins that never race,
//! within a process and across processes; sessions that expire; reads that
//! run again after a lost connection; credentials inside the server URL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use camino::{Utf8Path, Utf8PathBuf};
use vmw_config::{Environment, Loader, Origin, Overrides, Secret, VmwareConfig};
use vmw_govc::requests::{About, Find, ObjectCollect, VmDestroy, VmInfo};
use vmw_govc::{
    ErrorKind, Govc, GovcError, GovcExt, GovcTarget, LOGIN_LOCK_FILE, ProcessGovc, Request,
    SESSION_STALE_AFTER, session,
};
use vmw_testbed::{TEMPLATES, VM_FOLDER, Vcsim, VcsimOptions};

/// A fresh session root.
fn root() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8Path::from_path(dir.path()).unwrap().to_owned();
    (dir, path)
}

/// A backend for `config` with its sessions under `root`, without the
/// second chance for reads, so that every failure shows.
fn govc_in(sim_govc: &Utf8Path, config: &VmwareConfig, root: &Utf8Path) -> ProcessGovc {
    ProcessGovc::new(
        sim_govc.to_owned(),
        GovcTarget::new(config, Some(root.to_owned()), &Environment::default()),
    )
    .retry_reads(false)
}

fn session_home(govc: &ProcessGovc) -> Utf8PathBuf {
    govc.target().session_dir().unwrap()
}

/// The cookie of govc's (only) session file in the backend's directory.
fn session_cookie(govc: &ProcessGovc) -> String {
    let dir = session_home(govc).join("sessions");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one session file in {dir}");
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    let doc: serde_json::Value = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    doc["SoapClient"]["cookies"][0]["Value"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `calls` reads at once (about, find, vm.info, object.collect in turn),
/// each checked; the failures, as text.
async fn burst(govc: &ProcessGovc, calls: usize) -> Vec<String> {
    let tasks: Vec<_> = (0..calls)
        .map(|i| {
            let govc = govc.clone();
            tokio::spawn(async move {
                let template = format!("{VM_FOLDER}/{}", TEMPLATES[i % 2]);
                let outcome = match i % 4 {
                    0 => govc.exec(&About).await.map(|a| a.is_vcenter()),
                    1 => govc
                        .exec(&Find::new(VM_FOLDER).name("TEMPLATE-*"))
                        .await
                        .map(|found| found.len() == 2),
                    2 => govc
                        .exec(&VmInfo::new(vmw_govc::VmRef::parse(&template).unwrap()))
                        .await
                        .map(|vms| vms.len() == 1),
                    _ => govc
                        .exec(&ObjectCollect::new(&template, ["name"]))
                        .await
                        .map(|p| p.get("name").is_some()),
                };
                match outcome {
                    Ok(true) => None,
                    Ok(false) => Some(format!("call {i}: unexpected answer")),
                    Err(e) => Some(format!("call {i}: {} ({e})", e.kind())),
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        if let Some(f) = t.await.unwrap() {
            failures.push(f);
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_never_reuses_a_cached_session() {
    let sim = Vcsim::start_with(
        VcsimOptions::new()
            .credentials("alice", "right-password")
            .without_templates(),
    )
    .await
    .unwrap();
    let (_keep, root) = root();
    let good = govc_in(sim.govc_path(), &sim.config(), &root);
    good.exec(&About).await.unwrap();
    assert!(!session_cookie(&good).is_empty());

    let mut wrong_config = sim.config();
    wrong_config.password = Secret::new("wrong-password-42");
    let wrong = govc_in(sim.govc_path(), &wrong_config, &root);
    assert_ne!(session_home(&wrong), session_home(&good));
    let started = Instant::now();
    let err = wrong.exec(&About).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let shown = format!("{err} {err:?} {wrong:?}");
    assert!(!shown.contains("wrong-password-42"), "{shown}");

    // What the separate directories prevent: pointed at the good login's
    // directory, govc takes the wrong password for a right one.
    let target = GovcTarget::new(&wrong_config, Some(root.clone()), &Environment::default())
        .with_session_dir(session_home(&good));
    let shared = ProcessGovc::new(sim.govc_path().to_owned(), target);
    assert!(shared.exec(&About).await.is_ok());

    // The good login still works, from its cached session.
    let cookie = session_cookie(&good);
    good.exec(&About).await.unwrap();
    assert_eq!(session_cookie(&good), cookie);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_of_one_process_never_fail() {
    let sim = Vcsim::start().await.unwrap();
    let mut failures = Vec::new();
    let rounds = 8;
    let calls = 40;
    for round in 0..rounds {
        let (_keep, root) = root();
        let govc = govc_in(sim.govc_path(), &sim.config(), &root);
        // As `ProcessGovc::discover` does: `govc version` first, which
        // never logs in and so must not open the gate.
        govc.check_version().await.unwrap();
        for f in burst(&govc, calls).await {
            failures.push(format!("round {round}: {f}"));
        }
        // One login, one session file.
        assert!(!session_cookie(&govc).is_empty());
    }
    assert!(
        failures.is_empty(),
        "{} of {} calls failed:\n{}",
        failures.len(),
        rounds * calls,
        failures.join("\n")
    );
}

/// Environment variables that make `two_processes_sharing_a_session_directory_never_fail`
/// play one of its child processes.
const CHILD_ROOT: &str = "VMW_TEST_SESSIONS_CHILD_ROOT";
const CHILD_SERVER: &str = "VMW_TEST_SESSIONS_CHILD_SERVER";
const CHILD_GOVC: &str = "VMW_TEST_SESSIONS_CHILD_GOVC";
/// When the children start their calls, in milliseconds since the epoch,
/// so that their first logins meet.
const CHILD_START: &str = "VMW_TEST_SESSIONS_CHILD_START";
const CHILD_CALLS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_a_session_directory_never_fail() {
    if let Ok(root) = std::env::var(CHILD_ROOT) {
        // The child: one vmw process's first calls.
        let server = std::env::var(CHILD_SERVER).unwrap();
        let govc_path = Utf8PathBuf::from(std::env::var(CHILD_GOVC).unwrap());
        let config = VmwareConfig {
            server,
            ..placeholder_config()
        };
        let govc = govc_in(&govc_path, &config, Utf8Path::new(&root));
        govc.check_version().await.unwrap();
        let start: u64 = std::env::var(CHILD_START).unwrap().parse().unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_millis(start);
        if let Ok(wait) = start.duration_since(SystemTime::now()) {
            tokio::time::sleep(wait).await;
        }
        let failures = burst(&govc, CHILD_CALLS).await;
        // The test harness has printed the test's name without a newline.
        println!();
        for f in failures {
            println!("FAILURE {f}");
        }
        println!("DONE");
        return;
    }

    let sim = Vcsim::start().await.unwrap();
    let exe = std::env::current_exe().unwrap();
    let processes = 6;
    let rounds = 5;
    let mut failures = Vec::new();
    for round in 0..rounds {
        let (_keep, root) = root();
        let start = SystemTime::now() + Duration::from_millis(1200);
        let start = start
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            .to_string();
        let children: Vec<_> = (0..processes)
            .map(|_| {
                tokio::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "two_processes_sharing_a_session_directory_never_fail",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ROOT, root.as_str())
                    .env(CHILD_SERVER, sim.address())
                    .env(CHILD_GOVC, sim.govc_path().as_str())
                    .env(CHILD_START, &start)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output()
            })
            .collect();
        for child in children {
            let out = child.await.unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.lines().any(|l| l == "DONE"),
                "child failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            failures.extend(
                stdout
                    .lines()
                    .filter_map(|l| l.strip_prefix("FAILURE "))
                    .map(|f| format!("round {round}: {f}")),
            );
        }
        // They shared one session directory.
        let config = VmwareConfig {
            server: sim.address().to_owned(),
            ..placeholder_config()
        };
        let govc = govc_in(sim.govc_path(), &config, &root);
        assert!(!session_cookie(&govc).is_empty());
    }
    assert!(
        failures.is_empty(),
        "{} of {} calls failed:\n{}",
        failures.len(),
        rounds * processes * CHILD_CALLS,
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_login_waits_for_the_lock_of_another_process() {
    let sim = Vcsim::start_with(VcsimOptions::new().without_templates())
        .await
        .unwrap();
    let (_keep, root) = root();
    let govc = govc_in(sim.govc_path(), &sim.config(), &root);
    let home = session_home(&govc);
    std::fs::create_dir_all(&home).unwrap();
    // "Another vmw process" logging in: it holds the lock.
    let held = std::fs::File::create(home.join(LOGIN_LOCK_FILE)).unwrap();
    held.lock().unwrap();

    // `govc version` never logs in, so it does not wait.
    tokio::time::timeout(Duration::from_secs(20), govc.check_version())
        .await
        .expect("version waited for the login lock")
        .unwrap();
    // A login waits, within its deadline, and never starts govc.
    let short = About.command().timeout(Duration::from_millis(700));
    let err = govc.run(&short).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(!home.join("sessions").exists(), "govc ran without the lock");

    // Released a second later: the login goes on then.
    let started = Instant::now();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(held);
    });
    govc.exec(&About).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "logged in {:?} after the other process started, while it held the lock",
        started.elapsed()
    );
    release.await.unwrap();

    // Once this process has a session, its calls no longer take the lock.
    let held = std::fs::File::create(home.join(LOGIN_LOCK_FILE)).unwrap();
    held.lock().unwrap();
    govc.run(&short).await.unwrap();
}

/// vcsim's defaults (it accepts any user), for a given server.
fn placeholder_config() -> VmwareConfig {
    VmwareConfig {
        server: String::new(),
        username: "vmw".to_owned(),
        password: Secret::new("vmw-test-password"),
        datacenter: vmw_testbed::DATACENTER.to_owned(),
        datastore: vmw_testbed::DATASTORE.to_owned(),
        folder: VM_FOLDER.to_owned(),
        insecure_transport: true,
        resource_pool: Some(vmw_testbed::CLUSTER_POOL.to_owned()),
        network: None,
        public_key_path: None,
        private_key_path: None,
        key_name: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_are_renewed_and_calls_go_on() {
    let idle = Duration::from_secs(2);
    let sim = Vcsim::start_with(
        VcsimOptions::new()
            .credentials("alice", "right-password")
            .session_idle_timeout(idle),
    )
    .await
    .unwrap();
    let (_keep, root) = root();
    let govc = govc_in(sim.govc_path(), &sim.config(), &root);
    govc.exec(&About).await.unwrap();
    let first = session_cookie(&govc);
    // Within the idle timeout the session is reused.
    govc.exec(&About).await.unwrap();
    assert_eq!(session_cookie(&govc), first);

    // Idle for more than two timeouts: vcsim has dropped the session.
    tokio::time::sleep(idle * 2 + Duration::from_secs(1)).await;
    let failures = burst(&govc, 40).await;
    assert!(
        failures.is_empty(),
        "{} of 40 calls failed after the session expired:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // govc noticed and logged in again.
    assert_ne!(session_cookie(&govc), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_loses_its_connection_runs_once_more_a_change_never() {
    // A "vCenter" that closes every connection at once: govc reports
    // `Post "https://.../sdk": EOF`, or a reset connection when its
    // request was already on the way.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let config = VmwareConfig {
        server: format!("127.0.0.1:{port}"),
        ..placeholder_config()
    };
    let (_keep, root) = root();
    let govc_path = vmw_testbed::tools::locate(vmw_testbed::Tool::Govc).unwrap();
    let govc = ProcessGovc::new(
        govc_path,
        GovcTarget::new(&config, Some(root.clone()), &Environment::default()),
    );

    let lost = |e: &GovcError| {
        let text = e.to_string();
        text.contains("EOF") || text.contains("connection reset by peer")
    };
    let read = govc.exec(&About).await.unwrap_err();
    assert!(lost(&read), "{read}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "about ran twice");

    let change = govc
        .exec(&VmDestroy::new(
            vmw_govc::VmRef::parse("/DC0/vm/x").unwrap(),
        ))
        .await
        .unwrap_err();
    assert!(lost(&change), "{change}");
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "vm.destroy ran once");

    let once = govc.clone().retry_reads(false);
    once.exec(&Find::new(VM_FOLDER)).await.unwrap_err();
    assert_eq!(accepted.load(Ordering::SeqCst), 4, "no retry when asked");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_session_directories_go_at_the_first_call() {
    let (_keep, root) = root();
    let stale = root.join("0123456789abcdef0123456789abcdef");
    let fresh = root.join("fedcba9876543210fedcba9876543210");
    for dir in [&stale, &fresh] {
        std::fs::create_dir_all(dir.join("sessions")).unwrap();
    }
    let long_ago = SystemTime::now() - SESSION_STALE_AFTER - Duration::from_secs(3600);
    std::fs::File::open(&stale)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let config = VmwareConfig {
        server: "127.0.0.1:1".to_owned(),
        ..placeholder_config()
    };
    let govc_path = vmw_testbed::tools::locate(vmw_testbed::Tool::Govc).unwrap();
    let govc = ProcessGovc::new(
        govc_path,
        GovcTarget::new(&config, Some(root.clone()), &Environment::default()),
    );
    let mine = session_home(&govc);
    assert!(session::is_key(mine.file_name().unwrap()));
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::File::open(&mine)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();

    // Even `govc version`, which never reaches a vCenter.
    govc.check_version().await.unwrap();
    assert!(!stale.exists(), "{stale} was not pruned");
    assert!(fresh.exists());
    // The directory in use is kept and marked used.
    let age = SystemTime::now()
        .duration_since(mine.metadata().unwrap().modified().unwrap())
        .unwrap_or_default();
    assert!(age < Duration::from_secs(600), "{mine} is {age:?} old");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_server_url_log_in_and_are_never_shown() {
    let user = "administrator@vsphere.local";
    let password = "p@ss:w/rd%x #1";
    let sim = Vcsim::start_with(
        VcsimOptions::new()
            .credentials(user, password)
            .without_templates(),
    )
    .await
    .unwrap();
    // vcsim prints the URL with both, percent-encoded.
    assert!(
        sim.url().contains("administrator%40vsphere.local:"),
        "{}",
        sim.url()
    );
    let (_keep, root) = root();
    let load = |url: &str| {
        Loader::with_environment(Environment::from_pairs([
            ("HOME", root.as_str()),
            ("GOVC_URL", url),
            ("GOVC_INSECURE", "1"),
        ]))
        .system_file(root.join("none.toml"))
        .overrides(Overrides {
            datacenter: Some(vmw_testbed::DATACENTER.into()),
            datastore: Some(vmw_testbed::DATASTORE.into()),
            folder: Some(VM_FOLDER.into()),
            ..Overrides::default()
        })
        .load()
        .unwrap()
    };
    let loaded = load(sim.url());
    let config = &loaded.config;
    assert_eq!(config.server, format!("https://{}/sdk", sim.address()));
    assert_eq!(config.username, user);
    assert_eq!(config.password.expose(), password);
    assert_eq!(
        loaded.origin("password"),
        Some(&Origin::ServerUrl(Box::new(Origin::Env("GOVC_URL"))))
    );

    let govc = ProcessGovc::new(
        sim.govc_path().to_owned(),
        GovcTarget::new(config, Some(root.clone()), &Environment::default()),
    );
    assert_eq!(
        govc.target().url(),
        format!("https://{}/sdk", sim.address())
    );
    assert_eq!(govc.target().username(), user);
    let about = govc.exec(&About).await.unwrap();
    assert!(about.is_vcenter());

    let encoded = sim.url().split('@').next().unwrap().to_owned();
    let shown = format!("{loaded:?} {govc:?} {}", config.server_display());
    for secret in [password, "p%40ss", encoded.as_str()] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }

    // A wrong password inside the URL: refused, and not shown.
    let wrong_url = sim.url().replacen("p%40ss", "wr0ng", 1);
    assert_ne!(wrong_url, sim.url());
    let wrong = load(&wrong_url);
    let err: GovcError = ProcessGovc::new(
        sim.govc_path().to_owned(),
        GovcTarget::new(&wrong.config, Some(root.clone()), &Environment::default()),
    )
    .exec(&About)
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    let shown = format!("{err} {err:?} {wrong:?}");
    assert!(!shown.contains("wr0ng"), "{shown}");
}
