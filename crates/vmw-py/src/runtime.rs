//! One tokio runtime for the module, and [`block_on`]: a library call run
//! with the GIL released, that a Ctrl-C in Python interrupts.
//!
//! Python delivers a Ctrl-C to its main thread by setting a flag that only
//! code holding the GIL sees (`PyErr_CheckSignals`). A call that has let
//! the GIL go looks at that flag every [`SIGNAL_POLL`]: on a pending
//! `KeyboardInterrupt`, a cancellable call (a launch, a snapshot, a clean)
//! cancels its token and waits for the library to roll back what it made,
//! then raises the `KeyboardInterrupt`; any other call is dropped at once
//! (a wait, a command: nothing of vmw's is left half-made by stopping it).

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tokio::runtime::Runtime;
use vmw_cloud::CancellationToken;

/// How often a call that has released the GIL looks for a Ctrl-C.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The module's runtime, made on first use.
fn runtime() -> PyResult<&'static Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vmw")
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("vmw could not start its runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs `work` on the module's runtime without waiting for it (when the
/// runtime can be had).
pub(crate) fn spawn<F>(work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Ok(rt) = runtime() {
        rt.spawn(work);
    }
}

/// What ended a [`block_on`].
enum Ended<T> {
    /// The work finished (after a cancellation, with its rollback done).
    Done(T, Option<PyErr>),
    /// Interrupted; the work was dropped.
    Dropped(PyErr),
}

/// Runs `work` to its end with the GIL released. With `cancel`, a Ctrl-C
/// cancels the token and the work is awaited (it rolls back), then the
/// `KeyboardInterrupt` is raised; without, a Ctrl-C drops the work and
/// raises at once.
pub(crate) fn block_on<T, F>(
    py: Python<'_>,
    cancel: Option<&CancellationToken>,
    work: F,
) -> PyResult<T>
where
    T: Send,
    F: Future<Output = T> + Send,
{
    let rt = runtime()?;
    let token = cancel.cloned();
    let ended = py.detach(move || {
        rt.block_on(async move {
            tokio::pin!(work);
            let mut interrupted: Option<PyErr> = None;
            let mut tick = tokio::time::interval(SIGNAL_POLL);
            loop {
                tokio::select! {
                    out = &mut work => return Ended::Done(out, interrupted),
                    _ = tick.tick(), if interrupted.is_none() => {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            match &token {
                                Some(t) => {
                                    tracing::info!("interrupted: removing what this call made");
                                    t.cancel();
                                    interrupted = Some(e);
                                }
                                None => return Ended::Dropped(e),
                            }
                        }
                    }
                }
            }
        })
    });
    match ended {
        Ended::Done(out, None) => Ok(out),
        Ended::Done(_, Some(interrupt)) | Ended::Dropped(interrupt) => Err(interrupt),
    }
}
