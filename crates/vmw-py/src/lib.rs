//! The native half of vmw's Python package: `vmw._native`, built by maturin
//! from this crate, beside the package's few Python files
//! (`python/vmw/`: the `Result` string, the exception classes, the stubs).
//!
//! It binds vmw-cloud with pycloudlib's names and signatures:
//! [`cloud::VMWare`] is pycloudlib's `VMWare` (a `BaseCloud`), and
//! [`instance::VMWareInstance`] its instances (a `BaseInstance`). Every call
//! runs on one tokio runtime with the GIL released ([`runtime`]), so Python
//! threads work in parallel, and a Ctrl-C in a launch or a wait cancels
//! through the library, which rolls back what that call made. Errors cross
//! as the classes of `vmw.errors`, mapped once from the Rust enums
//! ([`errors`]); logs go to Python's `logging` ([`logs`]).

mod cloud;
mod config;
mod errors;
mod instance;
mod logs;
mod runtime;

use pyo3::prelude::*;

/// The `vmw._native` module.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logs::install();
    m.add_class::<cloud::VMWare>()?;
    m.add_class::<instance::VMWareInstance>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
