//! Running the built `vmw` against a vcsim of its own, with a temporary
//! HOME and config file.

#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};
use vmw_testbed::{AgentOptions, GuestAgent, Tool, Vcsim, VcsimOptions};

/// A simulator, its guest agent, and a home directory with a config file.
pub struct Bed {
    pub sim: Vcsim,
    pub agent: GuestAgent,
    pub dir: tempfile::TempDir,
    pub home: Utf8PathBuf,
    pub config: Utf8PathBuf,
    pub govc: Utf8PathBuf,
}

pub async fn bed() -> Bed {
    bed_with(VcsimOptions::new()).await
}

pub async fn bed_with(options: VcsimOptions) -> Bed {
    bed_in(options, None).await
}

/// A bed whose configured folder is `folder` (created first).
pub async fn bed_in(options: VcsimOptions, folder: Option<&str>) -> Bed {
    let sim = Vcsim::start_with(options).await.unwrap();
    let mut config = sim.config();
    if let Some(folder) = folder {
        use vmw_govc::Govc;
        sim.govc()
            .run(&vmw_govc::Command::new("folder.create").arg(folder))
            .await
            .unwrap();
        config.folder = folder.to_owned();
    }
    let agent = sim.guest_agent(AgentOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(dir.path()).unwrap().to_owned();
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = vmw_testbed::write_config(&config, &root).unwrap();
    Bed {
        sim,
        agent,
        dir,
        home,
        config,
        govc: vmw_testbed::tools::locate(Tool::Govc).unwrap(),
    }
}

/// The result of one `vmw` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with everything printed unless the exit status is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit status {} (wanted {code})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A `vmw` command with a clean environment: HOME, USER, PATH and
/// VMW_GOVC only.
pub fn vmw_command(home: &Utf8Path, govc: &Utf8Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmw"));
    cmd.env_clear()
        .env("HOME", home)
        .env("USER", "tester")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("VMW_GOVC", govc)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

impl Bed {
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = vmw_command(&self.home, &self.govc);
        cmd.arg("--config").arg(&self.config).args(args);
        cmd
    }

    /// Runs `vmw --config <file> ARGS`.
    pub async fn vmw(&self, args: &[&str]) -> Run {
        let out = tokio::time::timeout(Duration::from_secs(300), self.command(args).output())
            .await
            .expect("vmw did not finish within 5 minutes")
            .unwrap();
        Run::from_output(out)
    }

    /// Names of the VMs in the simulator's folder, without the templates and
    /// the VMs of vcsim's own model.
    pub async fn vms(&self) -> Vec<String> {
        use vmw_govc::GovcExt;
        use vmw_govc::requests::{Find, ObjectType};
        let mut names: Vec<String> = self
            .sim
            .govc()
            .exec(&Find::new("/DC0/vm").kind(ObjectType::VirtualMachine))
            .await
            .unwrap()
            .into_iter()
            .filter_map(|p| p.rsplit('/').next().map(str::to_owned))
            .filter(|n| !n.starts_with("TEMPLATE-") && !n.starts_with("DC0_"))
            .collect();
        names.sort();
        names
    }
}

/// A running `vmw` whose stderr is read line by line, to be signalled at
/// a chosen moment.
pub struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStderr>>,
    /// What stderr printed so far.
    pub seen: String,
}

impl Running {
    /// Spawns `cmd` (whose stderr must be piped, as [`vmw_command`]'s is).
    pub fn spawn(mut cmd: tokio::process::Command) -> Self {
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        Self {
            child,
            lines: BufReader::new(stderr).lines(),
            seen: String::new(),
        }
    }

    /// Reads stderr until a line contains `needle`; fails the test with what
    /// was read unless one does within a minute.
    pub async fn wait_for(&mut self, needle: &str) {
        let lines = &mut self.lines;
        let seen = &mut self.seen;
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        assert!(found, "no line with {needle:?}:\n{}", self.seen);
    }

    /// Takes the child's stdout, to read what it printed.
    pub fn stdout(&mut self) -> tokio::process::ChildStdout {
        self.child.stdout.take().unwrap()
    }

    /// Sends `signal` (as kill(1) names it: `INT`, `TERM`, `HUP`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        let kill = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .unwrap();
        assert!(kill.success());
    }

    /// Waits (two minutes at most) for the exit; returns its status, what
    /// stderr printed before, and what it printed after the last
    /// [`Running::wait_for`].
    pub async fn finish(mut self) -> (ExitStatus, String, String) {
        let mut lines = self.lines;
        let rest = tokio::spawn(async move {
            let mut text = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        (status, self.seen, rest.await.unwrap())
    }
}
