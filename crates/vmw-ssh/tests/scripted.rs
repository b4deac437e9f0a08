//! The logic built on `Guest` (readiness stages, boot-id restarts, guest
//! cleaning, scripts) against a scripted guest.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use camino::Utf8Path;
use vmw_ssh::{
    CloudInitErrors, Cmd, ExecOptions, ExecResult, Guest, GuestExt, ReadyTimeouts, SshError, Stage,
    WaitFor,
};

type Script = dyn Fn(&str, &ExecOptions) -> Answer + Send + Sync;

/// What the scripted guest answers to a command line.
enum Answer {
    Exit(u32, &'static str),
    Out(u32, String),
    Down,
    /// A transport failure at this stage, with this message.
    Broken(Stage, &'static str),
    /// Killed by this signal.
    Killed(&'static str),
    Hang,
}

/// A command line as sent, whether with sudo, and its standard input.
type Logged = (String, bool, Option<Vec<u8>>);

struct Scripted {
    user: &'static str,
    script: Box<Script>,
    log: Mutex<Vec<Logged>>,
    disconnects: AtomicUsize,
    /// Commands that hung and were given up on (their future dropped).
    abandoned: Arc<AtomicUsize>,
}

impl Scripted {
    fn new(
        user: &'static str,
        script: impl Fn(&str, &ExecOptions) -> Answer + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            user,
            script: Box::new(script),
            log: Mutex::new(Vec::new()),
            disconnects: AtomicUsize::new(0),
            abandoned: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }

    fn lines(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(l, _, _)| l.clone())
            .collect()
    }
}

#[async_trait]
impl Guest for Scripted {
    fn instance(&self) -> &str {
        "vm-1"
    }
    fn address(&self) -> String {
        "192.0.2.10:22".to_owned()
    }
    fn user(&self) -> &str {
        self.user
    }
    async fn execute(&self, cmd: &Cmd, options: &ExecOptions) -> Result<ExecResult, SshError> {
        let line = cmd.remote_line(options.sudo);
        self.log
            .lock()
            .unwrap()
            .push((line.clone(), options.sudo, options.stdin.clone()));
        match (self.script)(&line, options) {
            Answer::Exit(code, out) => {
                Ok(ExecResult::from_raw(out.as_bytes(), b"", Some(code), None))
            }
            Answer::Out(code, out) => Ok(ExecResult::from_raw(
                out.as_bytes(),
                b"oops\n",
                Some(code),
                None,
            )),
            Answer::Down => Err(SshError::Transport {
                instance: "vm-1".into(),
                address: self.address(),
                stage: Stage::Connect,
                message: "connection refused".into(),
                hint: None,
            }),
            Answer::Broken(stage, message) => Err(SshError::Transport {
                instance: "vm-1".into(),
                address: self.address(),
                stage,
                message: message.into(),
                hint: None,
            }),
            Answer::Killed(signal) => Ok(ExecResult::from_raw(
                b"",
                b"",
                None,
                Some(signal.to_owned()),
            )),
            Answer::Hang => {
                let _abandoned = CountOnDrop(self.abandoned.clone());
                tokio::time::sleep(Duration::from_secs(3600)).await;
                unreachable!()
            }
        }
    }
    async fn push_file(&self, _: &Utf8Path, _: &str) -> Result<(), SshError> {
        Ok(())
    }
    async fn pull_file(&self, _: &str, _: &Utf8Path) -> Result<(), SshError> {
        Ok(())
    }
    async fn disconnect(&self) {
        self.disconnects.fetch_add(1, Ordering::SeqCst);
    }
}

/// Adds one to its counter when dropped: a hanging command whose future is
/// dropped was given up on.
struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// `wait`, which should end within a fraction of a second, with a minute
/// to do it: the bound is there so that a wait that never ends fails the
/// test instead of hanging it, not to time anything (a loaded machine is
/// two orders of magnitude away from it).
async fn ends<T>(wait: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the wait never ended")
}

fn quick(ready_ms: u64) -> ReadyTimeouts {
    ReadyTimeouts {
        ready: Duration::from_millis(ready_ms),
        poll: Duration::from_millis(10),
        ..ReadyTimeouts::default()
    }
}

const STATUS: &str = "'cloud-init' 'status' '--wait' '--long'";
const SYSTEMD: &str = "sh -c 'test -d /run/systemd/system'";
const TARGET: &str = "'systemctl' 'is-active' 'cloud-init.target'";
const BOOT_ID: &str = "'cat' '/proc/sys/kernel/random/boot_id'";

#[tokio::test]
async fn ready_waits_for_ssh_then_cloud_init() {
    let refusals = AtomicUsize::new(0);
    let guest = Scripted::new("ubuntu", move |line, _| match line {
        "sh -c 'true'" if refusals.fetch_add(1, Ordering::SeqCst) < 3 => Answer::Down,
        "sh -c 'true'" => Answer::Exit(0, ""),
        SYSTEMD => Answer::Exit(1, ""),
        STATUS => Answer::Exit(0, "status: done\n"),
        other => panic!("unexpected {other}"),
    });
    guest.wait_ready(quick(5000)).await.unwrap();
    let lines = guest.lines();
    assert_eq!(lines.iter().filter(|l| *l == "sh -c 'true'").count(), 4);
    assert_eq!(&lines[4..], [SYSTEMD, STATUS]);
}

#[tokio::test]
async fn ready_polls_the_systemd_target_when_systemd_runs() {
    let polls = AtomicUsize::new(0);
    let guest = Scripted::new("ubuntu", move |line, _| match line {
        "sh -c 'true'" => Answer::Exit(0, ""),
        SYSTEMD => Answer::Exit(0, ""),
        TARGET if polls.fetch_add(1, Ordering::SeqCst) < 2 => Answer::Exit(3, "inactive\n"),
        TARGET => Answer::Exit(0, "active\n"),
        STATUS => Answer::Exit(0, "status: done\n"),
        other => panic!("unexpected {other}"),
    });
    guest.wait_ready(quick(5000)).await.unwrap();
    assert_eq!(guest.lines().iter().filter(|l| *l == TARGET).count(), 3);
}

#[tokio::test]
async fn each_stage_times_out_with_its_own_name() {
    // SSH never answers.
    let guest = Scripted::new("ubuntu", |_, _| Answer::Down);
    let err = guest.wait_ready(quick(200)).await.unwrap_err();
    assert_eq!(err.waiting_for(), Some(WaitFor::Ssh), "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");

    // systemd's target never becomes active.
    let guest = Scripted::new("ubuntu", |line, _| match line {
        TARGET => Answer::Exit(3, "activating\n"),
        _ => Answer::Exit(0, ""),
    });
    let err = guest.wait_ready(quick(200)).await.unwrap_err();
    assert_eq!(err.waiting_for(), Some(WaitFor::CloudInitTarget), "{err}");

    // cloud-init never finishes.
    let guest = Scripted::new("ubuntu", |line, _| match line {
        SYSTEMD => Answer::Exit(1, ""),
        STATUS => Answer::Hang,
        _ => Answer::Exit(0, ""),
    });
    let err = ends(guest.wait_ready(quick(300))).await.unwrap_err();
    assert_eq!(err.waiting_for(), Some(WaitFor::CloudInit), "{err}");
    assert!(
        matches!(err, SshError::Timeout { waited, .. } if waited == Duration::from_millis(300)),
        "{err:?}"
    );
    // The hanging `cloud-init status` was cut off at the deadline, not
    // waited for.
    assert_eq!(guest.count(STATUS), 1);
    assert_eq!(
        guest.abandoned.load(Ordering::SeqCst),
        1,
        "the hang was cut off"
    );
}

#[tokio::test]
async fn cloud_init_errors_fail_and_degraded_passes() {
    let guest = Scripted::new("ubuntu", |line, _| match line {
        SYSTEMD => Answer::Exit(1, ""),
        STATUS => Answer::Out(1, "status: error\n".into()),
        _ => Answer::Exit(0, ""),
    });
    let err = guest.wait_ready(quick(1000)).await.unwrap_err();
    assert!(
        matches!(&err, SshError::Failed { what, .. } if what == "cloud-init"),
        "{err}"
    );
    assert!(err.to_string().contains("status: error"), "{err}");

    let guest = Scripted::new("ubuntu", |line, _| match line {
        SYSTEMD => Answer::Exit(1, ""),
        STATUS => Answer::Exit(2, "status: done\nextended_status: degraded done\n"),
        _ => Answer::Exit(0, ""),
    });
    guest.wait_ready(quick(1000)).await.unwrap();
}

#[tokio::test]
async fn cloud_init_errors_end_the_wait_when_accepted_and_nothing_else_does() {
    let accept = ReadyTimeouts {
        cloud_init_errors: CloudInitErrors::Accept,
        ..quick(1000)
    };
    // status: error, exit 1: the wait ends, as pycloudlib's does.
    let guest = Scripted::new("ubuntu", |line, _| match line {
        SYSTEMD => Answer::Exit(1, ""),
        STATUS => Answer::Out(1, "status: error\n".into()),
        _ => Answer::Exit(0, ""),
    });
    guest.wait_ready(accept).await.unwrap();
    assert_eq!(guest.count(STATUS), 1);

    // Any other failure of `cloud-init status` (here: no cloud-init at
    // all) still fails the wait.
    let guest = Scripted::new("ubuntu", |line, _| match line {
        SYSTEMD => Answer::Exit(1, ""),
        STATUS => Answer::Exit(127, "sh: cloud-init: not found\n"),
        _ => Answer::Exit(0, ""),
    });
    let err = guest.wait_ready(accept).await.unwrap_err();
    assert!(
        matches!(&err, SshError::Failed { what, .. } if what == "cloud-init"),
        "{err}"
    );
}

#[tokio::test]
async fn restart_waits_for_a_new_boot_id() {
    let booted = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let (b, r) = (booted.clone(), reads.clone());
    let guest = Scripted::new("ubuntu", move |line, _| match line {
        BOOT_ID => {
            let n = r.fetch_add(1, Ordering::SeqCst);
            // Before the power cycle: boot A. After it: still A twice (the
            // guest has not gone down yet), then B.
            if b.load(Ordering::SeqCst) == 0 || n < 3 {
                Answer::Out(0, "aaaa-boot\n".into())
            } else {
                Answer::Out(0, "bbbb-boot\n".into())
            }
        }
        SYSTEMD => Answer::Exit(1, ""),
        _ => Answer::Exit(0, ""),
    });
    let cycled = booted.clone();
    guest
        .restart_with(
            || async move {
                cycled.store(1, Ordering::SeqCst);
                Ok::<(), SshError>(())
            },
            quick(5000),
        )
        .await
        .unwrap();
    assert_eq!(booted.load(Ordering::SeqCst), 1);
    assert!(reads.load(Ordering::SeqCst) >= 4);
    assert_eq!(
        guest.disconnects.load(Ordering::SeqCst),
        1,
        "the old connection is dropped"
    );
    assert_eq!(guest.lines().last().map(String::as_str), Some(STATUS));
}

#[tokio::test]
async fn a_boot_id_that_never_changes_times_out_as_a_reboot_wait() {
    let guest = Scripted::new("ubuntu", |line, _| match line {
        BOOT_ID => Answer::Out(0, "same\n".into()),
        _ => Answer::Exit(0, ""),
    });
    let err = guest
        .restart_with(|| async { Ok::<(), SshError>(()) }, quick(300))
        .await
        .unwrap_err();
    assert_eq!(err.waiting_for(), Some(WaitFor::Reboot), "{err}");
    assert!(err.to_string().contains("boot id still same"), "{err}");
}

#[tokio::test]
async fn an_unreachable_guest_is_restarted_then_waited_for() {
    let cycled = Arc::new(AtomicUsize::new(0));
    let c = cycled.clone();
    let guest = Scripted::new("ubuntu", move |line, _| {
        if c.load(Ordering::SeqCst) == 0 {
            return Answer::Down;
        }
        match line {
            SYSTEMD => Answer::Exit(1, ""),
            _ => Answer::Exit(0, ""),
        }
    });
    let c = cycled.clone();
    guest
        .restart_with(
            || async move {
                c.store(1, Ordering::SeqCst);
                Ok::<(), SshError>(())
            },
            quick(2000),
        )
        .await
        .unwrap();
    // One boot-id attempt before the restart (refused); none after: the
    // wait is the readiness wait.
    assert_eq!(guest.lines().iter().filter(|l| *l == BOOT_ID).count(), 1);
    assert_eq!(guest.lines().last().map(String::as_str), Some(STATUS));

    // A failing power cycle is the caller's error, returned as is.
    let guest = Scripted::new("ubuntu", |_, _| Answer::Exit(0, "x\n"));
    #[derive(Debug)]
    struct PowerFailed;
    impl From<SshError> for PowerFailed {
        fn from(_: SshError) -> Self {
            PowerFailed
        }
    }
    let err = guest
        .restart_with(|| async { Err::<(), _>(PowerFailed) }, quick(200))
        .await;
    assert!(matches!(err, Err(PowerFailed)));
}

#[tokio::test]
async fn clean_runs_every_step_as_root_and_names_a_failing_one() {
    let guest = Scripted::new("ubuntu", |_, _| Answer::Exit(0, ""));
    guest.clean().await.unwrap();
    assert_eq!(
        guest.lines(),
        [
            "sudo -n -- sh -c 'cloud-init clean --logs'",
            "sudo -n -- sh -c 'truncate -s 0 /etc/machine-id'",
            "sudo -n -- sh -c 'rm -f /var/log/syslog'",
            "sudo -n -- sh -c 'sync'",
        ]
    );

    let root = Scripted::new("root", |line, _| {
        if line.contains("machine-id") {
            Answer::Out(1, String::new())
        } else {
            Answer::Exit(0, "")
        }
    });
    let err = root.clean().await.unwrap_err();
    assert!(
        matches!(&err, SshError::Failed { what, .. } if what == "empty /etc/machine-id"),
        "{err}"
    );
    assert!(err.to_string().contains("exit status 1: oops"), "{err}");
    assert_eq!(root.lines().len(), 2, "stops at the failing step");
    assert!(
        root.lines().iter().all(|l| !l.starts_with("sudo")),
        "root needs no sudo"
    );
}

#[tokio::test]
async fn scripts_travel_on_stdin_and_packages_are_quoted() {
    let guest = Scripted::new("ubuntu", |_, _| Answer::Exit(0, "ran\n"));
    let r = guest
        .run_script("#!/bin/bash\necho ran\n", false)
        .await
        .unwrap();
    assert_eq!(r.stdout, "ran");
    let log = guest.log.lock().unwrap().clone();
    assert_eq!(log[0].2.as_deref(), Some(&b"#!/bin/bash\necho ran\n"[..]));
    assert!(log[0].0.starts_with("sh -c 'f=$(mktemp)"), "{}", log[0].0);

    guest.install(&["hello", "it's"]).await.unwrap();
    assert_eq!(
        guest.lines()[1],
        r#"sudo -n -- 'env' 'DEBIAN_FRONTEND=noninteractive' 'apt-get' 'install' '--yes' '--quiet' 'hello' 'it'\''s'"#
    );
    assert_eq!(guest.boot_id().await.unwrap(), "ran");
}

/// A guest that reboots while `cloud-init status --wait` runs: the command
/// is cut off (`cut`), SSH is refused for a while, then the guest is back
/// with systemd starting up and cloud-init finishing (`after`).
fn rebooting(cut: Answer, after: (u32, &'static str)) -> Arc<Scripted> {
    let rebooted = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let target_polls = AtomicUsize::new(0);
    let cut = Mutex::new(Some(cut));
    Scripted::new("ubuntu", move |line, _| {
        let up_again = rebooted.load(Ordering::SeqCst) > 0;
        match line {
            // Down for three attempts after the reboot.
            _ if up_again && refused.load(Ordering::SeqCst) < 3 => {
                refused.fetch_add(1, Ordering::SeqCst);
                Answer::Down
            }
            "sh -c 'true'" | SYSTEMD => Answer::Exit(0, ""),
            // Once back, systemd takes two polls to reach the target.
            TARGET if up_again && target_polls.fetch_add(1, Ordering::SeqCst) < 2 => {
                Answer::Exit(3, "activating\n")
            }
            TARGET => Answer::Exit(0, "active\n"),
            STATUS if !up_again => {
                rebooted.store(1, Ordering::SeqCst);
                cut.lock().unwrap().take().unwrap_or(Answer::Down)
            }
            STATUS => Answer::Out(after.0, after.1.to_owned()),
            other => panic!("unexpected {other}"),
        }
    })
}

#[tokio::test]
async fn ready_survives_a_reboot_during_cloud_init() {
    for cut in [
        Answer::Broken(
            Stage::Command,
            "the connection closed before `cloud-init status --wait --long` reported an exit status",
        ),
        Answer::Broken(Stage::Channel, "channel closed"),
        Answer::Killed("TERM"),
    ] {
        let guest = rebooting(cut, (0, "status: done\n"));
        guest.wait_ready(quick(5000)).await.unwrap();
        let lines = guest.lines();
        assert_eq!(
            lines.iter().filter(|l| *l == STATUS).count(),
            2,
            "cloud-init is asked again after the reboot: {lines:?}"
        );
        // After the cut: SSH again (refused three times, then up), the
        // target polled again until active, then cloud-init.
        let cut_at = lines.iter().position(|l| l == STATUS).unwrap();
        assert_eq!(
            &lines[cut_at + 1..],
            [
                "sh -c 'true'",
                "sh -c 'true'",
                "sh -c 'true'",
                "sh -c 'true'",
                SYSTEMD,
                TARGET,
                TARGET,
                TARGET,
                STATUS
            ]
        );
        assert!(
            guest.disconnects.load(Ordering::SeqCst) >= 1,
            "the broken connection is dropped before reconnecting"
        );
    }
}

#[tokio::test]
async fn an_error_reported_after_a_reboot_is_still_an_error() {
    let guest = rebooting(Answer::Killed("TERM"), (1, "status: error\n"));
    let err = guest.wait_ready(quick(5000)).await.unwrap_err();
    assert!(
        matches!(&err, SshError::Failed { what, .. } if what == "cloud-init"),
        "{err}"
    );
    assert!(err.to_string().contains("status: error"), "{err}");
}

#[tokio::test]
async fn a_guest_that_keeps_dropping_times_out_naming_the_stage_and_the_drop() {
    // SSH answers, but every cloud-init status is cut off.
    let guest = Scripted::new("ubuntu", |line, _| match line {
        SYSTEMD => Answer::Exit(1, ""),
        STATUS => Answer::Broken(Stage::Command, "connection reset by peer"),
        _ => Answer::Exit(0, ""),
    });
    let err = ends(guest.wait_ready(quick(300))).await.unwrap_err();
    assert_eq!(err.waiting_for(), Some(WaitFor::CloudInit), "{err}");
    assert!(
        err.to_string().contains("connection reset by peer"),
        "{err}"
    );
    // Retried, a poll (10 ms) apart, until the deadline (300 ms): more than
    // once, and never more often than the polls fit in the wait, however
    // slow the machine.
    let statuses = guest.count(STATUS);
    assert!(statuses > 1, "retried: {statuses}");
    assert!(statuses <= 300 / 10 + 1, "a poll apart: {statuses}");

    // The systemd stage drops too.
    let guest = Scripted::new("ubuntu", |line, _| match line {
        TARGET => Answer::Broken(Stage::Channel, "channel open failed"),
        _ => Answer::Exit(0, ""),
    });
    let err = guest.wait_ready(quick(300)).await.unwrap_err();
    assert_eq!(err.waiting_for(), Some(WaitFor::CloudInitTarget), "{err}");
    assert!(err.to_string().contains("channel open failed"), "{err}");
}

#[tokio::test]
async fn a_changed_host_key_ends_every_wait_at_once() {
    let changed = |line: &str| match line {
        SYSTEMD => Answer::Exit(1, ""),
        _ => Answer::Broken(Stage::HostKey, "host key of vm-1 has changed"),
    };
    // At the SSH stage.
    let guest = Scripted::new("ubuntu", move |line, _| changed(line));
    let err = ends(guest.wait_ready(quick(5000))).await.unwrap_err();
    assert_eq!(err.stage(), Some(Stage::HostKey), "{err}");
    assert_eq!(guest.lines().len(), 1, "not retried");
    let err = ends(guest.wait_ssh(quick(5000))).await.unwrap_err();
    assert_eq!(err.stage(), Some(Stage::HostKey), "{err}");
    assert_eq!(guest.lines().len(), 2, "not retried");

    // After a reboot during cloud-init.
    let rebooted = AtomicUsize::new(0);
    let guest = Scripted::new("ubuntu", move |line, _| match line {
        STATUS => {
            rebooted.store(1, Ordering::SeqCst);
            Answer::Broken(Stage::Command, "connection closed")
        }
        _ if rebooted.load(Ordering::SeqCst) == 0 => {
            Answer::Exit(if line == SYSTEMD { 1 } else { 0 }, "")
        }
        _ => Answer::Broken(Stage::HostKey, "host key of vm-1 has changed"),
    });
    let err = ends(guest.wait_ready(quick(5000))).await.unwrap_err();
    assert_eq!(err.stage(), Some(Stage::HostKey), "{err}");
    // One attempt to reconnect after the cut, refused for good.
    assert_eq!(
        guest.lines(),
        ["sh -c 'true'", SYSTEMD, STATUS, "sh -c 'true'"],
        "not retried"
    );

    // And the wait for a new boot id.
    let cycled = Arc::new(AtomicUsize::new(0));
    let c = cycled.clone();
    let guest = Scripted::new("ubuntu", move |_, _| {
        if c.load(Ordering::SeqCst) == 0 {
            Answer::Out(0, "boot-a\n".into())
        } else {
            Answer::Broken(Stage::HostKey, "host key of vm-1 has changed")
        }
    });
    let c = cycled.clone();
    let err = ends(guest.restart_with(
        || async move {
            c.store(1, Ordering::SeqCst);
            Ok::<(), SshError>(())
        },
        quick(5000),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.stage(), Some(Stage::HostKey), "{err}");
    // The boot id before the power cycle, and one read after it.
    assert_eq!(guest.lines(), [BOOT_ID, BOOT_ID], "not retried");
}

#[test]
fn transient_errors_are_the_ones_waiting_can_cure() {
    let transport = |stage| SshError::Transport {
        instance: "vm-1".into(),
        address: "192.0.2.10:22".into(),
        stage,
        message: "x".into(),
        hint: None,
    };
    for stage in [
        Stage::Connect,
        Stage::Auth,
        Stage::Channel,
        Stage::Command,
        Stage::Sftp,
    ] {
        assert!(transport(stage).is_transient(), "{stage}");
    }
    for stage in [Stage::HostKey, Stage::Key, Stage::LocalFile] {
        assert!(!transport(stage).is_transient(), "{stage}");
    }
    let failed = SshError::Failed {
        instance: "vm-1".into(),
        address: "192.0.2.10:22".into(),
        what: "cloud-init".into(),
        detail: "exit status 1".into(),
    };
    assert!(!failed.is_transient());
}
