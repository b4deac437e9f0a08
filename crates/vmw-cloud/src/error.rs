//! [`CloudError`]: what can go wrong in the instance lifecycle.

use std::time::Duration;

use camino::Utf8PathBuf;
use vmw_govc::{GovcError, VmRef};
use vmw_hints::Hints;

use crate::progress::Step;

/// An error of the cloud layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudError {
    /// The tag breaks the naming rules (all broken rules listed).
    #[error("invalid tag {tag:?}: {}", .problems.join("; "))]
    InvalidTag {
        /// The tag as given (with its timestamp, if one was added).
        tag: String,
        /// Each rule it breaks.
        problems: Vec<String>,
    },

    /// A launch option is not usable.
    #[error("invalid {option} {value:?}: {problem}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Its value.
        value: String,
        /// What is wrong and how to fix it.
        problem: String,
    },

    /// The configuration could not be resolved.
    #[error(transparent)]
    Config(#[from] vmw_config::ConfigError),

    /// The user data could not take the key, or is too large.
    #[error(transparent)]
    UserData(#[from] vmw_userdata::UserDataError),

    /// The SSH key pair could not be found, read or made.
    #[error("SSH key {path}: {problem}")]
    Key {
        /// The key file.
        path: Utf8PathBuf,
        /// What is wrong.
        problem: String,
        /// What would fix it.
        hint: Option<String>,
    },

    /// govc failed.
    #[error(transparent)]
    Govc(#[from] GovcError),

    /// Guest access over SSH failed.
    #[error(transparent)]
    Ssh(#[from] vmw_ssh::SshError),

    /// A step of a launch or snapshot failed; what it had made was removed
    /// (or, if that failed too, `rollback` says so).
    #[error("{}", step_text(.vm, *.step, *.removed, .rollback.as_deref()))]
    Step {
        /// The VM being made.
        vm: String,
        /// The step that failed.
        step: Step,
        /// Why.
        #[source]
        source: Box<CloudError>,
        /// Whether a half-made VM was removed (false when there was nothing
        /// to remove, or removing it failed).
        removed: bool,
        /// The error of the rollback, when removing the half-made VM failed.
        rollback: Option<Box<CloudError>>,
    },

    /// A wait of a launch with [`crate::LaunchOptions::keep_on_failure`]
    /// failed: the VM was kept, no longer tracked, and the evidence
    /// collected.
    #[error("{}", kept_text(.vm, *.step, .evidence))]
    Kept {
        /// The VM kept.
        vm: String,
        /// The wait that failed.
        step: Step,
        /// Why.
        #[source]
        source: Box<CloudError>,
        /// What was collected, or why nothing could be.
        evidence: Result<crate::Evidence, Box<CloudError>>,
    },

    /// The instance has no checkpoint of that id or name.
    #[error("{vm} has no checkpoint {checkpoint:?}; it has: {}", if .known.is_empty() { "none".to_owned() } else { .known.join(", ") })]
    NoSuchCheckpoint {
        /// The VM.
        vm: String,
        /// The id or name asked for.
        checkpoint: String,
        /// The names it has.
        known: Vec<String>,
    },

    /// The VM has no serial port writing to a file.
    #[error("VM {vm} has no console log (no serial port backed by a file)")]
    NoConsole {
        /// The VM.
        vm: String,
    },

    /// No template for this release.
    #[error("no image for release {release:?} in {folder}; available: {}", if .available.is_empty() { "none".to_owned() } else { .available.join(", ") })]
    UnknownRelease {
        /// The release asked for.
        release: String,
        /// The folder searched.
        folder: String,
        /// Releases that have a template.
        available: Vec<String>,
    },

    /// The image cannot serve as a source VM.
    #[error("image {image} cannot be launched from: {}", .problems.join("; "))]
    BadSource {
        /// The image.
        image: String,
        /// What is wrong with it.
        problems: Vec<String>,
    },

    /// The VM does not exist.
    #[error("no VM named {name:?}")]
    NoSuchVm {
        /// The name.
        name: String,
    },

    /// The operation is refused on a source template.
    #[error(
        "{name} is a template (a vSphere template or a TEMPLATE-cloud-init-* source VM); vmw does not delete templates"
    )]
    TemplateProtected {
        /// The template.
        name: String,
    },

    /// The VM did not get a usable IP address in time.
    #[error("VM {vm} reported no usable IP address within {waited:?}{}", if .seen.is_empty() { String::new() } else { format!(" (it reported only {})", .seen.join(", ")) })]
    IpTimeout {
        /// The VM.
        vm: String,
        /// How long vmw waited.
        waited: Duration,
        /// Unusable addresses it reported (link-local IPv6).
        seen: Vec<String>,
    },

    /// A destructive operation met a VM without vmw's marker (or with the
    /// marker of another launch, tag or object than expected), and was
    /// not forced.
    #[error("VM {vm} was not destroyed: {reason}")]
    NotOurs {
        /// The VM's inventory path.
        vm: String,
        /// What its marker says, or that it has none.
        reason: String,
    },

    /// The VM's name is taken in the folder (by a VM that is not this
    /// call's); nothing was cloned.
    #[error("a VM is already at {vm}")]
    NameTaken {
        /// The inventory path.
        vm: String,
    },

    /// The operation was cancelled (a cancellation token, a signal).
    #[error("cancelled")]
    Cancelled,

    /// A clone whose outcome is unknown (the connection broke, govc was
    /// stopped, the operation was cancelled) had not appeared within the
    /// grace period; vCenter may still finish it.
    #[error("the clone of {vm} may still finish on vCenter (it had not appeared after {waited:?})")]
    MayExist {
        /// The VM's inventory path.
        vm: String,
        /// How long vmw looked for it.
        waited: Duration,
    },

    /// A wait for the VM's state ran out of time.
    #[error("waiting for VM {vm} {what} timed out after {waited:?}")]
    TimedOut {
        /// The VM.
        vm: String,
        /// What was waited for.
        what: &'static str,
        /// How long.
        waited: Duration,
    },

    /// After a redundant power operation the VM is not in the wanted state.
    #[error("VM {vm} should be {wanted} but is {found}")]
    PowerState {
        /// The VM.
        vm: String,
        /// The state wanted.
        wanted: &'static str,
        /// The state found.
        found: String,
    },

    /// Something this version cannot do yet.
    #[error("{what} is not supported")]
    NotSupported {
        /// What was asked.
        what: String,
        /// What to do instead.
        hint: Option<String>,
    },

    /// The guest did not answer in time after its power-on (no address,
    /// no SSH, cloud-init not done): what its console showed last, when
    /// the VM has a console log.
    #[error("{}", no_answer_text(.vm, *.step, .console.as_deref()))]
    NoAnswer {
        /// The VM.
        vm: String,
        /// The wait that ran out.
        step: Step,
        /// The wait's error.
        #[source]
        source: Box<CloudError>,
        /// The last lines of the VM's console log; `None` when the VM has
        /// none (or it could not be read).
        console: Option<String>,
    },

    /// A local file operation failed.
    #[error("{what}")]
    Io {
        /// What vmw was doing.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

fn step_text(vm: &str, step: Step, removed: bool, rollback: Option<&CloudError>) -> String {
    let mut s = format!("making VM {vm} failed at step \"{step}\"");
    match (rollback, removed) {
        (Some(r), _) => s.push_str(&format!(
            " (removing the half-made VM failed too: {})",
            vmw_hints::render(r)
        )),
        (None, true) => s.push_str(" (the half-made VM was removed)"),
        (None, false) => s.push_str(" (vmw created nothing, so there was nothing to remove)"),
    }
    s
}

/// How many lines of the console a [`CloudError::NoAnswer`] shows.
pub(crate) const CONSOLE_LINES: usize = 20;

fn no_answer_text(vm: &str, step: Step, console: Option<&str>) -> String {
    let mut s = format!("VM {vm} did not get past \"{step}\"");
    match console {
        Some(text) if !text.trim().is_empty() => {
            s.push_str("; its console log ends with:");
            for line in text.lines() {
                s.push_str("\n  | ");
                s.push_str(line);
            }
        }
        Some(_) => s.push_str("; its console log is empty (the guest wrote nothing to it)"),
        None => {}
    }
    s
}

/// What kind of error a [`CloudError`] is, for callers that act on the
/// kind (a command line's exit status, a retry policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCategory {
    /// The input is wrong (an option, a tag, the configuration, the user
    /// data): fixing the call fixes it; nothing was touched.
    Input,
    /// vmw refused to act on a VM that is not its own, or on a template.
    Refused,
    /// The operation was cancelled.
    Cancelled,
    /// An operation failed: govc, the vCenter, the guest, a file.
    Failed,
}

fn kept_text(vm: &str, step: Step, evidence: &Result<crate::Evidence, Box<CloudError>>) -> String {
    let mut s = format!("making VM {vm} failed at step \"{step}\"; the VM was kept for inspection");
    match evidence {
        Ok(e) => s.push_str(&format!("; {e}")),
        Err(e) => s.push_str(&format!(
            "; collecting evidence failed: {}",
            vmw_hints::render(e.as_ref())
        )),
    }
    s
}

impl From<vmw_govc::VmRefError> for CloudError {
    fn from(e: vmw_govc::VmRefError) -> Self {
        CloudError::InvalidOption {
            option: e.what,
            value: e.value,
            problem: e.problem,
        }
    }
}

impl CloudError {
    /// The category of this error. A launch or snapshot step that failed
    /// ([`CloudError::Step`], [`CloudError::Kept`],
    /// [`CloudError::NoAnswer`]) has the category of its cause: a
    /// cancelled launch is [`ErrorCategory::Cancelled`].
    pub fn category(&self) -> ErrorCategory {
        match self {
            CloudError::InvalidTag { .. }
            | CloudError::InvalidOption { .. }
            | CloudError::Config(_)
            | CloudError::UserData(_)
            | CloudError::UnknownRelease { .. } => ErrorCategory::Input,
            CloudError::NotOurs { .. } | CloudError::TemplateProtected { .. } => {
                ErrorCategory::Refused
            }
            CloudError::Cancelled => ErrorCategory::Cancelled,
            CloudError::Step { source, .. }
            | CloudError::Kept { source, .. }
            | CloudError::NoAnswer { source, .. } => source.category(),
            _ => ErrorCategory::Failed,
        }
    }

    /// The govc error at the root of this one, if any.
    pub fn govc(&self) -> Option<&GovcError> {
        match self {
            CloudError::Govc(e) => Some(e),
            CloudError::Step { source, .. }
            | CloudError::Kept { source, .. }
            | CloudError::NoAnswer { source, .. } => source.govc(),
            _ => None,
        }
    }

    /// The failed step, for launch and snapshot errors and waits that ran
    /// out.
    pub fn step(&self) -> Option<Step> {
        match self {
            CloudError::Step { step, .. }
            | CloudError::Kept { step, .. }
            | CloudError::NoAnswer { step, .. } => Some(*step),
            _ => None,
        }
    }
}

impl Hints for CloudError {
    /// What would fix this error, where that is known; the hints of the
    /// errors it wraps are included.
    fn hints(&self) -> Vec<String> {
        match self {
            CloudError::InvalidTag { .. } => vec![
                "tags are 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
                    .to_owned(),
            ],
            CloudError::Config(e) => e.hints(),
            CloudError::UserData(e) => e.hints(),
            CloudError::Key { hint, .. } | CloudError::NotSupported { hint, .. } => {
                hint.iter().cloned().collect()
            }
            CloudError::Govc(e) => e.hints(),
            CloudError::Ssh(e) => e.hints(),
            CloudError::Kept { source, .. } => {
                let mut h = source.hints();
                h.push(
                    "the VM is yours now: it is not removed by a clean; delete it when done"
                        .to_owned(),
                );
                h
            }
            CloudError::NoAnswer {
                source, console, ..
            } => {
                let mut h = source.hints();
                if console.is_none() {
                    h.push(
                        "a VM launched with a console log (console_log) shows here what its guest said"
                            .to_owned(),
                    );
                }
                h
            }
            CloudError::NoConsole { .. } => vec![
                "a VM gets a console log only when its launch asks for one (console_log, or keep_on_failure)"
                    .to_owned(),
            ],
            CloudError::Step {
                source, rollback, ..
            } => {
                let mut h = source.hints();
                if let Some(r) = rollback {
                    h.extend(r.hints());
                }
                h
            }
            CloudError::UnknownRelease { .. } => vec![format!(
                "a source VM must be named {}<release>",
                crate::TEMPLATE_PREFIX
            )],
            CloudError::BadSource { .. } => vec![
                "checking the image (`Cloud::check_template`) reports every requirement and how to meet it"
                    .to_owned(),
            ],
            CloudError::TemplateProtected { .. } => {
                vec!["delete it with govc if you really mean to".to_owned()]
            }
            CloudError::IpTimeout { .. } => vec![
                "the guest needs VMware Tools (open-vm-tools) running and a network with DHCP"
                    .to_owned(),
            ],
            CloudError::NotOurs { .. } => vec![
                "vmw destroys only VMs carrying its marker (the annotation `made by vmw (...)`); a forced deletion removes one that really is to go"
                    .to_owned(),
            ],
            CloudError::MayExist { .. } => vec![
                "it carries vmw's marker: a clean of its tag removes it once it is there"
                    .to_owned(),
            ],
            _ => Vec::new(),
        }
    }
}

/// What [`crate::Cloud::clean`], [`crate::Cloud::sweep`] and
/// [`crate::Cloud::delete_listed`] could not do, beside what they did:
/// every deletion was tried (unless the cloud's cancellation token stopped
/// them, see [`crate::Cloud::cancel_on`]).
#[derive(Debug, thiserror::Error)]
#[error("{}", clean_text(.removed, .errors, .skipped))]
#[non_exhaustive]
pub struct CleanError {
    /// The VMs removed all the same.
    pub removed: Vec<VmRef>,
    /// One error per VM that could not be removed (or the error of the
    /// listing that came first).
    pub errors: Vec<CloudError>,
    /// The VMs not tried because the operation was cancelled; those the
    /// cloud made stay tracked for a later clean.
    pub skipped: Vec<VmRef>,
}

impl CleanError {
    pub(crate) fn new(removed: Vec<VmRef>, errors: Vec<CloudError>, skipped: Vec<VmRef>) -> Self {
        Self {
            removed,
            errors,
            skipped,
        }
    }
}

fn clean_text(removed: &[VmRef], errors: &[CloudError], skipped: &[VmRef]) -> String {
    let mut s = format!(
        "{} of the cleanup failed ({} removed)",
        errors.len(),
        removed.len()
    );
    if errors.is_empty() && !skipped.is_empty() {
        s = format!("the cleanup was cancelled ({} removed)", removed.len());
    }
    for e in errors {
        s.push_str("\n  - ");
        s.push_str(&vmw_hints::render(e).replace('\n', "\n    "));
    }
    if !skipped.is_empty() {
        s.push_str("\n  not tried (cancelled): ");
        s.push_str(
            &skipped
                .iter()
                .map(VmRef::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    s
}

impl Hints for CleanError {
    fn hints(&self) -> Vec<String> {
        let mut hints: Vec<String> = Vec::new();
        for h in self.errors.iter().flat_map(Hints::hints) {
            if !hints.contains(&h) {
                hints.push(h);
            }
        }
        hints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn govc_failure() -> CloudError {
        CloudError::Govc(GovcError::failed(
            vmw_govc::Command::new("vm.clone"),
            Some(1),
            "govc: ServerFaultCode: Permission to perform this operation was denied.\n",
        ))
    }

    fn step(source: CloudError) -> CloudError {
        CloudError::Step {
            vm: "/DC0/vm/me-1".to_owned(),
            step: Step::Clone,
            source: Box::new(source),
            removed: false,
            rollback: None,
        }
    }

    fn refused() -> CloudError {
        CloudError::NotOurs {
            vm: "/DC0/vm/theirs".to_owned(),
            reason: "it does not carry vmw's marker".to_owned(),
        }
    }

    #[test]
    fn every_category_and_wrappers_are_seen_through() {
        let input = CloudError::InvalidOption {
            option: "disk size",
            value: "0 GiB".to_owned(),
            problem: "give the size in GiB, at least 1".to_owned(),
        };
        assert_eq!(input.category(), ErrorCategory::Input);
        assert_eq!(step(input).category(), ErrorCategory::Input);
        assert_eq!(refused().category(), ErrorCategory::Refused);
        assert_eq!(
            CloudError::TemplateProtected {
                name: "/DC0/vm/TEMPLATE-cloud-init-jammy".to_owned()
            }
            .category(),
            ErrorCategory::Refused
        );
        assert_eq!(step(refused()).category(), ErrorCategory::Refused);
        assert_eq!(CloudError::Cancelled.category(), ErrorCategory::Cancelled);
        assert_eq!(
            step(CloudError::Cancelled).category(),
            ErrorCategory::Cancelled
        );
        let kept = CloudError::Kept {
            vm: "/DC0/vm/me-1".to_owned(),
            step: Step::WaitIp,
            source: Box::new(CloudError::Cancelled),
            evidence: Err(Box::new(CloudError::NoConsole {
                vm: "/DC0/vm/me-1".to_owned(),
            })),
        };
        assert_eq!(kept.category(), ErrorCategory::Cancelled);
        assert_eq!(govc_failure().category(), ErrorCategory::Failed);
        assert_eq!(step(govc_failure()).category(), ErrorCategory::Failed);
        let silent = CloudError::NoAnswer {
            vm: "/DC0/vm/me-1".to_owned(),
            step: Step::WaitIp,
            source: Box::new(CloudError::IpTimeout {
                vm: "/DC0/vm/me-1".to_owned(),
                waited: Duration::from_secs(1),
                seen: Vec::new(),
            }),
            console: None,
        };
        assert_eq!(silent.category(), ErrorCategory::Failed);
        assert_eq!(step(silent).govc().map(GovcError::kind), None);
        assert!(step(govc_failure()).govc().is_some());
    }

    #[test]
    fn a_fact_once_its_cause_as_source_and_the_hints_of_what_it_wraps() {
        let e = step(govc_failure());
        let message = e.to_string();
        assert_eq!(
            message,
            "making VM /DC0/vm/me-1 failed at step \"clone\" (vmw created nothing, so there was nothing to remove)"
        );
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert!(
            source.as_deref().is_some_and(|s| s.contains("Permission")),
            "{source:?}"
        );
        let rendered = vmw_hints::render(&e);
        assert_eq!(rendered.matches("Permission").count(), 1, "{rendered}");
        assert!(rendered.starts_with(&message), "{rendered}");

        let wrapped = step(refused());
        assert_eq!(wrapped.hints(), refused().hints());
        assert!(!wrapped.hints().is_empty());
    }

    #[test]
    fn a_guest_that_did_not_answer_shows_its_console() {
        let e = CloudError::NoAnswer {
            vm: "/DC0/vm/me-1".to_owned(),
            step: Step::WaitSsh,
            source: Box::new(CloudError::Cancelled),
            console: Some("[FAILED] Failed to start ssh.service\nlogin:".to_owned()),
        };
        assert_eq!(
            e.to_string(),
            "VM /DC0/vm/me-1 did not get past \"wait for SSH\"; its console log ends with:\n  | [FAILED] Failed to start ssh.service\n  | login:"
        );
        let without = CloudError::NoAnswer {
            vm: "/DC0/vm/me-1".to_owned(),
            step: Step::WaitSsh,
            source: Box::new(CloudError::Cancelled),
            console: None,
        };
        assert!(
            without.hints().iter().any(|h| h.contains("console_log")),
            "{:?}",
            without.hints()
        );
    }

    #[test]
    fn a_clean_error_keeps_what_was_removed_and_what_was_not_tried() {
        let vm = |p: &str| VmRef::parse(p).unwrap();
        let e = CleanError::new(
            vec![vm("/DC0/vm/a")],
            vec![refused()],
            vec![vm("/DC0/vm/c")],
        );
        let text = e.to_string();
        assert!(
            text.starts_with("1 of the cleanup failed (1 removed)"),
            "{text}"
        );
        assert!(text.contains("/DC0/vm/theirs was not destroyed"), "{text}");
        assert!(text.contains("not tried (cancelled): /DC0/vm/c"), "{text}");
        assert_eq!(e.hints(), refused().hints());
        let cancelled = CleanError::new(Vec::new(), Vec::new(), vec![vm("/DC0/vm/c")]);
        assert!(
            cancelled
                .to_string()
                .starts_with("the cleanup was cancelled (0 removed)"),
            "{cancelled}"
        );
    }
}
