//! `cargo xtask tidy`: the rules of the code base that the compiler does not
//! check ([`vmw_testbed::tidy`] has them, and its docs list them), run on
//! this workspace. `cargo test` runs the same rules as the `tidy` test of
//! `vmw-testbed`.

use anyhow::{Result, bail};

/// Runs every rule on the workspace; fails listing every problem.
pub(crate) fn run() -> Result<()> {
    let problems = vmw_testbed::tidy::check_workspace(&crate::root())?;
    if problems.is_empty() {
        eprintln!("xtask: tidy: every rule holds");
        return Ok(());
    }
    for p in &problems {
        eprintln!("tidy: {p}");
    }
    bail!("{} tidy rule(s) broken", problems.len())
}
