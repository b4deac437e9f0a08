//! vmw's errors as Python exceptions, mapped once, here.
//!
//! The classes live in `vmw.errors` (Python: an exception class must be a
//! Python class to be subclassed and caught by name); they follow
//! pycloudlib's hierarchy (`PycloudlibException` at the root,
//! `CloudSetupError`, `CloudError`, `PycloudlibTimeoutError`,
//! `InvalidTagNameError`, `ImageNotFoundError`, `InstanceNotFoundError`,
//! `CleanupError`), and pycloudlib's own `ValueError`s and
//! `NotImplementedError`s stay those types too. Every exception vmw raises
//! carries the error's `hints`, and its `category` (`input`, `refused`,
//! `cancelled`, `failed`).

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use vmw_cloud::{CleanError, CloudError, ErrorCategory, Hints, SshError, render};

/// The `vmw.errors` class for `e`.
fn class_name(e: &CloudError) -> &'static str {
    match e {
        CloudError::InvalidTag { .. } => "InvalidTagNameError",
        CloudError::Config(_) | CloudError::Key { .. } => "CloudSetupError",
        CloudError::InvalidOption { .. } | CloudError::UserData(_) => "InvalidOptionError",
        CloudError::UnknownRelease { .. } => "UnknownReleaseError",
        CloudError::NoSuchVm { .. } => "InstanceNotFoundError",
        CloudError::NotOurs { .. } | CloudError::TemplateProtected { .. } => "RefusedError",
        CloudError::NotSupported { .. } | CloudError::NoConsole { .. } => "NotSupportedError",
        CloudError::IpTimeout { .. }
        | CloudError::TimedOut { .. }
        | CloudError::NoAnswer { .. } => "WaitTimeoutError",
        CloudError::Ssh(SshError::Timeout { .. }) => "WaitTimeoutError",
        CloudError::Ssh(_) => "SSHError",
        CloudError::Step { source, .. } | CloudError::Kept { source, .. } => {
            match class_name(source) {
                // A failed launch is a failed launch, whatever its step.
                "WaitTimeoutError" => "WaitTimeoutError",
                _ => "LaunchError",
            }
        }
        _ => "VmwCloudError",
    }
}

fn category(e: &CloudError) -> &'static str {
    match e.category() {
        ErrorCategory::Input => "input",
        ErrorCategory::Refused => "refused",
        ErrorCategory::Cancelled => "cancelled",
        _ => "failed",
    }
}

/// Builds an exception of `vmw.errors.<class>` with `message`, and sets
/// its `hints` and `category`.
fn raise(py: Python<'_>, class: &str, message: String, hints: Vec<String>, kind: &str) -> PyErr {
    let built = (|| -> PyResult<PyErr> {
        let module = py.import("vmw.errors")?;
        let cls = module.getattr(class)?;
        let exc = cls.call1((message.clone(),))?;
        exc.setattr("hints", hints.clone())?;
        exc.setattr("category", kind)?;
        Ok(PyErr::from_value(exc))
    })();
    // The package is broken if its own module is missing: say so, with
    // the error anyway.
    built.unwrap_or_else(|e| {
        PyRuntimeError::new_err(format!("{message} (and vmw.errors could not be used: {e})"))
    })
}

/// `e` as the Python exception it maps to.
pub(crate) fn to_py(py: Python<'_>, e: CloudError) -> PyErr {
    if matches!(e, CloudError::Cancelled) {
        return PyKeyboardInterrupt::new_err("cancelled");
    }
    let class = class_name(&e);
    if let CloudError::InvalidTag { tag, problems } = &e {
        let built = (|| -> PyResult<PyErr> {
            let cls = py.import("vmw.errors")?.getattr("InvalidTagNameError")?;
            let exc = cls.call1((tag.clone(), problems.clone()))?;
            exc.setattr("hints", e.hints())?;
            exc.setattr("category", category(&e))?;
            Ok(PyErr::from_value(exc))
        })();
        if let Ok(err) = built {
            return err;
        }
    }
    raise(py, class, render(&e), e.hints(), category(&e))
}

/// The errors of a [`CleanError`], each as its Python exception (a listing
/// that failed first is one of them; VMs not tried are one more).
pub(crate) fn clean_errors(py: Python<'_>, e: CleanError) -> Vec<PyErr> {
    let mut out: Vec<PyErr> = Vec::new();
    let skipped = e.skipped.clone();
    for err in e.errors {
        out.push(to_py(py, err));
    }
    if !skipped.is_empty() {
        out.push(PyKeyboardInterrupt::new_err(format!(
            "cancelled before removing {}",
            skipped
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    out
}

/// The exception objects of `errors`, as a Python list.
pub(crate) fn exception_list<'py>(
    py: Python<'py>,
    errors: Vec<PyErr>,
) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, errors.into_iter().map(|e| e.into_value(py)))
}

/// `CleanupError(exceptions)` of `vmw.errors`.
pub(crate) fn cleanup_error(py: Python<'_>, errors: Vec<PyErr>) -> PyErr {
    let built = (|| -> PyResult<PyErr> {
        let list = exception_list(py, errors)?;
        let cls = py.import("vmw.errors")?.getattr("CleanupError")?;
        Ok(PyErr::from_value(cls.call1((list,))?))
    })();
    built.unwrap_or_else(|e| e)
}

/// A Python error for a value given to vmw that it cannot use.
pub(crate) fn invalid(py: Python<'_>, message: String) -> PyErr {
    raise(py, "InvalidOptionError", message, Vec::new(), "input")
}
