//! The govc layer of vmw: everything vmw knows about VMware's `govc` command
//! line, and nothing about instances or clouds.
//!
//! - [`VmRef`]: exactly one VM, by its absolute inventory path; every
//!   request that reads or changes a VM takes one, so a bare name (which
//!   govc would search for in the whole datacenter, as a pattern) cannot
//!   reach govc.
//! - [`Command`]: one govc invocation as an argument vector (never a shell
//!   string), built by the typed [`requests`] (`vm.clone`, `vm.change`,
//!   `vm.power`, `vm.ip`, `vm.destroy`, `vm.info`, `find`, `object.collect`,
//!   `import.spec`, `import.ova`/`import.ovf`, `about`, ...).
//! - [`parse`]: parsers of the output of those commands.
//! - [`GovcError`] / [`ErrorKind`]: failures classified from govc's exit
//!   code and stderr (not found, invalid power state, authentication,
//!   unreachable, TLS, duplicate name, ambiguous resource pool, timeout,
//!   govc missing or too old, ...), always with the command and stderr.
//! - [`Govc`]: the async trait the upper layers program against, with
//!   [`ProcessGovc`], the backend that runs the real binary, and (feature
//!   `mock`) `MockGovc`, a mockall mock for tests.
//! - [`GovcTarget`]: the vCenter, login, placement defaults and session
//!   directory of a [`ProcessGovc`], as typed values, built from a
//!   `vmw_config::VmwareConfig`; govc's environment is rendered from it at
//!   each spawn. [`session`] names the session directories.
//! - `fake` (feature `mock`): a scripted govc over a small fake inventory
//!   for other crates' tests.
//!
//! Requests never run anything: the upper layers build them, and only a
//! [`Govc`] implementation executes them, so tests can compare commands as
//! plain values.
//!
//! ```no_run
//! use vmw_govc::{GovcExt, ProcessGovc, VmRef, requests::{VmIp, VmPower, PowerOp}};
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let env = vmw_config::Environment::from_process();
//! let config = vmw_config::Loader::new().load()?.config;
//! let govc = ProcessGovc::discover(&config, None, &env).await?;
//! let vm = VmRef::in_folder(&config.folder, "my-vm")?;
//! match govc.exec(&VmPower::new(vm.clone(), PowerOp::On)).await {
//!     Ok(()) => {}
//!     Err(e) if e.is_invalid_power_state() => {} // already on
//!     Err(e) => return Err(e.into()),
//! }
//! let ips = govc.exec(&VmIp::new(vm, Duration::from_secs(300))).await?;
//! println!("{ips:?}");
//! # Ok(()) }
//! ```

mod command;
mod error;
#[cfg(feature = "mock")]
pub mod fake;
mod locate;
pub mod ops;
pub mod parse;
mod process;
pub mod requests;
pub mod session;
mod target;
mod vmref;

use async_trait::async_trait;

pub use command::Command;
pub use error::{ErrorKind, Failure, GovcError, classify, govc_message};
pub use locate::{
    MIN_VERSION, TESTED_VERSION, Version, find_govc, parse_version_output, version_command,
};
pub use process::{
    DEFAULT_TIMEOUT, LOGIN_LOCK_FILE, ProcessGovc, SESSION_STALE_AFTER, VERSIONS_FILE,
};
pub use requests::Request;
pub use target::GovcTarget;
pub use vmref::{GLOB_CHARS, MAX_VM_NAME_LEN, VmRef, VmRefError, check_folder, check_vm_name};
/// What would fix an error of this crate (the trait every vmw error implements).
pub use vmw_hints::Hints;

/// What a successful govc run printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// Standard error (govc prints progress there for some commands).
    pub stderr: String,
}

impl Output {
    /// An output with this stdout and no stderr (for mocks).
    pub fn stdout(stdout: impl Into<String>) -> Self {
        Self {
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }
}

/// Runs govc commands. [`ProcessGovc`] runs the real binary; with the `mock`
/// feature, `MockGovc` lets tests script the answers.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Govc: Send + Sync {
    /// Runs one command: its output when govc exits 0, else the classified
    /// error.
    async fn run(&self, command: &Command) -> Result<Output, GovcError>;
}

#[async_trait]
impl<G: Govc + ?Sized> Govc for std::sync::Arc<G> {
    async fn run(&self, command: &Command) -> Result<Output, GovcError> {
        (**self).run(command).await
    }
}

/// Runs typed [`Request`]s on any [`Govc`].
#[async_trait]
pub trait GovcExt: Govc {
    /// Runs the request's command and parses its output.
    async fn exec<R: Request>(&self, request: &R) -> Result<R::Output, GovcError> {
        let command = request.command();
        let output = self.run(&command).await?;
        request.parse(&command, &output.stdout)
    }
}

impl<G: Govc + ?Sized> GovcExt for G {}

#[cfg(test)]
mod captured_tests;
