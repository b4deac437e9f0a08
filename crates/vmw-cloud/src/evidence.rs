//! Evidence of a failed launch: what a guest's console, cloud-init and
//! journal say, collected into a local directory
//! ([`Instance::collect_evidence`]), and the console log itself
//! ([`Instance::console_log`]).

use std::fmt;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use vmw_govc::parse::datastore_path;
use vmw_govc::requests::DatastoreDownload;
use vmw_govc::{ErrorKind, Govc, GovcExt};
use vmw_ssh::{ExecOptions, ExecResult};

use crate::{CloudError, Instance};

/// How long a guest that does not answer gets, per command, while evidence
/// is collected.
const ASK: Duration = Duration::from_secs(60);

/// Where the guest's `cloud-init collect-logs` tarball is made.
const LOGS_TARBALL: &str = "/tmp/vmw-cloud-init-logs.tar.gz";

/// What [`Instance::collect_evidence`] wrote, and what it could not get.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The directory.
    pub dir: Utf8PathBuf,
    /// The files written, in it.
    pub files: Vec<Utf8PathBuf>,
    /// What could not be collected, and why.
    pub missing: Vec<String>,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "evidence in {}:", self.dir)?;
        if self.files.is_empty() {
            f.write_str(" nothing could be collected")?;
        }
        for file in &self.files {
            write!(f, " {}", file.file_name().unwrap_or(file.as_str()))?;
        }
        for m in &self.missing {
            write!(f, "\n  not collected: {m}")?;
        }
        Ok(())
    }
}

impl<G: Govc> Instance<G> {
    /// The VM's console log: what the guest wrote to its first serial port,
    /// which a launch connects to a file in the VM's own datastore folder
    /// (see [`crate::Settings::console_log`]). Empty while the guest has
    /// written nothing; an error when the VM has no file-backed serial port.
    pub async fn console_log(&self) -> Result<String, CloudError> {
        let govc = &self.cloud().govc;
        let info = self
            .cloud()
            .vm_info(self.vm())
            .await?
            .ok_or_else(|| CloudError::NoSuchVm {
                name: self.vm().to_string(),
            })?;
        let file = info
            .serial_ports
            .iter()
            .find_map(|p| p.file.clone())
            .ok_or_else(|| CloudError::NoConsole {
                vm: self.vm().to_string(),
            })?;
        let Some((datastore, path)) = datastore_path(&file) else {
            return Err(CloudError::NoConsole {
                vm: self.vm().to_string(),
            });
        };
        let download = DatastoreDownload {
            datastore: datastore.to_owned(),
            path: path.to_owned(),
        };
        match govc.exec(&download).await {
            Ok(text) => Ok(text),
            // Nothing written yet: the file does not exist.
            Err(e)
                if e.kind() == ErrorKind::NotFound
                    || e.stderr().is_some_and(|s| s.contains("404 Not Found")) =>
            {
                Ok(String::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Collects what explains a guest's state into `dir` (made if needed):
    /// `console.log`; and when SSH answers, `cloud-init-status.txt`
    /// (`cloud-init status --long`), `journal.txt` (`journalctl -b`) and
    /// `cloud-init-logs.tar.gz` (`cloud-init collect-logs`). What cannot be
    /// had is listed in [`Evidence::missing`]; only a directory that cannot
    /// be written is an error.
    pub async fn collect_evidence(&self, dir: &Utf8Path) -> Result<Evidence, CloudError> {
        self.collect_evidence_with(dir, true).await
    }

    /// [`Instance::collect_evidence`]; without `over_ssh` (the guest never
    /// got an address), the console log only.
    pub(crate) async fn collect_evidence_with(
        &self,
        dir: &Utf8Path,
        over_ssh: bool,
    ) -> Result<Evidence, CloudError> {
        std::fs::create_dir_all(dir).map_err(|source| CloudError::Io {
            what: format!("creating the evidence directory {dir}"),
            source,
        })?;
        let mut evidence = Evidence {
            dir: dir.to_owned(),
            ..Evidence::default()
        };
        match self.console_log().await {
            Ok(text) if text.is_empty() => evidence
                .missing
                .push("console log: the guest wrote nothing to it".to_owned()),
            Ok(text) => evidence.write("console.log", text.as_bytes())?,
            Err(e) => evidence.missing.push(format!("console log: {e}")),
        }
        if !over_ssh {
            evidence
                .missing
                .push("cloud-init status, journal and logs: the guest has no address".to_owned());
            return Ok(evidence);
        }
        // A guest that does not answer is not waited for long.
        let reachable = match tokio::time::timeout(ASK, self.ip()).await {
            Ok(Ok(_)) => match tokio::time::timeout(ASK, self.execute("true")).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {ASK:?}")),
            },
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no address within {ASK:?}")),
        };
        if let Err(why) = reachable {
            evidence
                .missing
                .push(format!("cloud-init status, journal and logs: SSH: {why}"));
            return Ok(evidence);
        }
        let root = ExecOptions {
            sudo: true,
            stdin: None,
        };
        for (file, command, options) in [
            (
                "cloud-init-status.txt",
                "cloud-init status --long",
                ExecOptions::default(),
            ),
            ("journal.txt", "journalctl -b --no-pager", root.clone()),
        ] {
            match self.ask(command, &options).await {
                Ok(r) => evidence.write(file, report(command, &r).as_bytes())?,
                Err(why) => evidence.missing.push(format!("{command}: {why}")),
            }
        }
        let collect = format!("cloud-init collect-logs -t {LOGS_TARBALL}");
        match self.ask(&collect, &root).await {
            Ok(r) if r.ok() => {
                let local = dir.join("cloud-init-logs.tar.gz");
                match self.pull_file(LOGS_TARBALL, &local).await {
                    Ok(()) => evidence.files.push(local),
                    Err(e) => evidence.missing.push(format!("{collect}: copying: {e}")),
                }
                let _ = self.ask(&format!("rm -f {LOGS_TARBALL}"), &root).await;
            }
            Ok(r) => evidence
                .missing
                .push(format!("{collect}: {}", report(&collect, &r).trim())),
            Err(why) => evidence.missing.push(format!("{collect}: {why}")),
        }
        Ok(evidence)
    }

    /// Runs `command` in the guest for the evidence, within [`ASK`].
    async fn ask(&self, command: &str, options: &ExecOptions) -> Result<ExecResult, String> {
        match tokio::time::timeout(ASK, self.execute_with(command, options)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {ASK:?}")),
        }
    }
}

impl Evidence {
    fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), CloudError> {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| CloudError::Io {
            what: format!("writing {path}"),
            source,
        })?;
        self.files.push(path);
        Ok(())
    }
}

/// A command's output as a file: its exit status, stdout, then stderr.
fn report(command: &str, r: &ExecResult) -> String {
    let status = match (r.exit_status, &r.signal) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "no exit status".to_owned(),
    };
    let mut text = format!("$ {command}\n# {status}\n{}", r.stdout);
    if !r.stderr.is_empty() {
        text.push_str("\n# stderr:\n");
        text.push_str(&r.stderr);
    }
    text
}
