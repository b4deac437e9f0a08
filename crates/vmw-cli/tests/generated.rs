//! Black-box tests of what `vmw` generates from its own command line, with
//! no configuration and no vCenter: the shell completion scripts (`vmw
//! completions SHELL`) and the man pages (`vmw man --out DIR`, which `cargo
//! xtask man` runs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `vmw ARGS` with an empty home and no configuration at all (no
/// config file, no `GOVC_*`, no govc); panics unless it succeeds.
fn vmw(home: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vmw"))
        .env_clear()
        .env("HOME", home)
        .env("USER", "tester")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    success(&out, &format!("vmw {}", args.join(" ")));
    String::from_utf8(out.stdout).unwrap()
}

#[track_caller]
fn success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `program` is on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

#[test]
fn bash_completions_are_valid_bash_and_know_the_commands() {
    let home = tempfile::tempdir().unwrap();
    let script = vmw(home.path(), &["completions", "bash"]);
    for word in ["launch", "snapshot", "image", "--user-data", "--wait"] {
        assert!(script.contains(word), "{word} missing:\n{script}");
    }
    let file = home.path().join("vmw.bash");
    std::fs::write(&file, &script).unwrap();
    let out = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    success(&out, "bash -n on the completion script");
}

#[test]
fn zsh_fish_elvish_and_powershell_completions() {
    let home = tempfile::tempdir().unwrap();
    let zsh = vmw(home.path(), &["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef vmw"), "{zsh}");
    let fish = vmw(home.path(), &["completions", "fish"]);
    assert!(fish.contains("complete -c vmw"), "{fish}");
    assert!(fish.contains("user-data"), "{fish}");
    let elvish = vmw(home.path(), &["completions", "elvish"]);
    assert!(elvish.contains("vmw"), "{elvish}");
    let powershell = vmw(home.path(), &["completions", "powershell"]);
    assert!(powershell.contains("vmw"), "{powershell}");
}

#[test]
fn completions_in_json_name_the_shell() {
    let home = tempfile::tempdir().unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&vmw(home.path(), &["completions", "fish", "--json"])).unwrap();
    assert_eq!(doc["shell"], "fish");
    assert!(doc["script"].as_str().unwrap().contains("complete -c vmw"));
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vmw"))
        .env_clear()
        .env("HOME", home.path())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bash"), "{stderr}");
}

#[test]
fn man_pages_for_vmw_and_each_command() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("man").join("man1");
    let listed = vmw(home.path(), &["man", "--out", dir.to_str().unwrap()]);
    let page = |name: &str| {
        let path = dir.join(name);
        assert!(listed.lines().any(|l| Path::new(l) == path), "{listed}");
        // roff escapes the hyphens of options.
        std::fs::read_to_string(&path).unwrap().replace("\\-", "-")
    };

    let vmw1 = page("vmw.1");
    let name = vmw1
        .split_once(".SH NAME\n")
        .map(|(_, rest)| rest.lines().next().unwrap_or_default())
        .unwrap_or_else(|| panic!("no NAME section:\n{vmw1}"));
    assert!(name.starts_with("vmw - "), "{name}");
    assert!(vmw1.contains("launch"), "{vmw1}");

    let launch = page("vmw-launch.1");
    assert!(launch.contains(".SH NAME\nvmw-launch - "), "{launch}");
    assert!(launch.contains("--user-data"), "{launch}");
    // The environment variables options read are named.
    assert!(launch.contains("VMW_CLONE_GRACE"), "{launch}");
    for sub in [
        "vmw-image-import.1",
        "vmw-config-check.1",
        "vmw-completions.1",
    ] {
        page(sub);
    }
    assert!(!dir.join("vmw-help.1").exists());

    // Rendered as a reader would, where man and a formatter are installed.
    let formatter = ["nroff", "groff", "mandoc"].iter().any(|f| on_path(f));
    if on_path("man") && formatter {
        for name in ["vmw.1", "vmw-launch.1"] {
            let out = Command::new("man")
                .args(["-P", "cat", "-l"])
                .arg(dir.join(name))
                .env("MANWIDTH", "80")
                .output()
                .unwrap();
            success(&out, &format!("man -l {name}"));
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("NAME"), "{text}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.trim().is_empty(), "man -l {name} warned:\n{stderr}");
        }
    } else {
        eprintln!("man or a roff formatter is not installed: the pages were not rendered");
    }
}
