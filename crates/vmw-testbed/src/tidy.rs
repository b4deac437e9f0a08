//! The rules of the code base that the compiler does not check, checked:
//! [`check_workspace`] lists every broken one. `cargo xtask tidy` runs it,
//! and so does the `tidy` test of this crate, so a plain `cargo test`
//! keeps the rules too.
//!
//! - **Layers**: each workspace crate depends (normal dependencies) on
//!   exactly the workspace crates the layer table of `docs/ARCHITECTURE.md`
//!   gives it; `vmw-testbed` is therefore only ever a dev-dependency of the
//!   library crates.
//! - **Environment**: no `std::env::var*` (nor `use std::env`) outside
//!   `vmw_config::env`; every variable is a constant there, read with
//!   `vmw_config::env::var` or through an `Environment` snapshot.
//! - **Processes**: nothing spawns a process but govc's process backend,
//!   and the few places allowed by name below, each with its reason.
//! - **Hints are data**: no library message carries a `hint:` of its own;
//!   a library error gives its hints through a `hints()` method, and the
//!   command line renders them (with its own) once.
//! - **Docs**: every crate has a README, every source file starts with
//!   `//!` documentation.
//!
//! Source rules look at production code only: a file's text up to its
//! first `#[cfg(test)]` (the unit tests sit at the end of a file), not the
//! unit-test modules in files of their own (`tests.rs`, `*_tests.rs`), and
//! not the `tests/` directories. The test-support crate (`vmw-testbed`) and
//! xtask run simulators, sshd and QEMU, and read their own variables, so
//! the environment and process rules do not apply to them.

use std::collections::{BTreeMap, BTreeSet};

use camino::{Utf8Path, Utf8PathBuf};

/// A workspace crate's normal dependencies on other workspace crates, by
/// crate name.
pub type Dependencies = BTreeMap<String, BTreeSet<String>>;

/// Why the rules could not be checked at all (the workspace could not be
/// read); a broken rule is a problem of [`check`], not an error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TidyError(String);

type Result<T> = std::result::Result<T, TidyError>;

/// `Err` of a message.
fn fail<T>(message: String) -> Result<T> {
    Err(TidyError(message))
}

/// The context of an error, in front of it.
trait Context<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| TidyError(format!("{}: {e}", what())))
    }
}

impl<T> Context<T> for Option<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| TidyError(what()))
    }
}

/// Files that may spawn processes, and why.
const SPAWN_ALLOWED: &[(&str, &str)] = &[
    (
        "crates/vmw-govc/src/process.rs",
        "the process backend: every govc call",
    ),
    (
        "crates/vmw-cli/src/commands/ssh.rs",
        "`vmw ssh` hands the terminal to the system's OpenSSH client",
    ),
];

/// The one file that reads the process environment.
const ENV_MODULE: &str = "crates/vmw-config/src/env.rs";

/// The crate that renders hints.
const HINT_RENDERER: &str = "crates/vmw-cli/";

/// How a hint baked into a message text starts.
const BAKED_HINTS: &[&str] = &["\\nhint:", "; hint:", "\"hint:"];

/// Crates the source rules leave alone (test support).
const SOURCE_RULES_SKIP: &[&str] = &["vmw-testbed", "xtask"];

/// The markers around the layer table in `docs/ARCHITECTURE.md`.
const TABLE_START: &str = "<!-- layers -->";
const TABLE_END: &str = "<!-- /layers -->";

/// Every broken rule of the workspace at `root` (empty when every rule
/// holds), its dependencies read with `cargo metadata`.
pub fn check_workspace(root: &Utf8Path) -> Result<Vec<String>> {
    let deps = workspace_dependencies(root)?;
    check(root, &deps)
}

/// Every broken rule under `root`, given each crate's normal dependencies
/// on other workspace crates.
pub fn check(root: &Utf8Path, deps: &Dependencies) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let architecture = root.join("docs/ARCHITECTURE.md");
    let text = std::fs::read_to_string(&architecture)
        .with_context(|| format!("reading {architecture}"))?;
    let table = layer_table(&text).with_context(|| format!("in {architecture}"))?;
    problems.extend(check_layers(&table, deps));

    for (name, dir) in crate_dirs(root)? {
        if !dir.join("README.md").is_file() {
            problems.push(format!("{name}: no README.md in {dir}"));
        }
        for file in rust_files(&dir.join("src"))? {
            let rel = file.strip_prefix(root).unwrap_or(&file).to_owned();
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
            if !text.trim_start().starts_with("//!") {
                problems.push(format!("{rel}: no `//!` documentation at the top"));
            }
            // Test support, and unit-test modules in files of their own.
            if SOURCE_RULES_SKIP.contains(&name.as_str())
                || rel.file_name() == Some("tests.rs")
                || rel.as_str().ends_with("_tests.rs")
            {
                continue;
            }
            problems.extend(check_source(rel.as_str(), &text));
        }
    }
    Ok(problems)
}

/// The layer table: crate → the workspace crates it may depend on.
fn layer_table(text: &str) -> Result<Dependencies> {
    let start = text
        .find(TABLE_START)
        .with_context(|| format!("no {TABLE_START} marker"))?;
    let end = text
        .find(TABLE_END)
        .with_context(|| format!("no {TABLE_END} marker"))?;
    let mut table = BTreeMap::new();
    for line in text[start..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `crate` | `dep`, `dep` | what it is |
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let name = cells[1].trim_matches('`').to_owned();
        let allowed = cells[2]
            .split(',')
            .map(|d| d.trim().trim_matches('`'))
            .filter(|d| !d.is_empty() && *d != "—")
            .map(str::to_owned)
            .collect();
        table.insert(name, allowed);
    }
    if table.is_empty() {
        return fail(format!(
            "the layer table between {TABLE_START} and {TABLE_END} has no rows"
        ));
    }
    Ok(table)
}

fn check_layers(table: &Dependencies, deps: &Dependencies) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, actual) in deps {
        let Some(allowed) = table.get(name) else {
            problems.push(format!(
                "{name}: not in the layer table of docs/ARCHITECTURE.md"
            ));
            continue;
        };
        for extra in actual.difference(allowed) {
            problems.push(format!(
                "{name} depends on {extra}, which the layer table does not allow"
            ));
        }
        for missing in allowed.difference(actual) {
            problems.push(format!(
                "{name} does not depend on {missing}, as the layer table says it does"
            ));
        }
    }
    for name in table.keys() {
        if !deps.contains_key(name) {
            problems.push(format!(
                "{name}: in the layer table, but not a workspace crate"
            ));
        }
    }
    problems
}

/// The environment and process rules on one production source file
/// (`rel`, relative to the workspace root).
fn check_source(rel: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let production = text.split("#[cfg(test)]").next().unwrap_or_default();
    let spawn_allowed = SPAWN_ALLOWED.iter().any(|(f, _)| *f == rel);
    for (i, line) in production.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let n = i + 1;
        if rel != ENV_MODULE
            && ["std::env::var", "use std::env"]
                .iter()
                .any(|p| code.contains(p))
        {
            problems.push(format!(
                "{rel}:{n}: reads the process environment; use vmw_config::env (a constant and env::var)"
            ));
        }
        if !rel.starts_with(HINT_RENDERER) && BAKED_HINTS.iter().any(|p| code.contains(p)) {
            problems.push(format!(
                "{rel}:{n}: a hint inside a message; give it from the error's hints() instead"
            ));
        }
        let spawns = code.contains("process::Command")
            || (code.contains("process::{") && code.contains("Command"));
        if spawns && !spawn_allowed {
            problems.push(format!(
                "{rel}:{n}: spawns a process outside govc's process backend (allowed: {})",
                SPAWN_ALLOWED
                    .iter()
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    problems
}

/// `crates/*` and `xtask`, by package directory name.
fn crate_dirs(root: &Utf8Path) -> Result<Vec<(String, Utf8PathBuf)>> {
    let mut dirs = Vec::new();
    let crates = root.join("crates");
    for entry in crates
        .read_dir_utf8()
        .with_context(|| format!("listing {crates}"))?
    {
        let entry = entry.with_context(|| format!("listing {crates}"))?;
        if entry.path().join("Cargo.toml").is_file() {
            dirs.push((entry.file_name().to_owned(), entry.path().to_owned()));
        }
    }
    if root.join("xtask/Cargo.toml").is_file() {
        dirs.push(("xtask".to_owned(), root.join("xtask")));
    }
    dirs.sort();
    Ok(dirs)
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = d.read_dir_utf8() else {
            continue;
        };
        for entry in entries {
            let path = entry
                .with_context(|| format!("listing {d}"))?
                .path()
                .to_owned();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension() == Some("rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Each workspace crate's normal dependencies on workspace crates, from
/// `cargo metadata`.
pub fn workspace_dependencies(root: &Utf8Path) -> Result<Dependencies> {
    // The cargo running this build or test, when there is one.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(root)
        .output()
        .with_context(|| "running cargo metadata".to_owned())?;
    if !out.status.success() {
        return fail(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| "reading the output of cargo metadata".to_owned())?;
    let packages = meta["packages"]
        .as_array()
        .with_context(|| "cargo metadata: no packages".to_owned())?;
    let members: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    let mut deps = BTreeMap::new();
    for p in packages {
        let Some(name) = p["name"].as_str() else {
            continue;
        };
        let normal: BTreeSet<String> = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| members.contains(*d))
            .map(str::to_owned)
            .collect();
        deps.insert(name.to_owned(), normal);
    }
    Ok(deps)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TABLE: &str = "\
# Architecture

<!-- layers -->
| crate | depends on | what |
|---|---|---|
| `vmw-config` | — | config |
| `vmw-cli` | `vmw-config` | the command |
<!-- /layers -->
";

    /// A tiny workspace that keeps every rule, in a temporary directory.
    fn tidy_tree() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("docs/ARCHITECTURE.md", TABLE);
        for name in ["vmw-config", "vmw-cli"] {
            write(&format!("crates/{name}/Cargo.toml"), "[package]\n");
            write(&format!("crates/{name}/README.md"), "# crate\n");
        }
        write(
            "crates/vmw-config/src/lib.rs",
            "//! Config.\npub mod env;\n",
        );
        write(
            "crates/vmw-config/src/env.rs",
            "//! Env.\npub fn var(k: &str) -> Option<String> { std::env::var(k).ok() }\n",
        );
        write(
            "crates/vmw-cli/src/main.rs",
            "//! The command.\nfn main() { let _ = vmw_config::env::var(\"X\"); }\n\
             #[cfg(test)]\nmod tests { fn t() { let _ = std::env::var(\"T\"); } }\n",
        );
        (dir, root)
    }

    fn deps() -> Dependencies {
        BTreeMap::from([
            ("vmw-config".to_owned(), BTreeSet::new()),
            (
                "vmw-cli".to_owned(),
                BTreeSet::from(["vmw-config".to_owned()]),
            ),
        ])
    }

    #[test]
    fn a_tree_that_keeps_the_rules_passes() {
        let (_dir, root) = tidy_tree();
        assert_eq!(check(&root, &deps()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_dependency_outside_the_table_fails() {
        let (_dir, root) = tidy_tree();
        let mut deps = deps();
        deps.get_mut("vmw-config")
            .unwrap()
            .insert("vmw-cli".to_owned());
        let problems = check(&root, &deps).unwrap();
        assert_eq!(
            problems,
            ["vmw-config depends on vmw-cli, which the layer table does not allow"]
        );
        // A crate missing from the table, and a row without a crate.
        let mut deps = self::deps();
        deps.insert("vmw-new".to_owned(), BTreeSet::new());
        deps.remove("vmw-cli");
        let problems = check(&root, &deps).unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("vmw-new: not in the layer table"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("vmw-cli: in the layer table"))
        );
    }

    #[test]
    fn reading_the_environment_outside_vmw_config_fails() {
        let (_dir, root) = tidy_tree();
        std::fs::write(
            root.join("crates/vmw-cli/src/main.rs"),
            "//! The command.\nfn main() { let _ = std::env::var(\"RUST_LOG\"); }\n",
        )
        .unwrap();
        let problems = check(&root, &deps()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("crates/vmw-cli/src/main.rs:2: reads the process environment"),
            "{problems:?}"
        );
    }

    #[test]
    fn spawning_outside_the_backend_fails() {
        let (_dir, root) = tidy_tree();
        std::fs::write(
            root.join("crates/vmw-cli/src/run.rs"),
            "//! Runs.\nuse tokio::process::Command;\n",
        )
        .unwrap();
        let problems = check(&root, &deps()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("crates/vmw-cli/src/run.rs:2: spawns a process"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_hint_inside_a_library_message_fails() {
        let (_dir, root) = tidy_tree();
        std::fs::write(
            root.join("crates/vmw-config/src/error.rs"),
            "//! Errors.\n#[error(\"no file\\nhint: make one\")]\nstruct E;\n",
        )
        .unwrap();
        let problems = check(&root, &deps()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("crates/vmw-config/src/error.rs:2: a hint inside a message"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_crate_without_readme_or_module_docs_fails() {
        let (_dir, root) = tidy_tree();
        std::fs::remove_file(root.join("crates/vmw-cli/README.md")).unwrap();
        std::fs::write(
            root.join("crates/vmw-config/src/extra.rs"),
            "pub fn f() {}\n",
        )
        .unwrap();
        let problems = check(&root, &deps()).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("vmw-cli: no README.md"));
        assert!(problems[1].starts_with("crates/vmw-config/src/extra.rs: no `//!`"));
    }

    #[test]
    fn the_layer_table_is_read_from_its_markers() {
        let table = layer_table(TABLE).unwrap();
        assert_eq!(table["vmw-config"], BTreeSet::new());
        assert_eq!(table["vmw-cli"], BTreeSet::from(["vmw-config".to_owned()]));
        assert!(layer_table("# no table\n").is_err());
    }
}
