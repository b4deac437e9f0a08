//! [`VMWareInstance`]: pycloudlib's `BaseInstance` API on a vmw-cloud
//! [`Instance`].
//!
//! pycloudlib's verbs map onto vmw's: `start` is a power-on and (with
//! `wait`) the readiness wait; `shutdown` is the hard power-off, which in
//! vmw flushes the guest's disks first when it answers; `restart` is a
//! power cycle told apart from a guest that never went down by its boot id.
//! The address is looked up again after every power operation.

use std::time::Duration;

use camino::Utf8Path;
use pyo3::exceptions::PyNotImplementedError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use vmw_cloud::{Cmd, ExecOptions, ExecResult, Guest, Instance, Restart, SshConfig, WaitStage};

use crate::errors::{exception_list, invalid, to_py};
use crate::runtime::block_on;

/// How long `wait_for_delete` and `wait_for_stop` wait, as pycloudlib's
/// VMware instance does not say.
const STATE_WAIT: Duration = Duration::from_secs(5 * 60);

/// A VM of a `VMWare` cloud.
#[pyclass(module = "vmw._native", subclass)]
pub(crate) struct VMWareInstance {
    inner: Instance,
}

impl VMWareInstance {
    /// Wraps `instance`, reached over SSH as `username` when given.
    pub(crate) fn new(
        py: Python<'_>,
        instance: Instance,
        username: Option<String>,
    ) -> PyResult<Self> {
        if let Some(user) = username {
            let config = SshConfig {
                user,
                ..instance.ssh_config()
            };
            let i = instance.clone();
            block_on(py, None, async move { i.set_ssh_config(config).await })?;
        }
        Ok(Self { inner: instance })
    }

    /// The vmw instance.
    pub(crate) fn inner(&self) -> &Instance {
        &self.inner
    }

    fn run<T: Send, F>(&self, py: Python<'_>, work: F) -> PyResult<T>
    where
        F: std::future::Future<Output = Result<T, vmw_cloud::CloudError>> + Send,
    {
        block_on(py, None, work)?.map_err(|e| to_py(py, e))
    }

    /// pycloudlib's `Result` for `r`: stdout and stderr decoded and
    /// right-stripped.
    fn result<'py>(py: Python<'py>, r: &ExecResult) -> PyResult<Bound<'py, PyAny>> {
        let code: i64 = match (r.exit_status, &r.signal) {
            (Some(c), _) => i64::from(c),
            // Killed by a signal: no status; a failure all the same.
            (None, _) => -1,
        };
        let cls = py.import("vmw._result")?.getattr("Result")?;
        cls.call1((r.stdout.trim_end(), r.stderr.trim_end(), code))
    }
}

/// A command as pycloudlib takes it: a string runs as `sh -c`, a list as
/// the argument vector.
fn command(value: &Bound<'_, PyAny>) -> PyResult<Cmd> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Cmd::from(s.extract::<String>()?));
    }
    let argv: Vec<String> = value.extract().map_err(|_| {
        invalid(
            value.py(),
            "command must be a string (run by sh -c) or a list of arguments".to_owned(),
        )
    })?;
    Ok(Cmd::from(argv))
}

#[pymethods]
impl VMWareInstance {
    /// The VM's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// The VM's id: on vSphere, its name.
    #[getter]
    fn id(&self) -> String {
        self.inner.name().to_owned()
    }

    /// The VM's inventory path.
    #[getter]
    fn path(&self) -> String {
        self.inner.vm().to_string()
    }

    /// The guest's address (waiting for one; looked up again after a power
    /// operation).
    #[getter]
    fn ip(&self, py: Python<'_>) -> PyResult<String> {
        let i = self.inner.clone();
        Ok(self.run(py, async move { i.ip().await })?.to_string())
    }

    /// Not available on vSphere: `NotImplementedError`.
    #[getter]
    fn private_ip(&self) -> PyResult<String> {
        Err(PyNotImplementedError::new_err(
            "vSphere VMs have one address here; use ip",
        ))
    }

    /// The SSH user.
    #[getter]
    fn username(&self) -> String {
        self.inner.ssh_config().user
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Deletes the instance; raises `CleanupError` when that failed.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        let errors = self.delete(py, true)?;
        if errors.is_empty() {
            Ok(false)
        } else {
            let cls = py.import("vmw.errors")?.getattr("CleanupError")?;
            Err(PyErr::from_value(cls.call1((errors,))?))
        }
    }

    /// Closes the SSH connection (the VM stays), in the background: a
    /// finalizer does not wait.
    fn __del__(&self) {
        let i = self.inner.clone();
        crate::runtime::spawn(async move {
            if let Ok(g) = i.guest().await {
                g.disconnect().await;
            }
        });
    }

    fn __repr__(&self) -> String {
        format!("VMWareInstance(name={:?})", self.inner.name())
    }

    /// Runs `command` in the guest; returns a `Result` (a non-zero exit is
    /// a result, not an error). `get_pty` is accepted and ignored.
    #[pyo3(signature = (command, stdin = None, description = None, *, use_sudo = false, no_log = false, **_kwargs))]
    #[allow(clippy::too_many_arguments)] // pycloudlib's signature
    fn execute<'py>(
        &self,
        py: Python<'py>,
        command: &Bound<'py, PyAny>,
        stdin: Option<&Bound<'py, PyAny>>,
        description: Option<&str>,
        use_sudo: bool,
        no_log: bool,
        _kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let cmd = self::command(command)?;
        let stdin = match stdin {
            Some(v) if !v.is_none() => Some(match v.cast::<PyBytes>() {
                Ok(b) => b.as_bytes().to_vec(),
                Err(_) => v.str()?.extract::<String>()?.into_bytes(),
            }),
            _ => None,
        };
        if !no_log {
            tracing::info!(vm = %self.inner.name(), "executing: {}", description.unwrap_or(""));
        }
        let options = ExecOptions {
            sudo: use_sudo,
            stdin,
        };
        let i = self.inner.clone();
        let r = self.run(py, async move { i.execute_with(cmd, &options).await })?;
        Self::result(py, &r)
    }

    /// Runs `script` (its `#!` interpreter, else `sh`) in the guest.
    #[pyo3(signature = (script, description = None))]
    fn run_script<'py>(
        &self,
        py: Python<'py>,
        script: &str,
        description: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = description;
        let i = self.inner.clone();
        let script = script.to_owned();
        let r = self.run(py, async move { i.run_script(&script).await })?;
        Self::result(py, &r)
    }

    /// Installs packages with apt-get, as root (`packages`: a string split
    /// on spaces, or a list).
    fn install<'py>(
        &self,
        py: Python<'py>,
        packages: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let list: Vec<String> = match packages.cast::<PyString>() {
            Ok(s) => s
                .extract::<String>()?
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            Err(_) => packages.extract()?,
        };
        let i = self.inner.clone();
        let r = self.run(py, async move {
            let names: Vec<&str> = list.iter().map(String::as_str).collect();
            i.install(&names).await
        })?;
        Self::result(py, &r)
    }

    /// Refreshes the package index and upgrades, as root.
    fn update<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let i = self.inner.clone();
        let r = self.run(py, async move { i.update().await })?;
        Self::result(py, &r)
    }

    /// Copies a local file into the guest.
    fn push_file(
        &self,
        py: Python<'_>,
        local_path: &Bound<'_, PyAny>,
        remote_path: &str,
    ) -> PyResult<()> {
        let local: String = local_path.str()?.extract()?;
        let remote = remote_path.to_owned();
        let i = self.inner.clone();
        self.run(py, async move {
            i.push_file(Utf8Path::new(&local), &remote).await
        })
    }

    /// Copies a guest file to a local path.
    fn pull_file(
        &self,
        py: Python<'_>,
        remote_path: &str,
        local_path: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let local: String = local_path.str()?.extract()?;
        let remote = remote_path.to_owned();
        let i = self.inner.clone();
        self.run(py, async move {
            i.pull_file(&remote, Utf8Path::new(&local)).await
        })
    }

    /// The id of the guest's current boot.
    fn get_boot_id(&self, py: Python<'_>) -> PyResult<String> {
        let i = self.inner.clone();
        self.run(py, async move { i.boot_id().await })
    }

    /// The VM's console log (when its launch gave it one).
    fn console_log(&self, py: Python<'_>) -> PyResult<String> {
        let i = self.inner.clone();
        self.run(py, async move { i.console_log().await })
    }

    /// Waits until the instance is ready: an address, SSH, cloud-init done
    /// (`ready_timeout` in minutes, as pycloudlib takes it).
    #[pyo3(signature = (ready_timeout = None, **_kwargs))]
    fn wait(
        &self,
        py: Python<'_>,
        ready_timeout: Option<f64>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let i = match ready_timeout.and_then(crate::config::minutes) {
            Some(limit) => self.inner.clone().with_timeouts(None, Some(limit)),
            None => self.inner.clone(),
        };
        self.run(py, async move { i.wait().await }).map(|_| ())
    }

    /// Waits until the guest reports a boot id other than `old_boot_id`,
    /// then until it is ready.
    fn wait_for_restart(&self, py: Python<'_>, old_boot_id: &str) -> PyResult<()> {
        let i = self.inner.clone();
        let old = old_boot_id.to_owned();
        self.run(py, async move { i.wait_for_restart(&old).await })
            .map(|_| ())
    }

    /// Restarts the VM (a power cycle, the guest's disks flushed first when
    /// it answers); with `wait`, until it is ready again with a new boot id.
    #[pyo3(signature = (wait = true, **_kwargs))]
    fn restart(
        &self,
        py: Python<'_>,
        wait: bool,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let i = self.inner.clone();
        let stage = if wait {
            WaitStage::Ready
        } else {
            WaitStage::None
        };
        self.run(
            py,
            async move { i.restart(Restart::PowerCycle, stage).await },
        )
        .map(|_| ())
    }

    /// Powers the VM off hard (pycloudlib's `shutdown`), flushing the
    /// guest's disks first when it answers.
    #[pyo3(signature = (wait = true, **_kwargs))]
    fn shutdown(
        &self,
        py: Python<'_>,
        wait: bool,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let _ = wait; // a hard power-off is done when it returns
        let i = self.inner.clone();
        self.run(py, async move { i.power_off().await })
    }

    /// Powers the VM on; with `wait`, until it is ready.
    #[pyo3(signature = (wait = true))]
    fn start(&self, py: Python<'_>, wait: bool) -> PyResult<()> {
        let i = self.inner.clone();
        self.run(py, async move {
            i.power_on().await?;
            if wait {
                i.wait().await?;
            }
            Ok(())
        })
    }

    /// Deletes the VM (checked: vmw's marker, never a template); returns the
    /// errors (empty when it is gone). Deleting twice is fine.
    #[pyo3(signature = (wait = true))]
    fn delete<'py>(&self, py: Python<'py>, wait: bool) -> PyResult<Bound<'py, PyList>> {
        let _ = wait; // vm.destroy returns once the VM is gone
        let i = self.inner.clone();
        let result = block_on(py, None, async move { i.delete().await })?;
        let errors = match result {
            Ok(_) => Vec::new(),
            Err(e) => vec![to_py(py, e)],
        };
        exception_list(py, errors)
    }

    /// Waits until the VM is gone.
    #[pyo3(signature = (**_kwargs))]
    fn wait_for_delete(&self, py: Python<'_>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
        let i = self.inner.clone();
        self.run(py, async move { i.wait_for_delete(STATE_WAIT).await })
    }

    /// Waits until the VM is off.
    #[pyo3(signature = (**_kwargs))]
    fn wait_for_stop(&self, py: Python<'_>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
        let i = self.inner.clone();
        self.run(py, async move { i.wait_for_stop(STATE_WAIT).await })
    }

    /// Prepares the guest for a snapshot: cloud-init's state and logs, the
    /// machine id, the syslog; flushed to disk.
    fn clean(&self, py: Python<'_>) -> PyResult<()> {
        let i = self.inner.clone();
        self.run(py, async move { i.clean_guest().await })
    }

    /// Not available on vSphere here: `NotImplementedError`.
    #[pyo3(signature = (**_kwargs))]
    fn add_network_interface(&self, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<String> {
        Err(PyNotImplementedError::new_err(
            "vmw does not add network interfaces",
        ))
    }

    /// Not available on vSphere here: `NotImplementedError`.
    fn remove_network_interface(&self, ip_address: &str) -> PyResult<()> {
        Err(PyNotImplementedError::new_err(format!(
            "vmw does not remove network interfaces (asked for {ip_address})"
        )))
    }
}
