//! The workspace keeps the rules the compiler does not check
//! ([`vmw_testbed::tidy`]): the check of `cargo xtask tidy`, run by
//! `cargo test` too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use vmw_testbed::tidy;
use vmw_testbed::tools::workspace_root;

#[test]
fn the_workspace_keeps_the_tidy_rules() {
    let root = workspace_root();
    let deps = tidy::workspace_dependencies(&root).unwrap();
    // The workspace was found and read, so the rules have something to judge.
    assert!(deps.contains_key(env!("CARGO_PKG_NAME")), "{deps:?}");
    let problems = tidy::check(&root, &deps).unwrap();
    assert!(
        problems.is_empty(),
        "{} tidy rule(s) broken (`cargo xtask tidy` lists the same):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
