//! Progress: the steps of a launch or a snapshot, and the hook that hears
//! each one as it begins (the CLI's progress display is one such hook).

use std::fmt;
use std::sync::Arc;

/// A step of [`crate::Cloud::launch`], [`crate::Cloud::snapshot`],
/// [`crate::Cloud::import_template`], or of an instance's power operations
/// and waits ([`crate::Instance::with_progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// `vm.clone` of the image.
    Clone,
    /// Writing the guestinfo files.
    WriteGuestinfo,
    /// `vm.change` setting guestinfo and extraConfig.
    Configure,
    /// Connecting the serial port that writes the console log.
    Console,
    /// Growing the first disk.
    Disk,
    /// `vm.power -off` (a restart's first half).
    PowerOff,
    /// `vm.power -on`.
    PowerOn,
    /// Waiting for the guest's IP address.
    WaitIp,
    /// Waiting for SSH to accept a command.
    WaitSsh,
    /// Waiting for cloud-init to finish.
    WaitReady,
    /// Cleaning (or flushing) the guest before a snapshot.
    CleanGuest,
    /// Importing a template.
    Import,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Clone => "clone",
            Step::WriteGuestinfo => "write guestinfo files",
            Step::Configure => "set guestinfo and extraConfig",
            Step::Console => "attach the console log",
            Step::Disk => "grow the disk",
            Step::PowerOff => "power off",
            Step::PowerOn => "power on",
            Step::WaitIp => "wait for an IP address",
            Step::WaitSsh => "wait for SSH",
            Step::WaitReady => "wait for cloud-init",
            Step::CleanGuest => "clean the guest",
            Step::Import => "import the template",
        })
    }
}

impl Step {
    /// Whether this is one of the waits after the power-on (address, SSH,
    /// cloud-init).
    pub fn is_wait(self) -> bool {
        matches!(self, Step::WaitIp | Step::WaitSsh | Step::WaitReady)
    }
}

/// The function behind a [`StepHook`]: the VM's name and the step.
type StepFn = dyn Fn(&str, Step) + Send + Sync;

/// A callback told of each step as it begins, with the VM's name.
#[derive(Clone)]
pub struct StepHook(Arc<StepFn>);

impl StepHook {
    /// A hook calling `f`.
    pub fn new(f: impl Fn(&str, Step) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub(crate) fn call(hook: Option<&StepHook>, vm: &str, step: Step) {
        if let Some(h) = hook {
            (h.0)(vm, step);
        }
    }
}

impl std::fmt::Debug for StepHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepHook")
    }
}
